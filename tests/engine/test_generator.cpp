// Generation on the CPU backend: the sampler's filters against a brute-force reading of HF's warpers on
// fixed logits, the penalty formulas (and generate with them against a step-by-step reference), determinism under a seed, KV reuse across turns (what
// chat relies on), stop strings split across tokens anywhere, and the bench's byte accounting.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "engine/bench.h"
#include "engine/generator.h"
#include "kernels/sampling.h"
#include "model/llama_weights.h"
#include "tests/test_util.h"

using namespace fc;

namespace {

// HF's warpers in double precision, written from their definitions: softmax(l / T), then keep the
// top_k largest (ties with the k-th kept), then the smallest set of most likely tokens whose mass
// reaches top_p (ties kept together), then tokens with p >= min_p * p_max. Returns the kept set.
std::vector<bool> brute_force_kept(const std::vector<float>& logits, const SamplingParams& p) {
  const int n = static_cast<int>(logits.size());
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  const double lmax = logits[order[0]];
  std::vector<double> prob(n);
  for (int i = 0; i < n; ++i) prob[i] = std::exp((double(logits[i]) - lmax) / p.temperature);
  std::vector<bool> kept(n, true);
  if (p.top_k > 0 && p.top_k < n) {
    const float kth = logits[order[p.top_k - 1]];
    for (int i = 0; i < n; ++i) kept[i] = logits[i] >= kth;
  }
  if (p.top_p < 1) {
    double total = 0;
    for (int i = 0; i < n; ++i) total += kept[i] ? prob[i] : 0;
    // Walk groups of equal logits from the top; a group is kept when the mass strictly above it is
    // still below top_p of the total.
    double above = 0;
    for (int r = 0; r < n;) {
      int e = r;
      double group = 0;
      for (; e < n && logits[order[e]] == logits[order[r]]; ++e) group += kept[order[e]] ? prob[order[e]] : 0.0;
      const bool keep_group = above < p.top_p * total || r == 0;
      for (int j = r; j < e; ++j) kept[order[j]] = kept[order[j]] && keep_group;
      above += group;
      r = e;
    }
  }
  if (p.min_p > 0) {
    for (int i = 0; i < n; ++i) kept[i] = kept[i] && prob[i] >= p.min_p;
  }
  return kept;
}

std::vector<float> fixed_logits(int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, 2.f);
  std::vector<float> l(vocab);
  for (auto& v : l) v = std::round(dist(rng) * 8) / 8;  // coarse values: many exact ties
  return l;
}

}  // namespace

TEST_CASE("sampler: kept set equals HF warpers, draws follow the renormalised probabilities", "[sampling]") {
  const int vocab = 200;
  const std::vector<float> logits = fixed_logits(vocab, 11);
  struct Case { float t; int k; float top_p, min_p; };
  for (const Case& c : {Case{1.0f, 0, 1.0f, 0.0f}, Case{0.7f, 20, 1.0f, 0.0f}, Case{1.0f, 0, 0.8f, 0.0f},
                        Case{1.3f, 0, 1.0f, 0.05f}, Case{0.9f, 40, 0.9f, 0.02f}, Case{1.0f, 1, 1.0f, 0.0f}}) {
    INFO("T=" << c.t << " top_k=" << c.k << " top_p=" << c.top_p << " min_p=" << c.min_p);
    SamplingParams p;
    p.temperature = c.t;
    p.top_k = c.k;
    p.top_p = c.top_p;
    p.min_p = c.min_p;
    const std::vector<bool> kept = brute_force_kept(logits, p);
    const SampleRefResult one = sample_ref(logits.data(), vocab, p, 0);
    REQUIRE(one.weights.size() == size_t(vocab));
    for (int i = 0; i < vocab; ++i) CHECK((one.weights[i] > 0) == bool(kept[i]));
    // Empirical frequencies over many draws against the kept, renormalised softmax.
    std::vector<double> expected(vocab, 0);
    double total = 0;
    const double lmax = *std::max_element(logits.begin(), logits.end());
    for (int i = 0; i < vocab; ++i) total += expected[i] = kept[i] ? std::exp((logits[i] - lmax) / c.t) : 0;
    const int draws = 40000;
    std::vector<int> count(vocab, 0);
    for (int d = 0; d < draws; ++d) ++count[sample_ref(logits.data(), vocab, p, sampling_random(7, d)).id];
    for (int i = 0; i < vocab; ++i) {
      const double q = expected[i] / total;
      if (!kept[i]) {
        CHECK(count[i] == 0);
      } else {
        // 5 standard deviations of a binomial count, plus one draw of slack.
        CHECK(std::fabs(count[i] - q * draws) <= 5 * std::sqrt(draws * q * (1 - q)) + 1);
      }
    }
  }
  SamplingParams greedy;
  greedy.temperature = 0;
  const int argmax = int(std::max_element(logits.begin(), logits.end()) - logits.begin());
  CHECK(sample_ref(logits.data(), vocab, greedy, 12345).id == argmax);
}

