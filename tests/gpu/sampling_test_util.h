// Shared by the GPU sampler tests: device upload/download of a vector, rows of logits of a given
// character, and the parameter sets every sampler is checked with.
#pragma once
#include <cmath>
#include <random>
#include <vector>

#include "kernels/sampling.h"
#include "tests/gpu/gpu_test_util.h"

namespace fc::test {

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
inline std::vector<float> make_logits(int vocab, Logits kind, std::mt19937& rng) {
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

inline std::vector<SamplingParams> param_sets() {
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

}  // namespace fc::test
