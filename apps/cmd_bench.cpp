// flashcore bench: prefill latency (time to first token) per prompt length, and decode latency per
// token (p50/p90/p99) per (batch, context), with the bytes each decode step must read and the achieved
// fraction of the copy bandwidth this run measures on the same GPU (the roofline).
//
// Context is filled by setting the sequences' KV lengths directly (KVCacheManager::reserve +
// set_length) rather than by prefilling: a decode step reads the same K/V bytes whatever they hold
// (the CUDA pool is zeroed at allocation, so they are finite), and prefilling 32 sequences of 8k tokens
// would cost more than the measurement itself. Prefill is measured separately, from an empty cache.
//
// Timing: every forward_sample() ends with a stream synchronize (the sampled ids are copied to the
// host), so host steady_clock around each call is the step's wall time, launch overhead included
// (what a user waits for). Decode steps sample on the GPU (only the ids cross to the host): greedily, and
// when sampling options are given, each case a second time with them (the sampler's cost, same run).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "apps/cli_common.h"
#include "apps/commands.h"
#include "apps/model_shapes.h"
#include "core/error.h"
#include "engine/bench.h"
#include "engine/fp8_support.h"
#include "model/llama_weights.h"

namespace fc::cli {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct BenchOptions {
  std::string model_dir, synthetic, json_path, device = "cuda";
  std::string quantize;  // --quantize fp8 ("" = as stored)
  std::vector<int> prompt_lens{128, 512, 2048}, contexts{0, 8192, 32768}, batches{1, 8, 32};
  int gen_len = 128, warmup = 1, iters = 3, block_size = 16;
  uint64_t seed = 1;
  bool ablate = false;
  SamplingParams sampling{0.f};  // --temperature etc.: a second decode row per case with this sampler
  bool sampled() const { return sampling.temperature > 0 || sampling_has_penalty(sampling); }
};

// How a decode row chose its tokens, for the table and the JSON.
std::string sampler_name(const SamplingParams& p) {
  std::string s = p.temperature > 0 ? fmt::format("T {:g}", p.temperature) : "greedy";
  if (p.temperature > 0 && p.top_k > 0) s += fmt::format(" k {}", p.top_k);
  if (p.temperature > 0 && p.top_p < 1) s += fmt::format(" p {:g}", p.top_p);
  if (p.temperature > 0 && p.min_p > 0) s += fmt::format(" min-p {:g}", p.min_p);
  if (p.repetition_penalty != 1) s += fmt::format(" rep {:g}", p.repetition_penalty);
  if (p.presence_penalty != 0) s += fmt::format(" pres {:g}", p.presence_penalty);
  if (p.frequency_penalty != 0) s += fmt::format(" freq {:g}", p.frequency_penalty);
  return s;
}

// The ablation variants: everything on, then each part of the decode fast path off alone, then all off
// (cuBLASLt for every product, unfused kernels, eager launches).
struct Variant {
  const char* name;
  DecodeOptions options;
};
std::vector<Variant> ablation_variants() {
  DecodeOptions all, no_graph, no_pdl, no_fuse, no_gemv, two_ctas, no_bulk, none;
  no_graph.cuda_graph = false;
  no_pdl.pdl = false;
  no_fuse.fuse = false;
  no_gemv.gemv = false;
  two_ctas.attn_one_cta_per_sm = false;
  no_bulk.bulk_gemv = false;
  none.cuda_graph = none.gemv = none.bulk_gemv = none.fuse = none.pdl = false;
  none.attn_one_cta_per_sm = false;
  return {{"all on", all},
          {"no CUDA graph", no_graph},
          {"no PDL", no_pdl},
          {"no fusion", no_fuse},
          {"attention split for 2 CTAs/SM", two_ctas},
          {"register GEMV only", no_bulk},
          {"cuBLASLt, not GEMV", no_gemv},
          {"all off", none}};
}

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

Config synthetic_config(const std::string& name) {
  // A shape built into the binary (configs/NAME.json at build time: apps/model_shapes.h), or a path to a
  // hub config.json. Names never read the file system, so this works from any directory and installed.
  return load_model_shape(name, "--synthetic").config;
}

std::vector<int32_t> random_tokens(int count, int vocab, std::mt19937_64& rng) {
  std::uniform_int_distribution<int32_t> dist(0, vocab - 1);
  std::vector<int32_t> ids(count);
  for (auto& id : ids) id = dist(rng);
  return ids;
}

struct GpuMemory {
  bool cuda = false;
  size_t peak_used = 0;
  void sample() {
    if (!cuda) return;
    const DeviceInfo info = cuda_device_info();
    peak_used = std::max(peak_used, info.total_bytes - info.free_bytes);
  }
};

// Prefill of `prompt_len` tokens into an empty sequence, in chunks of `chunk` tokens, then the first
// sampled token: time to first token.
json bench_prefill(Backend& backend, int prompt_len, int chunk, const BenchOptions& o, std::mt19937_64& rng) {
  KVCacheManager& kv = backend.kv_cache();
  const Config& c = backend.config();
  const std::vector<int32_t> prompt = random_tokens(prompt_len, c.vocab_size, rng);
  const int seq = kv.create_sequence();
  std::vector<double> samples;
  std::vector<int32_t> ids;
  for (int it = 0; it < o.warmup + o.iters; ++it) {
    kv.truncate(seq, 0);
    const auto t0 = Clock::now();
    for (int begin = 0; begin < prompt_len; begin += chunk) {
      const int n = std::min(chunk, prompt_len - begin);
      backend.forward_sample({{seq}, {n}, {prompt.begin() + begin, prompt.begin() + begin + n}, false},
                             {SamplingParams{0.f}}, ids);
    }
    const double ms = ms_since(t0);
    if (it >= o.warmup) samples.push_back(ms);
  }
  kv.release_sequence(seq);
  const double p50 = percentile(samples, 50);
  return {{"prompt_len", prompt_len},
          {"ttft_ms_p50", p50},
          {"ttft_ms_p90", percentile(samples, 90)},
          {"ttft_ms_min", *std::min_element(samples.begin(), samples.end())},
          {"prefill_tok_s", prompt_len / (p50 / 1e3)},
          {"tflops", forward_flops(c, prompt_len, 0) / (p50 / 1e3) / 1e12},
          {"samples_ms", samples}};
}

// Whether the backend holds the projections as FP8 (--quantize fp8 or an FP8 checkpoint): the roofline
// then counts their e4m3 bytes and scales (engine/bench.h decode_weight_bytes).
bool fp8_weights(const Config& c, const BenchOptions& o) {
  BackendOptions bo;
  bo.weights = weight_format(o.quantize);
  return fp8_projections(c, bo);
}

// The weight format as the table and JSON name it.
std::string weight_format_name(const Config& c, const BenchOptions& o) {
  if (!fp8_weights(c, o)) return "bf16";
  return weight_format(o.quantize) == WeightFormat::kFp8 ? "fp8 e4m3 (quantized on load, per-channel scales)"
                                                         : "fp8 e4m3 (checkpoint)";
}

// gen_len decode steps for `batch` sequences that each hold `context` tokens, timed per step, with the
// sampler `sp` (each sequence its own seed; the draw of position p, as generate makes it).
json bench_decode(Backend& backend, int batch, int context, double copy_gbs, const BenchOptions& o,
                  const SamplingParams& sp, std::mt19937_64& rng) {
  KVCacheManager& kv = backend.kv_cache();
  const Config& c = backend.config();
  std::vector<int> seqs(batch);
  for (int& s : seqs) {
    s = kv.create_sequence();
    kv.reserve(s, context);
    kv.set_length(s, context);
  }
  const std::vector<int> ones(batch, 1);
  std::vector<SamplingParams> params(batch, sp);
  for (int b = 0; b < batch; ++b) params[b].seed = sp.seed + b;
  std::vector<int32_t> tokens = random_tokens(batch, c.vocab_size, rng);
  std::vector<double> samples;
  double bytes_sum = 0;
  for (int it = 0; it < o.warmup + o.iters; ++it) {
    for (int s : seqs) kv.truncate(s, context);
    // Penalties read a history: each sequence's context is taken to be random ids (the cost does not
    // depend on what they are).
    if (sampling_has_penalty(sp)) {
      for (int s : seqs) backend.set_sampling_history(s, random_tokens(std::min(context, 4096), c.vocab_size, rng));
    }
    for (int step = 0; step < o.gen_len; ++step) {
      for (SamplingParams& p : params) p.step = static_cast<uint64_t>(context + step + 1);
      const auto t0 = Clock::now();
      backend.forward_sample({seqs, ones, tokens, false}, params, tokens);
      const double ms = ms_since(t0);
      if (it < o.warmup) continue;
      samples.push_back(ms);
      // This step reads the weights once and, per sequence, K/V of context + step + 1 tokens (the new
      // token's own K/V is written, then read by attention).
      bytes_sum += decode_weight_bytes(c, fp8_weights(c, o)) +
                   double(batch) * (context + step + 1) * kv_bytes_per_token(c);
    }
  }
  for (int s : seqs) kv.release_sequence(s);
  const double mean_ms = std::accumulate(samples.begin(), samples.end(), 0.0) / samples.size();
  const double bytes_per_step = bytes_sum / samples.size();
  const double gbs = bytes_per_step / (mean_ms / 1e3) / 1e9;
  json r = {{"batch", batch},
            {"context", context},
            {"sampler", sampler_name(sp)},
            {"gen_len", o.gen_len},
            {"ms_per_step_p50", percentile(samples, 50)},
            {"ms_per_step_p90", percentile(samples, 90)},
            {"ms_per_step_p99", percentile(samples, 99)},
            {"ms_per_step_mean", mean_ms},
            {"tok_s", batch * 1e3 / mean_ms},
            {"bytes_per_step", bytes_per_step},
            {"achieved_gbs", gbs},
            {"samples_ms", samples}};
  if (copy_gbs > 0) {
    r["floor_ms"] = bytes_per_step / (copy_gbs * 1e9) * 1e3;
    r["roofline_pct"] = 100.0 * gbs / copy_gbs;
  }
  return r;
}

int run_bench(const BenchOptions& o) {
  const bool quiet = global_options().quiet;
  if (o.model_dir.empty() == o.synthetic.empty()) fail("give exactly one of --model DIR and --synthetic NAME");
  const DeviceKind device = parse_device(o.device);
  if (!o.synthetic.empty() && device != DeviceKind::Cuda) fail("--synthetic runs on the GPU only (--device cuda)");
  const bool cuda = device == DeviceKind::Cuda;
  for (int v : o.prompt_lens) if (v <= 0) fail("--prompt-len: lengths must be positive (got {})", v);
  for (int v : o.contexts) if (v < 0) fail("--context: contexts must be >= 0 (got {})", v);
  for (int v : o.batches) if (v <= 0) fail("--batch: batch sizes must be positive (got {})", v);

  json out;
  double copy_gbs = 0;
  GpuMemory memory{cuda};
  size_t free_before = 0;
  if (cuda) {
    const DeviceInfo info = cuda_device_info();
    out["device"] = info.name;
    out["device_memory_bytes"] = info.total_bytes;
    // 1 GiB each way: far beyond L2 (50-60 MB on Hopper), long enough that launch cost is noise.
    copy_gbs = measure_copy_bandwidth_gbs(size_t{1} << 30, 20);
    out["copy_bandwidth_gbs"] = copy_gbs;
    free_before = cuda_device_info().free_bytes;
  } else {
    out["device"] = "cpu";
  }

  std::unique_ptr<Checkpoint> ckpt;
  Config config;
  if (!o.model_dir.empty()) {
    ckpt = std::make_unique<Checkpoint>(open_checkpoint(o.model_dir));
    config = ckpt->config;
    out["model"] = o.model_dir;
  } else {
    config = synthetic_config(o.synthetic);
    out["model"] = "synthetic " + o.synthetic;
  }

  // One backend for every configuration: KV pool and workspace sized for the largest one that fits.
  const int max_prompt = o.prompt_lens.empty() ? 1 : *std::max_element(o.prompt_lens.begin(), o.prompt_lens.end());
  const int max_batch = *std::max_element(o.batches.begin(), o.batches.end());
  const int chunk = std::min(max_prompt, 8192);  // prefill chunk: bounds the activation workspace
  const double kv_token = kv_bytes_per_token(config);
  auto blocks_for = [&](int tokens) { return (tokens + o.block_size - 1) / o.block_size; };
  // Device memory left for the KV pool: free now, minus the weights, minus a workspace estimate (per
  // token of a chunk: fp32 residual, qkv, gate/up, ... ~ 4H + 2(H + qkv + q) + 6I bytes) and 1 GiB of
  // headroom (cuBLAS workspace, decode split buffers, fragmentation).
  double kv_budget = 1e300;
  if (cuda) {
    // bf16 everywhere, less what FP8 projections save (their bytes are what a decode step reads of them).
    const double weights = double(config.parameter_count()) * 2 -
                           (decode_weight_bytes(config) - decode_weight_bytes(config, fp8_weights(config, o)));
    const double per_token_ws = 4.0 * config.hidden_size + 2.0 * (2 * config.hidden_size + config.q_dim() +
                                2 * config.kv_dim() + config.q_dim()) + 6.0 * config.intermediate_size;
    kv_budget = double(free_before) - weights - per_token_ws * std::max(chunk, max_batch) -
                double(config.vocab_size) * 4 * std::min(std::max(chunk, max_batch), 1024) - double(1 << 30);
  }
  struct DecodeCase { int batch, context; };
  std::vector<DecodeCase> decode_cases;
  json skipped = json::array();
  int kv_blocks = blocks_for(max_prompt), max_context = max_prompt;
  for (int b : o.batches) {
    for (int ctx : o.contexts) {
      const int blocks = b * blocks_for(ctx + o.gen_len);
      const double bytes = double(blocks) * o.block_size * kv_token;
      if (ctx + o.gen_len > config.max_position_embeddings) {
        skipped.push_back({{"batch", b}, {"context", ctx}, {"why", "beyond max_position_embeddings"}});
      } else if (bytes > kv_budget) {
        skipped.push_back({{"batch", b}, {"context", ctx},
                           {"why", fmt::format("KV cache would need {:.1f} GB", bytes / 1e9)}});
      } else {
        decode_cases.push_back({b, ctx});
        kv_blocks = std::max(kv_blocks, blocks);
        max_context = std::max(max_context, ctx + o.gen_len);
      }
    }
  }
  for (const auto& s : skipped) {
    spdlog::warn("skipping batch {} context {}: {}", s["batch"].get<int>(), s["context"].get<int>(),
                 s["why"].get<std::string>());
  }

  BackendOptions bo;
  bo.kv_block_size = o.block_size;
  bo.max_context = max_context;
  bo.kv_blocks = kv_blocks;
  bo.max_sequences = max_batch;
  bo.max_batch_tokens = std::max(chunk, max_batch);
  bo.show_progress = !quiet;
  bo.weights = weight_format(o.quantize);
  const auto t_load = Clock::now();
  std::unique_ptr<Backend> backend = ckpt ? make_backend(device, *ckpt, bo)
                                          : make_synthetic_cuda_backend(config, o.seed, bo);
  out["load_s"] = ms_since(t_load) / 1e3;
  memory.sample();
  out["weights"] = weight_format_name(config, o);
  out["decode_weight_bytes"] = decode_weight_bytes(config, fp8_weights(config, o));
  out["kv_bytes_per_token"] = kv_token;
  out["kv_pool_tokens"] = int64_t(kv_blocks) * o.block_size;
  out["settings"] = {{"prompt_lens", o.prompt_lens}, {"contexts", o.contexts}, {"batches", o.batches},
                     {"gen_len", o.gen_len}, {"warmup", o.warmup}, {"iters", o.iters},
                     {"kv_block_size", o.block_size}, {"context_fill", "KV lengths set directly (no prefill)"},
                     {"timer", "host steady_clock around each synchronized step"}};

  std::mt19937_64 rng(o.seed);
  if (cuda) {
    out["kernel_paths"] = cuda_kernel_paths();
    out["build"] = cuda_build_info();
  }
  if (!quiet && cuda) {
    std::printf("%s, copy bandwidth %.0f GB/s (read + write)\n%s\nkernels: %s\n",
                out["device"].get<std::string>().c_str(), copy_gbs, out["build"].get<std::string>().c_str(),
                out["kernel_paths"].get<std::string>().c_str());
  }
  std::printf("%s, weights %s: decode reads %.2f GB of weights + %.1f KiB of K/V per context token per sequence\n",
              out["model"].get<std::string>().c_str(), out["weights"].get<std::string>().c_str(),
              out["decode_weight_bytes"].get<double>() / 1e9, kv_token / 1024);

  out["prefill"] = json::array();
  if (!o.prompt_lens.empty()) {
    std::printf("\n%-10s %12s %12s %14s %10s\n", "prompt", "TTFT p50 ms", "TTFT p90 ms", "prefill tok/s", "TFLOP/s");
  }
  for (int len : o.prompt_lens) {
    json r = bench_prefill(*backend, len, chunk, o, rng);
    memory.sample();
    std::printf("%-10d %12.2f %12.2f %14.0f %10.1f\n", len, r["ttft_ms_p50"].get<double>(),
                r["ttft_ms_p90"].get<double>(), r["prefill_tok_s"].get<double>(), r["tflops"].get<double>());
    std::fflush(stdout);
    out["prefill"].push_back(std::move(r));
  }

  out["decode"] = json::array();
  std::vector<SamplingParams> samplers = {SamplingParams{0.f}};
  if (o.sampled()) samplers.push_back(o.sampling);
  const size_t name_width = samplers.size() > 1 ? sampler_name(o.sampling).size() : 6;
  std::printf("\n%5s %8s %-*s %9s %9s %9s %10s %10s %9s %9s %8s\n", "batch", "context", int(name_width), "sampler",
              "p50 ms", "p90 ms", "p99 ms", "tok/s", "MB/step", "GB/s", "floor ms", "roofline");
  for (const DecodeCase& d : decode_cases) {
    double greedy_p50 = 0;
    for (const SamplingParams& sp : samplers) {
      json r = bench_decode(*backend, d.batch, d.context, copy_gbs, o, sp, rng);
      memory.sample();
      const double p50 = r["ms_per_step_p50"].get<double>();
      std::printf("%5d %8d %-*s %9.3f %9.3f %9.3f %10.1f %10.1f %9.0f %9.3f %7.1f%%", d.batch, d.context,
                  int(name_width), r["sampler"].get<std::string>().c_str(), p50, r["ms_per_step_p90"].get<double>(),
                  r["ms_per_step_p99"].get<double>(), r["tok_s"].get<double>(),
                  r["bytes_per_step"].get<double>() / 1e6, r["achieved_gbs"].get<double>(), r.value("floor_ms", 0.0),
                  r.value("roofline_pct", 0.0));
      if (greedy_p50 > 0) {
        r["vs_greedy"] = p50 / greedy_p50;
        std::printf("  %+.1f%% vs greedy", 100.0 * (p50 / greedy_p50 - 1));
      } else {
        greedy_p50 = p50;
      }
      std::printf("\n");
      std::fflush(stdout);
      out["decode"].push_back(std::move(r));
    }
  }
  out["skipped"] = skipped;
  if (o.ablate && cuda) {
    // Each variant over the batch <= 8 decode cases; the rows say what each part of the fast path is worth.
    out["ablation"] = json::array();
    std::printf("\nablation (decode p50 ms/step; delta vs all on)\n%-22s %5s %8s %9s %9s %9s\n", "variant", "batch",
                "context", "p50 ms", "delta ms", "roofline");
    for (const DecodeCase& d : decode_cases) {
      if (d.batch > 8) continue;
      double base = 0;
      for (const Variant& v : ablation_variants()) {
        backend->set_decode_options(v.options);
        json r = bench_decode(*backend, d.batch, d.context, copy_gbs, o, SamplingParams{0.f}, rng);
        const double p50 = r["ms_per_step_p50"].get<double>();
        if (base == 0) base = p50;
        std::printf("%-22s %5d %8d %9.3f %+9.3f %8.1f%%\n", v.name, d.batch, d.context, p50, p50 - base,
                    r.value("roofline_pct", 0.0));
        std::fflush(stdout);
        r["variant"] = v.name;
        out["ablation"].push_back(std::move(r));
      }
    }
    backend->set_decode_options(DecodeOptions{});
  }
  if (cuda) {
    out["peak_gpu_memory_bytes"] = memory.peak_used;
    std::printf("\npeak GPU memory %.2f GB (of %.2f GB; cudaMemGetInfo, whole device)\n", memory.peak_used / 1e9,
                out["device_memory_bytes"].get<size_t>() / 1e9);
  }
  if (!o.json_path.empty()) {
    std::ofstream f(o.json_path);
    if (!f) fail("--json {}: cannot write the file", o.json_path);
    f << out.dump(2) << "\n";
    if (!f) fail("--json {}: write failed", o.json_path);
  }
  return 0;
}

}  // namespace

