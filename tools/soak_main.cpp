// fc_soak: a long run of a backend that checks nothing grows. A synthetic model (random bf16 weights
// drawn on the GPU, the built-in llama-3.2-1b shape by default) or a checkpoint (--model DIR) generates many
// sequences one after the other through engine/generator.h, with random prompts of varying length and
// greedy, sampled and penalised decoding (all on the GPU) mixed; after each sequence
// it samples the GPU's used memory (cudaMemGetInfo) and this process's resident set (/proc/self/statm).
//
// --device cpu (needs --model) runs the same loop on the CPU reference backend and needs no GPU. It makes
// no CUDA call (the CUDA libraries are still linked and their load-time initializers run, but no context
// is created), so RSS growth there is the host code's: generator, batch plan, KV bookkeeping, host
// sampler. Run it on a tiny fixture (tests/data/models/tiny-llama3-bpe) for a few hundred sequences,
// under heaptrack or valgrind if it grows. With --model, --max-context / --max-prompt default to what the
// checkpoint allows.
//
// Pass: after the warm-up, GPU used memory never exceeds its value at the end of the warm-up, host RSS
// never exceeds it by more than --rss-slack-mb, and every KV block is back in the pool after each
// sequence. The warm-up's first two sequences run from a one-token prompt to the full context, greedy
// and sampled, so that every decode CUDA graph the backend caches for one sequence (one per attention
// split count and sampler) exists before measuring: a bounded cache filling up is not a leak. Then
// (unless --no-prefill-sweep) one prefill of every prompt length from --min-prompt to --max-prompt, so
// that every cuBLASLt plan the backend keeps per row bucket (engine/memory_plan.h: gemm_rows) exists
// too; its RSS cost is printed. --exact-gemm-rows turns the buckets off (one plan per prompt length).
//
//   fc_soak [--config llama-3.2-1b|llama-3.1-8b|8b|PATH | --model DIR] [--device cuda|cpu] [--sequences 40]
//           [--tokens 64] [--warmup 5] [--max-context 1024] [--min-prompt 1] [--max-prompt 512] [--seed 1]
//           [--rss-slack-mb 8] [--no-prefill-sweep] [--exact-gemm-rows]
// Last line: "soak: N tokens, GPU used after warm-up/at end X/Y MB, RSS after warm-up/at end X/Y MB: PASS"
// (or FAIL, exit status 1; on the CPU "GPU used ..." is left out). The line before it also gives the RSS
// trend after the warm-up (least-squares slope, KB per sequence). GPU used memory is device-wide: run it
// on a GPU nobody else is using.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "apps/model_shapes.h"
#include "core/error.h"
#include "engine/backend.h"
#include "engine/generator.h"
#include "engine/memory_plan.h"
#include "kernels/cuda_utils.cuh"
#include "model/llama_weights.h"

