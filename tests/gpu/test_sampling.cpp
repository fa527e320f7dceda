// GPU argmax, sampler and repetition penalty against kernels/sampling_ref.cpp, plus two checks of the
// reference itself: its kept set and probabilities against HF's warpers written literally (sort,
// cumulative sum, re-softmax, in double), and the distribution of many GPU draws (chi-square).
//
// The sampler's draw for (seed, step) is computed with the same bits on both sides (Philox, the
// library-free sampling_exp2, integer weights), so ids must match exactly, every one.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/elementwise.h"
#include "kernels/sampling.cuh"
#include "kernels/sampling.h"
#include "tests/gpu/gpu_test_util.h"

namespace fc::test {
namespace {

template <typename T>
GuardedBuffer upload(const std::vector<T>& values) {
  GuardedBuffer b(values.size() * sizeof(T));
  b.upload(values.data(), values.size() * sizeof(T));
  return b;
}

template <typename T>
std::vector<T> download(const GuardedBuffer& b, size_t count) {
  std::vector<T> out(count);
  b.download(out.data(), count * sizeof(T));
  return out;
}

enum class Logits { kUniform, kPeaked, kTied, kMasked };

// One row of logits of a given character.
std::vector<float> make_logits(int vocab, Logits kind, std::mt19937& rng) {
  std::vector<float> l(vocab);
  std::uniform_real_distribution<float> uniform(-5.f, 5.f);
  std::normal_distribution<float> normal(0.f, 3.f);
  for (auto& v : l) v = kind == Logits::kUniform ? uniform(rng) : normal(rng);
  if (kind == Logits::kPeaked) {  // a few dominant tokens, as after a confident context
    std::uniform_int_distribution<int> pick(0, vocab - 1);
    for (int j = 0; j < 4; ++j) l[pick(rng)] = 12.f + j;
  }
  if (kind == Logits::kTied) {  // quarter steps: many exactly equal logits (tie groups in top-k/top-p)
    for (auto& v : l) v = std::round(v * 4.f) / 4.f;
  }
  if (kind == Logits::kMasked) {  // masked tokens; at least one finite
    std::bernoulli_distribution mask(0.3);
    for (auto& v : l) {
      if (mask(rng)) v = -INFINITY;
    }
    l[vocab / 2] = 1.0f;
  }
  return l;
}

std::vector<SamplingParams> param_sets() {
  std::vector<SamplingParams> sets;
  auto add = [&](float t, int k, float p, float min_p) {
    SamplingParams s;
    s.temperature = t;
    s.top_k = k;
    s.top_p = p;
    s.min_p = min_p;
    sets.push_back(s);
  };
  add(1.0f, 0, 1.0f, 0.0f);        // plain softmax sampling
  add(0.7f, 50, 1.0f, 0.0f);       // top-k
  add(1.3f, 0, 0.9f, 0.0f);        // top-p over the whole vocabulary
  add(0.8f, 40, 0.95f, 0.05f);     // all filters
  add(1.0f, 0, 1.0f, 0.1f);        // min-p
  add(1.0f, 1, 1.0f, 0.0f);        // top-k = 1 (ties with the max all kept)
  add(0.0f, 0, 1.0f, 0.0f);        // greedy
  add(1.0f, 0, 1e-4f, 0.0f);       // top-p so small only the top group survives
  add(2.0f, 3000, 0.5f, 0.0f);     // k above the shared-memory candidate capacity (2048)
  add(0.6f, 2000, 0.99f, 0.0f);    // top-p after a large top-k
  add(1e-39f, 10, 0.9f, 0.0f);     // log2(e)/T overflows fp32: greedy
  return sets;
}

}  // namespace

TEST_CASE("argmax returns the first maximum like torch.argmax", "[gpu][sampling][argmax]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (int vocab : {1, 3, 97, 32000, 128256}) {
    for (int rows : {1, 3, 54}) {
      CAPTURE(vocab, rows);
      std::vector<float> logits;
      for (int r = 0; r < rows; ++r) {
        std::vector<float> row = make_logits(vocab, r % 2 ? Logits::kMasked : Logits::kUniform, rng);
        if (vocab > 2 && r % 3 == 0) {  // a planted tie: the first of the two must win
          std::uniform_int_distribution<int> pick(0, vocab - 1);
          const int a = pick(rng), b = pick(rng);
          row[a] = row[b] = 100.f;
        }
        logits.insert(logits.end(), row.begin(), row.end());
      }
      GuardedBuffer d_logits = upload(logits);
      GuardedBuffer d_ids(rows * sizeof(int32_t));
      argmax(d_logits.as<float>(), rows, vocab, d_ids.as<int32_t>(), nullptr);
      const std::vector<int32_t> ids = download<int32_t>(d_ids, rows);
      for (int r = 0; r < rows; ++r) {
        CAPTURE(r);
        CHECK(ids[r] == argmax_ref(logits.data() + static_cast<size_t>(r) * vocab, vocab));
      }
      CHECK(d_ids.sentinel_intact());
    }
  }
}

