// FP8 row quantization (kernels/fp8_quant.cuh). One CTA per row: the row's amax by a block reduction
// (max is exact and order-free, so the result does not depend on the launch shape), then one pass of
// IEEE divisions and saturating conversions. Memory-bound and small next to the products it feeds: a
// prefill chunk of 2048 tokens x 14336 reads 59 MB and writes 29 MB.
//
// Bit-exactness with model/quantization.cpp: the inputs widen to fp32 exactly; amax / 448.0f and
// v / scale are __fdiv_rn (IEEE round-to-nearest even, subnormals kept: this build does not pass
// -use_fast_math or -ftz=true); f32_to_e4m3_rn_sat (kernels/op_math.cuh) is cvt.rn.satfinite, whose
// software emulation in cuda_fp8.h agrees with core/dtype.h's f32_to_e4m3 on every fp32 input we tried
// (95.9 M values incl. all ties, subnormals, +-448 boundaries, +-0, Inf, NaN; checked on the host).
#include <cfloat>

#include "core/error.h"
#include "kernels/fp8_quant.cuh"
#include "kernels/op_math.cuh"

namespace fc {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(bf16 v) { return __bfloat162float(v); }

// The largest |v| of the block's values (every thread gets it).
__device__ float block_max(float v) {
  __shared__ float partial[kThreads / 32];
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  float m = partial[0];
#pragma unroll
  for (int w = 1; w < kThreads / 32; ++w) m = fmaxf(m, partial[w]);
  return m;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) quantize_rows_kernel(const T* __restrict__ src, int64_t cols,
                                                                 uint8_t* __restrict__ codes, float* __restrict__ scales,
                                                                 int32_t* nonfinite_row) {
  const int64_t r = blockIdx.x;
  const T* row = src + r * cols;
  uint8_t* out = codes + r * cols;
  float amax = 0.f;
  bool finite = true;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    const float a = fabsf(to_f32(row[c]));
    finite = finite && a <= FLT_MAX;  // false for NaN and Inf
    amax = fmaxf(amax, a);
  }
  if (nonfinite_row != nullptr && __syncthreads_or(!finite) && threadIdx.x == 0) {
    atomicMin(nonfinite_row, static_cast<int32_t>(r));
  }
  amax = block_max(amax);
  if (amax == 0.f) {  // an all-zero row: scale 1, every code +0 (never -0: quantize_fp8_per_channel)
    for (int64_t c = threadIdx.x; c < cols; c += kThreads) out[c] = 0;
    if (threadIdx.x == 0) scales[r] = 1.0f;
    return;
  }
  float scale = __fdiv_rn(amax, 448.0f);
  if (scale == 0.f) scale = FLT_TRUE_MIN;  // amax below 448 x 2^-149
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) out[c] = f32_to_e4m3_rn_sat(__fdiv_rn(to_f32(row[c]), scale));
  if (threadIdx.x == 0) scales[r] = scale;
}

__global__ void __launch_bounds__(kThreads) quantize_rows_static_kernel(const bf16* __restrict__ x, int64_t cols,
                                                                        float scale, uint8_t* __restrict__ codes,
                                                                        float* __restrict__ scales) {
  const int64_t r = blockIdx.x;
  for (int64_t c = threadIdx.x; c < cols; c += kThreads) {
    codes[r * cols + c] = f32_to_e4m3_rn_sat(__fdiv_rn(__bfloat162float(x[r * cols + c]), scale));
  }
  if (threadIdx.x == 0) scales[r] = scale;
}

__global__ void scale_rows_cols_kernel(bf16* out, int64_t rows, int64_t cols, const float* row_scales,
                                       const float* col_scales) {
  const int64_t count = rows * cols;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    const int64_t r = i / cols, c = i % cols;
    out[i] = __float2bfloat16_rn(__bfloat162float(out[i]) * (row_scales[r] * col_scales[c]));
  }
}

void check_rows(int64_t rows, int64_t cols) {
  if (rows < 0 || cols <= 0 || rows > INT32_MAX) fail("quantize_rows_fp8: bad shape ({}, {})", rows, cols);
}

}  // namespace

void quantize_rows_fp8(const void* src, DType src_dtype, int64_t rows, int64_t cols, uint8_t* codes, float* scales,
                       int32_t* nonfinite_row, cudaStream_t stream) {
  check_rows(rows, cols);
  if (rows == 0) return;
  const dim3 grid(static_cast<unsigned>(rows)), block(kThreads);
  switch (src_dtype) {
    case DType::BF16:
      quantize_rows_kernel<<<grid, block, 0, stream>>>(static_cast<const bf16*>(src), cols, codes, scales,
                                                       nonfinite_row);
      break;
    case DType::F16:
      quantize_rows_kernel<<<grid, block, 0, stream>>>(static_cast<const __half*>(src), cols, codes, scales,
                                                       nonfinite_row);
      break;
    case DType::F32:
      quantize_rows_kernel<<<grid, block, 0, stream>>>(static_cast<const float*>(src), cols, codes, scales,
                                                       nonfinite_row);
      break;
    default:
      fail("quantize_rows_fp8: cannot quantize a {} tensor (F32, F16 or BF16)", dtype_name(src_dtype));
  }
  CUDA_CHECK_LAUNCH();
}

void quantize_rows_fp8_static(const bf16* x, int64_t rows, int64_t cols, float scale, uint8_t* codes, float* scales,
                              cudaStream_t stream) {
  check_rows(rows, cols);
  if (!(scale > 0.f && scale <= FLT_MAX)) fail("quantize_rows_fp8_static: scale {} is not finite and > 0", scale);
  if (rows == 0) return;
  quantize_rows_static_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, cols, scale, codes, scales);
  CUDA_CHECK_LAUNCH();
}

void scale_rows_cols_bf16(bf16* out, int64_t rows, int64_t cols, const float* row_scales, const float* col_scales,
                          cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return;
  const int64_t blocks = std::min<int64_t>((rows * cols + kThreads - 1) / kThreads, 4096);
  scale_rows_cols_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(out, rows, cols, row_scales,
                                                                                 col_scales);
  CUDA_CHECK_LAUNCH();
}

}  // namespace fc
