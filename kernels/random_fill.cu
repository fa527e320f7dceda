#include "kernels/random_fill.cuh"

namespace fc {

namespace {

// splitmix64: a well-mixed 64-bit hash of the counter.
__device__ __forceinline__ uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

__global__ void fill_random_bf16_kernel(bf16* dst, size_t count, uint64_t seed, float mean, float scale,
                                        size_t first_index) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    const uint64_t h = mix64(seed * 0x632BE59BD9B4E019ull + first_index + i);
    const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    dst[i] = __float2bfloat16(mean + scale * (2.0f * u - 1.0f));
  }
}

}  // namespace

void fill_random_bf16(bf16* dst, size_t count, uint64_t seed, float mean, float stddev, cudaStream_t stream,
                      size_t first_index) {
  if (count == 0) return;
  constexpr int kThreads = 256;
  const size_t blocks = std::min<size_t>((count + kThreads - 1) / kThreads, 65536);
  fill_random_bf16_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(dst, count, seed, mean,
                                                                                 stddev * 1.7320508f, first_index);
  CUDA_CHECK_LAUNCH();
}

}  // namespace fc
