// fc_bench_gemm: the ceilings the decode GEMMs are held to, and how close cuBLASLt (through fc::Gemm)
// gets at the LLaMA 3.1 8B shapes.
//   (a) device-to-device copy bandwidth, bytes read + written: the memory roofline;
//   (b) bf16 GEMM at M = 1, 8, 32 for the five decode shapes, in GB/s of bytes moved (weights + x + out)
//       and % of the copy rate, and the sum over one token (32 layers + lm_head) against the floor; once
//       with cuBLASLt's first heuristic choice, once after Gemm::tune picked the fastest of its top 16;
//   (c) large GEMMs in TFLOP/s (the prefill regime).
// Timing: CUDA events around batches of launches, warm-up first, the median of many batches. Decode
// weights rotate over enough copies (>= 1 GiB in all) that L2 (50-60 MB) cannot serve them; inputs are
// random bf16 in [-1, 1) (never zeros, which run faster than real data).
#include <algorithm>
#include <cstdio>
#include <vector>

#include "kernels/bench/bench_util.cuh"
#include "kernels/cuda_utils.cuh"
#include "kernels/gemm.cuh"

namespace fc {
namespace {

using bench::median;
using bench::copy_bandwidth_gbs;
using bench::random_bf16;
using bench::time_ms;

struct Shape {
  const char* name;
  int in_dim, out_dim;
  bool fp32_out;
  int per_token;  // how many times one token runs it: 32 layers, or 1 for lm_head
};

struct DecodeResult {
  const Shape* shape;
  int m;
  double ms, tuned_ms, bytes;
};

}  // namespace
}  // namespace fc

