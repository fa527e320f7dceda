// The batch scheduler on the CPU backend: every request's ids equal generate() run on it alone (greedy,
// and sampled with per-request seeds and filters), with small batches, small step budgets (prompts cut
// into chunks beside decode rows), a KV pool so small that requests are preempted and recomputed, and
// requests that can never fit. A spy backend records the shape of every forward call.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>

#include "engine/generator.h"
#include "engine/scheduler.h"
#include "model/llama_weights.h"
#include "tests/test_util.h"

using namespace fc;

namespace {

const Checkpoint& fixture() {
  static const Checkpoint ckpt = open_checkpoint(fc::test::data_path("models/tiny-llama3-gqa"));
  return ckpt;
}

std::unique_ptr<Backend> cpu_backend(int max_context, int kv_blocks = 0, int block_size = 16, int max_sequences = 1) {
  BackendOptions o;
  o.max_context = max_context;
  o.kv_blocks = kv_blocks;
  o.kv_block_size = block_size;
  o.max_sequences = max_sequences;
  return make_cpu_backend(fixture(), o);
}

// The shape of every forward call, passed through to a CPU backend.
class SpyBackend final : public Backend {
 public:
  explicit SpyBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}
  const Config& config() const override { return inner_->config(); }
  KVCacheManager& kv_cache() override { return inner_->kv_cache(); }
  DeviceKind device() const override { return inner_->device(); }
  void forward(const ForwardBatch& batch, std::vector<float>& logits) override { inner_->forward(batch, logits); }
  void forward_sample(const ForwardBatch& batch, const std::vector<SamplingParams>& params,
                      std::vector<int32_t>& ids) override {
    steps.push_back(batch.n_tokens);
    inner_->forward_sample(batch, params, ids);
  }
  void set_sampling_history(int seq_id, const std::vector<int32_t>& context,
                            const std::vector<int32_t>& generated) override {
    inner_->set_sampling_history(seq_id, context, generated);
  }
  std::vector<std::vector<int>> steps;  // n_tokens of each call

 private:
  std::unique_ptr<Backend> inner_;
};

// Prompts of awkward lengths (1, 3, 54, ...) with ids from the fixture's vocabulary; no stop id inside.
std::vector<std::vector<int32_t>> make_prompts(int count, uint32_t seed) {
  const int lengths[] = {1, 3, 54, 97, 17, 5, 33, 2, 64, 9, 41, 16};
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(4, 319);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < count; ++i) {
    std::vector<int32_t> p(lengths[i % 12]);
    for (auto& t : p) t = id(rng);
    prompts.push_back(p);
  }
  return prompts;
}

GenerationParams params_for(int i, bool sampled) {
  GenerationParams p;
  p.max_new_tokens = 4 + (i * 7) % 13;
  p.stop_ids = {2, 3};
  if (sampled) {
    p.sampling.temperature = 0.6f + 0.1f * (i % 5);
    p.sampling.top_k = i % 3 == 0 ? 0 : 20;
    p.sampling.top_p = i % 2 == 0 ? 1.0f : 0.9f;
    p.sampling.min_p = i % 4 == 1 ? 0.05f : 0.0f;
    p.sampling.seed = 1000 + i;
  } else {
    p.sampling.temperature = 0;
  }
  return p;
}

GenerationStats alone(Backend& b, const std::vector<int32_t>& prompt, const GenerationParams& p) {
  const int seq = b.kv_cache().create_sequence();
  auto stats = generate(b, seq, prompt, p, [](int32_t) { return true; });
  b.kv_cache().release_sequence(seq);
  return stats;
}

struct Run {
  std::vector<BatchResult> results;
  std::vector<int> finish_order;
  SchedulerStats stats;
};

