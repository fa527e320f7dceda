// FP8 weights on the CPU reference: an FP8 checkpoint computes with exactly e4m3 value x scale (fp32), and
// --quantize fp8 computes with exactly the codes and scales an FP8 checkpoint of the same quantization holds.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "engine/backend.h"
#include "engine/fp8_support.h"
#include "engine/validation.h"
#include "model/safetensors.h"
#include "tests/model/checkpoint_mutator.h"
#include "tests/test_util.h"

using namespace fc;
using fc::test::Fp8Recipe;
using fc::test::ScratchCheckpoint;
using Catch::Matchers::Contains;

namespace {

const char* kFixture = "tiny-llama3-gqa";

// Logits at every position of `ids`, one prefill on a fresh CPU backend.
std::vector<float> prefill_logits(const Checkpoint& ckpt, const std::vector<int32_t>& ids, WeightFormat weights) {
  BackendOptions o;
  o.max_context = 64;
  o.weights = weights;
  auto backend = make_cpu_backend(ckpt, o);
  const int seq = backend->kv_cache().create_sequence();
  std::vector<float> logits;
  backend->forward({{seq}, {int(ids.size())}, ids, true}, logits);
  return logits;
}

std::vector<int32_t> prompt(int vocab) {
  std::mt19937 rng(99);
  std::uniform_int_distribution<int32_t> dist(0, vocab - 1);
  std::vector<int32_t> ids(29);
  for (auto& id : ids) id = dist(rng);
  return ids;
}

// The stored value of scale tensor element i in fp32, read from its raw bytes.
float scale_at(const TensorInfo& s, size_t i) {
  if (s.dtype == DType::F32) {
    float v;
    std::memcpy(&v, s.data + 4 * i, 4);
    return v;
  }
  uint16_t bits;
  std::memcpy(&bits, s.data + 2 * i, 2);
  return s.dtype == DType::BF16 ? bf16_to_f32(bits) : f16_to_f32(bits);
}

}  // namespace

TEST_CASE("quantizing on load (--quantize fp8) computes with the codes and scales of the same FP8 checkpoint, "
          "bit for bit",
          "[fp8][cpu_backend]") {
  const Checkpoint bf16 = open_checkpoint(fc::test::data_path(std::string("models/") + kFixture));
  ScratchCheckpoint c(kFixture);
  fc::test::make_fp8(c, Fp8Recipe{});  // per-channel F32 scales: quantize_fp8_per_channel's codes and scales
  const Checkpoint fp8 = open_checkpoint(c.dir());
  const std::vector<int32_t> ids = prompt(bf16.config.vocab_size);
  const std::vector<float> plain = prefill_logits(bf16, ids, WeightFormat::kAsStored);
  const std::vector<float> quantized = prefill_logits(bf16, ids, WeightFormat::kFp8);
  const std::vector<float> stored = prefill_logits(fp8, ids, WeightFormat::kAsStored);
  CHECK(quantized == stored);
  // An FP8 checkpoint with --quantize fp8 keeps its own codes and scales.
  CHECK(prefill_logits(fp8, ids, WeightFormat::kFp8) == stored);
  // ... and the quantization did change the weights: the logits move, by FP8 rounding (a few percent).
  const LogitComparison diff = compare_logits(quantized.data(), plain.data(), int(ids.size()),
                                              bf16.config.vocab_size, 1e-3);
  INFO("--quantize fp8 vs bf16 weights: rel_err " << diff.rel_err << " mean KL " << diff.mean_kl);
  CHECK(diff.rel_err > 1e-3);
  CHECK(diff.rel_err < 0.25);  // FP8 rounding on this fixture: 0.10 (KL 6.8e-3); weight-layout bugs: 0.47 or more
}

