// Backend's default pipelined sampling: each queued call runs at once; its ids wait in a queue.
#include "engine/backend.h"

#include "core/error.h"

namespace fc {

void Backend::queue_sample(const ForwardBatch& batch, const std::vector<SamplingParams>& params, bool feed_sampled) {
  if (static_cast<int>(queued_.size()) >= kMaxQueuedSamples) {
    fail("queue_sample: {} calls are already queued (take_sampled first)", queued_.size());
  }
  std::vector<int32_t> ids;
  if (!feed_sampled) {
    forward_sample(batch, params, ids);
  } else {
    if (last_sampled_.empty()) fail("queue_sample: nothing was sampled before to feed");
    if (batch.tokens.size() != last_sampled_.size() || batch.seq_ids.size() != last_sampled_.size()) {
      fail("queue_sample: feeding {} sampled ids to a batch of {} tokens in {} sequences", last_sampled_.size(),
           batch.tokens.size(), batch.seq_ids.size());
    }
    ForwardBatch fed = batch;
    fed.tokens = last_sampled_;
    forward_sample(fed, params, ids);
  }
  last_sampled_ = ids;
  queued_.push_back(std::move(ids));
}

void Backend::take_sampled(std::vector<int32_t>& ids) {
  if (queued_.empty()) fail("take_sampled: no call is queued");
  ids = std::move(queued_.front());
  queued_.pop_front();
}

}  // namespace fc