TEST_CASE("penalties: HF's repetition rule once per distinct id, OpenAI's presence and frequency on generated ids",
          "[sampling]") {
  std::vector<float> logits = {2.0f, -1.0f, 0.5f, -3.0f, 4.0f, 1.0f};
  const std::vector<float> before = logits;
  // Context: ids 0, 1 (three times), 3, and ids outside the vocabulary (ignored).
  std::vector<uint32_t> history = sampling_history_ref({0, 1, 1, 3, 1, 99, -2}, 6);
  CHECK(history == std::vector<uint32_t>{kHistoryInContext, kHistoryInContext, 0, kHistoryInContext, 0, 0});
  // Generated: id 3 once, id 5 twice.
  history[3] = sampling_history_add(history[3]);
  history[5] = sampling_history_add(sampling_history_add(history[5]));
  CHECK(history[5] == 2);
  CHECK(history[3] == (kHistoryInContext | 1));
  SamplingParams p;
  p.repetition_penalty = 1.5f;
  p.presence_penalty = 0.25f;
  p.frequency_penalty = 0.5f;
  penalize_ref(logits.data(), 6, history.data(), p);
  CHECK(logits[0] == before[0] / 1.5f);                       // context only: repetition
  CHECK(logits[1] == before[1] * 1.5f);                       // negative logit: multiplied
  CHECK(logits[2] == before[2]);                              // never seen
  CHECK(logits[3] == before[3] * 1.5f - 0.5f - 0.25f);        // context and generated once
  CHECK(logits[4] == before[4]);
  CHECK(logits[5] == before[5] / 1.5f - 2 * 0.5f - 0.25f);    // generated twice, not in the context
  // Neutral values change nothing; the count saturates instead of wrapping into the context bit.
  std::vector<float> same = before;
  penalize_ref(same.data(), 6, history.data(), SamplingParams{});
  CHECK(same == before);
  CHECK(!sampling_has_penalty(SamplingParams{}));
  CHECK(sampling_history_add(kHistoryCountMask) == kHistoryCountMask);
  CHECK(sampling_history_add(kHistoryInContext | kHistoryCountMask) == (kHistoryInContext | kHistoryCountMask));
}

TEST_CASE("stop strings are found however the text is split, and never printed", "[generate][stop]") {
  const std::string text = "Hello, wörld!\nEND of story";
  for (const std::vector<std::string>& stops :
       {std::vector<std::string>{"END"}, {"\nEND", "zzz"}, {"wörld"}, {"ö"}, {"Hello"}}) {
    const size_t at = text.find(stops[0]);
    // Every way of cutting the text into two or three pieces (UTF-8 characters cut in half included).
    for (size_t a = 0; a <= text.size(); ++a) {
      for (size_t b = a; b <= text.size(); b += 3) {
        StopStringMatcher m(stops);
        std::string shown = m.push(text.substr(0, a));
        if (!m.stopped()) shown += m.push(text.substr(a, b - a));
        if (!m.stopped()) shown += m.push(text.substr(b));
        shown += m.flush();
        INFO("stop '" << stops[0] << "' cuts at " << a << ", " << b);
        CHECK(m.stopped());
        CHECK(shown == text.substr(0, at));
        CHECK(m.matched() == stops[0]);
      }
    }
  }
  SECTION("a partial match is held back, then released when it does not complete") {
    StopStringMatcher m({"</s>"});
    CHECK(m.push("a </") == "a ");
    CHECK(m.push("b") == "</b");
    CHECK(m.push("<") == "");
    CHECK(m.flush() == "<");
    CHECK(!m.stopped());
  }
  SECTION("the earliest of two stop strings completing in one piece wins") {
    StopStringMatcher m({"cd", "b"});
    CHECK(m.push("abcd") == "a");
    CHECK(m.matched() == "b");
  }
}

namespace {
const Checkpoint& fixture() {
  static const Checkpoint ckpt = open_checkpoint(fc::test::data_path("models/tiny-llama3-gqa"));
  return ckpt;
}

std::unique_ptr<Backend> cpu_backend(int max_context = 128) {
  BackendOptions o;
  o.max_context = max_context;
  return make_cpu_backend(fixture(), o);
}

GenerationStats run(Backend& b, const std::vector<int32_t>& prompt, const GenerationParams& p) {
  const int seq = b.kv_cache().create_sequence();
  auto stats = generate(b, seq, prompt, p, [](int32_t) { return true; });
  b.kv_cache().release_sequence(seq);
  return stats;
}
}  // namespace

