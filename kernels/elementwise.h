// CPU references (fp32) of the small per-token ops of the LLaMA forward: embedding gather, RMSNorm
// (plain and with the residual add fused in), SwiGLU and the matmul against a row-major [out, in] weight.
// Written from the Hugging Face formulas; the CUDA kernels in this folder are checked against them.
#pragma once
#include <cstdint>

namespace fc {

// out[i, :] = table[ids[i], :]                  table (vocab, hidden), out (n, hidden)
// Throws fc::Error when an id is outside [0, vocab).
void embedding_ref(const float* table, int vocab, int hidden, const int32_t* ids, int n, float* out);

// HF LlamaRMSNorm: out = x * rsqrt(mean(x^2) + eps) * weight      x, out (rows, dim); weight (dim)
void rmsnorm_ref(const float* x, const float* weight, int rows, int dim, float eps, float* out);

// residual += x; out = rmsnorm(residual). The pre-norm block's "h = h + f(h); norm(h)" in one pass.
void add_rmsnorm_ref(float* residual, const float* x, const float* weight, int rows, int dim, float eps,
                     float* out);

// out[r, j] = silu(gate_up[r, j]) * gate_up[r, cols + j]      gate_up (rows, 2*cols): [gate | up]
void swiglu_ref(const float* gate_up, int rows, int cols, float* out);

// out = x @ w^T     x (rows, in_dim), w (out_dim, in_dim) row-major as stored by HF, out (rows, out_dim)
void matmul_ref(const float* x, const float* w, int rows, int in_dim, int out_dim, float* out);

// Index of the largest logit (the first one on ties, as torch.argmax).
int argmax_ref(const float* logits, int vocab);

}  // namespace fc
