// The validate verdict (engine/validation.h) on synthetic logits, where the size of each error is known:
// against HF's bf16 error (pass within 1.5x, fail at 2x, fail on wrong logits), the bf16 bounds used
// without HF bf16 logits (rounding-like noise passes, bug-sized errors fail, top-1 judged as a rate),
// and the CPU's fp32 bounds (unchanged: any top-1 flip fails).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "engine/validation.h"

using namespace fc;
using Catch::Matchers::Contains;

namespace {

constexpr int kRows = 500, kVocab = 256;

// Reference "fp32" logits: N(0, 2) with one clear winner per row (as a model's next-token logits).
std::vector<float> reference_logits(std::mt19937& rng) {
  std::normal_distribution<float> normal(0.f, 2.f);
  std::vector<float> ref(static_cast<size_t>(kRows) * kVocab);
  for (auto& v : ref) v = normal(rng);
  return ref;
}

// ref + independent noise of relative size `rel` (per-element std rel * rms(ref)): what rounding to bf16
// at every layer looks like at the output, a small, unstructured error.
std::vector<float> with_noise(const std::vector<float>& ref, double rel, std::mt19937& rng) {
  double ss = 0;
  for (float v : ref) ss += double(v) * v;
  std::normal_distribution<double> normal(0.0, rel * std::sqrt(ss / ref.size()));
  std::vector<float> out(ref);
  for (auto& v : out) v = static_cast<float>(v + normal(rng));
  return out;
}

const ValidationTolerance kGpu = default_tolerance(DeviceKind::Cuda);
const ValidationTolerance kCpu = default_tolerance(DeviceKind::Cpu);

PathVerdict judge3(const std::vector<float>& ours, const std::vector<float>& ref, const std::vector<float>* bf16,
                   const ValidationTolerance& t = kGpu) {
  return judge_logits(ours.data(), ref.data(), bf16 ? bf16->data() : nullptr, kRows, kVocab, t);
}

}  // namespace

TEST_CASE("verdict with HF bf16 logits: within 1.5x of HF bf16's error passes, 2x fails", "[validate]") {
  std::mt19937 rng(17);
  const std::vector<float> ref = reference_logits(rng);
  const std::vector<float> hf_bf16 = with_noise(ref, 2e-2, rng);
  struct Case {
    double factor;  // our noise / HF bf16's
    bool pass;
  };
  // KL grows as the square of the logit error: 1.2x the error is 1.44x the KL, still within 1.5x;
  // 2x the error is 2x rel and 4x KL.
  for (const Case c : {Case{0.5, true}, Case{0.8, true}, Case{1.0, true}, Case{1.2, true}, Case{2.0, false}}) {
    INFO("our error " << c.factor << "x HF bf16's");
    const PathVerdict v = judge3(with_noise(ref, 2e-2 * c.factor, rng), ref, &hf_bf16);
    INFO(v.failed);
    CHECK(v.has_hf_bf16);
    CHECK(v.rel_ratio == Approx(c.factor).epsilon(0.05));
    CHECK(v.kl_ratio == Approx(c.factor * c.factor).epsilon(0.1));
    CHECK(v.ok == c.pass);
    if (!c.pass) CHECK_THAT(v.failed, Contains("HF bf16's (limit 1.50x)"));
  }
  // HF bf16 figures are the same whichever side is judged.
  const PathVerdict v = judge3(ref, ref, &hf_bf16);
  CHECK(v.ok);
  CHECK(v.hf_bf16.rel_err == Approx(2e-2).epsilon(0.05));
  CHECK(v.rel_ratio == 0);
}

TEST_CASE("verdict with HF bf16 logits: wrong logits fail", "[validate]") {
  std::mt19937 rng(18);
  const std::vector<float> ref = reference_logits(rng);
  const std::vector<float> hf_bf16 = with_noise(ref, 2e-2, rng);
  SECTION("a shuffled vocabulary (wrong lm_head row order)") {
    std::vector<float> ours(ref);
    std::vector<int> perm(kVocab);
    for (int j = 0; j < kVocab; ++j) perm[j] = j;
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int r = 0; r < kRows; ++r) {
      for (int j = 0; j < kVocab; ++j) ours[size_t(r) * kVocab + j] = ref[size_t(r) * kVocab + perm[j]];
    }
    const PathVerdict v = judge3(ours, ref, &hf_bf16);
    CHECK_FALSE(v.ok);
    CHECK(v.rel_ratio > 10);
  }
  SECTION("the logits of the previous position (an off-by-one in positions)") {
    std::vector<float> ours(ref);
    std::copy(ref.begin(), ref.end() - kVocab, ours.begin() + kVocab);
    const PathVerdict v = judge3(ours, ref, &hf_bf16);
    CHECK_FALSE(v.ok);
    CHECK_THAT(v.failed, Contains("rel_err") && Contains("mean KL"));
  }
  SECTION("NaN at one element") {
    std::vector<float> ours(ref);
    ours[1234] = NAN;
    const PathVerdict v = judge3(ours, ref, &hf_bf16);
    CHECK_FALSE(v.ok);
    CHECK_THAT(v.failed, Contains("NaN"));
  }
  SECTION("HF bf16 logits with NaN are no yardstick: the absolute bounds judge") {
    std::vector<float> bad_hf(hf_bf16);
    bad_hf[7] = NAN;
    const PathVerdict v = judge3(with_noise(ref, 1e-2, rng), ref, &bad_hf);
    CHECK_FALSE(v.has_hf_bf16);
    CHECK(v.ok);
    CHECK_FALSE(judge3(with_noise(ref, 0.3, rng), ref, &bad_hf).ok);
  }
  SECTION("one position's logits garbage: the worst-cosine sanity bound") {
    std::vector<float> ours(ref);
    std::mt19937 other(99);
    std::normal_distribution<float> normal(0.f, 2.f);
    for (int j = 0; j < kVocab; ++j) ours[size_t(250) * kVocab + j] = normal(other);
    const PathVerdict v = judge3(ours, ref, &hf_bf16);
    CHECK_FALSE(v.ok);
    CHECK_THAT(v.failed, Contains("worst cosine"));
  }
}