Run run_batch(Backend& b, const std::vector<std::vector<int32_t>>& prompts, const std::vector<GenerationParams>& params,
              const SchedulerOptions& options) {
  Run run;
  std::vector<std::vector<int32_t>> streamed(prompts.size());
  Scheduler::Callbacks callbacks;
  callbacks.on_token = [&](int r, int32_t id) {
    streamed[r].push_back(id);
    return true;
  };
  callbacks.on_finish = [&](int r) { run.finish_order.push_back(r); };
  Scheduler s(b, options, callbacks);
  for (size_t i = 0; i < prompts.size(); ++i) CHECK(s.add({prompts[i], params[i]}) == static_cast<int>(i));
  while (s.step()) {
    CHECK(s.running() <= options.max_batch);
  }
  CHECK(s.done());
  for (int i = 0; i < s.size(); ++i) {
    run.results.push_back(s.result(i));
    CHECK(streamed[i] == s.result(i).ids);  // every id was streamed once, in order
  }
  run.stats = s.stats();
  CHECK(b.kv_cache().free_blocks() == b.kv_cache().num_blocks());  // every block given back
  return run;
}

void check_equals_alone(const Run& run, Backend& reference, const std::vector<std::vector<int32_t>>& prompts,
                        const std::vector<GenerationParams>& params) {
  for (size_t i = 0; i < prompts.size(); ++i) {
    INFO("request " << i << " (prompt of " << prompts[i].size() << " tokens)");
    const GenerationStats want = alone(reference, prompts[i], params[i]);
    const BatchResult& got = run.results[i];
    REQUIRE(got.finished);
    CHECK(got.error.empty());
    CHECK(got.ids == want.ids);
    CHECK(got.stop == want.stop);
    CHECK(got.prompt_tokens == want.prompt_tokens);
  }
}

}  // namespace

TEST_CASE("scheduler: greedy and seeded results equal generate() alone, chunked prefill beside decodes",
          "[scheduler]") {
  const auto prompts = make_prompts(24, 5);
  const bool sampled = GENERATE(false, true);
  INFO((sampled ? "sampled" : "greedy"));
  std::vector<GenerationParams> params;
  for (size_t i = 0; i < prompts.size(); ++i) params.push_back(params_for(static_cast<int>(i), sampled));
  auto reference = cpu_backend(128);
  // 3 sequences, 20 tokens a step: the 54- and 97-token prompts are prefilled in chunks while the others
  // decode. Block size 4 so that decodes cross block boundaries often.
  SpyBackend spy(cpu_backend(128, 0, 4, 3));
  const SchedulerOptions options{3, 20};
  const Run run = run_batch(spy, prompts, params, options);
  check_equals_alone(run, *reference, prompts, params);
  CHECK(run.stats.preemptions == 0);  // the pool holds 3 full contexts

  bool mixed = false, chunked = false;
  for (const std::vector<int>& n : spy.steps) {
    int tokens = 0;
    for (int t : n) tokens += t;
    CHECK(tokens <= options.max_batch_tokens);
    CHECK(static_cast<int>(n.size()) <= options.max_batch);
    const bool has_decode = std::count(n.begin(), n.end(), 1) > 0;
    const bool has_prefill = std::any_of(n.begin(), n.end(), [](int t) { return t > 1; });
    mixed = mixed || (has_decode && has_prefill);
    chunked = chunked || tokens == options.max_batch_tokens;
  }
  CHECK(mixed);
  CHECK(chunked);
  CHECK(run.stats.steps == static_cast<int64_t>(spy.steps.size()));
}

TEST_CASE("scheduler: continuous batching admits a waiting request as soon as a slot frees", "[scheduler]") {
  // Request 0 generates 40 tokens, 1 and 2 only 2: with two slots, 2 is admitted when 1 ends and
  // finishes long before 0, which never stops running.
  auto b = cpu_backend(128, 0, 16, 2);
  const auto prompts = make_prompts(3, 9);
  std::vector<GenerationParams> params = {params_for(0, false), params_for(1, false), params_for(2, false)};
  params[0].max_new_tokens = 40;
  params[0].stop_ids.clear();
  params[1].max_new_tokens = params[2].max_new_tokens = 2;
  params[1].stop_ids.clear();
  params[2].stop_ids.clear();
  const Run run = run_batch(*b, prompts, params, {2, 64});
  CHECK(run.finish_order == std::vector<int>{1, 2, 0});
  // 40 decode steps of request 0 plus its prefill: requests 1 and 2 cost no step of their own.
  CHECK(run.stats.steps == 40);
  CHECK(run.stats.rows == 40 + 2 + 2);
  CHECK(run.stats.generated_tokens == 44);
}

