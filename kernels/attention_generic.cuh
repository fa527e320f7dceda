// A simple paged GQA attention for head dims the tensor-core kernels do not instantiate (any even
// head_dim <= 256): one warp per (query row, query head), keys streamed one at a time with an online
// softmax. Slow by design; it keeps odd research shapes (and the tiny test fixtures, head_dim 16/24)
// runnable on the GPU. Semantics: fc::attention_ref (kernels/attention.h); batch pointers on the device.
#pragma once
#include "kernels/attention.h"
#include "kernels/cuda_utils.cuh"

namespace fc {

constexpr int kGenericAttentionMaxHeadDim = 256;

void attention_generic(const AttentionBatch& batch, int total_q, const AttentionShape& shape, const bf16* q,
                       int64_t q_row_stride, const bf16* k_pool, const bf16* v_pool, const PagedKVLayout& layout,
                       bf16* out, int64_t out_row_stride, cudaStream_t stream);

}  // namespace fc
