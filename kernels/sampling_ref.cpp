// CPU reference of the sampler defined in kernels/sampling.h, written step by step from that definition
// (sorting where the GPU uses radix selection), and of the penalties.
#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include "kernels/sampling.h"

namespace fc {

namespace {

int first_argmax(const float* logits, int vocab) {
  int best = 0;
  for (int i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

uint64_t mul_high(uint64_t a, uint64_t b) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
}

}  // namespace

SampleRefResult sample_ref(const float* logits, int vocab, const SamplingParams& params, uint64_t random) {
  SampleRefResult result;
  // 0. greedy
  if (!(params.temperature > 0.0f)) {
    result.greedy = true;
    result.id = first_argmax(logits, vocab);
    return result;
  }
  // 1. max logit and order keys (division by a positive temperature keeps the order)
  float l_max = -INFINITY;
  for (int i = 0; i < vocab; ++i) l_max = std::max(l_max, logits[i]);
  const float scale = sampling_exp2_scale(params.temperature);
  if (!std::isfinite(l_max) || !std::isfinite(scale)) {
    result.greedy = true;
    result.id = first_argmax(logits, vocab);
    return result;
  }
  std::vector<uint32_t> key(vocab);
  std::vector<float> e(vocab);
  std::vector<uint64_t> w(vocab);
  for (int i = 0; i < vocab; ++i) {
    key[i] = sampling_order_key(logits[i]);
    e[i] = sampling_exp2((logits[i] - l_max) * scale);  // bit-identical to the GPU's
    w[i] = sampling_weight(e[i]);                   // 2. integer weights
  }
  // 3. top-k threshold on keys (ties with the k-th all kept)
  uint32_t threshold = 0;
  if (params.top_k > 0 && params.top_k < vocab) {
    std::vector<uint32_t> sorted = key;
    std::nth_element(sorted.begin(), sorted.begin() + (params.top_k - 1), sorted.end(), std::greater<uint32_t>());
    threshold = sorted[params.top_k - 1];
  }
  // 4. top-p: walk the kept tokens by descending key, one group of equal keys at a time.
  if (params.top_p < 1.0f) {
    std::vector<int> order;
    for (int i = 0; i < vocab; ++i) {
      if (key[i] >= threshold) order.push_back(i);
    }
    std::sort(order.begin(), order.end(), [&](int a, int b) { return key[a] > key[b]; });
    uint64_t kept_total = 0;
    for (int i : order) kept_total += w[i];
    const double p_target = std::ceil(static_cast<double>(params.top_p) * static_cast<double>(kept_total));
    const uint64_t target = p_target < 1.0 ? 1 : static_cast<uint64_t>(p_target);
    uint64_t above = 0;  // weight of kept tokens with a strictly larger key than the current group
    size_t g = 0;
    while (g < order.size() && above < target) {
      const uint32_t group_key = key[order[g]];
      threshold = group_key;  // this group is kept
      while (g < order.size() && key[order[g]] == group_key) above += w[order[g++]];
    }
  }
  // 5. min-p, and the final kept weights
  const bool use_min_p = params.min_p > 0.0f;
  const float min_p = std::min(params.min_p, 1.0f);
  result.weights.assign(vocab, 0);
  for (int i = 0; i < vocab; ++i) {
    const bool kept = key[i] >= threshold && (!use_min_p || e[i] >= min_p);
    if (kept) result.weights[i] = w[i];
  }
  // 6. the draw
  result.total = std::accumulate(result.weights.begin(), result.weights.end(), uint64_t{0});
  result.target = mul_high(random, result.total);
  uint64_t cum = 0;
  for (int i = 0; i < vocab; ++i) {
    const uint64_t next = cum + result.weights[i];
    if (result.target < next) {
      result.id = i;
      result.cum_before = cum;
      result.cum_after = next;
      break;
    }
    cum = next;
  }
  return result;
}

void penalize_ref(float* logits, int vocab, const uint32_t* history, const SamplingParams& params) {
  for (int i = 0; i < vocab; ++i) logits[i] = sampling_penalize(logits[i], history[i], params);
}

std::vector<uint32_t> sampling_history_ref(const std::vector<int32_t>& context, int vocab,
                                           const std::vector<int32_t>& generated) {
  std::vector<uint32_t> history(static_cast<size_t>(vocab), 0);
  for (int32_t id : context) {
    if (id >= 0 && id < vocab) history[id] |= kHistoryInContext;
  }
  for (int32_t id : generated) {
    if (id >= 0 && id < vocab) history[id] = sampling_history_add(history[id]);
  }
  return history;
}

}  // namespace fc
