// Continuous batching of many requests over one backend and its shared KV pool: the piece `flashcore
// batch` uses today and a server would reuse. Each step() is one Backend::forward_sample call whose rows
// mix 1-token decodes and chunks of prompts being prefilled, under a budget of tokens per step; a request
// that finishes frees its row and KV blocks at once, and a waiting one is admitted in its place.
//
// Every request runs exactly as generate() (engine/generator.h) would run it alone: the token at position
// p is drawn with sampling_random(seed, p), and on the CPU backend (whose rows do not depend on each other
// or on how a prompt is cut into chunks) the ids are the same, greedy or seeded.
//
// Policy, in the order a step is built:
//  1. Decode rows of the running requests, oldest first. A row that needs a new KV block when none is free
//     preempts the youngest running request (its blocks are freed; it goes back to the front of the queue
//     and is recomputed later: prompt + the tokens it already generated, prefilled again). Only the oldest
//     request is never preempted, so the run always progresses.
//  2. The next chunks of prompts already being prefilled (their blocks were reserved at admission).
//  3. Admission, in input order: while rows and tokens are left in the step, a waiting request is admitted
//     when the free blocks hold its whole context plus one spare block per running request (headroom for
//     their next decode blocks, so that admitting does not at once force a preemption).
// The effective context of a request is min(the backend's context, the pool): a request alone always fits,
// and one that reaches that length ends with StopReason::ContextFull, as generate() does at its context.
// Identical prompt prefixes do not share blocks (each request holds its own).
// Penalties: each request's history is set at admission (Backend::set_sampling_history); a preempted request
// gets its prompt back as context and its generated ids as counts, so every penalty continues exactly.
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "engine/generator.h"

namespace fc {

struct SchedulerOptions {
  int max_batch = 8;            // sequences in one step (at most the backend's max_sequences)
  int max_batch_tokens = 512;   // tokens in one step, decode rows and prefill chunks together
};

struct BatchRequest {
  std::vector<int32_t> prompt;
  GenerationParams params;  // max_new_tokens, sampling (seed, ...), stop ids
};

struct BatchResult {
  bool finished = false;
  std::string error;               // set when the request could never run (it then has no tokens)
  int prompt_tokens = 0;
  std::vector<int32_t> ids;        // generated ids (the stop id included when one ended it), as generate()
  StopReason stop = StopReason::MaxTokens;
  double ttft_ms = 0;              // from add() to the first generated token (queueing included)
  double finish_ms = 0;            // from add() to the last token
  int preemptions = 0;             // times its KV blocks were taken back and it was recomputed
};

struct SchedulerStats {
  int64_t steps = 0;
  int64_t rows = 0;               // sequences over all steps (rows / steps: the mean batch size)
  int64_t decode_rows = 0;        // rows that computed one token
  int64_t prompt_tokens = 0;      // prompts of the requests admitted (each counted once)
  int64_t prefill_tokens = 0;     // tokens computed by prefill chunks (recomputation included)
  int64_t generated_tokens = 0;
  int64_t preemptions = 0;
};

class Scheduler {
 public:
  // on_token(request, id) is called for every generated id in order, like generate()'s on_token; false
  // ends that request (StopReason::Cancelled: the caller renames it, e.g. a stop string). on_finish(request)
  // once per request when its result is final (errors included).
  struct Callbacks {
    std::function<bool(int, int32_t)> on_token;
    std::function<void(int)> on_finish;
  };

  Scheduler(Backend& backend, const SchedulerOptions& options, Callbacks callbacks);
  // Throws fc::Error for options the scheduler refuses (the constructor checks them too): for a caller
  // that wants to refuse them before loading a model.
  static void check_options(const SchedulerOptions& options);
  ~Scheduler();  // releases the KV sequences still held (an interrupted run)
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request; returns its index. One that can never run (empty prompt, ids outside the vocabulary,
  // a prompt longer than the effective context) is finished at once with BatchResult::error.
  int add(BatchRequest request);
  // Runs one forward call over the running requests (admitting waiting ones first). Returns false when
  // there was nothing to run: every request is finished.
  bool step();
  bool done() const { return waiting_.empty() && running_.empty(); }

  const BatchRequest& request(int request) const { return requests_.at(request).input; }
  const BatchResult& result(int request) const { return requests_.at(request).result; }
  int size() const { return static_cast<int>(requests_.size()); }
  int running() const { return static_cast<int>(running_.size()); }
  const SchedulerStats& stats() const { return stats_; }
  int effective_context() const { return effective_context_; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Request {
    BatchRequest input;
    BatchResult result;
    std::vector<int32_t> context;  // prompt + generated ids: what the KV cache must hold (all but the last
                                   // generated one, which the next decode row computes)
    int seq_id = -1;               // KV sequence while running
    int computed = 0;              // tokens of `context` whose K/V are in the cache
    Clock::time_point arrival;
  };
  struct Row {
    int request;
    int tokens;  // new tokens of the row: context[computed, computed + tokens)
  };

  void schedule_decodes(std::vector<Row>& rows, int& budget);
  void schedule_prefills(std::vector<Row>& rows, int& budget);
  void admit(std::vector<Row>& rows, int& budget);
  bool make_room(int request);  // a block for request's next token; preempts the youngest; false: itself
  void preempt(int request);
  void run_rows(const std::vector<Row>& rows);
  void accept(Request& r, int index, int32_t id);
  void finish(int index, StopReason stop);
  void fail_request(int index, std::string error);
  int blocks_for(int tokens) const;

  Backend& backend_;
  KVCacheManager& kv_;
  SchedulerOptions options_;
  Callbacks callbacks_;
  int effective_context_ = 0;
  std::deque<Request> requests_;  // a deque: a callback may add() while a Request& is held
  std::deque<int> waiting_;   // input order; preempted requests go back to the front
  std::vector<int> running_;  // admission order: the youngest (first preempted) last
  SchedulerStats stats_;
};

}  // namespace fc