TEST_CASE("verdict without HF bf16 logits: bf16-like noise passes, bug-sized errors fail", "[validate]") {
  std::mt19937 rng(19);
  const std::vector<float> ref = reference_logits(rng);
  SECTION("noise at the tiny fixtures' level (1e-2) and at the random 8B's (5.4e-2, 9.5e-2 for HF bf16)") {
    for (double rel : {1e-2, 5.4e-2, 9.5e-2}) {
      INFO("rel " << rel);
      const PathVerdict v = judge3(with_noise(ref, rel, rng), ref, nullptr);
      INFO(v.failed << " top-1 " << v.ours.top1_agree << "/" << v.ours.top1_checked << " KL " << v.ours.mean_kl);
      CHECK_FALSE(v.has_hf_bf16);
      CHECK(v.ok);
      CHECK(v.ours.top1_checked > kRows / 4);  // the rms-relative gap still leaves many positions checked
    }
  }
  SECTION("bf16 rounding of the logits themselves") {
    std::vector<float> ours(ref);
    for (auto& v : ours) v = bf16_to_f32(f32_to_bf16(v));
    CHECK(judge3(ours, ref, nullptr).ok);
  }
  SECTION("bug-sized errors (rel 0.3, as wrong RoPE, norm or head mapping give) fail") {
    const PathVerdict v = judge3(with_noise(ref, 0.3, rng), ref, nullptr);
    CHECK_FALSE(v.ok);
    CHECK_THAT(v.failed, Contains("rel_err") && Contains("mean KL"));
  }
  SECTION("an error of 1.5x the bound fails on rel_err") {
    const PathVerdict v = judge3(with_noise(ref, 1.5 * kGpu.max_rel_err, rng), ref, nullptr);
    CHECK_FALSE(v.ok);
    CHECK_THAT(v.failed, Contains("rel_err"));
  }
}

TEST_CASE("top-1 is judged as a rate on the GPU, every position on the CPU", "[validate]") {
  std::mt19937 rng(20);
  std::vector<float> ref = reference_logits(rng);
  // Give every row a clear top-1 (gap 1.0) so each position is checked.
  for (int r = 0; r < kRows; ++r) {
    float* row = ref.data() + size_t(r) * kVocab;
    *std::max_element(row, row + kVocab) += 1.f;
  }
  // Flip the top-1 at `flips` positions: the winner and the runner-up exchange their logits.
  const auto flipped = [&](int flips) {
    std::vector<float> ours(ref);
    for (int k = 0; k < flips; ++k) {
      float* row = ours.data() + size_t(k * (kRows / flips)) * kVocab;
      float* top = std::max_element(row, row + kVocab);
      const float best = *top;
      *top = -1e9f;
      float* second = std::max_element(row, row + kVocab);
      *top = *second;
      *second = best;
    }
    return ours;
  };
  const PathVerdict one = judge3(flipped(1), ref, nullptr);
  INFO(one.failed);
  CHECK(one.ours.top1_checked == kRows);
  CHECK(one.ours.top1_agree == kRows - 1);
  CHECK(one.ok);  // one flip in 500: what bf16 rounding does to a near-tie on a correct engine
  CHECK(judge3(flipped(10), ref, nullptr).ok);  // 2% of 500, plus the free miss
  const PathVerdict many = judge3(flipped(25), ref, nullptr);
  CHECK_FALSE(many.ok);
  CHECK_THAT(many.failed, Contains("top-1 differs at 25 of 500"));
  // The CPU keeps the single-position rule (and its tight bounds).
  const PathVerdict cpu = judge3(flipped(1), ref, nullptr, kCpu);
  CHECK_FALSE(cpu.ok);
  CHECK_THAT(cpu.failed, Contains("top-1"));
  CHECK(judge3(ref, ref, nullptr, kCpu).ok);
  CHECK_FALSE(within(compare_logits(flipped(1).data(), ref.data(), kRows, kVocab, kCpu), kCpu));
}

TEST_CASE("the CPU tolerance ignores HF bf16 logits and keeps its fp32 bounds", "[validate]") {
  std::mt19937 rng(21);
  const std::vector<float> ref = reference_logits(rng);
  const std::vector<float> hf_bf16 = with_noise(ref, 2e-2, rng);
  CHECK(kCpu.max_ratio_to_hf_bf16 == 0);
  const PathVerdict v = judge3(with_noise(ref, 1e-2, rng), ref, &hf_bf16, kCpu);
  CHECK_FALSE(v.has_hf_bf16);
  CHECK_FALSE(v.ok);  // 0.5x HF bf16's error, but 1e-2 is far beyond fp32's 1e-4
  CHECK(judge3(with_noise(ref, 1e-6, rng), ref, &hf_bf16, kCpu).ok);
}