int main() {
  using namespace fc;
  if (cuda_device_count() == 0) {
    std::printf("SKIPPED: fc_bench_gemm needs an NVIDIA GPU\n");
    return 77;
  }
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %.0f MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize / 1e6);

  // (a) copy roofline: 1 GiB each way.
  double copy_ms = 0;
  const double copy_gbs = copy_bandwidth_gbs(&copy_ms);
  std::printf("copy: %.3f ms for 1 GiB -> %.0f GB/s (read + write)\n", copy_ms, copy_gbs);

  // (b) decode GEMMs.
  const Shape shapes[] = {
      {"qkv     4096->6144", 4096, 6144, false, 32},   {"o_proj  4096->4096", 4096, 4096, false, 32},
      {"gate_up 4096->28672", 4096, 28672, false, 32}, {"down   14336->4096", 14336, 4096, false, 32},
      {"lm_head 4096->128256", 4096, 128256, true, 1},
  };
  const int ms_list[] = {1, 8, 32};
  Gemm gemm;
  std::vector<DecodeResult> results;
  for (const Shape& s : shapes) {
    const size_t w_count = static_cast<size_t>(s.in_dim) * s.out_dim;
    const size_t w_bytes = w_count * sizeof(bf16);
    const int copies = static_cast<int>(std::max<size_t>(2, ((size_t{1} << 30) + w_bytes - 1) / w_bytes));
    std::vector<DeviceBuffer> weights;
    for (int c = 0; c < copies; ++c) weights.push_back(random_bf16(w_count, 100 + c, "weight copy"));
    DeviceBuffer x = random_bf16(static_cast<size_t>(32) * s.in_dim, 7, "x");
    DeviceBuffer out(static_cast<size_t>(32) * s.out_dim * 4, "out");
    for (int m : ms_list) {
      auto call = [&](int c) {
        const bf16* w = weights[c % copies].as<bf16>();
        if (s.fp32_out) {
          gemm.matmul(x.as<bf16>(), w, out.as<float>(), m, s.in_dim, s.out_dim, nullptr);
        } else {
          gemm.matmul(x.as<bf16>(), w, out.as<bf16>(), m, s.in_dim, s.out_dim, nullptr);
        }
      };
      for (int c = 0; c < copies; ++c) call(c);  // warm-up (and the plan)
      const double ms = time_ms(30, std::max(copies, 10), call);
      std::vector<const bf16*> rotation;
      for (const DeviceBuffer& w : weights) rotation.push_back(w.as<bf16>());
      if (s.fp32_out) {
        gemm.tune(x.as<bf16>(), rotation, out.as<float>(), m, s.in_dim, s.out_dim, nullptr);
      } else {
        gemm.tune(x.as<bf16>(), rotation, out.as<bf16>(), m, s.in_dim, s.out_dim, nullptr);
      }
      const double tuned_ms = time_ms(30, std::max(copies, 10), call);
      const double bytes = static_cast<double>(w_bytes) + 2.0 * m * s.in_dim +
                           (s.fp32_out ? 4.0 : 2.0) * m * s.out_dim;
      results.push_back({&s, m, ms, tuned_ms, bytes});
    }
  }

  // (c) large GEMMs.
  struct Big {
    int m, in_dim, out_dim;
    double tflops;
  };
  std::vector<Big> bigs = {{8192, 8192, 8192, 0}, {2048, 4096, 14336, 0}, {8192, 4096, 28672, 0}};
  for (Big& b : bigs) {
    DeviceBuffer x = random_bf16(static_cast<size_t>(b.m) * b.in_dim, 11, "x");
    DeviceBuffer w = random_bf16(static_cast<size_t>(b.out_dim) * b.in_dim, 12, "w");
    DeviceBuffer out(static_cast<size_t>(b.m) * b.out_dim * sizeof(bf16), "out");
    auto call = [&](int) { gemm.matmul(x.as<bf16>(), w.as<bf16>(), out.as<bf16>(), b.m, b.in_dim, b.out_dim, nullptr); };
    for (int i = 0; i < 3; ++i) call(i);
    const double ms = time_ms(10, 5, call);
    b.tflops = 2.0 * b.m * b.in_dim * b.out_dim / (ms * 1e-3) / 1e12;
  }
  CUDA_CHECK(cudaDeviceSynchronize());

  // Table.
  std::printf("\n== fc_bench_gemm: %s, copy roofline %.0f GB/s ==\n", prop.name, copy_gbs);
  std::printf("%-22s %4s | %8s %8s %7s | %8s %8s %7s\n", "decode GEMM", "M", "heur us", "GB/s", "% copy", "tuned us",
              "GB/s", "% copy");
  for (const DecodeResult& r : results) {
    const double gbs = r.bytes / (r.ms * 1e-3) / 1e9, tuned_gbs = r.bytes / (r.tuned_ms * 1e-3) / 1e9;
    std::printf("%-22s %4d | %8.1f %8.0f %6.1f%% | %8.1f %8.0f %6.1f%%\n", r.shape->name, r.m, r.ms * 1e3, gbs,
                100.0 * gbs / copy_gbs, r.tuned_ms * 1e3, tuned_gbs, 100.0 * tuned_gbs / copy_gbs);
  }
  for (int m : ms_list) {
    double ms = 0, tuned_ms = 0, bytes = 0;
    for (const DecodeResult& r : results) {
      if (r.m != m) continue;
      ms += r.ms * r.shape->per_token;
      tuned_ms += r.tuned_ms * r.shape->per_token;
      bytes += r.bytes * r.shape->per_token;
    }
    const double floor_ms = bytes / (copy_gbs * 1e9) * 1e3;
    std::printf("one step at M=%-2d (32 layers + lm_head): floor %.3f ms (%.1f GB at copy rate); GEMMs %.3f ms (%.0f%% "
                "of roofline), tuned %.3f ms (%.0f%%)\n",
                m, floor_ms, bytes / 1e9, ms, 100.0 * floor_ms / ms, tuned_ms, 100.0 * floor_ms / tuned_ms);
  }
  std::printf("%-34s %10s\n", "large GEMM (bf16 out)", "TFLOP/s");
  for (const Big& b : bigs) {
    std::printf("M=%-5d %5d -> %-5d                %10.0f\n", b.m, b.in_dim, b.out_dim, b.tflops);
  }
  return 0;
}
