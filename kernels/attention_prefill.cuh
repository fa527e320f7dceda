// Causal GQA prefill attention over the paged KV cache (FlashAttention-2 style, bf16 tensor cores).
//
// Semantics: fc::attention_ref in kernels/attention.h. One launch serves a whole batch of sequences of
// mixed lengths (batch.cu_seqlens_q); each sequence's n_q query rows sit at the end of its KV sequence
// (positions seq_len - n_q .. seq_len - 1), so a full prefill (n_q = seq_len) and a chunk that attends
// to a cached prefix (n_q < seq_len) are the same call. The new tokens' K/V must already be in the pools.
//
// Supported: head_dim 64 and 128; any q_heads / kv_heads ratio; any block_size >= 1 (keys are gathered
// one row at a time through the block table, so a KV tile may span any number of blocks); scale > 0.
// Pointers and strides must allow 16-byte accesses: q, out, k_pool, v_pool 16-byte aligned and
// q_row_stride, out_row_stride multiples of 8 elements. Anything else is refused with an fc::Error.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/attention.h"
#include "kernels/cuda_utils.cuh"

namespace fc {

// Which kernel runs. Auto: the wgmma (Hopper, sm_90a) kernel when this build and the current GPU
// support it, else the mma.sync kernel (sm_80+). The explicit choices exist for tests and benchmarks;
// Wgmma throws where attention_prefill_wgmma_available() is false.
enum class AttentionPrefillKernel { Auto, MmaSync, Wgmma };

// batch: DEVICE pointers (cu_seqlens_q, seq_lens, block_tables); total_q = cu_seqlens_q[num_seqs] (the
// host knows it; it sizes the grid). q (total_q, q_row_stride): query head h of row r at
// q[r * q_row_stride + h * head_dim] (the Q part of the fused qkv buffer). out (total_q, out_row_stride)
// likewise. k_pool / v_pool: [num_blocks][kv_heads][block_size][head_dim] bf16 (PagedKVLayout).
// Asynchronous on `stream`; never synchronizes. Graph-capturable: the grid depends only on total_q,
// num_seqs and the shape.
void attention_prefill(const AttentionBatch& batch, int total_q, const AttentionShape& shape, const bf16* q,
                       int64_t q_row_stride, const bf16* k_pool, const bf16* v_pool, const PagedKVLayout& layout,
                       bf16* out, int64_t out_row_stride, cudaStream_t stream,
                       AttentionPrefillKernel kernel = AttentionPrefillKernel::Auto);

// Whether the wgmma prefill kernel can run here (sm_90 GPU, binary built for sm_90a, head_dim 64/128).
bool attention_prefill_wgmma_available(int head_dim);

}  // namespace fc
