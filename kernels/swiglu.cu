// A flat grid-stride loop over (row, 8-column chunk) pairs: each item reads 16 bytes of gate and 16 of up
// and writes 16 bytes, so the kernel streams at copy speed for any row count (1 decode row or 8192
// prefill rows alike); cols % 8 != 0 takes the scalar path.
#include "kernels/swiglu.cuh"

namespace fc {
namespace {

struct SwigluParams {
  const bf16* gate_up;  // (rows, 2*cols)
  bf16* out;            // (rows, cols)
  int64_t items;        // rows * cols / kVec
  int cols;
};

__device__ float silu_mul(float g, float u) {
  // g / (1 + e^-g): e^-g overflows to inf for g < -88 and the quotient is then -0, the right limit.
  // Accurate expf, not __expf (whose error grows with |g|): the kernel is memory-bound either way.
  return g / (1.0f + expf(-g)) * u;
}

template <int kVec>
__global__ void swiglu_kernel(const __grid_constant__ SwigluParams p) {
  const int vecs_per_row = p.cols / kVec;
  for (int64_t it = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; it < p.items;
       it += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = it / vecs_per_row;
    const int c = static_cast<int>(it - r * vecs_per_row) * kVec;
    const bf16* gate = p.gate_up + r * 2 * p.cols + c;
    bf16* dst = p.out + r * p.cols + c;
    if constexpr (kVec == 8) {
      const uint4 g_raw = *reinterpret_cast<const uint4*>(gate);
      const uint4 u_raw = *reinterpret_cast<const uint4*>(gate + p.cols);
      const __nv_bfloat162* g2 = reinterpret_cast<const __nv_bfloat162*>(&g_raw);
      const __nv_bfloat162* u2 = reinterpret_cast<const __nv_bfloat162*>(&u_raw);
      uint4 o_raw;
      __nv_bfloat162* o2 = reinterpret_cast<__nv_bfloat162*>(&o_raw);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float2 g = __bfloat1622float2(g2[j]), u = __bfloat1622float2(u2[j]);
        o2[j] = __floats2bfloat162_rn(silu_mul(g.x, u.x), silu_mul(g.y, u.y));
      }
      *reinterpret_cast<uint4*>(dst) = o_raw;
    } else {
      *dst = __float2bfloat16_rn(silu_mul(__bfloat162float(*gate), __bfloat162float(gate[p.cols])));
    }
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

int grid_for(int64_t items, int threads) {
  // Enough blocks to fill the GPU several times over; beyond that the grid-stride loop takes the rest.
  static int max_blocks = [] {
    int device = 0, sms = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    return sms * 16;
  }();
  const int64_t needed = (items + threads - 1) / threads;
  return static_cast<int>(needed < max_blocks ? needed : max_blocks);
}

}  // namespace

void swiglu(const bf16* gate_up, int rows, int cols, bf16* out, cudaStream_t stream) {
  if (rows == 0 || cols == 0) return;
  const bool vec = cols % 8 == 0 && aligned16(gate_up) && aligned16(out);
  const int kThreads = 256;
  const int64_t elements = static_cast<int64_t>(rows) * cols;
  if (vec) {
    const SwigluParams p{gate_up, out, elements / 8, cols};
    swiglu_kernel<8><<<grid_for(p.items, kThreads), kThreads, 0, stream>>>(p);
  } else {
    const SwigluParams p{gate_up, out, elements, cols};
    swiglu_kernel<1><<<grid_for(p.items, kThreads), kThreads, 0, stream>>>(p);
  }
  CUDA_CHECK_LAUNCH();
}

}  // namespace fc
