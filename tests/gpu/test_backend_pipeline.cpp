// The CUDA backend's pipelined sampling (Backend::queue_sample / take_sampled, DecodeOptions::
// async_sample): a decode step queued before the last one's ids reach the host, its token fed on the
// device. Checked against forward_sample step by step on a small synthetic model whose head_dim (128)
// takes the decode fast path (graphs, GEMV, split attention), greedy and sampled; then generate() with
// and without the pipeline (stop ids, a second turn on the reused KV cache); then the misuse errors.
#include <catch2/catch.hpp>

#include <memory>
#include <vector>

#include "engine/backend.h"
#include "engine/generator.h"
#include "tests/gpu/gpu_test_util.h"

namespace fc::test {
namespace {

Config small_config() {
  Config c;
  c.hidden_size = 512;
  c.intermediate_size = 1536;
  c.num_layers = 3;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 128;
  c.vocab_size = 3000;
  c.max_position_embeddings = 1024;
  c.rope_theta = 500000.f;
  return c;
}

std::unique_ptr<Backend> small_backend(uint64_t seed, bool async_sample) {
  BackendOptions o;
  o.max_context = 512;
  o.max_sequences = 4;
  o.show_progress = false;
  o.decode.async_sample = async_sample;
  return make_synthetic_cuda_backend(small_config(), seed, o);
}

}  // namespace

TEST_CASE("CUDA queue_sample: pipelined steps fed on the device give forward_sample's ids", "[pipeline]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  auto backend = small_backend(seed, true);
  Backend& b = *backend;
  REQUIRE(b.pipelines_sampling());
  const bool sampled = GENERATE(false, true);
  const int batch = GENERATE(1, 3);
  INFO((sampled ? "sampled" : "greedy") << ", batch " << batch);
  // Prompts of different lengths (one spans several KV blocks), prefilled together.
  std::vector<std::vector<int32_t>> prompts = {{11, 2999, 7, 400, 1234, 5, 77, 8, 9, 10, 2048, 3, 17},
                                               {4, 5, 6, 7, 8},
                                               std::vector<int32_t>(37, 0)};
  for (size_t i = 0; i < prompts[2].size(); ++i) prompts[2][i] = static_cast<int32_t>((i * 131 + 9) % 3000);
  prompts.resize(batch);
  const int steps = 40;
  KVCacheManager& kv = b.kv_cache();
  // One batch's sampling params, each sequence's position its length after the step.
  auto params_for = [&](const std::vector<int>& seqs, const std::vector<int>& n_new) {
    std::vector<SamplingParams> ps(seqs.size());
    for (size_t i = 0; i < seqs.size(); ++i) {
      ps[i].temperature = sampled ? 1.0f : 0.f;
      ps[i].seed = seed + i;
      ps[i].step = static_cast<uint64_t>(kv.length(seqs[i]) + n_new[i]);
    }
    return ps;
  };
  auto prefill_batch = [&](std::vector<int>& seqs) {
    ForwardBatch f;
    for (const auto& p : prompts) {
      seqs.push_back(kv.create_sequence());
      f.seq_ids.push_back(seqs.back());
      f.n_tokens.push_back(static_cast<int>(p.size()));
      f.tokens.insert(f.tokens.end(), p.begin(), p.end());
    }
    return f;
  };
  const std::vector<int> ones(batch, 1);

  // Synchronous: each step's ids back on the host, then fed.
  std::vector<int> seqs_a;
  ForwardBatch first = prefill_batch(seqs_a);
  std::vector<int32_t> ids;
  std::vector<std::vector<int32_t>> ids_a;
  b.forward_sample(first, params_for(seqs_a, first.n_tokens), ids);
  ids_a.push_back(ids);
  for (int k = 1; k < steps; ++k) {
    b.forward_sample({seqs_a, ones, ids, false}, params_for(seqs_a, ones), ids);
    ids_a.push_back(ids);
  }

  // Pipelined: step k + 1 queued (fed from step k's ids on the device) before step k is taken.
  std::vector<int> seqs_b;
  first = prefill_batch(seqs_b);
  std::vector<std::vector<int32_t>> ids_b;
  b.queue_sample(first, params_for(seqs_b, first.n_tokens), false);
  const std::vector<int32_t> placeholder(batch, 0);
  for (int k = 0; k < steps; ++k) {
    if (k + 1 < steps) b.queue_sample({seqs_b, ones, placeholder, false}, params_for(seqs_b, ones), true);
    b.take_sampled(ids);
    REQUIRE(int(ids.size()) == batch);
    ids_b.push_back(ids);
  }
  CHECK(ids_b == ids_a);
  for (int i = 0; i < batch; ++i) CHECK(kv.length(seqs_b[i]) == kv.length(seqs_a[i]));
}

TEST_CASE("CUDA generate with --async-sample: the same ids, stop and KV as without", "[pipeline]") {
  const uint64_t seed = fresh_seed();
  INFO("seed " << seed);
  auto plain = small_backend(seed, false);
  auto piped = small_backend(seed, true);
  REQUIRE_FALSE(plain->pipelines_sampling());
  GenerationParams g;
  g.max_new_tokens = 30;
  g.sampling.temperature = 0.8f;
  g.sampling.seed = seed;
  const std::vector<int32_t> prompt = {1, 2, 3, 500, 600, 700, 42};
  auto run = [&](Backend& b, int seq, const std::vector<int32_t>& p, const GenerationParams& params) {
    return generate(b, seq, p, params, [](int32_t) { return true; });
  };
  const int sa = plain->kv_cache().create_sequence(), sb = piped->kv_cache().create_sequence();
  SECTION("to the token limit, then a second turn") {}
  SECTION("a stop id") {
    const int probe = plain->kv_cache().create_sequence();
    g.stop_ids = {run(*plain, probe, prompt, g).ids[6]};
    plain->kv_cache().release_sequence(probe);
  }
  const GenerationStats a = run(*plain, sa, prompt, g), b = run(*piped, sb, prompt, g);
  CHECK(b.ids == a.ids);
  CHECK(b.stop == a.stop);
  CHECK(piped->kv_cache().length(sb) == plain->kv_cache().length(sa));
  GenerationParams g2 = g;
  g2.stop_ids.clear();
  g2.max_new_tokens = 8;
  const std::vector<int32_t> turn2 = {a.ids.back(), 90, 91, 92};
  CHECK(run(*piped, sb, turn2, g2).ids == run(*plain, sa, turn2, g2).ids);
}

TEST_CASE("CUDA queue_sample refuses misuse with a message, and recovers", "[pipeline]") {
  auto backend = small_backend(fresh_seed(), true);
  Backend& b = *backend;
  const int seq = b.kv_cache().create_sequence();
  const std::vector<SamplingParams> greedy = {SamplingParams{0.f}};
  std::vector<int32_t> ids;
  std::vector<float> logits;
  CHECK_THROWS_WITH(b.take_sampled(ids), Catch::Contains("no call is queued"));
  CHECK_THROWS_WITH(b.queue_sample({{seq}, {1}, {0}, false}, greedy, true), Catch::Contains("no queued call"));
  b.queue_sample({{seq}, {2}, {5, 6}, false}, greedy, false);
  CHECK_THROWS_WITH(b.queue_sample({{seq}, {2}, {0, 0}, false}, greedy, true), Catch::Contains("one token each"));
  b.queue_sample({{seq}, {1}, {0}, false}, greedy, true);
  CHECK_THROWS_WITH(b.queue_sample({{seq}, {1}, {0}, false}, greedy, true), Catch::Contains("already queued"));
  CHECK_THROWS_WITH(b.forward({{seq}, {1}, {3}, false}, logits), Catch::Contains("were not taken"));
  CHECK_THROWS_WITH(b.forward_sample({{seq}, {1}, {3}, false}, greedy, ids), Catch::Contains("were not taken"));
  b.take_sampled(ids);
  b.take_sampled(ids);
  CHECK(b.kv_cache().length(seq) == 3);
  b.forward_sample({{seq}, {1}, {ids[0]}, false}, greedy, ids);  // usable again
  CHECK(b.kv_cache().length(seq) == 4);
  // A synchronous call in between: nothing queued is left to feed from.
  CHECK_THROWS_WITH(b.queue_sample({{seq}, {1}, {0}, false}, greedy, true), Catch::Contains("no queued call"));
}

}  // namespace fc::test
