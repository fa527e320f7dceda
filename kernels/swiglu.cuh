// SwiGLU activation of the LLaMA MLP on the GPU. CPU reference: swiglu_ref in kernels/elementwise.h.
#pragma once
#include "kernels/cuda_utils.cuh"

namespace fc {

// out[r, j] = silu(gate_up[r, j]) * gate_up[r, cols + j], computed in fp32, rounded once to bf16.
// gate_up (rows, 2*cols) bf16 [gate | up] (the fused gate/up projection output); out (rows, cols) bf16.
void swiglu(const bf16* gate_up, int rows, int cols, bf16* out, cudaStream_t stream);

}  // namespace fc
