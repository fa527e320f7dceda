// Makes a scratch copy of a fixture checkpoint and corrupts it in one precise way, so each refusal of
// the loader can be tested against a checkpoint that is otherwise valid.
#pragma once
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "core/dtype.h"
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
  // tensor's dtype (F32/F16/BF16); the header and every other byte stay as they were.
  void set_element(const std::string& name, const std::string& tensor, size_t index, float value) const {
    std::string bytes = read(name);
    const auto* base = reinterpret_cast<const unsigned char*>(bytes.data());
    const TensorInfo t = parse_safetensors(name, base, bytes.size()).at(tensor);  // a copy: the map is a temporary
    const size_t at = static_cast<size_t>(t.data - base) + index * dtype_size(t.dtype);
    if (t.dtype == DType::BF16 || t.dtype == DType::F16) {
      const uint16_t bits = t.dtype == DType::BF16 ? f32_to_bf16(value) : f32_to_f16(value);
      std::memcpy(&bytes[at], &bits, 2);
    } else {
      std::memcpy(&bytes[at], &value, 4);
    }
    write(name, bytes);
  }

 private:
  std::filesystem::path dir_;
};

}  // namespace fc::test
