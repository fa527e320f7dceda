#include "engine/scheduler.h"

#include <algorithm>

#include "core/error.h"

namespace fc {

Scheduler::Scheduler(Backend& backend, const SchedulerOptions& options, Callbacks callbacks)
    : backend_(backend), kv_(backend.kv_cache()), options_(options), callbacks_(std::move(callbacks)) {
  check_options(options);
  // A request alone always fits the pool: preempting everyone else is then always enough.
  effective_context_ = std::min(kv_.max_tokens_per_seq(), kv_.num_blocks() * kv_.block_size());
}

void Scheduler::check_options(const SchedulerOptions& options) {
  if (options.max_batch < 1) fail("batch: --max-batch must be at least 1 (got {})", options.max_batch);
  // Every running request must get its decode row in every step, else the youngest would starve.
  if (options.max_batch_tokens < options.max_batch) {
    fail("batch: a step of {} tokens cannot hold one decode row for each of {} sequences (raise --max-batch-tokens "
         "to at least --max-batch)",
         options.max_batch_tokens, options.max_batch);
  }
}

Scheduler::~Scheduler() {
  for (int index : running_) kv_.release_sequence(requests_[index].seq_id);
}

int Scheduler::blocks_for(int tokens) const { return (tokens + kv_.block_size() - 1) / kv_.block_size(); }

int Scheduler::add(BatchRequest input) {
  const int index = static_cast<int>(requests_.size());
  Request& r = requests_.emplace_back();
  r.arrival = Clock::now();
  r.context = input.prompt;
  r.result.prompt_tokens = static_cast<int>(input.prompt.size());
  r.input = std::move(input);
  const int vocab = backend_.config().vocab_size;
  const std::vector<int32_t>& prompt = r.input.prompt;
  const auto bad = std::find_if(prompt.begin(), prompt.end(), [&](int32_t id) { return id < 0 || id >= vocab; });
  if (prompt.empty()) {
    fail_request(index, "the prompt is empty");
  } else if (bad != prompt.end()) {
    fail_request(index, fmt::format("token id {} is outside the model's vocabulary of {}", *bad, vocab));
  } else if (static_cast<int>(prompt.size()) > effective_context_) {
    const bool pool_bound = effective_context_ < kv_.max_tokens_per_seq();
    fail_request(index, fmt::format("prompt of {} tokens exceeds the context of {} tokens{}", prompt.size(),
                                    effective_context_, pool_bound ? " (the whole KV pool)" : ""));
  } else if (r.input.params.max_new_tokens <= 0) {
    finish(index, StopReason::MaxTokens);  // what generate() returns: no tokens
  } else {
    waiting_.push_back(index);
  }
  return index;
}

bool Scheduler::step() {
  if (done()) return false;
  std::vector<Row> rows;
  int budget = options_.max_batch_tokens;
  schedule_decodes(rows, budget);
  schedule_prefills(rows, budget);
  admit(rows, budget);
  // Not reachable by the policy (with nothing running the first waiting request is always admitted); a
  // loop that spins without progress would be worse than this line.
  if (rows.empty()) fail("batch scheduler: no request could be scheduled ({} waiting)", waiting_.size());
  run_rows(rows);
  return true;
}

void Scheduler::schedule_decodes(std::vector<Row>& rows, int& budget) {
  // By position: make_room may preempt (erase) requests behind the current one.
  for (size_t i = 0; i < running_.size() && budget > 0; ++i) {
    const int index = running_[i];
    const Request& r = requests_[index];
    if (static_cast<int>(r.context.size()) - r.computed != 1) continue;  // still prefilling: next pass
    if (!make_room(index)) break;  // it was the youngest left and preempted itself
    rows.push_back({index, 1});
    --budget;
  }
}

void Scheduler::schedule_prefills(std::vector<Row>& rows, int& budget) {
  for (int index : running_) {
    if (budget == 0) return;
    const Request& r = requests_[index];
    const int pending = static_cast<int>(r.context.size()) - r.computed;
    if (pending <= 1) continue;  // a decode row (scheduled above, or left out for lack of budget)
    const int chunk = std::min(pending, budget);
    rows.push_back({index, chunk});
    budget -= chunk;
  }
}

void Scheduler::admit(std::vector<Row>& rows, int& budget) {
  while (!waiting_.empty() && budget > 0 && static_cast<int>(running_.size()) < options_.max_batch) {
    const int index = waiting_.front();
    Request& r = requests_[index];
    const int context = static_cast<int>(r.context.size());
    // Its whole context is reserved now, so its later chunks never wait for blocks. With nothing running
    // it always fits (context <= effective context <= pool).
    const int headroom = static_cast<int>(running_.size());
    if (!running_.empty() && blocks_for(context) + headroom > kv_.free_blocks()) return;
    waiting_.pop_front();
    if (r.result.preemptions == 0) stats_.prompt_tokens += r.result.prompt_tokens;
    r.seq_id = kv_.create_sequence();
    kv_.reserve(r.seq_id, context);
    if (sampling_has_penalty(r.input.params.sampling)) {
      // What the penalties see, as generate() sets it: the prompt as context, and after a preemption the
      // ids generated before it, counted again, so the recomputed request continues exactly.
      const auto prompt_end = r.context.begin() + r.result.prompt_tokens;
      backend_.set_sampling_history(r.seq_id, std::vector<int32_t>(r.context.begin(), prompt_end),
                                    std::vector<int32_t>(prompt_end, r.context.end()));
    }
    running_.push_back(index);
    const int chunk = std::min(context, budget);
    rows.push_back({index, chunk});
    budget -= chunk;
  }
}

bool Scheduler::make_room(int index) {
  const Request& r = requests_[index];
  const int more = blocks_for(r.computed + 1) - static_cast<int>(kv_.block_table(r.seq_id).size());
  while (more > kv_.free_blocks()) {
    const int victim = running_.back();
    preempt(victim);
    if (victim == index) return false;
  }
  kv_.reserve(r.seq_id, r.computed + 1);
  return true;
}

void Scheduler::preempt(int index) {
  // Recompute rather than swap: the request keeps its generated ids and prefills prompt + ids again when
  // it is readmitted; the draw of each later token depends only on (seed, position), so nothing changes.
  Request& r = requests_[index];
  kv_.release_sequence(r.seq_id);
  r.seq_id = -1;
  r.computed = 0;
  running_.erase(std::find(running_.begin(), running_.end(), index));
  waiting_.push_front(index);
  ++r.result.preemptions;
  ++stats_.preemptions;
}

void Scheduler::run_rows(const std::vector<Row>& rows) {
  ForwardBatch batch;
  std::vector<SamplingParams> params(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    const Request& r = requests_[rows[i].request];
    batch.seq_ids.push_back(r.seq_id);
    batch.n_tokens.push_back(rows[i].tokens);
    batch.tokens.insert(batch.tokens.end(), r.context.begin() + r.computed,
                        r.context.begin() + r.computed + rows[i].tokens);
    const int length_after = r.computed + rows[i].tokens;
    if (length_after == static_cast<int>(r.context.size())) {
      // The token at position length_after is chosen: generate()'s sp.step, so the same draw.
      params[i] = r.input.params.sampling;
      params[i].step = static_cast<uint64_t>(length_after);
    } else {
      // A chunk that ends inside the prompt: its id is thrown away. Greedy with no penalty (the default
      // params), so the draw is cheap and the sampler's per-sequence history is left untouched.
      params[i] = SamplingParams{};
      params[i].temperature = 0;
    }
  }
  std::vector<int32_t> ids;
  backend_.forward_sample(batch, params, ids);
  ++stats_.steps;
  stats_.rows += static_cast<int64_t>(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    Request& r = requests_[rows[i].request];
    // A decode row computes the last generated id; anything else (re)computes a prompt.
    const bool decode = rows[i].tokens == 1 && !r.result.ids.empty();
    (decode ? stats_.decode_rows : stats_.prefill_tokens) += rows[i].tokens;
    r.computed += rows[i].tokens;
    if (r.computed == static_cast<int>(r.context.size())) accept(r, rows[i].request, ids[i]);
  }
}

void Scheduler::accept(Request& r, int index, int32_t id) {
  // generate()'s accept and limit_after, in the same order, so the same ids and stop reason.
  const GenerationParams& p = r.input.params;
  if (r.result.ids.empty()) {
    r.result.ttft_ms = std::chrono::duration<double, std::milli>(Clock::now() - r.arrival).count();
  }
  r.result.ids.push_back(id);
  r.context.push_back(id);
  ++stats_.generated_tokens;
  if (std::find(p.stop_ids.begin(), p.stop_ids.end(), id) != p.stop_ids.end()) {
    if (callbacks_.on_token) callbacks_.on_token(index, id);
    finish(index, StopReason::StopToken);
    return;
  }
  if (callbacks_.on_token && !callbacks_.on_token(index, id)) {
    finish(index, StopReason::Cancelled);
    return;
  }
  if (static_cast<int>(r.result.ids.size()) == p.max_new_tokens) {
    finish(index, StopReason::MaxTokens);
    return;
  }
  if (r.computed + 1 > effective_context_) {
    finish(index, StopReason::ContextFull);
  }
}

void Scheduler::finish(int index, StopReason stop) {
  Request& r = requests_[index];
  r.result.finished = true;
  r.result.stop = stop;
  r.result.finish_ms = std::chrono::duration<double, std::milli>(Clock::now() - r.arrival).count();
  if (r.seq_id >= 0) {
    kv_.release_sequence(r.seq_id);
    r.seq_id = -1;
    running_.erase(std::find(running_.begin(), running_.end(), index));
  }
  if (callbacks_.on_finish) callbacks_.on_finish(index);
}

void Scheduler::fail_request(int index, std::string error) {
  requests_[index].result.error = std::move(error);
  finish(index, StopReason::Cancelled);
}

}  // namespace fc