TEST_CASE("sample picks the reference id for the same (seed, step) draw", "[gpu][sampling][sample]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::mt19937_64 rng64(seed);
  const std::vector<SamplingParams> sets = param_sets();
  int checked = 0;
  for (int vocab : {3, 97, 1000, 32000, 128256}) {
    for (Logits kind : {Logits::kUniform, Logits::kPeaked, Logits::kTied, Logits::kMasked}) {
      // One row per parameter set, each with its own seed and step.
      const int rows = static_cast<int>(sets.size());
      std::vector<float> logits;
      std::vector<SamplingParams> params = sets;
      for (auto& p : params) {
        p.seed = rng64();
        p.step = rng64() % 100000;
        const std::vector<float> row = make_logits(vocab, kind, rng);
        logits.insert(logits.end(), row.begin(), row.end());
      }
      GuardedBuffer d_logits = upload(logits);
      GuardedBuffer d_params = upload(params);
      GuardedBuffer d_ids(rows * sizeof(int32_t));
      sample(d_logits.as<float>(), rows, vocab, d_params.as<SamplingParams>(), d_ids.as<int32_t>(), nullptr);
      const std::vector<int32_t> ids = download<int32_t>(d_ids, rows);
      CHECK(d_ids.sentinel_intact());
      // Deterministic: the same launch again gives the same ids.
      d_ids.poison();
      sample(d_logits.as<float>(), rows, vocab, d_params.as<SamplingParams>(), d_ids.as<int32_t>(), nullptr);
      CHECK(download<int32_t>(d_ids, rows) == ids);
      for (int r = 0; r < rows; ++r) {
        const SamplingParams& p = params[r];
        CAPTURE(vocab, static_cast<int>(kind), r, p.temperature, p.top_k, p.top_p, p.min_p, p.seed, p.step);
        const SampleRefResult ref =
            sample_ref(logits.data() + static_cast<size_t>(r) * vocab, vocab, p, sampling_random(p.seed, p.step));
        CAPTURE(ref.id, ids[r], ref.total, ref.target, ref.cum_before, ref.cum_after);
        ++checked;
        CHECK(ids[r] == ref.id);
      }
    }
  }
  std::printf("[sampling] %d draws compared with the reference\n", checked);
}

namespace {

struct HfResult {
  std::vector<double> probs;
  // A top-p or min-p decision so close to its threshold (1e-5) that fp32 and double may disagree: the
  // caller draws new logits rather than compare a coin toss.
  bool ambiguous = false;
};

// HF's warpers written literally (transformers TemperatureLogitsWarper, TopKLogitsWarper,
// TopPLogitsWarper, MinPLogitsWarper), in double: the final probability of every token.
HfResult hf_probs(const std::vector<float>& logits, const SamplingParams& p) {
  HfResult result;
  const int vocab = static_cast<int>(logits.size());
  std::vector<double> s(vocab);
  for (int i = 0; i < vocab; ++i) s[i] = static_cast<double>(logits[i]) / p.temperature;
  auto softmax = [&](const std::vector<double>& x) {
    const double m = *std::max_element(x.begin(), x.end());
    std::vector<double> e(x.size());
    double sum = 0;
    for (size_t i = 0; i < x.size(); ++i) sum += e[i] = std::isinf(x[i]) ? 0.0 : std::exp(x[i] - m);
    for (auto& v : e) v /= sum;
    return e;
  };
  if (p.top_k > 0 && p.top_k < vocab) {
    std::vector<double> sorted = s;
    std::sort(sorted.begin(), sorted.end(), std::greater<double>());
    const double kth = sorted[p.top_k - 1];
    for (auto& v : s) {
      if (v < kth) v = -INFINITY;
    }
  }
  if (p.top_p < 1.0f) {
    std::vector<int> order(vocab);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return s[a] < s[b]; });  // ascending
    const std::vector<double> probs = softmax(s);
    double cum = 0;
    for (int j = 0; j < vocab; ++j) {
      cum += probs[order[j]];
      if (std::fabs(cum - (1.0 - p.top_p)) < 1e-5) result.ambiguous = true;
      const bool keep_last = j == vocab - 1;  // min_tokens_to_keep = 1
      if (cum <= 1.0 - p.top_p && !keep_last) s[order[j]] = -INFINITY;
    }
  }
  if (p.min_p > 0.0f) {
    const std::vector<double> probs = softmax(s);
    const double top = *std::max_element(probs.begin(), probs.end());
    for (int i = 0; i < vocab; ++i) {
      if (std::fabs(probs[i] / top - p.min_p) < 1e-5 * p.min_p) result.ambiguous = true;
      if (probs[i] < p.min_p * top) s[i] = -INFINITY;
    }
  }
  result.probs = softmax(s);
  return result;
}

}  // namespace

