// The device memory layout (engine/device_layout.h) and the up-front GPU memory check built on it
// (engine/memory_plan.h), with made-up free-memory figures for the shapes of configs/llama-3.1-8b.json and
// llama-3.2-1b.json: what fits, what is refused, with which numbers, and that a suggested --max-context
// or sequence count really fits. The GPU suite checks that a CUDA backend holds exactly the layout's
// allocations (tests/gpu/test_backend_memory.cpp).
#include <catch2/catch.hpp>

#include <fstream>
#include <regex>
#include <set>
#include <tuple>
#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "engine/device_layout.h"
#include "engine/memory_plan.h"
#include "model/config.h"

using namespace fc;
using Catch::Matchers::Contains;
using Catch::Matchers::EndsWith;
using Catch::Matchers::StartsWith;

namespace {

Config shape(const std::string& name) {
  const std::string path = std::string(FC_SOURCE_DIR) + "/configs/" + name + ".json";
  std::ifstream in(path);
  REQUIRE(in.good());
  return parse_config(nlohmann::json::parse(in), path);
}

BackendOptions options(int max_context, int max_sequences) {
  BackendOptions o;
  o.max_context = max_context;
  o.max_sequences = max_sequences;
  return o;
}

// The message of the fc::Error check_fits_gpu throws ("" when it fits).
std::string refusal(const GpuMemoryPlan& plan, double free_gb, double total_gb) {
  try {
    check_fits_gpu(plan, static_cast<size_t>(free_gb * 1e9), static_cast<size_t>(total_gb * 1e9));
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

int number_after(const std::string& text, const std::string& before) {
  const std::smatch m = [&] {
    std::smatch match;
    std::regex_search(text, match, std::regex(before + "([0-9]+)"));
    return match;
  }();
  REQUIRE(m.size() == 2);
  return std::stoi(m[1].str());
}

constexpr double kGiB = 1073741824.0;

}  // namespace

TEST_CASE("the memory plan is the device layout's allocations, each rounded to the driver's granularity",
          "[memory_plan]") {
  constexpr size_t kGranularity = size_t{2} << 20;
  auto rounded = [&](size_t bytes) { return (bytes + kGranularity - 1) / kGranularity * kGranularity; };
  for (const char* name : {"llama-3.1-8b", "llama-3.2-1b"}) {
    for (const auto& [context, seqs, fp8] : {std::tuple{8192, 1, false}, std::tuple{4096, 32, false},
                                             std::tuple{1000, 3, false}, std::tuple{8192, 1, true},
                                             std::tuple{1000, 3, true}}) {
      INFO(name << " context " << context << " sequences " << seqs << (fp8 ? " FP8 projections" : ""));
      const Config c = shape(name);
      BackendOptions o = options(context, seqs);
      if (fp8) o.weights = WeightFormat::kFp8;
      for (bool tied : {false, true}) {
        const DeviceLayout d = device_layout(c, o, tied);
        const GpuMemoryPlan p =
            plan_gpu_memory(c, o, tied ? LmHeadStorage::SharedWithEmbedding : LmHeadStorage::Separate);
        size_t sum = 0;
        for (const DeviceLayout::Allocation& a : d.allocations()) sum += rounded(a.bytes);
        CHECK(p.total - p.reserve == sum);
        CHECK(p.weights == rounded(d.weights.bytes));
        CHECK(p.kv_pool == rounded(d.kv_pool_bytes));
        CHECK(p.max_context == d.kv.max_context);
        CHECK(p.kv_blocks == d.kv.num_blocks);
        // Every carved tensor lies inside its allocation, 256-byte aligned, in order without overlap.
        const WeightOffsets& w = d.weights;
        std::vector<size_t> starts = {w.embed, w.final_norm};
        if (!tied) starts.push_back(w.lm_head);
        for (const WeightOffsets::Layer& L : w.layers) {
          starts.insert(starts.end(), {L.attn_norm, L.wqkv, L.wo, L.mlp_norm, L.w_gate_up, L.w_down});
          if (fp8) starts.insert(starts.end(), {L.wqkv_scales, L.wo_scales, L.w_gate_up_scales, L.w_down_scales});
        }
        CHECK(w.fp8 == fp8);
        CHECK(w.layers.size() == size_t(c.num_layers));
        CHECK((tied ? w.lm_head == w.embed : w.lm_head != w.embed));
        for (size_t at : starts) CHECK((at % 256 == 0 && at < w.bytes));
        // The last projection and, for FP8, its row scales end inside the allocation; FP8 matrices take one
        // byte per element, and each projection's scales lie between it and the next tensor.
        const size_t last = fp8 ? w.layers.back().w_down_scales + size_t(c.hidden_size) * 4
                                : w.layers.back().w_down + size_t(c.hidden_size) * c.intermediate_size * 2;
        CHECK(last <= w.bytes);
        if (fp8) {
          const WeightOffsets::Layer& L = w.layers[0];
          const size_t qkv_rows = c.q_dim() + 2 * size_t(c.kv_dim());
          CHECK(L.wqkv_scales >= L.wqkv + qkv_rows * c.hidden_size);
          CHECK(L.wo >= L.wqkv_scales + qkv_rows * 4);
          CHECK(L.w_gate_up_scales >= L.w_gate_up + 2 * size_t(c.intermediate_size) * c.hidden_size);
          CHECK(L.w_down >= L.w_gate_up_scales + 2 * size_t(c.intermediate_size) * 4);
          CHECK(d.workspace.x_scales >= d.workspace.x_fp8 + size_t(gemm_rows(d.max_batch_tokens)) *
                                                              std::max({c.hidden_size, c.q_dim(), c.intermediate_size}));
          CHECK(d.quantize_staging_bytes >= size_t(c.intermediate_size) * 4);
          // About half the bf16 weights: the projections dominate.
          const DeviceLayout bf = device_layout(c, options(context, seqs), tied);
          CHECK(double(w.bytes) < 0.75 * double(bf.weights.bytes));
        }
        const WorkspaceOffsets& ws = d.workspace;
        CHECK(ws.sample_ids >= ws.sample_params + d.max_logit_rows * (sizeof(SamplingParams) + 4));
        CHECK(ws.sample_history >= ws.sample_ids + d.max_logit_rows * 4);
        CHECK(ws.sample_scratch >= ws.sample_history + size_t(seqs) * c.vocab_size * 4);
        CHECK(ws.sample_scratch + kSampleWorkspaceBytes <= ws.bytes);
        CHECK(ws.meta_count == 4 * size_t(d.max_batch_tokens) + 2 * (size_t(seqs) + 1) +
                                   size_t(seqs) * d.kv.blocks_per_seq);
        CHECK(d.kv_pool_bytes == size_t(d.kv.num_blocks) * d.kv.block_size * c.kv_dim() * 2 * 2 * c.num_layers);
      }
    }
  }
}

TEST_CASE("memory plan of LLaMA 3.1 8B", "[memory_plan]") {
  const Config c = shape("llama-3.1-8b");
  const GpuMemoryPlan p = plan_gpu_memory(c, options(8192, 1));
  // bf16 weights: 2 bytes per parameter (plus alignment and the fused layout's rounding, < 0.1%).
  CHECK(p.weights == Approx(2.0 * c.parameter_count()).epsilon(1e-3));
  CHECK(p.weights / 1e9 == Approx(16.06).margin(0.01));
  // 128 KiB of K/V per token (32 layers x 8 kv heads x 128 x K,V x bf16): 8192 tokens = 1 GiB exactly.
  CHECK(p.kv_bytes_per_token == 131072);
  CHECK(p.kv_pool == size_t{8192} * 131072);
  CHECK(p.max_context == 8192);
  CHECK(p.kv_blocks == 512);
  // Workspace: activations for 8192 tokens (~1.1 GB) + 1024 fp32 logits rows (0.53 GB) + cuBLASLt.
  CHECK(p.workspace / 1e9 == Approx(1.67).margin(0.05));
  CHECK(p.total == p.weights + p.kv_pool + p.workspace + p.reserve);
  // A separate lm_head is one more vocab x hidden bf16 matrix than a tied one (1.05 GB).
  const GpuMemoryPlan tied = plan_gpu_memory(c, options(8192, 1), LmHeadStorage::SharedWithEmbedding);
  CHECK(p.weights - tied.weights == Approx(128256.0 * 4096 * 2).margin(2 << 20));
  // The context is a whole number of blocks; 0 means max_position_embeddings.
  CHECK(plan_gpu_memory(c, options(8000, 1)).max_context == 8000);
  CHECK(plan_gpu_memory(c, options(8001, 1)).max_context == 8016);
  CHECK(plan_gpu_memory(c, options(0, 1)).max_context == 131072);
}

TEST_CASE("check_fits_gpu: 8B with an 8k context fits on a 140 GB GPU", "[memory_plan]") {
  const GpuMemoryPlan p = plan_gpu_memory(shape("llama-3.1-8b"), options(8192, 1));
  CHECK(refusal(p, 140, 143.8) == "");
  CHECK(refusal(plan_gpu_memory(shape("llama-3.1-8b"), options(8192, 32)), 140, 143.8) == "");
  CHECK_NOTHROW(check_fits_gpu(p, p.total, p.total));  // exactly enough is enough
}

TEST_CASE("check_fits_gpu: 8B on a 16 GB GPU is refused as a model larger than the GPU", "[memory_plan]") {
  const GpuMemoryPlan p = plan_gpu_memory(shape("llama-3.1-8b"), options(8192, 1));
  const std::string msg = refusal(p, 16, 16);
  CHECK(msg == "not enough GPU memory: the model needs 16.06 GB of weights (bf16) but the GPU has 16.00 GB; use a GPU "
               "with more memory or a smaller model");
  // A big enough GPU whose memory other processes hold: said so, with the free figure.
  CHECK(refusal(p, 10, 80) == "not enough GPU memory: the model needs 16.06 GB of weights (bf16) but only 10.00 GB of "
                              "the GPU's 80.00 GB are free (other processes hold the rest); free the GPU or use a "
                              "smaller model");
}

TEST_CASE("check_fits_gpu: a KV pool of 128k tokens x 32 sequences on 80 GB names a context that fits",
          "[memory_plan]") {
  const Config c = shape("llama-3.1-8b");
  BackendOptions o = options(131072, 32);
  const GpuMemoryPlan p = plan_gpu_memory(c, o);
  CHECK(p.kv_pool / 1e9 == Approx(549.76).margin(0.01));  // 32 x 131072 x 128 KiB
  const double free_gb = 79.1, total_gb = 79.6;            // an 80 GB H100 with a CUDA context up
  const std::string msg = refusal(p, free_gb, total_gb);
  INFO(msg);
  CHECK_THAT(msg, StartsWith("not enough GPU memory: 32 sequences x 131072 tokens of KV cache need 549.76 GB and the "
                             "workspace "));
  CHECK_THAT(msg, Contains("on top of 16.06 GB of weights") && Contains("but the GPU has 79.10 GB free of 79.60 GB"));
  CHECK_THAT(msg, Contains("; use a smaller --max-context (largest that fits: "));
  CHECK(msg.find('\n') == std::string::npos);

  // The suggested context fits, one block more does not, and it is a whole number of blocks.
  const int context = number_after(msg, "largest that fits: ");
  CHECK(context % o.kv_block_size == 0);
  CHECK(context > 8192);
  CHECK(context < 131072);
  CHECK(largest_fitting_context(c, o, LmHeadStorage::Separate, size_t(free_gb * 1e9)) == context);
  o.max_context = context;
  CHECK(refusal(plan_gpu_memory(c, o), free_gb, total_gb) == "");
  o.max_context = context + o.kv_block_size;
  CHECK(refusal(plan_gpu_memory(c, o), free_gb, total_gb) != "");

  // ... and so does the suggested number of sequences at the asked context.
  const int seqs = number_after(msg, "fewer sequences \\(at most ");
  CHECK_THAT(msg, Contains("(at most " + std::to_string(seqs) + " at 131072 tokens)"));
  CHECK(seqs == 2);  // 17.2 GB of KV per sequence + 18 GB of 128k-token workspace + 16 GB of weights
  CHECK(refusal(plan_gpu_memory(c, options(131072, seqs)), free_gb, total_gb) == "");
  CHECK(refusal(plan_gpu_memory(c, options(131072, seqs + 1)), free_gb, total_gb) != "");
}

TEST_CASE("check_fits_gpu: the other refusals", "[memory_plan]") {
  const Config c = shape("llama-3.1-8b");
  SECTION("one sequence whose context does not fit: no sequence count to suggest") {
    const std::string msg = refusal(plan_gpu_memory(c, options(131072, 1)), 40, 40);
    CHECK_THAT(msg, StartsWith("not enough GPU memory: 1 sequence x 131072 tokens of KV cache need 17.18 GB"));
    CHECK_THAT(msg, EndsWith("; use a smaller --max-context (largest that fits: 84800 tokens)"));
  }
  SECTION("an explicit KV pool: fewer blocks") {
    BackendOptions o = options(8192, 1);
    o.kv_blocks = 40000;  // 83.9 GB of KV
    const std::string msg = refusal(plan_gpu_memory(c, o), 60, 80);
    CHECK_THAT(msg, Contains("use fewer KV blocks (largest that fits: "));
    o.kv_blocks = number_after(msg, "largest that fits: ");
    CHECK(refusal(plan_gpu_memory(c, o), 60, 80) == "");
    ++o.kv_blocks;
    CHECK(refusal(plan_gpu_memory(c, o), 60, 80) != "");
  }
  SECTION("weights fit but not the workspace, whatever the context") {
    BackendOptions o = options(8192, 1);
    o.max_batch_tokens = 200000;  // 27.9 GB of activations
    const std::string msg = refusal(plan_gpu_memory(c, o), 30, 30);
    CHECK_THAT(msg, Contains("even the smallest KV cache does not fit beside the weights and workspace"));
  }
}

TEST_CASE("memory plan of LLaMA 3.2 1B (tied embeddings, head_dim 64)", "[memory_plan]") {
  const Config c = shape("llama-3.2-1b");
  const GpuMemoryPlan p = plan_gpu_memory(c, options(4096, 1));
  CHECK(p.lm_head == LmHeadStorage::SharedWithEmbedding);  // from tie_word_embeddings
  CHECK(p.weights == Approx(2.0 * c.parameter_count()).epsilon(1e-3));
  CHECK(p.kv_bytes_per_token == 16 * 8 * 64 * 2 * 2);  // 32 KiB
  CHECK(p.total / kGiB < 5);
  CHECK(refusal(p, 8, 8) == "");
}

TEST_CASE("gemm_rows: bucketed cuBLASLt row counts", "[memory_plan]") {
  // Exact up to 16 rows (decode batches keep their own plans).
  for (int r = 0; r <= 16; ++r) CHECK(gemm_rows(r) == r);
  CHECK(gemm_rows(17) == 32);
  CHECK(gemm_rows(255) == 256);
  CHECK(gemm_rows(511) == 512);   // granularity 16 below 512
  CHECK(gemm_rows(513) == 544);   // 32 from 512
  CHECK(gemm_rows(2048) == 2048);  // the bench's prompt lengths are their own buckets
  CHECK(gemm_rows(2049) == 2176);  // 128 from 2048
  CHECK(gemm_rows(131072) == 131072);
  // Never fewer rows, at most 1/16 more beyond 256, non-decreasing, and few shapes in all: the set of
  // plans a server can build stays small (16 per octave).
  int buckets = 0, previous = -1;
  for (int r = 1; r <= 131072; ++r) {
    const int b = gemm_rows(r);
    REQUIRE(b >= r);
    REQUIRE(b >= previous);
    if (r > 256) REQUIRE(b - r <= r / 16);
    if (b != previous) ++buckets;
    previous = b;
  }
  CHECK(buckets == 16 + 15 + 16 * 9);  // exact 1..16, 32..256 step 16, then 16 per octave to 128k
  // The prompt lengths 1..512 the soak draws fall into 47 shapes instead of 512.
  std::set<int> soak;
  for (int r = 1; r <= 512; ++r) soak.insert(gemm_rows(r));
  CHECK(soak.size() == 47);
}
