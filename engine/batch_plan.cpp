#include "engine/batch_plan.h"

#include "core/error.h"

namespace fc {

BatchPlan plan_batch(const ForwardBatch& batch, KVCacheManager& kv, int vocab_size) {
  if (batch.seq_ids.size() != batch.n_tokens.size() || batch.seq_ids.empty()) {
    fail("forward: {} sequences but {} token counts", batch.seq_ids.size(), batch.n_tokens.size());
  }
  BatchPlan plan;
  plan.num_seqs = static_cast<int>(batch.seq_ids.size());
  for (int n : batch.n_tokens) {
    if (n <= 0) fail("forward: every sequence needs at least one new token");
    plan.num_tokens += n;
  }
  if (plan.num_tokens != static_cast<int>(batch.tokens.size())) {
    fail("forward: token counts add up to {} but {} tokens were given", plan.num_tokens, batch.tokens.size());
  }
  for (int32_t id : batch.tokens) {
    if (id < 0 || id >= vocab_size) fail("token id {} out of range (vocab size {})", id, vocab_size);
  }
  for (int s = 0; s < plan.num_seqs; ++s) {
    const int id = batch.seq_ids[s];
    kv.reserve(id, kv.length(id) + batch.n_tokens[s]);
  }
  plan.max_blocks_per_seq = kv.max_blocks_per_seq();
  plan.block_tables.assign(static_cast<size_t>(plan.num_seqs) * plan.max_blocks_per_seq, 0);
  plan.cu_seqlens_q.push_back(0);
  for (int s = 0; s < plan.num_seqs; ++s) {
    const int id = batch.seq_ids[s];
    const int start = kv.length(id);
    const int n = batch.n_tokens[s];
    for (int i = 0; i < n; ++i) {
      plan.positions.push_back(start + i);
      plan.slot_mapping.push_back(static_cast<int32_t>(kv.slot(id, start + i)));
    }
    plan.cu_seqlens_q.push_back(plan.cu_seqlens_q.back() + n);
    plan.seq_lens.push_back(start + n);
    const auto& table = kv.block_table(id);
    std::copy(table.begin(), table.end(), plan.block_tables.begin() + static_cast<size_t>(s) * plan.max_blocks_per_seq);
    if (batch.all_logits) {
      for (int i = 0; i < n; ++i) plan.logit_rows.push_back(plan.cu_seqlens_q[s] + i);
    } else {
      plan.logit_rows.push_back(plan.cu_seqlens_q[s + 1] - 1);
    }
  }
  return plan;
}

void commit_batch(const ForwardBatch& batch, const BatchPlan& plan, KVCacheManager& kv) {
  for (int s = 0; s < plan.num_seqs; ++s) kv.set_length(batch.seq_ids[s], plan.seq_lens[s]);
}

}  // namespace fc
