// The CPU backend's batching: several sequences of mixed lengths in one forward call, chunked prefill
// and block sizes must all give the logits of separate full prefills (the validate fixtures check
// those against transformers).
#include <catch2/catch.hpp>

#include <cmath>
#include <random>

#include "core/error.h"
#include "engine/backend.h"
#include "tests/test_util.h"

using namespace fc;
using Catch::Matchers::Contains;

namespace {

std::vector<int32_t> random_ids(int n, int vocab, std::mt19937& rng) {
  std::uniform_int_distribution<int32_t> dist(0, vocab - 1);
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = dist(rng);
  return ids;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, double(std::fabs(a[i] - b[i])));
  return worst;
}

// Logits at every position of one sequence, prefilled in one call on a fresh backend.
std::vector<float> full_prefill(const Checkpoint& ckpt, const std::vector<int32_t>& ids) {
  BackendOptions o;
  o.max_context = 128;
  auto backend = make_cpu_backend(ckpt, o);
  const int seq = backend->kv_cache().create_sequence();
  std::vector<float> logits;
  backend->forward({{seq}, {int(ids.size())}, ids, true}, logits);
  return logits;
}

}  // namespace

TEST_CASE("CPU backend: mixed-length batch and chunked prefill equal separate prefills", "[cpu_backend]") {
  const Checkpoint ckpt = open_checkpoint(fc::test::data_path("models/tiny-llama3-gqa"));
  const int vocab = ckpt.config.vocab_size;
  std::mt19937 rng(1234);
  const std::vector<int> lengths{1, 3, 17, 33};
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<float>> expected;
  for (int n : lengths) {
    prompts.push_back(random_ids(n, vocab, rng));
    expected.push_back(full_prefill(ckpt, prompts.back()));
  }
  for (int block_size : {1, 16}) {
    INFO("block size " << block_size);
    BackendOptions o;
    o.kv_block_size = block_size;
    o.max_context = 64;
    o.max_sequences = 4;
    auto backend = make_cpu_backend(ckpt, o);
    KVCacheManager& kv = backend->kv_cache();
    // Stage 1: every sequence's first part in one batch; stage 2: the rest, again batched.
    ForwardBatch first, second;
    first.all_logits = second.all_logits = true;
    std::vector<int> ids;
    for (size_t s = 0; s < prompts.size(); ++s) {
      const int id = kv.create_sequence();
      ids.push_back(id);
      const int split = std::max(1, int(prompts[s].size()) / 2);
      first.seq_ids.push_back(id);
      first.n_tokens.push_back(split);
      first.tokens.insert(first.tokens.end(), prompts[s].begin(), prompts[s].begin() + split);
      if (split < int(prompts[s].size())) {
        second.seq_ids.push_back(id);
        second.n_tokens.push_back(int(prompts[s].size()) - split);
        second.tokens.insert(second.tokens.end(), prompts[s].begin() + split, prompts[s].end());
      }
    }
    std::vector<float> logits1, logits2;
    backend->forward(first, logits1);
    backend->forward(second, logits2);
    size_t row1 = 0, row2 = 0;
    for (size_t s = 0; s < prompts.size(); ++s) {
      const int split = first.n_tokens[s];
      const int n = int(prompts[s].size());
      std::vector<float> got(logits1.begin() + row1 * vocab, logits1.begin() + (row1 + split) * vocab);
      row1 += split;
      if (split < n) {
        got.insert(got.end(), logits2.begin() + row2 * vocab, logits2.begin() + (row2 + n - split) * vocab);
        row2 += n - split;
      }
      INFO("sequence of " << n << " tokens");
      CHECK(max_diff(got, expected[s]) < 2e-5);
      CHECK(kv.length(ids[s]) == n);
    }
  }
}

TEST_CASE("CPU backend: bad token ids and over-long prompts are refused before any work", "[cpu_backend]") {
  const Checkpoint ckpt = open_checkpoint(fc::test::data_path("models/tiny-llama3-gqa"));
  BackendOptions o;
  o.max_context = 16;
  auto backend = make_cpu_backend(ckpt, o);
  const int seq = backend->kv_cache().create_sequence();
  std::vector<float> logits;
  CHECK_THROWS_WITH(backend->forward({{seq}, {2}, {5, 320}, false}, logits),
                    Contains("token id 320 out of range (vocab size 320)"));
  CHECK_THROWS_WITH(backend->forward({{seq}, {17}, std::vector<int32_t>(17, 1), false}, logits),
                    Contains("exceeds the context limit of 16 tokens"));
  CHECK(backend->kv_cache().length(seq) == 0);
  backend->forward({{seq}, {16}, std::vector<int32_t>(16, 1), false}, logits);
  CHECK(logits.size() == size_t(ckpt.config.vocab_size));
  CHECK(backend->kv_cache().length(seq) == 16);
}
