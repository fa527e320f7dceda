#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/attention.h"

namespace fc {

void kv_append_ref(const float* k, const float* v, int64_t row_stride, int n_tokens,
                   const int32_t* slot_mapping, const PagedKVLayout& layout, float* k_pool, float* v_pool) {
  for (int t = 0; t < n_tokens; ++t) {
    for (int h = 0; h < layout.kv_heads; ++h) {
      const int64_t dst = layout.offset(slot_mapping[t], h);
      const int64_t src = t * row_stride + static_cast<int64_t>(h) * layout.head_dim;
      for (int d = 0; d < layout.head_dim; ++d) {
        k_pool[dst + d] = k[src + d];
        v_pool[dst + d] = v[src + d];
      }
    }
  }
}

void attention_ref(const AttentionBatch& batch, const AttentionShape& shape, const float* q,
                   int64_t q_row_stride, const float* k_pool, const float* v_pool,
                   const PagedKVLayout& layout, float* out, int64_t out_row_stride) {
  if (shape.kv_heads <= 0 || shape.q_heads % shape.kv_heads != 0) {
    fail("attention: {} query heads are not a multiple of {} kv heads", shape.q_heads, shape.kv_heads);
  }
  const int group = shape.q_heads / shape.kv_heads;
  const int head_dim = shape.head_dim;
  std::vector<float> scores;
  for (int s = 0; s < batch.num_seqs; ++s) {
    const int row_begin = batch.cu_seqlens_q[s], row_end = batch.cu_seqlens_q[s + 1];
    const int n_q = row_end - row_begin;
    const int seq_len = batch.seq_lens[s];
    const int32_t* block_table = batch.block_tables + static_cast<int64_t>(s) * batch.max_blocks_per_seq;
    for (int i = 0; i < n_q; ++i) {
      const int position = seq_len - n_q + i;
      const int n_keys = position + 1;
      scores.resize(n_keys);
      for (int h = 0; h < shape.q_heads; ++h) {
        const int kv_head = h / group;
        const float* qv = q + static_cast<int64_t>(row_begin + i) * q_row_stride + h * head_dim;
        float max_score = -std::numeric_limits<float>::infinity();
        for (int j = 0; j < n_keys; ++j) {
          const int64_t slot =
              static_cast<int64_t>(block_table[j / layout.block_size]) * layout.block_size + j % layout.block_size;
          const float* kv = k_pool + layout.offset(slot, kv_head);
          float dot = 0.f;
          for (int d = 0; d < head_dim; ++d) dot += qv[d] * kv[d];
          scores[j] = dot * shape.scale;
          max_score = std::max(max_score, scores[j]);
        }
        double denominator = 0.0;
        for (int j = 0; j < n_keys; ++j) {
          scores[j] = std::exp(scores[j] - max_score);
          denominator += scores[j];
        }
        float* o = out + static_cast<int64_t>(row_begin + i) * out_row_stride + h * head_dim;
        for (int d = 0; d < head_dim; ++d) o[d] = 0.f;
        for (int j = 0; j < n_keys; ++j) {
          const int64_t slot =
              static_cast<int64_t>(block_table[j / layout.block_size]) * layout.block_size + j % layout.block_size;
          const float* vv = v_pool + layout.offset(slot, kv_head);
          const float p = static_cast<float>(scores[j] / denominator);
          for (int d = 0; d < head_dim; ++d) o[d] += p * vv[d];
        }
      }
    }
  }
}

}  // namespace fc
