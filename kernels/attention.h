// Causal grouped-query attention over a paged KV cache: the CPU reference, and the parameter block the
// CUDA prefill and decode kernels share.
//
// KV cache layout, one K pool and one V pool per layer:
//     pool[num_blocks][kv_heads][block_size][head_dim]
// Head-major inside a block, so one kv head's keys for a whole block are one contiguous run of
// block_size * head_dim elements: a decode warp streams them with wide loads and no stride, and a
// prefill K/V tile of one head is whole contiguous runs. Measured against the token-major alternative
// ([block][slot][kv_head][dim]) with kernels/bench/bench_kv_layout.cu on an H200 (8 kv heads, dim 128,
// shuffled block tables, 8k-128k keys, block 16 and 64): the same streaming bandwidth within 2% (both
// coalesce into full 256-byte segments), so the layout is chosen for its contiguous per-head runs.
// A token's place in the pool is its slot, physical_block * block_size + offset_in_block (vLLM's
// slot_mapping); a sequence's logical block b lives in physical block block_table[b].
#pragma once
#include <cstddef>
#include <cstdint>

namespace fc {

struct PagedKVLayout {
  int block_size = 16;
  int kv_heads = 0;
  int head_dim = 0;

  constexpr int64_t block_stride() const { return static_cast<int64_t>(kv_heads) * block_size * head_dim; }
  constexpr int64_t head_stride() const { return static_cast<int64_t>(block_size) * head_dim; }
  // Element offset of (slot, kv head) in a pool. constexpr: callable from device code too.
  constexpr int64_t offset(int64_t slot, int kv_head) const {
    const int64_t block = slot / block_size, in_block = slot % block_size;
    return block * block_stride() + kv_head * head_stride() + in_block * head_dim;
  }
};

// Writes the new tokens' K and V into the pools.       k, v (n_tokens, row_stride): kv_heads * head_dim
// values per token starting at k[t*row_stride]; slot_mapping (n_tokens).
void kv_append_ref(const float* k, const float* v, int64_t row_stride, int n_tokens,
                   const int32_t* slot_mapping, const PagedKVLayout& layout, float* k_pool, float* v_pool);

// A batch of sequences, each with n_q >= 1 new query rows that sit at the END of its KV sequence:
// query row i of sequence s is at position seq_lens[s] - n_q(s) + i and attends to keys [0, position]
// (its own K/V must already be in the cache). Prefill (n_q = seq_len), chunked prefill / a new chat
// turn (0 < n_q < seq_len) and decode (n_q = 1) are the same call.
struct AttentionBatch {
  int num_seqs = 0;
  const int32_t* cu_seqlens_q = nullptr;  // (num_seqs + 1) prefix sums of n_q: rows of s are [cu[s], cu[s+1])
  const int32_t* seq_lens = nullptr;      // (num_seqs) KV length of each sequence, new tokens included
  const int32_t* block_tables = nullptr;  // (num_seqs, max_blocks_per_seq) physical block ids
  int max_blocks_per_seq = 0;
};

struct AttentionShape {
  int q_heads = 0;
  int kv_heads = 0;  // q_heads % kv_heads == 0; query head h reads kv head h / (q_heads / kv_heads)
  int head_dim = 0;
  float scale = 0.f;  // usually 1/sqrt(head_dim)
};

// q (total_q, q_row_stride) with head h at q[row*q_row_stride + h*head_dim];
// out (total_q, out_row_stride) likewise. fp32 softmax, computed with the max subtracted.
void attention_ref(const AttentionBatch& batch, const AttentionShape& shape, const float* q,
                   int64_t q_row_stride, const float* k_pool, const float* v_pool,
                   const PagedKVLayout& layout, float* out, int64_t out_row_stride);

// Workspace bytes the split-KV decode (kernels/attention_decode.cuh) needs for its partial results:
// total_q rows x q_heads x num_splits x (head_dim + 1) floats (output and log-sum-exp); 0 when
// num_splits <= 1. Host code, so the device memory layout (engine/device_layout.h) can size it.
inline size_t attention_decode_workspace_bytes(int total_q, int q_heads, int head_dim, int num_splits) {
  if (num_splits <= 1 || total_q <= 0) return 0;
  const size_t items = static_cast<size_t>(total_q) * q_heads * num_splits;
  return items * head_dim * sizeof(float) + items * sizeof(float);
}

}  // namespace fc
