// FP8 (e4m3fn) row quantization on the GPU, the arithmetic of model/quantization.h bit for bit:
//   dynamic (per row)  amax = max_c |v[r][c]| (v widened to fp32, exact); amax == 0: scale 1, every code +0;
//                      else scale = amax / 448.0f (IEEE division; an underflow to 0 becomes 2^-149), and
//                      code = e4m3 RNE saturating (v / scale) (IEEE division, then cvt.rn.satfinite)
//   static             code = e4m3 RNE saturating (v / scale) with one given scale; every row's scale = it
// The same kernel serves `--quantize fp8` at load (weight rows: per output channel) and the prefill GEMM's
// activations (token rows: per token, or the checkpoint's static input_scale). CPU reference:
// quantize_fp8_per_channel (model/quantization.h) and f32_to_e4m3 (core/dtype.h).
//
// Plus the epilogue of an FP8 product whose scales cuBLASLt did not apply (kernels/gemm.cuh's fallback):
// out[i][j] = bf16(float(out[i][j]) * row_scales[i] * col_scales[j]).
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "kernels/cuda_utils.cuh"

namespace fc {

// Per-row dynamic quantization of `src` (rows, cols) row-major, dtype F32, F16 or BF16, into `codes`
// (rows, cols) and `scales` (rows). When `nonfinite_row` is given (device int32, set to INT32_MAX by the
// caller), rows holding a NaN or Inf store min(row) there (quantize_fp8_per_channel refuses them); their
// codes and scale are then meaningless. Asynchronous; allocates nothing (graph-safe).
void quantize_rows_fp8(const void* src, DType src_dtype, int64_t rows, int64_t cols, uint8_t* codes, float* scales,
                       int32_t* nonfinite_row, cudaStream_t stream);
// Static: codes = e4m3(x / scale) for a bf16 `x` (rows, cols); scales[r] = scale for every row (so that a
// product can treat both kinds alike). `scale` finite and > 0.
void quantize_rows_fp8_static(const bf16* x, int64_t rows, int64_t cols, float scale, uint8_t* codes, float* scales,
                              cudaStream_t stream);
// out (rows, cols) bf16, in place: out[i][j] = bf16(float(out[i][j]) * (row_scales[i] * col_scales[j])).
void scale_rows_cols_bf16(bf16* out, int64_t rows, int64_t cols, const float* row_scales, const float* col_scales,
                          cudaStream_t stream);

}  // namespace fc