TEST_CASE("scheduler: a KV pool too small for the batch preempts and recomputes, same ids", "[scheduler]") {
  const auto prompts = make_prompts(16, 21);
  const bool sampled = GENERATE(false, true);
  INFO((sampled ? "sampled" : "greedy"));
  std::vector<GenerationParams> params;
  for (size_t i = 0; i < prompts.size(); ++i) {
    params.push_back(params_for(static_cast<int>(i), sampled));
    params.back().max_new_tokens = 12 + static_cast<int>(i % 3) * 10;
    params.back().stop_ids.clear();  // long generations: the pool fills up
  }
  auto reference = cpu_backend(128);
  // 30 blocks of 4 tokens = 120 tokens for 4 sequences whose contexts reach 119 tokens.
  auto b = cpu_backend(128, 30, 4, 4);
  const Run run = run_batch(*b, prompts, params, {4, 16});
  check_equals_alone(run, *reference, prompts, params);
  CHECK(run.stats.preemptions > 0);
  int preempted = 0;
  for (const BatchResult& r : run.results) preempted += r.preemptions;
  CHECK(preempted == run.stats.preemptions);
}

TEST_CASE("scheduler: penalties per request, each with its own history", "[scheduler]") {
  const auto prompts = make_prompts(12, 17);
  std::vector<GenerationParams> params;
  for (size_t i = 0; i < prompts.size(); ++i) {
    params.push_back(params_for(static_cast<int>(i), i % 2 == 1));
    params.back().max_new_tokens = 16;
    params.back().stop_ids.clear();
    SamplingParams& s = params.back().sampling;
    if (i % 3 == 0) s.repetition_penalty = 1.5f;
    if (i % 3 == 1) s.presence_penalty = 1.5f;
    if (i % 3 == 1) s.frequency_penalty = 0.7f;
  }
  auto reference = cpu_backend(128);
  SECTION("no preemption: every penalty as generate() alone") {
    auto b = cpu_backend(128, 0, 4, 3);
    const Run run = run_batch(*b, prompts, params, {3, 12});
    REQUIRE(run.stats.preemptions == 0);
    check_equals_alone(run, *reference, prompts, params);
  }
  SECTION("preempted: every penalty stays exact (prompt back as context, generated ids as counts)") {
    for (size_t i = 0; i < params.size(); ++i) {
      GenerationParams& p = params[i];
      p.max_new_tokens = 22;  // the 97-token prompts reach 119 of the pool's 120 tokens
      // Strong enough that a history missing the generated ids (or their counts) after a recomputation
      // changes the next ids (checked: the test fails when only the prompt is given back, or when the
      // generated ids come back as context instead of counts).
      if (i % 3 == 0) p.sampling.repetition_penalty = 8.0f;
      if (i % 3 == 1) p.sampling.presence_penalty = 4.0f;
      if (i % 3 == 2) p.sampling.frequency_penalty = -3.0f;
    }
    auto b = cpu_backend(128, 30, 4, 4);
    const Run run = run_batch(*b, prompts, params, {4, 16});
    CHECK(run.stats.preemptions > 0);
    check_equals_alone(run, *reference, prompts, params);
  }
}

