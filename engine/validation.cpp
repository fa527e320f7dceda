#include "engine/validation.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace fc {

LogitComparison compare_logits(const float* ours, const float* ref, int rows, int vocab, double clear_gap) {
  LogitComparison c;
  c.positions = rows;
  double err2 = 0, ref2 = 0, kl_sum = 0;
  for (int r = 0; r < rows; ++r) {
    const float* a = ours + static_cast<size_t>(r) * vocab;
    const float* b = ref + static_cast<size_t>(r) * vocab;
    double dot = 0, aa = 0, bb = 0;
    int ours_top = 0, ref_top = 0;
    for (int j = 0; j < vocab; ++j) {
      if (!std::isfinite(a[j])) c.has_nan = true;
      const double d = static_cast<double>(a[j]) - b[j];
      c.max_abs_err = std::max(c.max_abs_err, std::fabs(d));
      err2 += d * d;
      ref2 += static_cast<double>(b[j]) * b[j];
      dot += static_cast<double>(a[j]) * b[j];
      aa += static_cast<double>(a[j]) * a[j];
      bb += static_cast<double>(b[j]) * b[j];
      if (a[j] > a[ours_top]) ours_top = j;
      if (b[j] > b[ref_top]) ref_top = j;
    }
    const double cosine = (aa > 0 && bb > 0) ? dot / std::sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
    c.min_cosine = std::min(c.min_cosine, cosine);
    double second = -INFINITY;
    for (int j = 0; j < vocab; ++j) {
      if (j != ref_top) second = std::max(second, static_cast<double>(b[j]));
    }
    if (b[ref_top] - second > clear_gap) {
      ++c.top1_checked;
      if (ours_top == ref_top) ++c.top1_agree;
    }
    // KL(p_ref || p_ours) with log-softmax in double.
    const double max_a = a[ours_top], max_b = b[ref_top];
    double sum_a = 0, sum_b = 0;
    for (int j = 0; j < vocab; ++j) {
      sum_a += std::exp(a[j] - max_a);
      sum_b += std::exp(b[j] - max_b);
    }
    const double log_za = max_a + std::log(sum_a), log_zb = max_b + std::log(sum_b);
    double kl = 0;
    for (int j = 0; j < vocab; ++j) {
      const double log_pb = b[j] - log_zb, log_pa = a[j] - log_za;
      kl += std::exp(log_pb) * (log_pb - log_pa);
    }
    kl_sum += kl;
  }
  c.rel_err = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
  c.mean_kl = rows > 0 ? kl_sum / rows : 0;
  if (c.has_nan) {
    c.rel_err = c.max_abs_err = c.mean_kl = INFINITY;
    c.min_cosine = 0;
  }
  return c;
}

ValidationTolerance default_tolerance(DeviceKind device) {
  if (device == DeviceKind::Cpu) return {1e-4, 0.99999, 1e-3, 1e-6};
  return {3e-2, 0.999, 0.05, 2e-3};
}

bool within(const LogitComparison& c, const ValidationTolerance& t) {
  return !c.has_nan && c.rel_err <= t.max_rel_err && c.min_cosine >= t.min_cosine &&
         c.top1_agree == c.top1_checked && c.mean_kl <= t.max_mean_kl;
}

ValidationRun run_validation(Backend& backend, const std::vector<int32_t>& ids, const std::vector<float>& ref,
                             const ValidationTolerance& tolerance, int prefix) {
  const int n = static_cast<int>(ids.size());
  const int vocab = backend.config().vocab_size;
  if (n == 0) fail("validate: the reference holds no tokens");
  if (ref.size() != static_cast<size_t>(n) * vocab) {
    fail("validate: reference logits hold {} values, expected {} x {} (tokens x vocab_size)", ref.size(), n, vocab);
  }
  prefix = std::clamp(prefix, 1, n);
  ValidationRun run;
  KVCacheManager& kv = backend.kv_cache();

  // (a) one prefill over all N tokens.
  {
    const int seq = kv.create_sequence();
    ForwardBatch batch{{seq}, {n}, ids, true};
    backend.forward(batch, run.prefill_logits);
    kv.release_sequence(seq);
  }
  // (b) the prefix in one call, then one token per call through the KV cache.
  {
    const int seq = kv.create_sequence();
    run.decode_logits.reserve(static_cast<size_t>(n) * vocab);
    std::vector<float> step_logits;
    ForwardBatch first{{seq}, {prefix}, std::vector<int32_t>(ids.begin(), ids.begin() + prefix), true};
    backend.forward(first, step_logits);
    run.decode_logits = step_logits;
    for (int i = prefix; i < n; ++i) {
      ForwardBatch step{{seq}, {1}, {ids[i]}, false};
      backend.forward(step, step_logits);
      run.decode_logits.insert(run.decode_logits.end(), step_logits.begin(), step_logits.end());
    }
    kv.release_sequence(seq);
  }
  run.prefill = compare_logits(run.prefill_logits.data(), ref.data(), n, vocab, tolerance.clear_gap);
  run.decode = compare_logits(run.decode_logits.data(), ref.data(), n, vocab, tolerance.clear_gap);
  return run;
}

}  // namespace fc
