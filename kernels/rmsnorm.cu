// One block per row. The row is read once: with dim % 8 == 0 each thread keeps its kChunks 8-wide
// chunks in registers between the sum of squares and the scaling (16-byte loads/stores throughout), so a
// row of 4096 costs one fp32 read, (one bf16 read and one fp32 write for add_rmsnorm,) one bf16 write.
// Other dims take a scalar path that reads the row twice (the second time from L1/L2).
#include "kernels/rmsnorm.cuh"

#include "kernels/op_math.cuh"

namespace fc {
namespace {

struct RmsNormParams {
  const float* x;       // (rows, dim) input of rmsnorm; unused by add_rmsnorm
  float* residual;      // (rows, dim) add_rmsnorm: updated in place; unused by rmsnorm
  const bf16* add;      // (rows, dim) add_rmsnorm: added to residual
  const bf16* weight;   // (dim)
  bf16* out;            // (rows, dim)
  int dim;
  float eps;
};

constexpr int kMaxThreads = 1024;

// Sum over the block; every thread gets the total. `scratch` holds one float per warp.
__device__ float block_sum(float v, float* scratch) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = (blockDim.x + 31) / 32;
  float total = 0.f;
  for (int w = 0; w < warps; ++w) total += scratch[w];  // same order in every thread: identical totals
  return total;
}

template <bool kAdd, int kChunks>
__global__ void rmsnorm_vec_kernel(const __grid_constant__ RmsNormParams p) {
  __shared__ float scratch[32];
  const int64_t row_offset = static_cast<int64_t>(blockIdx.x) * p.dim;
  const int chunks = p.dim / 8;
  const float* in = kAdd ? p.residual + row_offset : p.x + row_offset;
  float v[kChunks][8];
  float sum_squares = 0.f;
#pragma unroll
  for (int k = 0; k < kChunks; ++k) {
    const int c = threadIdx.x + k * blockDim.x;
    if (c < chunks) {
      const float4 a = reinterpret_cast<const float4*>(in)[2 * c];
      const float4 b = reinterpret_cast<const float4*>(in)[2 * c + 1];
      v[k][0] = a.x; v[k][1] = a.y; v[k][2] = a.z; v[k][3] = a.w;
      v[k][4] = b.x; v[k][5] = b.y; v[k][6] = b.z; v[k][7] = b.w;
      if constexpr (kAdd) {
        float x[8];
        unpack_bf16x8(reinterpret_cast<const uint4*>(p.add + row_offset)[c], x);
#pragma unroll
        for (int j = 0; j < 8; ++j) v[k][j] += x[j];
        float4* res = reinterpret_cast<float4*>(p.residual + row_offset);
        res[2 * c] = make_float4(v[k][0], v[k][1], v[k][2], v[k][3]);
        res[2 * c + 1] = make_float4(v[k][4], v[k][5], v[k][6], v[k][7]);
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) sum_squares += v[k][j] * v[k][j];
    }
  }
  const float inv_rms = rms_inv(block_sum(sum_squares, scratch), p.dim, p.eps);
#pragma unroll
  for (int k = 0; k < kChunks; ++k) {
    const int c = threadIdx.x + k * blockDim.x;
    if (c < chunks) {
      float w[8];
      unpack_bf16x8(reinterpret_cast<const uint4*>(p.weight)[c], w);
      reinterpret_cast<uint4*>(p.out + row_offset)[c] = rms_scale_bf16x8(v[k], inv_rms, w);
    }
  }
}

// Any dim, any alignment.
template <bool kAdd>
__global__ void rmsnorm_scalar_kernel(const __grid_constant__ RmsNormParams p) {
  __shared__ float scratch[32];
  const int64_t row_offset = static_cast<int64_t>(blockIdx.x) * p.dim;
  const float* in = kAdd ? p.residual + row_offset : p.x + row_offset;
  float sum_squares = 0.f;
  for (int i = threadIdx.x; i < p.dim; i += blockDim.x) {
    float v = in[i];
    if constexpr (kAdd) {
      v += __bfloat162float(p.add[row_offset + i]);
      p.residual[row_offset + i] = v;  // re-read below by this same thread
    }
    sum_squares += v * v;
  }
  const float inv_rms = rms_inv(block_sum(sum_squares, scratch), p.dim, p.eps);
  for (int i = threadIdx.x; i < p.dim; i += blockDim.x) {
    p.out[row_offset + i] = __float2bfloat16_rn(rms_scale(in[i], inv_rms, __bfloat162float(p.weight[i])));
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

int round_up_warp(int n) { return (n + 31) / 32 * 32; }

// The one dispatch point: shape -> (vector width, chunks per thread, threads).
template <bool kAdd>
void launch(const RmsNormParams& p, int rows, cudaStream_t stream) {
  if (rows == 0) return;
  const int chunks = p.dim / 8;
  const bool vec = p.dim % 8 == 0 && aligned16(kAdd ? static_cast<const void*>(p.residual) : p.x) &&
                   aligned16(p.weight) && aligned16(p.out) && (!kAdd || aligned16(p.add));
  // At most 256 threads per row while chunks allow it: several chunks per thread put several 16-byte
  // loads in flight per thread, and 8192-row launches keep 8 blocks per SM resident.
  if (vec && chunks <= 256) {
    rmsnorm_vec_kernel<kAdd, 1><<<rows, round_up_warp(chunks), 0, stream>>>(p);
  } else if (vec && chunks <= 512) {
    rmsnorm_vec_kernel<kAdd, 2><<<rows, round_up_warp((chunks + 1) / 2), 0, stream>>>(p);
  } else if (vec && chunks <= 4 * kMaxThreads) {
    rmsnorm_vec_kernel<kAdd, 4><<<rows, round_up_warp((chunks + 3) / 4), 0, stream>>>(p);
  } else {
    const int threads = p.dim >= 1024 ? 1024 : round_up_warp(p.dim);
    rmsnorm_scalar_kernel<kAdd><<<rows, threads, 0, stream>>>(p);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace

void rmsnorm(const float* x, const bf16* weight, int rows, int dim, float eps, bf16* out, cudaStream_t stream) {
  launch<false>(RmsNormParams{x, nullptr, nullptr, weight, out, dim, eps}, rows, stream);
}

void add_rmsnorm(float* residual, const bf16* x, const bf16* weight, int rows, int dim, float eps, bf16* out,
                 cudaStream_t stream) {
  launch<true>(RmsNormParams{nullptr, residual, x, weight, out, dim, eps}, rows, stream);
}

}  // namespace fc
