#include "kernels/embedding.cuh"

#include <cmath>

#include "kernels/op_math.cuh"

namespace fc {
namespace {

struct EmbeddingParams {
  const int32_t* ids;
  const bf16* table;  // (vocab, hidden)
  float* out;         // (n, hidden)
  int vocab;
  int hidden;
};

// One block per token. kVec = 8: each thread moves 8 bf16 (one 16-byte load) into 8 floats (two 16-byte
// stores); kVec = 1 is the any-shape path. The row loop covers hidden > blockDim * kVec.
template <int kVec>
__global__ void embedding_kernel(const __grid_constant__ EmbeddingParams p) {
  const int64_t token = blockIdx.x;
  const int32_t id = p.ids[token];
  float* dst = p.out + token * p.hidden;
  const int chunks = p.hidden / kVec;
  if (id < 0 || id >= p.vocab) {
    for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
#pragma unroll
      for (int j = 0; j < kVec; ++j) dst[c * kVec + j] = NAN;
    }
    return;
  }
  const bf16* src = p.table + static_cast<int64_t>(id) * p.hidden;
  for (int c = threadIdx.x; c < chunks; c += blockDim.x) {
    if constexpr (kVec == 8) {
      float f[8];
      unpack_bf16x8(reinterpret_cast<const uint4*>(src)[c], f);
      reinterpret_cast<float4*>(dst)[2 * c] = make_float4(f[0], f[1], f[2], f[3]);
      reinterpret_cast<float4*>(dst)[2 * c + 1] = make_float4(f[4], f[5], f[6], f[7]);
    } else {
      dst[c] = __bfloat162float(src[c]);
    }
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

}  // namespace

void embedding(const int32_t* ids, int n, const bf16* table, int vocab, int hidden, float* out,
               cudaStream_t stream) {
  if (n == 0) return;
  const EmbeddingParams p{ids, table, out, vocab, hidden};
  // Rows of 8 bf16 multiples keep every row start 16-byte aligned in both the table and the output.
  const bool vec = hidden % 8 == 0 && aligned16(table) && aligned16(out);
  const int chunks = vec ? hidden / 8 : hidden;
  const int threads = chunks >= 256 ? 256 : ((chunks + 31) / 32) * 32;
  if (vec) {
    embedding_kernel<8><<<n, threads, 0, stream>>>(p);
  } else {
    embedding_kernel<1><<<n, threads, 0, stream>>>(p);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace fc