namespace fc {
namespace {

struct SoakOptions {
  std::string config = "llama-3.2-1b";
  std::string model_dir;  // a checkpoint instead of the synthetic model (required on the CPU)
  DeviceKind device = DeviceKind::Cuda;
  int sequences = 40, tokens = 64, warmup = 5, max_context = 1024, min_prompt = 1, max_prompt = 512;
  bool max_context_given = false, max_prompt_given = false;
  bool prefill_sweep = true;     // the warm-up prefills every prompt length once
  bool exact_gemm_rows = false;  // BackendOptions::bucket_gemm_rows off: the control for the plan cache
  uint64_t seed = 1;
  double rss_slack_mb = 8;
};

constexpr double kMB = 1e6;

// A shape built into the binary (apps/model_shapes.h; 1b/3b/8b are short for the LLaMA 3.x ones), or a
// config.json path.
Config load_shape(const std::string& name) {
  const std::string alias = name == "8b" ? "llama-3.1-8b" : name == "3b" ? "llama-3.2-3b" : name == "1b" ? "llama-3.2-1b" : name;
  return load_model_shape(alias, "--config").config;
}

size_t gpu_used_bytes() {
  size_t free_bytes = 0, total_bytes = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return total_bytes - free_bytes;
}

size_t host_rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages_total = 0, pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// How sequence `s` decodes: greedy, sampled on the GPU (two sampler setups), or greedy with a
// repetition penalty (which takes the host sampler path: forward() + logits copy).
enum class Mode { Greedy, SampledTopP, SampledTopK, Penalty };
const char* mode_name(Mode m) {
  switch (m) {
    case Mode::Greedy: return "greedy";
    case Mode::SampledTopP: return "top-p";
    case Mode::SampledTopK: return "top-k";
    case Mode::Penalty: return "penalty";
  }
  return "?";
}

GenerationParams params_for(Mode mode, int max_new_tokens, uint64_t seed) {
  GenerationParams p;
  p.max_new_tokens = max_new_tokens;
  p.sampling.seed = seed;
  p.sampling.temperature = 0;
  if (mode == Mode::SampledTopP) {
    p.sampling.temperature = 0.8f;
    p.sampling.top_p = 0.95f;
  } else if (mode == Mode::SampledTopK) {
    p.sampling.temperature = 1.0f;
    p.sampling.top_k = 50;
    p.sampling.min_p = 0.02f;
  } else if (mode == Mode::Penalty) {
    p.sampling.repetition_penalty = 1.2f;
    p.sampling.presence_penalty = 0.3f;
    p.sampling.frequency_penalty = 0.2f;
  }
  return p;  // no stop ids: random weights would end sequences at random
}

// Slope of the least-squares line through (i, y[i]), per step of i.
double slope(const std::vector<double>& y) {
  const size_t n = y.size();
  if (n < 2) return 0;
  double mean_x = (n - 1) / 2.0, mean_y = 0;
  for (double v : y) mean_y += v / n;
  double sxy = 0, sxx = 0;
  for (size_t i = 0; i < n; ++i) {
    sxy += (i - mean_x) * (y[i] - mean_y);
    sxx += (i - mean_x) * (i - mean_x);
  }
  return sxy / sxx;
}

int run_soak(SoakOptions o) {
  const bool cuda = o.device == DeviceKind::Cuda;
  if (!cuda && o.model_dir.empty()) fail("--device cpu needs --model DIR (the synthetic model is GPU-only)");
  if (cuda && cuda_device_count() == 0) fail("fc_soak --device cuda needs a CUDA GPU (none found; --device cpu)");
  std::unique_ptr<Checkpoint> ckpt;
  if (!o.model_dir.empty()) ckpt = std::make_unique<Checkpoint>(open_checkpoint(o.model_dir));
  const Config config = ckpt ? ckpt->config : load_shape(o.config);
  if (ckpt) {  // the checkpoint's context bounds the defaults; an explicit value beyond it is refused
    const int limit = config.max_position_embeddings;
    if (o.max_context > limit) {
      if (o.max_context_given) fail("--max-context {} exceeds the model's max_position_embeddings {}", o.max_context, limit);
      o.max_context = limit;
    }
    if (!o.max_prompt_given) o.max_prompt = std::max(1, std::min(o.max_prompt, o.max_context - o.tokens));
  }
  if (o.min_prompt > o.max_prompt) fail("--min-prompt {} exceeds --max-prompt {}", o.min_prompt, o.max_prompt);
  if (o.warmup < 2 || o.warmup >= o.sequences) fail("--warmup must be at least 2 and less than --sequences");
  if (o.max_prompt + o.tokens > o.max_context) {
    fail("--max-prompt {} + --tokens {} exceed --max-context {}", o.max_prompt, o.tokens, o.max_context);
  }
  const std::string model_name = ckpt ? o.model_dir : o.config;
  BackendOptions bo;
  bo.max_context = o.max_context;
  bo.max_sequences = 1;
  bo.show_progress = false;
  bo.bucket_gemm_rows = !o.exact_gemm_rows;

  std::unique_ptr<Backend> backend;
  if (cuda) {
    // The up-front check the CUDA backend makes, and how its plan compares with what construction takes.
    size_t free_bytes = 0, total_bytes = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    const bool tied = !ckpt || ckpt->tensors.lm_head == ckpt->tensors.embed;  // synthetic: tied
    const GpuMemoryPlan plan =
        plan_gpu_memory(config, bo, tied ? LmHeadStorage::SharedWithEmbedding : LmHeadStorage::Separate);
    check_fits_gpu(plan, free_bytes, total_bytes);
    const size_t used_before_backend = total_bytes - free_bytes;
    backend = ckpt ? make_backend(DeviceKind::Cuda, *ckpt, bo) : make_synthetic_cuda_backend(config, o.seed, bo);
    CUDA_CHECK(cudaDeviceSynchronize());
    const size_t used_after_backend = gpu_used_bytes();
    std::printf("soak: %s, %d layers, hidden %d, vocab %d; context %d; GPU %.0f MB in all\n", model_name.c_str(),
                config.num_layers, config.hidden_size, config.vocab_size, o.max_context, total_bytes / kMB);
    std::printf("memory plan: weights %.1f + KV %.1f + workspace %.1f = %.1f MB allocated (+ %.1f MB reserve); "
                "measured at construction: %.1f MB\n",
                plan.weights / kMB, plan.kv_pool / kMB, plan.workspace / kMB, (plan.total - plan.reserve) / kMB,
                plan.reserve / kMB, (used_after_backend - used_before_backend) / kMB);
  } else {
    backend = make_backend(DeviceKind::Cpu, *ckpt, bo);
    std::printf("soak: %s on the CPU, %d layers, hidden %d, vocab %d; context %d, prompts of %d..%d tokens\n",
                model_name.c_str(), config.num_layers, config.hidden_size, config.vocab_size, o.max_context,
                o.min_prompt, o.max_prompt);
  }

  KVCacheManager& kv = backend->kv_cache();
  std::mt19937_64 rng(o.seed);
  const int vocab = config.vocab_size;
  std::uniform_int_distribution<int32_t> any_id(0, vocab - 1);
  std::uniform_int_distribution<int> any_length(o.min_prompt, o.max_prompt);

  std::printf("%4s %7s %8s %7s %12s %12s %10s %9s\n", "seq", "prompt", "mode", "new", "tokens so far",
              "GPU used MB", "RSS MB", "tok/s");
  long long tokens_total = 0, tokens_after_warmup = 0;
  size_t gpu_at_warmup = 0, rss_at_warmup = 0, gpu_max_after = 0, rss_max_after = 0, gpu_end = 0, rss_end = 0;
  bool kv_leak = false;
  std::vector<double> rss_trend;  // KB after each sequence from the end of the warm-up on
  for (int s = 0; s < o.sequences; ++s) {
    if (s == 2 && o.prefill_sweep) {
      // Warm-up, part two: one prefill of every prompt length the measured sequences can draw, so that
      // every per-shape cache (the CUDA backend's cuBLASLt plans, one set per row bucket) is filled
      // before measuring. How much that takes is printed: it is what the plans and kernels cost.
      const size_t rss_before = host_rss_bytes(), gpu_before = cuda ? gpu_used_bytes() : 0;
      const auto t0 = std::chrono::steady_clock::now();
      for (int len = o.min_prompt; len <= o.max_prompt; ++len) {
        std::vector<int32_t> prompt(len);
        for (auto& id : prompt) id = any_id(rng);
        const int seq = kv.create_sequence();
        tokens_total += generate(*backend, seq, prompt, params_for(Mode::Greedy, 1, 0), [](int32_t) { return true; })
                            .generated_tokens;
        kv.release_sequence(seq);
      }
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      char gpu_text[64] = "";
      if (cuda) std::snprintf(gpu_text, sizeof gpu_text, "GPU used %.1f -> %.1f MB, ", gpu_before / kMB, gpu_used_bytes() / kMB);
      std::printf("prefill sweep: prompts of %d..%d tokens, one each, in %.1f s: %sRSS %.1f -> %.1f MB\n", o.min_prompt,
                  o.max_prompt, seconds, gpu_text, rss_before / kMB, host_rss_bytes() / kMB);
    }
    int prompt_len = any_length(rng);
    Mode mode = static_cast<Mode>(s % 4);
    int new_tokens = o.tokens;
    if (s < 2) {  // warm-up: every decode length, greedy then sampled (see the top of the file)
      prompt_len = 1;
      mode = s == 0 ? Mode::Greedy : Mode::SampledTopP;
      new_tokens = o.max_context;  // stops at the full context
    }
    std::vector<int32_t> prompt(prompt_len);
    for (auto& id : prompt) id = any_id(rng);
    const GenerationParams params = params_for(mode, new_tokens, o.seed * 1000 + s);

    const int seq = kv.create_sequence();
    const auto t0 = std::chrono::steady_clock::now();
    const GenerationStats stats = generate(*backend, seq, prompt, params, [](int32_t) { return true; });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    kv.release_sequence(seq);
    if (kv.free_blocks() != kv.num_blocks()) {
      std::printf("KV pool: %d of %d blocks free after releasing sequence %d\n", kv.free_blocks(), kv.num_blocks(), s);
      kv_leak = true;
    }

    tokens_total += stats.generated_tokens;
    const size_t gpu = cuda ? gpu_used_bytes() : 0, rss = host_rss_bytes();
    char gpu_text[32] = "-";
    if (cuda) std::snprintf(gpu_text, sizeof gpu_text, "%.1f", gpu / kMB);
    std::printf("%4d %7d %8s %7d %12lld %12s %10.1f %9.0f%s\n", s, prompt_len, mode_name(mode),
                stats.generated_tokens, tokens_total, gpu_text, rss / kMB, stats.generated_tokens / seconds,
                s + 1 == o.warmup ? "  <- end of warm-up" : "");
    if (s + 1 >= o.warmup) rss_trend.push_back(rss / 1e3);
    std::fflush(stdout);
    if (s + 1 == o.warmup) {
      gpu_at_warmup = gpu_max_after = gpu;
      rss_at_warmup = rss_max_after = rss;
    } else if (s + 1 > o.warmup) {
      tokens_after_warmup += stats.generated_tokens;
      gpu_max_after = std::max(gpu_max_after, gpu);
      rss_max_after = std::max(rss_max_after, rss);
    }
    gpu_end = gpu;
    rss_end = rss;
  }

  const double gpu_growth_mb = (double(gpu_max_after) - double(gpu_at_warmup)) / kMB;
  const double rss_growth_mb = (double(rss_max_after) - double(rss_at_warmup)) / kMB;
  const bool pass = gpu_max_after <= gpu_at_warmup && rss_growth_mb <= o.rss_slack_mb && !kv_leak;
  char gpu_growth_text[64] = "";
  if (cuda) std::snprintf(gpu_growth_text, sizeof gpu_growth_text, "GPU %+.1f MB (allowed 0), ", gpu_growth_mb);
  std::printf("after warm-up: %lld tokens in %d sequences; largest growth: %sRSS %+.1f MB (allowed %.0f); "
              "RSS trend %+.1f KB per sequence%s\n",
              tokens_after_warmup, o.sequences - o.warmup, gpu_growth_text, rss_growth_mb, o.rss_slack_mb,
              slope(rss_trend), kv_leak ? "; KV blocks not returned to the pool" : "");
  char gpu_text[96] = "";
  if (cuda) {
    std::snprintf(gpu_text, sizeof gpu_text, "GPU used after warm-up/at end %.1f/%.1f MB, ", gpu_at_warmup / kMB,
                  gpu_end / kMB);
  }
  std::printf("soak: %lld tokens, %sRSS after warm-up/at end %.1f/%.1f MB: %s\n", tokens_total, gpu_text,
              rss_at_warmup / kMB, rss_end / kMB, pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}

}  // namespace
}  // namespace fc

int main(int argc, char** argv) {
  fc::SoakOptions o;
  CLI::App app{"fc_soak: many sequences through a backend; GPU memory and host RSS must stay flat"};
  auto* config_opt = app.add_option("--config", o.config, "synthetic model shape: one built into the binary (" +
                                                          fc::builtin_shape_names() + ", or 1b/3b/8b) or a "
                                                          "config.json path");
  app.add_option("--model", o.model_dir, "checkpoint directory to load instead of the synthetic model")
      ->excludes(config_opt);
  std::string device = "cuda";
  app.add_option("--device", device, "cuda (default) or cpu (the CPU reference backend; needs --model)")
      ->check(CLI::IsMember({"cuda", "cpu"}));
  app.add_option("--sequences", o.sequences, "sequences in all, warm-up included")->check(CLI::PositiveNumber);
  app.add_option("--tokens", o.tokens, "new tokens per sequence after the two full-context warm-up ones")
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup, "sequences before the baseline is taken (>= 2)")->check(CLI::PositiveNumber);
  auto* context_opt =
      app.add_option("--max-context", o.max_context, "context of the KV cache, tokens (with --model at most its "
                                                     "max_position_embeddings, which it defaults to when smaller)")
          ->check(CLI::PositiveNumber);
  auto* prompt_opt = app.add_option("--max-prompt", o.max_prompt, "longest random prompt, tokens (with --model "
                                                                  "default: what the context leaves after --tokens)")
                         ->check(CLI::PositiveNumber);
  app.add_option("--min-prompt", o.min_prompt, "shortest random prompt, tokens (= --max-prompt: one prefill shape, "
                                               "so a per-shape cache such as the cuBLASLt plans stops growing)")
      ->check(CLI::PositiveNumber);
  app.add_flag("!--no-prefill-sweep", o.prefill_sweep, "leave out the warm-up's prefill of every prompt length");
  app.add_flag("--exact-gemm-rows", o.exact_gemm_rows, "cuBLASLt over each step's exact row count (no row buckets): "
                                                       "the control run for the per-shape plan cache");
  app.add_option("--seed", o.seed, "weights, prompts and sampling");
  app.add_option("--rss-slack-mb", o.rss_slack_mb, "allowed host RSS growth after the warm-up, MB");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  o.device = device == "cpu" ? fc::DeviceKind::Cpu : fc::DeviceKind::Cuda;
  o.max_context_given = context_opt->count() > 0;
  o.max_prompt_given = prompt_opt->count() > 0;
  spdlog::set_level(spdlog::level::warn);
  try {
    return fc::run_soak(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