TEST_CASE("an FP8 checkpoint computes with e4m3 value x scale in fp32 (per-tensor scales folded into fused rows)", "[fp8][cpu_backend]") {
  for (const DType scale_dtype : {DType::BF16, DType::F32}) {
    INFO("scales " << dtype_name(scale_dtype));
    ScratchCheckpoint c(kFixture);
    Fp8Recipe r;
    r.per_channel = false;  // Q, K and V each carry their own scale: the fused rows must keep them apart
    r.static_inputs = true;
    r.scale_dtype = scale_dtype;
    fc::test::make_fp8(c, r);
    const Checkpoint fp8 = open_checkpoint(c.dir());
    // The same model with every projection written out in F32 as code value x scale, computed here from the
    // raw bytes (not through model/quantization.cpp).
    ScratchCheckpoint f32(kFixture);
    {
      std::vector<std::vector<float>> values;
      std::vector<TensorToWrite> out;
      const TensorStore& store = fp8.store;
      values.reserve(store.names().size());
      for (const std::string& name : store.names()) {
        const TensorInfo& t = *store.find(name);
        if (name.find("_scale") != std::string::npos) continue;
        if (t.dtype != DType::F8_E4M3) {
          out.push_back({name, t.dtype, t.shape, t.data});
          continue;
        }
        const TensorInfo& s = *store.find(name + "_scale");
        std::vector<float> w(static_cast<size_t>(t.numel()));
        for (size_t i = 0; i < w.size(); ++i) w[i] = e4m3_to_f32(t.data[i]) * scale_at(s, 0);
        values.push_back(std::move(w));
        out.push_back({name, DType::F32, t.shape, values.back().data()});
      }
      write_safetensors(f32.path("model.safetensors"), out);
    }
    const Checkpoint dequantized = open_checkpoint(f32.dir());
    CHECK_FALSE(dequantized.tensors.fp8);
    const std::vector<int32_t> ids = prompt(fp8.config.vocab_size);
    CHECK(prefill_logits(fp8, ids, WeightFormat::kAsStored) ==
          prefill_logits(dequantized, ids, WeightFormat::kAsStored));
  }
}

TEST_CASE("the CUDA backend refuses FP8 weights until its FP8 path is verified, in one place", "[fp8]") {
  const Checkpoint bf16 = open_checkpoint(fc::test::data_path(std::string("models/") + kFixture));
  ScratchCheckpoint c(kFixture);
  fc::test::make_fp8(c, Fp8Recipe{});
  const Checkpoint fp8 = open_checkpoint(c.dir());
  BackendOptions plain, quantize;
  quantize.weights = WeightFormat::kFp8;
  CHECK_NOTHROW(require_cuda_fp8_support(&bf16, plain));
  CHECK_NOTHROW(require_cuda_fp8_support(nullptr, plain));
  if (cuda_fp8_enabled()) {  // engine/fp8_support.cpp kFp8CudaVerified
    CHECK_NOTHROW(require_cuda_fp8_support(&fp8, plain));
    CHECK_NOTHROW(require_cuda_fp8_support(&bf16, quantize));
    CHECK_NOTHROW(require_cuda_fp8_support(nullptr, quantize));
    return;
  }
  CHECK_THROWS_WITH(require_cuda_fp8_support(&fp8, plain), Contains("FP8 (F8_E4M3) weights run on the CPU backend only"));
  CHECK_THROWS_WITH(require_cuda_fp8_support(&bf16, quantize), Contains("--quantize fp8 runs on the CPU backend only"));
  CHECK_THROWS_WITH(require_cuda_fp8_support(nullptr, quantize), Contains("--quantize fp8"));
}

TEST_CASE("FP8 projections: layout and memory plan", "[fp8][memory_plan]") {
  BackendOptions plain, quantize;
  quantize.weights = WeightFormat::kFp8;
  const Checkpoint bf16 = open_checkpoint(fc::test::data_path(std::string("models/") + kFixture));
  CHECK_FALSE(fp8_projections(bf16.config, plain));
  CHECK(fp8_projections(bf16.config, quantize));
  ScratchCheckpoint c(kFixture);
  fc::test::make_fp8(c, Fp8Recipe{});
  const Checkpoint fp8 = open_checkpoint(c.dir());
  CHECK(fp8_projections(fp8.config, plain));
}
