// RoPE on the GPU, fused with the paged KV-cache append. CPU references: rope_ref (kernels/rope.h) and
// kv_append_ref (kernels/attention.h); the pool layout is PagedKVLayout (kernels/attention.h).
#pragma once
#include <cstdint>

#include "kernels/attention.h"
#include "kernels/cuda_utils.cuh"

namespace fc {

// One token per row of the fused QKV projection output:
//   qkv (n_tokens, row_stride) bf16, row = [Q: q_heads*head_dim | K: kv_heads*head_dim | V: kv_heads*head_dim]
// rope_kv_append rotates Q and K in place (HF rotate-half, angle = float(positions[t]) * inv_freq[i] in
// fp32, accurate sincosf, since positions reach 131072 and the fast intrinsics lose all accuracy there),
// and stores the rotated K and the plain V of token t at pool slot slot_mapping[t]. A negative slot
// (a padding token) stores nothing. Rotated K is also written back into qkv.
struct RopeKVParams {
  bf16* qkv = nullptr;
  int64_t row_stride = 0;               // elements between tokens, >= (q_heads + 2*kv_heads) * head_dim
  int n_tokens = 0;
  int q_heads = 0;
  int kv_heads = 0;
  int head_dim = 0;                     // even
  const int32_t* positions = nullptr;   // (n_tokens)
  const float* inv_freq = nullptr;      // (head_dim/2) device copy of rope_inv_freq(), uploaded once
  const int32_t* slot_mapping = nullptr;  // (n_tokens); null: rotate only, append nothing
  bf16* k_pool = nullptr;               // [num_blocks][kv_heads][block_size][head_dim]
  bf16* v_pool = nullptr;
  int block_size = 16;
};
void rope_kv_append(const RopeKVParams& params, cudaStream_t stream);

// Plain append, no rotation: k, v (n_tokens, row_stride) with kv_heads*head_dim values per token;
// k_pool/v_pool laid out by `layout`; negative slots are skipped.
void kv_append(const bf16* k, const bf16* v, int64_t row_stride, int n_tokens, const int32_t* slot_mapping,
               const PagedKVLayout& layout, bf16* k_pool, bf16* v_pool, cudaStream_t stream);

}  // namespace fc
