// The CUDA backend's current sampler kernels (kernels/sampling_block.cuh: argmax, one block per row)
// against kernels/sampling_ref.cpp. (tests/gpu/test_sampling.cpp checks the reference itself and the
// one-launch sampler that replaces these.)
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
#include "kernels/sampling_block.cuh"
#include "kernels/sampling.h"
#include "tests/gpu/gpu_test_util.h"
#include "tests/gpu/sampling_test_util.h"

namespace fc::test {

TEST_CASE("argmax (one block per row) returns the first maximum like torch.argmax", "[gpu][sampling][argmax][block]") {
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

TEST_CASE("sample_one_block_per_row picks the reference id for the same (seed, step) draw", "[gpu][sampling][block]") {
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
      sample_one_block_per_row(d_logits.as<float>(), rows, vocab, d_params.as<SamplingParams>(), d_ids.as<int32_t>(),
                               nullptr);
      const std::vector<int32_t> ids = download<int32_t>(d_ids, rows);
      CHECK(d_ids.sentinel_intact());
      // Deterministic: the same launch again gives the same ids.
      d_ids.poison();
      sample_one_block_per_row(d_logits.as<float>(), rows, vocab, d_params.as<SamplingParams>(), d_ids.as<int32_t>(),
                               nullptr);
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

}  // namespace fc::test