TEST_CASE("scheduler: requests that can never fit get an error, the rest run", "[scheduler]") {
  // 8 blocks of 4 tokens: the pool (32 tokens) is smaller than the backend's context (128).
  auto b = cpu_backend(128, 8, 4, 2);
  std::vector<std::vector<int32_t>> prompts = {std::vector<int32_t>(33, 7), {}, {5, 320}, {9, 10, 11}, {12, 13}};
  std::vector<GenerationParams> params(prompts.size(), params_for(0, false));
  for (auto& p : params) p.stop_ids.clear();
  params[3].max_new_tokens = 100;  // reaches the pool's 32 tokens: context full, as generate() at a 32-token context
  params[4].max_new_tokens = 0;
  const Run run = run_batch(*b, prompts, params, {2, 8});
  CHECK_THAT(run.results[0].error, Catch::Contains("prompt of 33 tokens exceeds the context of 32 tokens") &&
                                       Catch::Contains("KV pool"));
  CHECK_THAT(run.results[1].error, Catch::Contains("empty"));
  CHECK_THAT(run.results[2].error, Catch::Contains("token id 320 is outside the model's vocabulary of 320"));
  for (int i : {0, 1, 2}) CHECK(run.results[i].ids.empty());
  CHECK(run.results[3].error.empty());
  CHECK(run.results[3].stop == StopReason::ContextFull);
  const GenerationStats want = alone(*cpu_backend(32), prompts[3], params[3]);
  CHECK(want.stop == StopReason::ContextFull);
  CHECK(run.results[3].ids == want.ids);
  CHECK(run.results[4].ids.empty());
  CHECK(run.results[4].stop == StopReason::MaxTokens);
  // Errors are final at once, before any step.
  CHECK(std::vector<int>(run.finish_order.begin(), run.finish_order.begin() + 4) == std::vector<int>{0, 1, 2, 4});
}

TEST_CASE("scheduler: stop ids and a callback that ends a request", "[scheduler]") {
  auto b = cpu_backend(128, 0, 16, 2);
  const auto prompts = make_prompts(2, 3);
  GenerationParams p = params_for(0, false);
  p.max_new_tokens = 20;
  p.stop_ids.clear();
  const GenerationStats free_run = alone(*b, prompts[0], p);
  REQUIRE(free_run.ids.size() == 20);
  // The 5th generated id becomes a stop id: generation ends there, the id included.
  GenerationParams with_stop = p;
  with_stop.stop_ids = {free_run.ids[4]};
  const auto first = std::find(free_run.ids.begin(), free_run.ids.end(), free_run.ids[4]) - free_run.ids.begin();
  Scheduler::Callbacks callbacks;
  callbacks.on_token = [](int r, int32_t) { return r != 1; };  // request 1 is ended by its first token
  Scheduler s(*b, {2, 32}, callbacks);
  s.add({prompts[0], with_stop});
  s.add({prompts[1], p});
  while (s.step()) {
  }
  CHECK(s.result(0).stop == StopReason::StopToken);
  CHECK(s.result(0).ids == std::vector<int32_t>(free_run.ids.begin(), free_run.ids.begin() + first + 1));
  CHECK(s.result(1).stop == StopReason::Cancelled);
  CHECK(s.result(1).ids.size() == 1);
  CHECK(s.result(0).ttft_ms <= s.result(0).finish_ms);
}

TEST_CASE("scheduler: options that would starve a decode row are refused", "[scheduler]") {
  auto b = cpu_backend(64);
  CHECK_THROWS_WITH(Scheduler(*b, {8, 4}, {}), Catch::Contains("--max-batch-tokens"));
  CHECK_THROWS_WITH(Scheduler(*b, {0, 4}, {}), Catch::Contains("--max-batch"));
}

TEST_CASE("scheduler: an interrupted run gives its KV sequences back", "[scheduler]") {
  auto b = cpu_backend(128, 0, 4, 3);
  const auto prompts = make_prompts(6, 1);
  {
    Scheduler s(*b, {3, 16}, {});
    for (size_t i = 0; i < prompts.size(); ++i) s.add({prompts[i], params_for(static_cast<int>(i), false)});
    for (int i = 0; i < 5; ++i) s.step();
    CHECK(s.running() > 0);
  }
  CHECK(b->kv_cache().free_blocks() == b->kv_cache().num_blocks());
}
