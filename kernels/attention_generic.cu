#include <cfloat>

#include "core/error.h"
#include "kernels/attention_common.cuh"
#include "kernels/attention_generic.cuh"

namespace fc {

namespace {

constexpr int kWarp = 32;
constexpr int kMaxPerLane = kGenericAttentionMaxHeadDim / kWarp;  // head_dim elements owned by one lane

struct GenericParams : attn::AttentionParams {
  int total_q;
};

__global__ void attention_generic_kernel(const __grid_constant__ GenericParams p) {
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) / kWarp;
  const int lane = threadIdx.x % kWarp;
  const int row = warp / p.q_heads;
  const int head = warp % p.q_heads;
  if (row >= p.total_q) return;
  // The sequence owning this row: cu_seqlens_q is sorted; a linear scan is fine for a fallback.
  int seq = 0;
  while (seq + 1 < p.num_seqs && p.cu_seqlens_q[seq + 1] <= row) ++seq;
  const int n_q = p.cu_seqlens_q[seq + 1] - p.cu_seqlens_q[seq];
  const int position = p.seq_lens[seq] - n_q + (row - p.cu_seqlens_q[seq]);
  const int kv_head = head / p.group;
  const int head_dim = p.head_dim;
  const int32_t* block_table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
  const int64_t head_offset = static_cast<int64_t>(kv_head) * p.kv_head_stride;

  float qv[kMaxPerLane], acc[kMaxPerLane];
  const bf16* qrow = p.q + row * p.q_row_stride + static_cast<int64_t>(head) * head_dim;
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + i * kWarp;
    qv[i] = d < head_dim ? __bfloat162float(qrow[d]) * p.scale : 0.f;
    acc[i] = 0.f;
  }
  float running_max = -FLT_MAX, running_sum = 0.f;
  for (int j = 0; j <= position; ++j) {
    const int64_t offset = static_cast<int64_t>(block_table[j / p.block_size]) * p.kv_block_stride + head_offset +
                           static_cast<int64_t>(j % p.block_size) * head_dim;
    float dot = 0.f;
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i) {
      const int d = lane + i * kWarp;
      if (d < head_dim) dot += qv[i] * __bfloat162float(p.k_pool[offset + d]);
    }
#pragma unroll
    for (int s = kWarp / 2; s > 0; s /= 2) dot += __shfl_xor_sync(0xffffffffu, dot, s);
    const float new_max = fmaxf(running_max, dot);
    const float correction = __expf(running_max - new_max);
    const float weight = __expf(dot - new_max);
    running_sum = running_sum * correction + weight;
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i) {
      const int d = lane + i * kWarp;
      const float v = d < head_dim ? __bfloat162float(p.v_pool[offset + d]) : 0.f;
      acc[i] = acc[i] * correction + weight * v;
    }
    running_max = new_max;
  }
  bf16* orow = p.out + row * p.out_row_stride + static_cast<int64_t>(head) * head_dim;
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + i * kWarp;
    if (d < head_dim) orow[d] = __float2bfloat16(acc[i] / running_sum);
  }
}

}  // namespace

void attention_generic(const AttentionBatch& batch, int total_q, const AttentionShape& shape, const bf16* q,
                       int64_t q_row_stride, const bf16* k_pool, const bf16* v_pool, const PagedKVLayout& layout,
                       bf16* out, int64_t out_row_stride, cudaStream_t stream) {
  if (shape.head_dim <= 0 || shape.head_dim > kGenericAttentionMaxHeadDim || shape.kv_heads <= 0 ||
      shape.q_heads % shape.kv_heads != 0) {
    fail("attention: head_dim {} with {} q heads / {} kv heads is not supported", shape.head_dim, shape.q_heads,
         shape.kv_heads);
  }
  if (total_q == 0) return;
  GenericParams params{
      attn::attention_params(batch, shape, q, q_row_stride, k_pool, v_pool, layout, out, out_row_stride)};
  params.total_q = total_q;
  constexpr int kThreads = 128;
  const int64_t warps = static_cast<int64_t>(total_q) * shape.q_heads;
  const int blocks = static_cast<int>((warps * kWarp + kThreads - 1) / kThreads);
  attention_generic_kernel<<<blocks, kThreads, 0, stream>>>(params);
  CUDA_CHECK_LAUNCH();
}

}  // namespace fc