Runner add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchOptions>();
  app.footer(
      "Examples:\n"
      "  flashcore bench --synthetic llama-3.1-8b --json bench.json\n"
      "  flashcore bench --synthetic llama-3.1-8b --prompt-len 16 --context 0 --batch 1 --temperature 0.6 --top-p 0.9\n"
      "  flashcore bench --model ~/models/Llama-3.2-1B --prompt-len 512 --context 0,4096 --batch 1,16");
  app.add_option("--model", o->model_dir, "Hugging Face model directory");
  // Checked at parse time, before the GPU is touched: a mistyped name fails at once, listing the names.
  app.add_option("--synthetic", o->synthetic,
                 "random weights of a known shape, drawn on the GPU: a shape built into the binary (" +
                     builtin_shape_names() + ") or a config.json path")
      ->check(CLI::Validator(check_model_shape, "NAME|PATH"));
  app.add_option("--prompt-len", o->prompt_lens, "prefill lengths (time to first token)")->delimiter(',');
  app.add_option("--gen-len", o->gen_len, "decode steps timed per configuration")->check(CLI::PositiveNumber);
  app.add_option("--context", o->contexts, "tokens already in each sequence's KV cache when decoding starts")
      ->delimiter(',');
  app.add_option("--batch", o->batches, "sequences decoded together")->delimiter(',');
  app.add_option("--warmup", o->warmup, "untimed repetitions of each configuration")->check(CLI::NonNegativeNumber);
  app.add_option("--iters", o->iters, "timed repetitions of each configuration")->check(CLI::PositiveNumber);
  app.add_option("--block-size", o->block_size, "KV cache block size in tokens")->check(CLI::PositiveNumber);
  app.add_option("--seed", o->seed, "seed of the random weights and token ids");
  app.add_option("--device", o->device, "cuda or cpu (cpu: --model only)")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--json", o->json_path, "write every measurement (samples included) to this JSON file");
  add_quantize_option(app, o->quantize);
  // A second decode row per case with this sampler (seeded per sequence; penalties over a random context).
  SamplingParams& sp = o->sampling;
  app.add_option("--temperature", sp.temperature, "also decode each case with this temperature (0: greedy only)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--top-k", sp.top_k, "top-k of that sampler (0 = off)")->check(CLI::NonNegativeNumber);
  app.add_option("--top-p", sp.top_p, "top-p of that sampler (1 = off)")->check(CLI::Range(0.0, 1.0));
  app.add_option("--min-p", sp.min_p, "min-p of that sampler (0 = off)")->check(CLI::Range(0.0, 1.0));
  app.add_option("--repetition-penalty", sp.repetition_penalty, "repetition penalty of that sampler (1 = off)")
      ->check(CLI::PositiveNumber);
  app.add_option("--presence-penalty", sp.presence_penalty, "presence penalty of that sampler (0 = off)")
      ->check(CLI::Range(-2.0, 2.0));
  app.add_option("--frequency-penalty", sp.frequency_penalty, "frequency penalty of that sampler (0 = off)")
      ->check(CLI::Range(-2.0, 2.0));
  app.add_flag("--ablate", o->ablate,
               "after the main table, rerun the decode cases of batch <= 8 with each part of the decode fast path "
               "switched off alone (CUDA graph, PDL, fusion, one-CTA-per-SM attention split, bulk-copy GEMV, "
               "GEMV), then all of them");
  return [o]() { return run_bench(*o); };
}

}  // namespace fc::cli
