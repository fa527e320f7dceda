// kernels/attention_decode.cu (split-KV flash decoding + merge) against fc::attention_ref (see
// attention_test_case.h for the traps and the tolerance). The split workspace is NaN-poisoned before
// every run: a merge that touched an empty split's partial output would turn the result NaN. Every case
// runs both launch paths of the plan (ctas_per_sm 0: the kernel's occupancy; 1: one CTA per SM, the
// engine's single-sequence choice, launched with one_per_sm's larger shared memory) on every run, each on
// fresh random inputs; and both K/V ring depths (3 stages, the Hopper / A100 choice; 2, the choice on GPUs
// with at most 99 KB of shared memory a block, which this GPU runs too when the plan asks).
#include <catch2/catch.hpp>

#include "kernels/attention_decode.cuh"
#include "tests/gpu/attention_test_case.h"

namespace fc::test {
namespace {

constexpr int kMaxSplits = 64;

// The plan's two launch paths; each test case GENERATEs over both so every run checks both.
constexpr int kOccupancyCtas = 0;  // ctas_per_sm 0: the kernel's occupancy (2 CTAs per SM; batches)
constexpr int kOneCtaPerSm = 1;    // one CTA per SM (single-sequence decode in the engine)

// num_splits <= 0: let the plan choose from the lengths and the device's SM count. ctas_per_sm: one of
// the two above.
void run_decode_case(std::mt19937& rng, int ctas_per_sm, int q_heads, int kv_heads, int head_dim, int block_size,
                     const std::vector<int>& seq_lens, int n_q, int num_splits, int stages = 0) {
  const std::vector<int> n_qs(seq_lens.size(), n_q);
  AttentionCase c = make_attention_case(rng, q_heads, kv_heads, head_dim, block_size, seq_lens, n_qs);
  AttentionDecodePlan plan =
      attention_decode_plan(c.seq_lens.data(), c.num_seqs(), n_q, c.shape(), kMaxSplits, 0, ctas_per_sm);
  if (num_splits > 0) plan.num_splits = num_splits;
  if (num_splits > 1 && ctas_per_sm == 1) plan.one_per_sm = true;
  if (stages > 0) plan.stages = stages;
  CAPTURE(ctas_per_sm, plan.one_per_sm, plan.stages);
  INFO("q_heads " << q_heads << " kv_heads " << kv_heads << " head_dim " << head_dim << " block_size " << block_size
                  << " splits " << plan.num_splits << " batch " << describe_lens(seq_lens, n_qs));
  const size_t workspace_bytes = attention_decode_workspace_bytes(c.total_q, q_heads, head_dim, plan.num_splits);
  GuardedBuffer workspace(std::max<size_t>(workspace_bytes, 16));  // poisoned: NaN floats
  GuardedBuffer out = make_attention_output(c);
  attention_decode(c.device_batch(), c.total_q, c.shape(), c.dq(), c.q_row_stride, c.dk(), c.dv(), c.layout(),
                   out.as<bf16>(), c.out_row_stride, plan, workspace.get(), workspace_bytes, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  check_attention_output(c, out, plan.num_splits == 1 ? "decode unsplit" : "decode split-KV + merge");
  CHECK(workspace.sentinel_intact());
}

}  // namespace

TEST_CASE("attention_decode matches attention_ref", "[gpu][attention]") {
  const int head_dim = GENERATE(64, 128);
  const int block_size = GENERATE(1, 16);
  const auto heads = GENERATE(std::make_pair(4, 4), std::make_pair(8, 2), std::make_pair(16, 2));
  // 1: unsplit; 3 and 7: forced (7 leaves short sequences with empty splits); 0: the plan's choice.
  const int num_splits = GENERATE(1, 3, 7, 0);
  const int ctas_per_sm = GENERATE(kOccupancyCtas, kOneCtaPerSm);
  const int stages = GENERATE(3, 2);
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  run_decode_case(rng, ctas_per_sm, heads.first, heads.second, head_dim, block_size,
                  {1, 3, 54, 97, 129, 257, 16, 17, 64, 65, 1000, 2049}, 1, num_splits, stages);
}

TEST_CASE("attention_decode long single sequence, split by the plan", "[gpu][attention]") {
  const int ctas_per_sm = GENERATE(kOccupancyCtas, kOneCtaPerSm);
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (int stages : {3, 2}) {
    run_decode_case(rng, ctas_per_sm, 32, 8, 128, 16, {8191}, 1, 0, stages);
    run_decode_case(rng, ctas_per_sm, 32, 8, 128, 1, {4097}, 1, 0, stages);
  }
}

TEST_CASE("attention_decode with a few query rows per sequence", "[gpu][attention]") {
  const int num_splits = GENERATE(1, 5);
  const int ctas_per_sm = GENERATE(kOccupancyCtas, kOneCtaPerSm);
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  run_decode_case(rng, ctas_per_sm, 8, 2, 128, 16, {3, 54, 257, 1000}, 2, num_splits);  // 8 packed rows
  run_decode_case(rng, ctas_per_sm, 16, 2, 64, 16, {4, 97, 513}, 3, num_splits);       // 24 rows: two row tiles
  run_decode_case(rng, ctas_per_sm, 4, 4, 128, 1, {5, 129, 300}, 4, num_splits);       // MHA, 4 rows
}

TEST_CASE("attention_decode quick", "[gpu][attention][quick]") {
  const int ctas_per_sm = GENERATE(kOccupancyCtas, kOneCtaPerSm);
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  run_decode_case(rng, ctas_per_sm, 8, 2, 128, 16, {1, 97, 300}, 1, 1);
  run_decode_case(rng, ctas_per_sm, 8, 2, 128, 16, {1, 97, 300}, 1, 4);
  run_decode_case(rng, ctas_per_sm, 8, 4, 64, 1, {33, 200}, 2, 3);
}

TEST_CASE("attention_decode_plan splits only when the batch cannot fill the GPU", "[gpu][attention]") {
  const AttentionShape shape{32, 8, 128, 0.088f};
  const std::vector<int32_t> one_long = {32768};
  const AttentionDecodePlan a = attention_decode_plan(one_long.data(), 1, 1, shape, kMaxSplits, 132);
  CHECK(a.num_splits >= 16);
  CHECK(a.num_splits <= kMaxSplits);
  const std::vector<int32_t> many(64, 4096);
  CHECK(attention_decode_plan(many.data(), 64, 1, shape, kMaxSplits, 132).num_splits == 1);
  CHECK(attention_decode_plan(one_long.data(), 1, 1, shape, 4, 132).num_splits == 4);
  // One CTA per SM: 132 / 8 kv heads = 16 whole splits (17 would put two CTAs on 4 SMs).
  CHECK(attention_decode_plan(one_long.data(), 1, 1, shape, kMaxSplits, 132, 1).num_splits == 16);
  const std::vector<int32_t> eight(8, 4096);
  CHECK(attention_decode_plan(eight.data(), 8, 1, shape, kMaxSplits, 132, 1).num_splits == 2);
  const std::vector<int32_t> one_short = {100};
  CHECK(attention_decode_plan(one_short.data(), 1, 1, shape, kMaxSplits, 132).num_splits == 1);
  // The ring depth: 3 stages wherever a block may have the 101 KB they take at head_dim 128 (this GPU when
  // it is an A100 or a Hopper), else 2.
  int device = 0, optin = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  CHECK(a.stages == (optin >= 104 * 1024 ? 3 : 2));
  CHECK(attention_decode_workspace_bytes(3, 32, 128, 1) == 0);
  CHECK(attention_decode_workspace_bytes(3, 32, 128, 5) == size_t{3} * 32 * 5 * 129 * 4);
}

TEST_CASE("attention_decode refuses a missing or short workspace", "[gpu][attention]") {
  std::mt19937 rng(2);
  AttentionCase c = make_attention_case(rng, 8, 2, 64, 16, {40}, {1});
  GuardedBuffer out = make_attention_output(c);
  AttentionDecodePlan plan;
  plan.num_splits = 4;
  CHECK_THROWS_AS(attention_decode(c.device_batch(), c.total_q, c.shape(), c.dq(), c.q_row_stride, c.dk(), c.dv(),
                                   c.layout(), out.as<bf16>(), c.out_row_stride, plan, nullptr, 0, nullptr),
                  Error);
  GuardedBuffer small(64);
  CHECK_THROWS_AS(attention_decode(c.device_batch(), c.total_q, c.shape(), c.dq(), c.q_row_stride, c.dk(), c.dv(),
                                   c.layout(), out.as<bf16>(), c.out_row_stride, plan, small.get(), 64, nullptr),
                  Error);
}

}  // namespace fc::test
