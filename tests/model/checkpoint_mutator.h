// Makes a scratch copy of a fixture checkpoint and corrupts it in one precise way, so each refusal of
// the loader can be tested against a checkpoint that is otherwise valid.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/dtype.h"
#include "model/quantization.h"
#include "model/safetensors.h"
#include "tests/test_util.h"

namespace fc::test {

class ScratchCheckpoint {
 public:
  explicit ScratchCheckpoint(const std::string& fixture) {
    std::random_device rd;
    dir_ = std::filesystem::temp_directory_path() / ("fc_ckpt_" + std::to_string(rd()) + std::to_string(rd()));
    std::filesystem::create_directories(dir_);
    for (const auto& entry : std::filesystem::directory_iterator(data_path("models/" + fixture))) {
      std::filesystem::copy_file(entry.path(), dir_ / entry.path().filename());
    }
  }
  ~ScratchCheckpoint() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string dir() const { return dir_.string(); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  std::string read(const std::string& name) const {
    std::ifstream in(path(name), std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  void write(const std::string& name, const std::string& bytes) const {
    std::ofstream out(path(name), std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  void edit_json(const std::string& name, const std::function<void(nlohmann::json&)>& edit) const {
    nlohmann::json j = nlohmann::json::parse(read(name));
    edit(j);
    write(name, j.dump(2));
  }
  // Rewrites a safetensors file's header (the data area is kept byte for byte).
  void edit_header(const std::string& name, const std::function<void(std::string&)>& edit) const {
    const std::string bytes = read(name);
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    std::string header = bytes.substr(8, n);
    const std::string data = bytes.substr(8 + n);
    edit(header);
    const uint64_t m = header.size();
    std::string out(reinterpret_cast<const char*>(&m), 8);
    write(name, out + header + data);
  }
  void edit_header_json(const std::string& name, const std::function<void(nlohmann::json&)>& edit) const {
    edit_header(name, [&](std::string& h) {
      nlohmann::json j = nlohmann::json::parse(h);
      edit(j);
      h = j.dump();
    });
  }
  // Overwrites element `index` of `tensor` in safetensors file `name` with `value`, converted to the
  // tensor's dtype (F32/F16/BF16/F8_E4M3); the header and every other byte stay as they were.
  void set_element(const std::string& name, const std::string& tensor, size_t index, float value) const {
    std::string bytes = read(name);
    const auto* base = reinterpret_cast<const unsigned char*>(bytes.data());
    const TensorInfo t = parse_safetensors(name, base, bytes.size()).at(tensor);  // a copy: the map is a temporary
    const size_t at = static_cast<size_t>(t.data - base) + index * dtype_size(t.dtype);
    if (t.dtype == DType::BF16 || t.dtype == DType::F16) {
      const uint16_t bits = t.dtype == DType::BF16 ? f32_to_bf16(value) : f32_to_f16(value);
      std::memcpy(&bytes[at], &bits, 2);
    } else if (t.dtype == DType::F8_E4M3) {
      bytes[at] = static_cast<char>(f32_to_e4m3(value));
    } else {
      std::memcpy(&bytes[at], &value, 4);
    }
    write(name, bytes);
  }

 private:
  std::filesystem::path dir_;
};

// How make_fp8 quantizes a scratch checkpoint (the shapes llm-compressor writes; see scripts/make_reference.py).
struct Fp8Recipe {
  bool per_channel = true;        // weight_scale [out, 1] (strategy "channel"), else one scale per tensor
  bool static_inputs = false;     // input_scale per projection (strategy "tensor"), else dynamic per token
  DType scale_dtype = DType::F32; // F32, BF16 or F16
  bool scalar_0d = false;         // per-tensor scales of shape [] instead of [1]
  std::set<std::string> keep;     // modules ("model.layers.0.mlp.down_proj") left unquantized, listed in ignore
  bool write_config = true;       // add the quantization_config to config.json
};

inline nlohmann::json fp8_quantization_config(const Fp8Recipe& r) {
  using nlohmann::json;
  auto args = [](const char* strategy, bool dynamic) {
    return json{{"actorder", nullptr}, {"block_structure", nullptr}, {"dynamic", dynamic}, {"group_size", nullptr},
                {"num_bits", 8}, {"observer", dynamic ? json(nullptr) : json("minmax")}, {"observer_kwargs", json::object()},
                {"strategy", strategy}, {"symmetric", true}, {"type", "float"}};
  };
  json ignore = json::array({"lm_head"});
  for (const std::string& m : r.keep) ignore.push_back(m);
  return json{{"config_groups",
               {{"group_0",
                 {{"input_activations", r.static_inputs ? args("tensor", false) : args("token", true)},
                  {"output_activations", nullptr},
                  {"targets", {"Linear"}},
                  {"weights", args(r.per_channel ? "channel" : "tensor", false)}}}}},
              {"format", "float-quantized"},
              {"ignore", ignore},
              {"kv_cache_scheme", nullptr},
              {"quant_method", "compressed-tensors"},
              {"quantization_status", "compressed"}};
}

// The value `v` rounded to `dtype` (F32/BF16/F16) and its bytes.
inline float round_to(DType dtype, float v, std::vector<unsigned char>& bytes) {
  if (dtype == DType::F32) {
    bytes.resize(bytes.size() + 4);
    std::memcpy(bytes.data() + bytes.size() - 4, &v, 4);
    return v;
  }
  const uint16_t bits = dtype == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
  bytes.push_back(static_cast<unsigned char>(bits & 0xff));
  bytes.push_back(static_cast<unsigned char>(bits >> 8));
  return dtype == DType::BF16 ? bf16_to_f32(bits) : f16_to_f32(bits);
}

// Rewrites the single-file model.safetensors of `c` as a compressed-tensors FP8 checkpoint: every attention
// and MLP projection not in r.keep becomes F8_E4M3 with its weight_scale (and input_scale 0.05 with static
// inputs). Codes are the weight divided by its scale as stored (rounded to r.scale_dtype), rounded by
// f32_to_e4m3; with per-channel F32 scales that is exactly quantize_fp8_per_channel (--quantize fp8).
inline void make_fp8(const ScratchCheckpoint& c, const Fp8Recipe& r) {
  const std::string path = c.path("model.safetensors");
  std::vector<std::vector<unsigned char>> buffers;  // owned data of the tensors written
  std::vector<TensorToWrite> out;
  {
    const TensorStore store = TensorStore::open_file(path);
    buffers.reserve(store.names().size() * 3);
    for (const std::string& name : store.names()) {
      const TensorInfo& t = *store.find(name);
      const std::string suffix = ".weight";
      const std::string module = name.size() > suffix.size() ? name.substr(0, name.size() - suffix.size()) : "";
      const bool projection = name.rfind("model.layers.", 0) == 0 && name.find("_proj.weight") != std::string::npos;
      if (!projection || r.keep.count(module)) {
        buffers.emplace_back(t.data, t.data + t.nbytes);
        out.push_back({name, t.dtype, t.shape, buffers.back().data()});
        continue;
      }
      const std::vector<float> w = tensor_to_f32(t);
      const int64_t rows = t.shape[0], cols = t.shape[1];
      std::vector<float> scales(r.per_channel ? rows : 1);
      for (int64_t i = 0; i < rows * cols; ++i) {
        float& amax = scales[r.per_channel ? i / cols : 0];
        amax = std::max(amax, std::fabs(w[i]));
      }
      std::vector<unsigned char> scale_bytes;
      for (float& s : scales) s = round_to(r.scale_dtype, s > 0 ? s / kE4m3Max : 1.0f, scale_bytes);
      std::vector<unsigned char> codes(w.size());
      for (int64_t i = 0; i < rows * cols; ++i) codes[i] = f32_to_e4m3(w[i] / scales[r.per_channel ? i / cols : 0]);
      buffers.push_back(std::move(codes));
      out.push_back({name, DType::F8_E4M3, t.shape, buffers.back().data()});
      buffers.push_back(std::move(scale_bytes));
      const std::vector<int64_t> scale_shape =
          r.per_channel ? std::vector<int64_t>{rows, 1} : (r.scalar_0d ? std::vector<int64_t>{} : std::vector<int64_t>{1});
      out.push_back({module + ".weight_scale", r.scale_dtype, scale_shape, buffers.back().data()});
      if (r.static_inputs) {
        std::vector<unsigned char> input_bytes;
        round_to(r.scale_dtype, 0.05f, input_bytes);
        buffers.push_back(std::move(input_bytes));
        out.push_back({module + ".input_scale", r.scale_dtype, {1}, buffers.back().data()});
      }
    }
    write_safetensors(path, out);
  }
  if (r.write_config) c.edit_json("config.json", [&](nlohmann::json& j) { j["quantization_config"] = fp8_quantization_config(r); });
}

}  // namespace fc::test
