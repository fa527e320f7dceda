// Weight perturbations that behave like real engine bugs, applied to a scratch copy of a fixture (the
// fixture itself stays untouched): `validate` must FAIL on the result. Used by the CPU test
// (tests/engine/test_validation_perturbed.cpp: the bug's size against the GPU tolerance) and the GPU test
// (tests/gpu/test_validate_perturbed.cpp: the CUDA backend's verdict).
//  - swap_o_proj: layers 0 and 1 exchange o_proj (a layer reading another layer's weights);
//  - scale_norm: layer 0's input RMSNorm weight times 1.5 (a wrong norm: missing eps/rsqrt mix-ups
//    scale the activations by a similar factor);
//  - rope_pairs: q_proj and k_proj rows of every head reordered from HF's half-split layout to the
//    interleaved one (the same scores without RoPE, so exactly a rotate-half vs interleaved RoPE bug);
//  - kv_heads: kv heads 0 and 1 exchanged in k_proj and v_proj of every layer (a wrong query-to-KV head
//    mapping in GQA).
#pragma once
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "model/llama_weights.h"
#include "model/safetensors.h"
#include "tests/model/checkpoint_mutator.h"
#include "tests/test_util.h"

namespace fc::test {

enum class WeightBug { SwapOProj, ScaleNorm, RopePairs, KvHeads };
inline const char* weight_bug_name(WeightBug bug) {
  switch (bug) {
    case WeightBug::SwapOProj: return "layers 0/1 o_proj swapped";
    case WeightBug::ScaleNorm: return "layer 0 input norm x1.5";
    case WeightBug::RopePairs: return "RoPE pairs interleaved";
    case WeightBug::KvHeads: return "kv heads 0/1 swapped";
  }
  return "?";
}

// A copy of tests/data/models/<fixture> in a fresh temporary directory (ScratchCheckpoint), deleted with
// the object.
class PerturbedFixture {
 public:
  explicit PerturbedFixture(const std::string& fixture) : scratch_(fixture) {}
  std::string dir() const { return scratch_.dir(); }

  // Rewrites model.safetensors (single-file checkpoints) with `bug` applied.
  void apply(WeightBug bug) const {
    const std::string file = scratch_.path("model.safetensors");
    const Config config = open_checkpoint(dir()).config;
    std::vector<TensorInfo> infos;
    std::vector<std::vector<unsigned char>> bytes;
    {
      const TensorStore store = TensorStore::open_file(file);
      for (const std::string& name : store.names()) {
        const TensorInfo* t = store.find(name);
        infos.push_back(*t);
        bytes.emplace_back(t->data, t->data + t->nbytes);
      }
    }  // the mapping is closed before the file is replaced
    const auto index = [&](const std::string& name) -> size_t {
      for (size_t i = 0; i < infos.size(); ++i) {
        if (infos[i].name == name) return i;
      }
      throw std::runtime_error("perturb: no tensor " + name);
    };
    const auto layer = [](int l, const char* what) { return "model.layers." + std::to_string(l) + "." + what; };
    const int hd = config.head_dim;
    switch (bug) {
      case WeightBug::SwapOProj:
        std::swap(bytes[index(layer(0, "self_attn.o_proj.weight"))], bytes[index(layer(1, "self_attn.o_proj.weight"))]);
        break;
      case WeightBug::ScaleNorm: scale(infos[index(layer(0, "input_layernorm.weight"))], bytes[index(layer(0, "input_layernorm.weight"))], 1.5f); break;
      case WeightBug::RopePairs:
        for (int l = 0; l < config.num_layers; ++l) {
          for (const char* w : {"self_attn.q_proj.weight", "self_attn.k_proj.weight"}) {
            const size_t i = index(layer(l, w));
            const size_t row_bytes = infos[i].nbytes / infos[i].shape[0];
            const std::vector<unsigned char> old = bytes[i];
            for (int64_t head = 0; head < infos[i].shape[0] / hd; ++head) {
              for (int j = 0; j < hd / 2; ++j) {  // new row 2j <- old j, new row 2j+1 <- old j + hd/2
                std::memcpy(&bytes[i][(head * hd + 2 * j) * row_bytes], &old[(head * hd + j) * row_bytes], row_bytes);
                std::memcpy(&bytes[i][(head * hd + 2 * j + 1) * row_bytes], &old[(head * hd + j + hd / 2) * row_bytes],
                            row_bytes);
              }
            }
          }
        }
        break;
      case WeightBug::KvHeads:
        for (int l = 0; l < config.num_layers; ++l) {
          for (const char* w : {"self_attn.k_proj.weight", "self_attn.v_proj.weight"}) {
            const size_t i = index(layer(l, w));
            const size_t head_bytes = infos[i].nbytes / infos[i].shape[0] * hd;
            std::swap_ranges(bytes[i].begin(), bytes[i].begin() + head_bytes, bytes[i].begin() + head_bytes);
          }
        }
        break;
    }
    std::vector<TensorToWrite> out;
    for (size_t i = 0; i < infos.size(); ++i) out.push_back({infos[i].name, infos[i].dtype, infos[i].shape, bytes[i].data()});
    write_safetensors(file, out);
  }

 private:
  static void scale(const TensorInfo& t, std::vector<unsigned char>& bytes, float factor) {
    const size_t n = static_cast<size_t>(t.numel());
    std::vector<float> values(n);
    convert_to_f32(t.dtype, bytes.data(), n, values.data());
    for (size_t k = 0; k < n; ++k) {
      const float v = values[k] * factor;
      if (t.dtype == DType::F32) {
        std::memcpy(&bytes[4 * k], &v, 4);
      } else {
        const uint16_t bits = t.dtype == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
        std::memcpy(&bytes[2 * k], &bits, 2);
      }
    }
  }

  ScratchCheckpoint scratch_;
};

}  // namespace fc::test