TEST_CASE("sample_ref's distribution is HF's warper chain", "[gpu][sampling][reference]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  double max_err = 0;
  for (const SamplingParams& p : param_sets()) {
    if (!(p.temperature > 0.0f) || p.temperature < 1e-6f) continue;  // greedy cases: no distribution
    // Up to a few thousand tokens: in a 128K vocabulary the tokens at the top-p edge are so many and so
    // unlikely that where fp32 and double cut is a coin toss (see HfResult::ambiguous).
    for (int vocab : {97, 1000, 4096}) {
      CAPTURE(p.temperature, p.top_k, p.top_p, p.min_p, vocab);
      std::vector<float> logits;
      HfResult hf_result;
      for (int attempt = 0; attempt < 50; ++attempt) {
        logits = make_logits(vocab, Logits::kPeaked, rng);
        hf_result = hf_probs(logits, p);
        if (!hf_result.ambiguous) break;
      }
      REQUIRE_FALSE(hf_result.ambiguous);
      const std::vector<double>& hf = hf_result.probs;
      const SampleRefResult ref = sample_ref(logits.data(), vocab, p, 0);
      int set_mismatches = 0;
      for (int i = 0; i < vocab; ++i) {
        const double ours = static_cast<double>(ref.weights[i]) / static_cast<double>(ref.total);
        // The same kept set both ways: a token we keep (weight >= 1, so e_i >= 2^-32) that HF filtered out
        // is always a mismatch, however unlikely (the value check below lets through up to 1e-6); a token
        // HF keeps that we give weight 0 is one only above 1e-9 (below 2^-32 of the top one weighs 0 by
        // definition, and HF's renormalised p_i <= e_i).
        if (ours > 0 && hf[i] == 0) ++set_mismatches;
        if (ours == 0 && hf[i] > 1e-9) ++set_mismatches;
        max_err = std::max(max_err, std::fabs(ours - hf[i]));
        CHECK(std::fabs(ours - hf[i]) <= 1e-6 + 1e-5 * hf[i]);
      }
      CHECK(set_mismatches == 0);
    }
  }
  std::printf("[sampling] reference vs HF warpers: max |p - p_hf| %.3g\n", max_err);
}

