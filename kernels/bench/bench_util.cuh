// What the kernel microbenchmarks share: random bf16 device data (never zeros, which run faster than
// real data) and CUDA-event timing with a median over batches of calls.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cuda_utils.cuh"

namespace fc::bench {

// p[i] = bf16(scale * u), u uniform in [-1, 1) from splitmix64 of (seed, i).
__global__ void fill_random_bf16_kernel(bf16* p, size_t n, uint64_t seed, float scale) {
  for (size_t i = blockIdx.x * static_cast<size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (i + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    p[i] = __float2bfloat16_rn((static_cast<float>(z >> 40) * 0x1p-23f - 1.0f) * scale);
  }
}

inline DeviceBuffer random_bf16(size_t count, uint64_t seed, const char* what, float scale = 1.f) {
  DeviceBuffer b(count * sizeof(bf16), what);
  fill_random_bf16_kernel<<<1024, 256>>>(b.as<bf16>(), count, seed, scale);
  CUDA_CHECK_LAUNCH();
  return b;
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median over `samples` batches of the per-call time (ms) of `calls` invocations of f(call index) on
// the default stream, timed with CUDA events.
template <typename F>
double time_ms(int samples, int calls, F&& f) {
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> per_call;
  for (int s = 0; s < samples; ++s) {
    CUDA_CHECK(cudaEventRecord(start));
    for (int c = 0; c < calls; ++c) f(c);
    CUDA_CHECK(cudaEventRecord(stop));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    per_call.push_back(ms / calls);
  }
  CUDA_CHECK(cudaEventDestroy(start));
  CUDA_CHECK(cudaEventDestroy(stop));
  return median(per_call);
}

// Device-to-device copy of 1 GiB (after 3 warm-up copies), median of 20: bytes read + written per
// second, the memory roofline the decode benchmarks are held to. `ms`: the copy's time, when wanted.
inline double copy_bandwidth_gbs(double* ms = nullptr) {
  const size_t bytes = size_t{1} << 30;
  DeviceBuffer src = random_bf16(bytes / 2, 1, "copy source");
  DeviceBuffer dst(bytes, "copy destination");
  for (int i = 0; i < 3; ++i) CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice));
  const double t = time_ms(20, 1, [&](int) {
    CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice));
  });
  if (ms != nullptr) *ms = t;
  return 2.0 * bytes / (t * 1e-3) / 1e9;
}

}  // namespace fc::bench
