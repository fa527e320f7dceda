// RMSNorm on the GPU, HF LlamaRMSNorm: out = weight * (x * rsqrt(mean(x^2) + eps)), statistics in fp32.
// CPU references: rmsnorm_ref / add_rmsnorm_ref in kernels/elementwise.h.
#pragma once
#include "kernels/cuda_utils.cuh"

namespace fc {

// x (rows, dim) fp32 (the residual stream) -> out (rows, dim) bf16; weight (dim) bf16. Rows contiguous.
void rmsnorm(const float* x, const bf16* weight, int rows, int dim, float eps, bf16* out, cudaStream_t stream);

// The pre-norm block's "h += f(h); y = norm(h)" in one pass over the row:
//   residual (rows, dim) fp32 += x (rows, dim) bf16, written back;  out (rows, dim) bf16 = rmsnorm(residual).
void add_rmsnorm(float* residual, const bf16* x, const bf16* weight, int rows, int dim, float eps, bf16* out,
                 cudaStream_t stream);

}  // namespace fc
