// A flat grid-stride loop over (row, 8-column chunk) pairs: each item reads 16 bytes of gate and 16 of up
// and writes 16 bytes, so the kernel streams at copy speed for any row count (1 decode row or 8192
// prefill rows alike); cols % 8 != 0 takes the scalar path.
#include "kernels/swiglu.cuh"

#include "kernels/op_math.cuh"

namespace fc {
namespace {

struct SwigluParams {
  const bf16* gate_up;  // (rows, 2*cols)
  bf16* out;            // (rows, cols)
  int64_t items;        // rows * cols / kVec
  int cols;
};

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
      // Pair by pair (not unpack_bf16x8 of both): 16 live floats instead of 8 cost 4-6 registers.
      const uint32_t g2[4] = {g_raw.x, g_raw.y, g_raw.z, g_raw.w}, u2[4] = {u_raw.x, u_raw.y, u_raw.z, u_raw.w};
      uint32_t o2[4];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        o2[j] = pack_bf16x2(silu_mul(bf16_lo(g2[j]), bf16_lo(u2[j])), silu_mul(bf16_hi(g2[j]), bf16_hi(u2[j])));
      }
      *reinterpret_cast<uint4*>(dst) = make_uint4(o2[0], o2[1], o2[2], o2[3]);
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
