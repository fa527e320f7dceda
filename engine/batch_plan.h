// Host-side plan of one forward call: everything the kernels need besides the activations, derived
// from the batch and the KV cache (positions, slots, per-sequence lengths and block tables).
#pragma once
#include <cstdint>
#include <vector>

#include "engine/backend.h"
#include "kernels/attention.h"

namespace fc {

struct BatchPlan {
  int num_tokens = 0;
  int num_seqs = 0;
  std::vector<int32_t> positions;     // (num_tokens)
  std::vector<int32_t> slot_mapping;  // (num_tokens) KV slot each new token is written to
  std::vector<int32_t> cu_seqlens_q;  // (num_seqs + 1)
  std::vector<int32_t> seq_lens;      // (num_seqs) KV length after this call
  std::vector<int32_t> block_tables;  // (num_seqs, max_blocks_per_seq), unused entries 0
  int max_blocks_per_seq = 0;
  std::vector<int32_t> logit_rows;    // rows of the batch whose logits are returned

  AttentionBatch attention_batch() const {
    return {num_seqs, cu_seqlens_q.data(), seq_lens.data(), block_tables.data(), max_blocks_per_seq};
  }
};

// Validates the batch (token ids in range, lengths consistent), reserves KV blocks for the new tokens
// and returns the plan. Commit the new lengths with commit_batch() after the forward succeeded.
BatchPlan plan_batch(const ForwardBatch& batch, KVCacheManager& kv, int vocab_size);
void commit_batch(const ForwardBatch& batch, const BatchPlan& plan, KVCacheManager& kv);

}  // namespace fc
