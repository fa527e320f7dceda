// The GPU sampler (greedy, seeded draws, penalties) against kernels/sampling_ref.cpp, over row counts and
// vocabularies that take both of its shapes (a row spread over a group of blocks, one block per row),
// plus two checks of the reference itself: its kept set and probabilities against HF's warpers written
// literally (sort, cumulative sum, re-softmax, in double), and the distribution of many GPU draws
// (chi-square).
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
#include "tests/gpu/sampling_test_util.h"

namespace fc::test {
namespace {

// Device scratch for sample(), zeroed as the backend does. counters_zero() after launches checks that
// every launch left the barrier counters of every row's scratch zero (the last block of a group resets
// them; the first two 32-bit words of each row's 28928 bytes, kernels/sampling.cu GroupScratch). The
// partial results after them are overwritten by each launch and need not be zero.
struct Scratch {
  static constexpr size_t kRowBytes = kSampleWorkspaceBytes / 64;
  GuardedBuffer buffer{kSampleWorkspaceBytes};
  Scratch() { CUDA_CHECK(cudaMemset(buffer.get(), 0, kSampleWorkspaceBytes)); }
  bool counters_zero() const {
    std::vector<uint8_t> bytes(kSampleWorkspaceBytes);
    buffer.download(bytes.data(), bytes.size());
    for (size_t row = 0; row < 64; ++row) {
      for (size_t b = 0; b < 8; ++b) {
        if (bytes[row * kRowBytes + b] != 0) return false;
      }
    }
    return true;
  }
};

// sample() on uploaded rows without penalties.
std::vector<int32_t> gpu_sample(const std::vector<float>& logits, int rows, int vocab,
                                const std::vector<SamplingParams>& params, Scratch& scratch) {
  GuardedBuffer d_logits = upload(logits);
  GuardedBuffer d_params = upload(params);
  GuardedBuffer d_ids(rows * sizeof(int32_t));
  sample(d_logits.as<float>(), rows, vocab, d_params.as<SamplingParams>(), SamplingHistory{}, scratch.buffer.get(),
         d_ids.as<int32_t>(), nullptr);
  std::vector<int32_t> ids = download<int32_t>(d_ids, rows);
  CHECK(d_ids.sentinel_intact());
  return ids;
}

}  // namespace

TEST_CASE("greedy rows return the first maximum like torch.argmax", "[gpu][sampling][argmax]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Scratch scratch;
  for (int vocab : {1, 3, 97, 5000, 32000, 128256}) {
    for (int rows : {1, 3, 54, 65}) {
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
      std::vector<SamplingParams> greedy(rows);
      for (auto& p : greedy) p.temperature = 0;
      const std::vector<int32_t> ids = gpu_sample(logits, rows, vocab, greedy, scratch);
      for (int r = 0; r < rows; ++r) {
        CAPTURE(r);
        CHECK(ids[r] == argmax_ref(logits.data() + static_cast<size_t>(r) * vocab, vocab));
      }
    }
  }
  CHECK(scratch.counters_zero());
}

TEST_CASE("sample picks the reference id for the same (seed, step) draw", "[gpu][sampling][sample]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::mt19937_64 rng64(seed);
  const std::vector<SamplingParams> sets = param_sets();
  Scratch scratch;
  int checked = 0;
  // Row counts: 1 and 11 rows are spread over groups of blocks (at 128256: ~126 and ~12 blocks a row),
  // 70 rows (beyond the grouped rows' limit) take one block each.
  for (int vocab : {3, 97, 1000, 5000, 32000, 128256}) {
    for (Logits kind : {Logits::kUniform, Logits::kPeaked, Logits::kTied, Logits::kMasked}) {
      for (int rows : {1, static_cast<int>(sets.size()), 70}) {
      if (rows == 70 && vocab < 32000) continue;
      // Row r takes parameter set r % sets, each row with its own seed and step.
      std::vector<float> logits;
      std::vector<SamplingParams> params(rows);
      for (int r = 0; r < rows; ++r) {
        params[r] = sets[(r + (rows == 1 ? static_cast<int>(rng() % sets.size()) : 0)) % sets.size()];
        params[r].seed = rng64();
        params[r].step = rng64() % 100000;
        const std::vector<float> row = make_logits(vocab, kind, rng);
        logits.insert(logits.end(), row.begin(), row.end());
      }
      const std::vector<int32_t> ids = gpu_sample(logits, rows, vocab, params, scratch);
      // Deterministic: the same launch again gives the same ids.
      CHECK(gpu_sample(logits, rows, vocab, params, scratch) == ids);
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
  }
  CHECK(scratch.counters_zero());
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
  Scratch scratch;
  const std::vector<int32_t> ids = gpu_sample(logits, draws, vocab, params, scratch);

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

TEST_CASE("penalties: the GPU penalises from the history, picks the reference id and counts it",
          "[gpu][sampling][penalty]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::mt19937_64 rng64(seed);
  Scratch scratch;
  int changed_by_penalty = 0, compared = 0;
  for (int vocab : {97, 5000, 128256}) {
    for (int rows : {1, 5, 70}) {
      CAPTURE(vocab, rows);
      // Row r's history is slot (rows - 1 - r) of `slots` slots; one row in four has no penalty.
      const int slots = rows + 2;
      std::vector<float> logits;
      std::vector<SamplingParams> params(rows);
      std::vector<int32_t> slot_of(rows);
      std::vector<uint32_t> history(static_cast<size_t>(slots) * vocab, 0);
      std::uniform_int_distribution<int> pick(0, vocab - 1);
      for (int r = 0; r < rows; ++r) {
        const std::vector<float> row = make_logits(vocab, r % 2 ? Logits::kPeaked : Logits::kUniform, rng);
        logits.insert(logits.end(), row.begin(), row.end());
        SamplingParams& p = params[r];
        p.temperature = r % 3 == 0 ? 0.0f : 0.6f + 0.1f * (r % 4);
        p.top_p = r % 3 == 1 ? 0.9f : 1.0f;
        p.top_k = r % 3 == 2 ? 40 : 0;
        p.seed = rng64();
        p.step = rng64() % 1000;
        if (r % 4 != 3) {
          p.repetition_penalty = 1.0f + 0.3f * (r % 3);
          p.presence_penalty = r % 2 ? 0.5f : -0.5f;
          p.frequency_penalty = r % 2 ? 0.25f : -1.0f;
        }
        slot_of[r] = r % 4 == 3 ? -1 : rows - 1 - r;
        // The history: context ids, generated counts (with ties), and the row's own argmax (so that the
        // penalty changes what greedy picks).
        uint32_t* h = history.data() + static_cast<size_t>(rows - 1 - r) * vocab;
        for (int j = 0; j < std::min(vocab / 4, 600); ++j) h[pick(rng)] |= kHistoryInContext;
        for (int j = 0; j < std::min(vocab / 4, 300); ++j) h[pick(rng)] += 1 + j % 3;
        h[std::max_element(row.begin(), row.end()) - row.begin()] |= kHistoryInContext | 2;
      }
      GuardedBuffer d_logits = upload(logits);
      GuardedBuffer d_params = upload(params);
      GuardedBuffer d_slots = upload(slot_of);
      GuardedBuffer d_history = upload(history);
      GuardedBuffer d_ids(rows * sizeof(int32_t));
      sample(d_logits.as<float>(), rows, vocab, d_params.as<SamplingParams>(),
             SamplingHistory{d_history.as<uint32_t>(), d_slots.as<int32_t>()}, scratch.buffer.get(),
             d_ids.as<int32_t>(), nullptr);
      const std::vector<int32_t> ids = download<int32_t>(d_ids, rows);
      CHECK(d_ids.sentinel_intact());
      CHECK(d_history.sentinel_intact());
      // The logits are read, never written.
      CHECK(download<float>(d_logits, logits.size()) == logits);
      std::vector<uint32_t> expected_history = history;
      for (int r = 0; r < rows; ++r) {
        CAPTURE(r);
        const SamplingParams& p = params[r];
        std::vector<float> row(logits.begin() + static_cast<size_t>(r) * vocab,
                               logits.begin() + static_cast<size_t>(r + 1) * vocab);
        const int unpenalised = sample_ref(row.data(), vocab, p, sampling_random(p.seed, p.step)).id;
        if (slot_of[r] >= 0) {
          uint32_t* h = expected_history.data() + static_cast<size_t>(slot_of[r]) * vocab;
          penalize_ref(row.data(), vocab, h, p);
        }
        const int ref = sample_ref(row.data(), vocab, p, sampling_random(p.seed, p.step)).id;
        CHECK(ids[r] == ref);
        ++compared;
        changed_by_penalty += ref != unpenalised;
        if (slot_of[r] >= 0) {
          uint32_t& word = expected_history[static_cast<size_t>(slot_of[r]) * vocab + ref];
          word = sampling_history_add(word);
        }
      }
      CHECK(download<uint32_t>(d_history, history.size()) == expected_history);
    }
  }
  CHECK(scratch.counters_zero());
  std::printf("[sampling] penalties: %d ids compared, %d of them changed by the penalty\n", compared,
              changed_by_penalty);
  CHECK(changed_by_penalty >= compared / 10);  // the penalties were applied, not ignored
}

}  // namespace fc::test
