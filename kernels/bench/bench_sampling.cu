// fc_bench_sampling: the GPU sampler (kernels/sampling.cuh) at the LLaMA 3 vocabulary (128256), one and 32
// rows, for each filter combination, in us per launch and % of the copy bandwidth for the bytes it must
// read (rows x vocab fp32 logits, once): the sampler's cost per decode step, greedy included, with and
// without penalties.
// Logits: a peaked row (a few large values over a random floor), what a trained model's logits look like.
// Timing: CUDA events, median of 20 batches of 20 launches after one warm-up.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/bench/bench_util.cuh"
#include "kernels/cuda_utils.cuh"
#include "kernels/sampling.cuh"

namespace fc {
namespace {

struct Filters {
  const char* name;
  float temperature;
  int top_k;
  float top_p, min_p;
  float repetition_penalty = 1.f, presence_penalty = 0.f, frequency_penalty = 0.f;
};

constexpr Filters kFilters[] = {
    {"greedy", 0.f, 0, 1.f, 0.f},
    {"greedy, repetition 1.1", 0.f, 0, 1.f, 0.f, 1.1f},
    {"T 1", 1.f, 0, 1.f, 0.f},
    {"T 0.7, top-k 50", 0.7f, 50, 1.f, 0.f},
    {"T 0.6, top-p 0.9 (LLaMA 3.1 Instruct)", 0.6f, 0, 0.9f, 0.f},
    {"T 0.8, top-k 40, top-p 0.95, min-p 0.05", 0.8f, 40, 0.95f, 0.05f},
    {"T 1, min-p 0.1", 1.f, 0, 1.f, 0.1f},
    {"T 2, top-k 3000 (> shared memory), top-p 0.5", 2.f, 3000, 0.5f, 0.f},
    {"T 0.6, top-k 2000, top-p 0.99", 0.6f, 2000, 0.99f, 0.f},
    {"T 0.6, top-p 0.9, rep 1.1, presence 0.5, freq 0.3", 0.6f, 0, 0.9f, 0.f, 1.1f, 0.5f, 0.3f},
};

std::vector<float> peaked_logits(int rows, int vocab, std::mt19937& rng) {
  std::normal_distribution<float> floor(0.f, 2.f);
  std::uniform_int_distribution<int> pick(0, vocab - 1);
  std::vector<float> logits(size_t(rows) * vocab);
  for (float& v : logits) v = floor(rng);
  for (int r = 0; r < rows; ++r) {
    for (int i = 0; i < 20; ++i) logits[size_t(r) * vocab + pick(rng)] = 15.f + float(i) / 4;
  }
  return logits;
}

}  // namespace
}  // namespace fc

int main(int argc, char** argv) {
  using namespace fc;
  if (argc > 1 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::printf("usage: fc_bench_sampling   (the GPU sampler at vocab 128256, rows 1 and 32)\n");
    return 0;
  }
  if (cuda_device_count() == 0) {
    std::printf("SKIPPED: fc_bench_sampling needs an NVIDIA GPU\n");
    return 77;
  }
  try {
    const double copy_gbs = bench::copy_bandwidth_gbs();
    cudaDeviceProp prop{};
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    std::printf("== fc_bench_sampling: %s, copy %.0f GB/s (read + write) ==\n", prop.name, copy_gbs);
    const int vocab = 128256;
    std::mt19937 rng(1);
    std::printf("%-44s %4s %12s %10s\n", "filters", "rows", "us / launch", "% copy bw");
    for (int rows : {1, 32}) {
      const std::vector<float> logits = peaked_logits(rows, vocab, rng);
      DeviceBuffer d_logits(logits.size() * 4, "logits"), d_ids(size_t(rows) * 4, "ids"),
          d_params(size_t(rows) * sizeof(SamplingParams), "params"), d_work(kSampleWorkspaceBytes, "scratch"),
          d_history(size_t(rows) * vocab * 4, "history"), d_slots(size_t(rows) * 4, "slots");
      CUDA_CHECK(cudaMemcpy(d_logits.get(), logits.data(), logits.size() * 4, cudaMemcpyHostToDevice));
      CUDA_CHECK(cudaMemset(d_work.get(), 0, d_work.bytes()));
      // A context of 2000 random ids per row, as after a long prompt.
      std::vector<uint32_t> history(size_t(rows) * vocab, 0);
      std::uniform_int_distribution<int> pick(0, vocab - 1);
      for (int r = 0; r < rows; ++r) {
        for (int i = 0; i < 2000; ++i) history[size_t(r) * vocab + pick(rng)] |= kHistoryInContext;
      }
      CUDA_CHECK(cudaMemcpy(d_history.get(), history.data(), history.size() * 4, cudaMemcpyHostToDevice));
      std::vector<int32_t> slots(rows);
      for (int r = 0; r < rows; ++r) slots[r] = r;
      CUDA_CHECK(cudaMemcpy(d_slots.get(), slots.data(), slots.size() * 4, cudaMemcpyHostToDevice));
      const SamplingHistory with_history{d_history.as<uint32_t>(), d_slots.as<int32_t>()};
      for (const Filters& f : kFilters) {
        std::vector<SamplingParams> params(rows);
        for (int r = 0; r < rows; ++r) {
          params[r].temperature = f.temperature;
          params[r].top_k = f.top_k;
          params[r].top_p = f.top_p;
          params[r].min_p = f.min_p;
          params[r].seed = 7 + r;
          params[r].step = 100;
          params[r].repetition_penalty = f.repetition_penalty;
          params[r].presence_penalty = f.presence_penalty;
          params[r].frequency_penalty = f.frequency_penalty;
        }
        CUDA_CHECK(cudaMemcpy(d_params.get(), params.data(), params.size() * sizeof(SamplingParams),
                              cudaMemcpyHostToDevice));
        // (Each penalised launch also counts its id in the history, as a decode step does.)
        auto launch = [&](int) {
          sample(d_logits.as<float>(), rows, vocab, d_params.as<SamplingParams>(), with_history, d_work.get(),
                 d_ids.as<int32_t>(), nullptr);
        };
        launch(0);
        const double ms = bench::time_ms(20, 20, launch);
        const double pct = 100.0 * (double(rows) * vocab * 4) / (ms * 1e-3) / 1e9 / copy_gbs;
        std::printf("%-44s %4d %12.1f %9.1f%%\n", f.name, rows, ms * 1e3, pct);
        std::fflush(stdout);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fc_bench_sampling: %s\n", e.what());
    return 1;
  }
  return 0;
}
