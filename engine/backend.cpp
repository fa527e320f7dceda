// The host sampler every backend without its own takes (the CPU reference): forward() for the logits,
// then kernels/sampling_ref.cpp's penalties and draw on each row.
#include "engine/backend.h"

#include "core/error.h"

namespace fc {

void Backend::forward_sample(const ForwardBatch& batch, const std::vector<SamplingParams>& params,
                             std::vector<int32_t>& ids) {
  std::vector<float> logits;
  forward(batch, logits);
  const int vocab = config().vocab_size;
  ids.resize(params.size());
  for (size_t r = 0; r < params.size(); ++r) {
    const SamplingParams& p = params[r];
    float* row = logits.data() + r * vocab;
    std::vector<uint32_t>* history = nullptr;
    if (sampling_has_penalty(p)) {
      const int seq = batch.seq_ids[r];
      if (seq < 0 || static_cast<size_t>(seq) >= histories_.size() || histories_[seq].empty()) {
        fail("forward_sample: sequence {} has a penalty but no history (set_sampling_history first)", seq);
      }
      history = &histories_[seq];
      penalize_ref(row, vocab, history->data(), p);
    }
    ids[r] = sample_ref(row, vocab, p, sampling_random(p.seed, p.step)).id;
    if (history != nullptr) (*history)[ids[r]] = sampling_history_add((*history)[ids[r]]);
  }
}

void Backend::set_sampling_history(int seq_id, const std::vector<int32_t>& context,
                                   const std::vector<int32_t>& generated) {
  if (seq_id < 0) fail("set_sampling_history: sequence id {} is negative", seq_id);
  if (static_cast<size_t>(seq_id) >= histories_.size()) histories_.resize(seq_id + 1);
  histories_[seq_id] = sampling_history_ref(context, config().vocab_size, generated);
}

}  // namespace fc
