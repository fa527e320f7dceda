// Paged GQA decode attention (flash decoding): one (or a few) query rows per sequence against its whole
// KV cache, the KV sequence split across CTAs when the batch alone cannot fill the GPU.
//
// Semantics: fc::attention_ref (kernels/attention.h) restricted to small n_q: every sequence's n_q must
// be <= plan.max_q_per_seq (n_q = 1 for plain decode; a few for speculative / multi-token steps; the
// rows are causal like in prefill). All query heads of one kv head (the GQA group) share each K/V read.
//
// Supported: head_dim 64 and 128; any q_heads / kv_heads ratio; any block_size >= 1; scale > 0; the
// same 16-byte alignment rules as attention_prefill.
//
// Split-KV, CUDA-graph friendly: the plan fixes only the number of splits (the grid). Each CTA derives
// its key range on the device from seq_lens, so a captured graph stays correct as sequences grow;
// re-plan (and re-capture) only to change the split count. With num_splits > 1 each split writes a
// partial (normalized fp32 output, log-sum-exp) to the workspace and a second kernel merges them.
#pragma once
#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/attention.h"
#include "kernels/cuda_utils.cuh"

namespace fc {

struct AttentionDecodePlan {
  int num_splits = 1;      // KV splits per (sequence, kv head); 1 = no workspace, no merge kernel
  int max_q_per_seq = 1;   // upper bound on any sequence's n_q
  bool pdl = false;        // launch with programmatic stream serialization (sm_90): the CTAs start while the
                           // previous kernel drains and wait (griddepcontrol.wait) before reading anything
  bool one_per_sm = false; // the splits were sized for one CTA per SM: launch with enough shared memory that
                           // no SM takes two (otherwise SMs freed first by the previous kernel each take two)
  int stages = 3;          // the per-warp K/V ring depth: 3, or 2 on GPUs with at most 99 KB of shared memory per
                           // block (sm_86 / sm_89); attention_decode_plan picks the device's, tests set both
};

// Chooses the split count from the host copy of seq_lens: as many whole splits as fit ctas_per_sm CTAs
// on each of `num_sms` SMs, never more than max_splits, never splits shorter than 128 keys. num_sms <= 0:
// read it from the current device; ctas_per_sm <= 0: the kernel's occupancy (2). One CTA per SM is faster
// at batch 1 on an H200 (fc_bench_attention --decode-splits: 16 splits 16.6 us at 8k keys against 33
// splits' 18.9 us; 40.4 against 43.2 us at 32k): longer splits, half the partials to merge.
AttentionDecodePlan attention_decode_plan(const int32_t* host_seq_lens, int num_seqs, int max_q_per_seq,
                                          const AttentionShape& shape, int max_splits, int num_sms = 0,
                                          int ctas_per_sm = 0);

// batch: DEVICE pointers; total_q = cu_seqlens_q[num_seqs] (host value, sizes the merge grid).
// q / out / pools as in attention_prefill. workspace: >= attention_decode_workspace_bytes(total_q,
// q_heads, head_dim, plan.num_splits) bytes of device memory (may be null when num_splits == 1), its
// contents need no initialization. Asynchronous on `stream`; never synchronizes.
void attention_decode(const AttentionBatch& batch, int total_q, const AttentionShape& shape, const bf16* q,
                      int64_t q_row_stride, const bf16* k_pool, const bf16* v_pool, const PagedKVLayout& layout,
                      bf16* out, int64_t out_row_stride, const AttentionDecodePlan& plan, void* workspace,
                      size_t workspace_bytes, cudaStream_t stream);

}  // namespace fc
