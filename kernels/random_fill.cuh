// Random bf16 tensors drawn on the GPU (synthetic models for benchmarks: no files, no host traffic).
#pragma once
#include "kernels/cuda_utils.cuh"

namespace fc {

// dst[i] = bf16(mean + stddev * u_i), u_i uniform on [-sqrt(3), sqrt(3)] (unit variance) from a
// counter-based hash of (seed, i): the same seed gives the same tensor on any GPU and launch shape.
// `first_index`: fill elements [first_index, first_index + count) of that tensor (a piece of it).
void fill_random_bf16(bf16* dst, size_t count, uint64_t seed, float mean, float stddev, cudaStream_t stream,
                      size_t first_index = 0);

}  // namespace fc