TEST_CASE("GPU draws follow the reference distribution (chi-square)", "[gpu][sampling][distribution]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  const int vocab = 500, draws = 60000;
  std::normal_distribution<float> normal(0.f, 2.f);
  std::vector<float> row(vocab);
  for (auto& v : row) v = normal(rng);
  SamplingParams p;
  p.temperature = 0.9f;
  p.top_k = 100;
  p.top_p = 0.9f;
  p.min_p = 0.02f;
  p.seed = (static_cast<uint64_t>(rng()) << 32) | rng();
  std::vector<float> logits;
  logits.reserve(static_cast<size_t>(vocab) * draws);
  std::vector<SamplingParams> params(draws, p);
  for (int d = 0; d < draws; ++d) {
    logits.insert(logits.end(), row.begin(), row.end());
    params[d].step = d;
  }
  GuardedBuffer d_logits = upload(logits);
  GuardedBuffer d_params = upload(params);
  GuardedBuffer d_ids(draws * sizeof(int32_t));
  sample(d_logits.as<float>(), draws, vocab, d_params.as<SamplingParams>(), d_ids.as<int32_t>(), nullptr);
  const std::vector<int32_t> ids = download<int32_t>(d_ids, draws);
  CHECK(d_ids.sentinel_intact());

  const SampleRefResult ref = sample_ref(row.data(), vocab, p, 0);
  std::vector<int> counts(vocab, 0);
  for (int32_t id : ids) {
    REQUIRE(id >= 0);
    REQUIRE(id < vocab);
    ++counts[id];
  }
  double chi2 = 0;
  int bins = 0, kept = 0;
  double pooled_expected = 0, pooled_observed = 0;
  for (int i = 0; i < vocab; ++i) {
    const double prob = static_cast<double>(ref.weights[i]) / static_cast<double>(ref.total);
    if (prob == 0) {
      CAPTURE(i);
      CHECK(counts[i] == 0);  // a filtered token is never drawn
      continue;
    }
    ++kept;
    const double expected = prob * draws;
    if (expected < 5) {  // pool the rare tokens into one bin
      pooled_expected += expected;
      pooled_observed += counts[i];
      continue;
    }
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
    ++bins;
  }
  if (pooled_expected >= 5) {
    chi2 += (pooled_observed - pooled_expected) * (pooled_observed - pooled_expected) / pooled_expected;
    ++bins;
  }
  const int dof = bins - 1;
  // Under the null, chi2 ~ dof +- sqrt(2 dof); 8 standard deviations is a false alarm rate < 1e-9.
  const double limit = dof + 8.0 * std::sqrt(2.0 * dof);
  std::printf("[sampling] %d draws over %d kept tokens: chi2 %.1f, dof %d (limit %.1f)\n", draws, kept, chi2, dof,
              limit);
  CHECK(dof >= 5);
  CHECK(chi2 < limit);
}

TEST_CASE("repetition_penalty applies HF's rule once per distinct id", "[gpu][sampling][penalty]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (int vocab : {97, 32000, 128256}) {
    CAPTURE(vocab);
    const int rows = 4;
    std::vector<float> logits;
    for (int r = 0; r < rows; ++r) {
      const std::vector<float> row = make_logits(vocab, Logits::kUniform, rng);
      logits.insert(logits.end(), row.begin(), row.end());
    }
    const std::vector<float> penalties = {1.3f, 0.7f, 1.0f, 2.0f};
    std::vector<int32_t> ids, offsets = {0};
    std::uniform_int_distribution<int32_t> pick(0, vocab - 1);
    for (int r = 0; r < rows; ++r) {
      const int count = r == 2 ? 0 : 300 * (r + 1);  // row 2: no history
      for (int j = 0; j < count; ++j) {
        int32_t id = pick(rng);
        if (j % 7 == 3 && !ids.empty()) id = ids[ids.size() - 1 - j % 5 % ids.size()];  // duplicates
        if (j == 5) id = -3;                                                        // ignored
        if (j == 6) id = vocab + 11;                                                // ignored
        ids.push_back(id);
      }
      offsets.push_back(static_cast<int32_t>(ids.size()));
    }
    if (ids.empty()) ids.push_back(0);  // keep the buffer non-empty
    GuardedBuffer d_logits = upload(logits);
    GuardedBuffer d_ids = upload(ids);
    GuardedBuffer d_offsets = upload(offsets);
    GuardedBuffer d_penalties = upload(penalties);
    repetition_penalty(d_logits.as<float>(), rows, vocab, d_ids.as<int32_t>(), d_offsets.as<int32_t>(),
                       d_penalties.as<float>(), nullptr);
    std::vector<float> ref = logits;
    repetition_penalty_ref(ref.data(), rows, vocab, ids.data(), offsets.data(), penalties.data());
    const std::vector<float> got = download<float>(d_logits, logits.size());
    const CompareResult r = compare(got, ref, 0, 0);  // one multiply or divide per element: exact
    INFO(r.summary);
    CHECK(r.ok);
    CHECK(d_logits.sentinel_intact());
  }
}

}  // namespace fc::test