TEST_CASE("generate: a seed fixes the text, greedy is the argmax, limits stop it", "[generate]") {
  auto backend = cpu_backend();
  const std::vector<int32_t> prompt = {1, 17, 42, 99, 7, 250};
  GenerationParams p;
  p.max_new_tokens = 20;
  p.sampling.temperature = 1.5f;  // flat enough that two seeds diverge
  p.sampling.seed = 3;
  const auto a = run(*backend, prompt, p), b = run(*backend, prompt, p);
  CHECK(a.ids == b.ids);
  CHECK(a.generated_tokens == 20);
  CHECK(a.stop == StopReason::MaxTokens);
  p.sampling.seed = 4;
  CHECK(run(*backend, prompt, p).ids != a.ids);
  // A fresh backend (new KV pool) gives the same ids again: nothing depends on leftover state.
  p.sampling.seed = 3;
  CHECK(run(*cpu_backend(), prompt, p).ids == a.ids);

  SECTION("greedy = argmax of the logits of a full prefill, step by step") {
    GenerationParams g;
    g.max_new_tokens = 6;
    g.sampling.temperature = 0;
    const auto out = run(*backend, prompt, g);
    std::vector<int32_t> seq = prompt;
    for (int32_t id : out.ids) {
      auto fresh = cpu_backend();
      const int s = fresh->kv_cache().create_sequence();
      std::vector<float> logits;
      fresh->forward({{s}, {int(seq.size())}, seq, false}, logits);
      CHECK(id == int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin()));
      seq.push_back(id);
    }
  }
  SECTION("a stop id ends generation and is reported") {
    GenerationParams g;
    g.max_new_tokens = 20;
    g.sampling.temperature = 0;
    const auto free_run = run(*backend, prompt, g);
    g.stop_ids = {free_run.ids[3]};
    const auto stopped = run(*backend, prompt, g);
    CHECK(stopped.stop == StopReason::StopToken);
    CHECK(stopped.ids.back() == free_run.ids[3]);
    CHECK(stopped.ids.size() <= 4);
  }
  SECTION("the context limit") {
    auto small = cpu_backend(16);
    GenerationParams g;
    g.max_new_tokens = 100;
    const auto out = run(*small, prompt, g);
    CHECK(out.stop == StopReason::ContextFull);
    CHECK(int(prompt.size()) + out.generated_tokens == 17);  // 16 cached + the last sampled one
    CHECK_THROWS_WITH(run(*small, std::vector<int32_t>(17, 5), g), Catch::Contains("exceeds the context of 16"));
  }
}

TEST_CASE("generate: a second turn on a reused KV cache equals one prefill of the whole conversation",
          "[generate][chat]") {
  const std::vector<int32_t> turn1 = {1, 5, 9, 200, 31}, turn2 = {64, 65, 66};
  GenerationParams g;
  g.max_new_tokens = 5;
  g.sampling.temperature = 0.8f;
  g.sampling.seed = 9;
  auto backend = cpu_backend();
  const int seq = backend->kv_cache().create_sequence();
  const auto first = generate(*backend, seq, turn1, g, [](int32_t) { return true; });
  // The last sampled id was never fed back: the next turn starts with it, as chat's common prefix does.
  std::vector<int32_t> second_prompt = {first.ids.back()};
  second_prompt.insert(second_prompt.end(), turn2.begin(), turn2.end());
  const auto second = generate(*backend, seq, second_prompt, g, [](int32_t) { return true; });

  std::vector<int32_t> whole = turn1;
  whole.insert(whole.end(), first.ids.begin(), first.ids.end());
  whole.insert(whole.end(), turn2.begin(), turn2.end());
  auto fresh = cpu_backend();
  CHECK(run(*fresh, whole, g).ids == second.ids);
}

