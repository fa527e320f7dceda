// Rotary position embedding, HF's rotate-half layout: for i < head_dim/2 the pair is (x[i], x[i + half]).
// The inverse frequencies are computed once per model (plain, or with Llama 3's frequency-dependent
// scaling), exactly as transformers' `_compute_default_rope_parameters` / `_compute_llama3_parameters`.
#pragma once
#include <cstdint>
#include <vector>

namespace fc {

struct Llama3RopeScaling {
  float factor = 8.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int original_max_position_embeddings = 8192;
};

// inv_freq[i] for i in [0, head_dim/2); `llama3` may be null for unscaled RoPE. fp32 like HF.
std::vector<float> rope_inv_freq(int head_dim, float theta, const Llama3RopeScaling* llama3);

// In place on `heads` vectors of length head_dim per token:
//   x (n_tokens, row_stride) with head h at x[t*row_stride + h*head_dim]; token t is at positions[t].
//   out[i]        = x[i] * cos(p*f_i) - x[i+half] * sin(p*f_i)
//   out[i + half] = x[i+half] * cos(p*f_i) + x[i] * sin(p*f_i)
void rope_ref(float* x, int n_tokens, int heads, int head_dim, int64_t row_stride, const int32_t* positions,
              const float* inv_freq);

}  // namespace fc