TEST_CASE("generate with penalties = full prefill, penalties on the context and generated ids, then the sampler",
          "[generate][penalty]") {
  const std::vector<int32_t> earlier = {3, 3, 8}, prompt = {1, 17, 42, 99, 7, 250};
  for (float temperature : {0.0f, 0.9f}) {
    CAPTURE(temperature);
    GenerationParams g;
    g.max_new_tokens = 8;
    g.sampling.temperature = temperature;
    g.sampling.seed = 11;
    // Negative presence and frequency penalties reward repeats: strong enough to change a random tiny
    // model's choice (its logits lie close together), which a positive one rarely does in 8 steps.
    g.sampling.repetition_penalty = 1.7f;
    g.sampling.presence_penalty = -1.5f;
    g.sampling.frequency_penalty = -0.5f;
    auto backend = cpu_backend();
    const int seq = backend->kv_cache().create_sequence();
    // `earlier` is what the sequence held before (an earlier turn): context for the repetition penalty.
    std::vector<float> ignored;
    backend->forward({{seq}, {int(earlier.size())}, earlier, false}, ignored);
    const auto out = generate(*backend, seq, prompt, g, [](int32_t) { return true; }, earlier);
    REQUIRE(out.generated_tokens == 8);

    std::vector<int32_t> context = earlier;
    context.insert(context.end(), prompt.begin(), prompt.end());
    std::vector<uint32_t> history = sampling_history_ref(context, backend->config().vocab_size);
    std::vector<int32_t> seq_ids = context;
    std::vector<int32_t> expected;
    for (int step = 0; step < 8; ++step) {
      auto fresh = cpu_backend();
      const int s = fresh->kv_cache().create_sequence();
      std::vector<float> logits;
      fresh->forward({{s}, {int(seq_ids.size())}, seq_ids, false}, logits);
      penalize_ref(logits.data(), int(logits.size()), history.data(), g.sampling);
      SamplingParams at = g.sampling;
      at.step = seq_ids.size();
      const int32_t id = sample_ref(logits.data(), int(logits.size()), at, sampling_random(at.seed, at.step)).id;
      history[id] = sampling_history_add(history[id]);
      expected.push_back(id);
      seq_ids.push_back(id);
    }
    CHECK(out.ids == expected);
    // The penalties change the answer here (else this test would not test them).
    g.sampling.repetition_penalty = 1;
    g.sampling.presence_penalty = g.sampling.frequency_penalty = 0;
    CHECK(run(*cpu_backend(), context, g).ids != expected);
  }
  SECTION("a penalised row needs a history") {
    auto backend = cpu_backend();
    const int seq = backend->kv_cache().create_sequence();
    SamplingParams p;
    p.presence_penalty = 0.5f;
    std::vector<int32_t> ids;
    CHECK_THROWS_WITH(backend->forward_sample({{seq}, {2}, {1, 2}, false}, {p}, ids),
                      Catch::Contains("has a penalty but no history"));
  }
}

TEST_CASE("stop strings typed on a command line: \\n, \\t and \\\\ are escapes, nothing else", "[generate][stop]") {
  CHECK(unescape_stop_string("\\n\\n") == "\n\n");
  CHECK(unescape_stop_string("a\\tb") == "a\tb");
  CHECK(unescape_stop_string("C:\\\\dir") == "C:\\dir");        // \\ is one backslash
  CHECK(unescape_stop_string("\\\\n") == "\\n");                // an escaped backslash, then a plain n
  CHECK(unescape_stop_string("50\\% \\x") == "50\\% \\x");        // other escapes stay as typed
  CHECK(unescape_stop_string("end\\") == "end\\");                // a trailing backslash stays
  CHECK(unescape_stop_string("plain") == "plain");
  CHECK(unescape_stop_string("") == "");
}

TEST_CASE("warm_up runs the request's shapes and leaves the KV cache as it found it", "[generate]") {
  auto backend = cpu_backend();
  KVCacheManager& kv = backend->kv_cache();
  const int free_before = kv.free_blocks();
  GenerationParams p;
  p.sampling.temperature = 0.7f;
  p.sampling.repetition_penalty = 1.3f;
  CHECK(warm_up(*backend, 9, p) >= 0);
  CHECK(kv.free_blocks() == free_before);
  // A sequence created afterwards starts empty and generates what it would have without the warm-up.
  const std::vector<int32_t> prompt = {1, 17, 42, 99};
  p.max_new_tokens = 6;
  p.sampling.seed = 3;
  const auto warmed = run(*backend, prompt, p);
  auto fresh = cpu_backend();
  CHECK(run(*fresh, prompt, p).ids == warmed.ids);
}

TEST_CASE("bench accounting: LLaMA 3.1 8B reads 15.0 GB of weights and 128 KiB of K/V per token", "[bench]") {
  Config c;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_layers = 32;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.vocab_size = 128256;
  CHECK(kv_bytes_per_token(c) == 131072.0);
  // 8.03e9 parameters, minus the 525M-entry embedding table, in bf16.
  CHECK(decode_weight_bytes(c) == Approx(2.0 * (8030261248.0 - 128256.0 * 4096)).epsilon(1e-12));
  // FP8 projections: 6.98e9 e4m3 bytes, 43008 fp32 scales per layer, lm_head and norms in bf16 (1.05 GB).
  CHECK(decode_weight_bytes(c, true) == Approx(1051205632.0 + 6979321856.0 + 32 * 43008 * 4.0).epsilon(1e-12));
  c.tie_word_embeddings = true;  // the table is then read as the lm_head
  CHECK(decode_weight_bytes(c) == Approx(2.0 * (8030261248.0 - 128256.0 * 4096)).epsilon(1e-12));
  CHECK(percentile({5, 1, 4, 2, 3}, 50) == 3);
  CHECK(percentile({5, 1, 4, 2, 3}, 99) == 5);
  CHECK(percentile({5, 1, 4, 2, 3}, 0) == 1);
}
