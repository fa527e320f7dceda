// kernels/attention_prefill.cu against fc::attention_ref (see attention_test_case.h for the traps and
// the tolerance).
#include <catch2/catch.hpp>

#include "kernels/attention_prefill.cuh"
#include "tests/gpu/attention_test_case.h"

namespace fc::test {
namespace {

struct Batch {
  std::vector<int> seq_lens, n_qs;
};

Batch full(std::vector<int> lens) { return Batch{lens, lens}; }

const char* kernel_name(AttentionPrefillKernel k) {
  switch (k) {
    case AttentionPrefillKernel::Wgmma: return "wgmma";
    case AttentionPrefillKernel::MmaSync: return "mma.sync";
    default: return "auto";
  }
}

// The kernels to test here: mma.sync always, wgmma where this GPU and build run it.
std::vector<AttentionPrefillKernel> kernels_here(int head_dim) {
  std::vector<AttentionPrefillKernel> kernels = {AttentionPrefillKernel::MmaSync};
  if (attention_prefill_wgmma_available(head_dim)) {
    kernels.push_back(AttentionPrefillKernel::Wgmma);
  } else {
    WARN("wgmma prefill kernel not available on this GPU/build: only the mma.sync kernel is tested");
  }
  return kernels;
}

void run_prefill_case(std::mt19937& rng, int q_heads, int kv_heads, int head_dim, int block_size, const Batch& b,
                      AttentionPrefillKernel kernel) {
  INFO("kernel " << kernel_name(kernel) << " q_heads " << q_heads << " kv_heads " << kv_heads << " head_dim " << head_dim << " block_size " << block_size
                  << " batch " << describe_lens(b.seq_lens, b.n_qs));
  AttentionCase c = make_attention_case(rng, q_heads, kv_heads, head_dim, block_size, b.seq_lens, b.n_qs);
  GuardedBuffer out = make_attention_output(c);
  attention_prefill(c.device_batch(), c.total_q, c.shape(), c.dq(), c.q_row_stride, c.dk(), c.dv(), c.layout(),
                    out.as<bf16>(), c.out_row_stride, nullptr, kernel);
  CUDA_CHECK(cudaDeviceSynchronize());
  check_attention_output(c, out, std::string("prefill ") + kernel_name(kernel));
}

}  // namespace

TEST_CASE("attention_prefill matches attention_ref", "[gpu][attention]") {
  const int head_dim = GENERATE(64, 128);
  const int block_size = GENERATE(1, 16);
  // GQA group 1, 4, 8 (few heads keep the CPU oracle fast; the group, not the count, shapes the kernel).
  const auto heads = GENERATE(std::make_pair(4, 4), std::make_pair(8, 2), std::make_pair(16, 2));
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  const std::vector<Batch> batches = {
      // single sequences of awkward lengths
      full({1}), full({3}), full({54}), full({97}), full({129}), full({257}),
      // on and one past a 16-key block / 64-key tile boundary
      full({16}), full({17}), full({64}), full({65}), full({128}), full({192}), full({193}),
      // mixed lengths in one launch
      full({54, 1, 257, 97, 3, 129, 16, 17}),
      // chunks attending to a cached prefix (n_q < seq_len), mixed with a full prefill and a decode row
      Batch{{257, 129, 300, 97, 1000, 48, 65}, {97, 1, 37, 64, 5, 16, 65}},
      Batch{{200, 33}, {200, 1}},
  };
  for (AttentionPrefillKernel kernel : kernels_here(head_dim)) {
    for (const Batch& b : batches) run_prefill_case(rng, heads.first, heads.second, head_dim, block_size, b, kernel);
  }
}

TEST_CASE("attention_prefill at the LLaMA 3.1 8B shape", "[gpu][attention]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (AttentionPrefillKernel kernel : kernels_here(128)) {
    run_prefill_case(rng, 32, 8, 128, 16, Batch{{333, 64, 515, 1}, {333, 64, 131, 1}}, kernel);
  }
  // Auto picks one of the two.
  run_prefill_case(rng, 32, 8, 128, 16, Batch{{70, 200}, {70, 3}}, AttentionPrefillKernel::Auto);
}

// Small enough for compute-sanitizer (memcheck / racecheck).
TEST_CASE("attention_prefill quick", "[gpu][attention][quick]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (AttentionPrefillKernel kernel : kernels_here(128)) {
    run_prefill_case(rng, 8, 2, 128, 16, Batch{{97, 3, 130, 17}, {97, 3, 40, 1}}, kernel);
    run_prefill_case(rng, 4, 4, 64, 1, Batch{{70, 5}, {70, 2}}, kernel);
  }
}

TEST_CASE("attention_prefill refuses what it does not support", "[gpu][attention]") {
  std::mt19937 rng(1);
  AttentionCase c = make_attention_case(rng, 4, 2, 128, 16, {8}, {8});
  GuardedBuffer out = make_attention_output(c);
  AttentionShape bad_dim = c.shape();
  bad_dim.head_dim = 96;
  PagedKVLayout layout96 = c.layout();
  layout96.head_dim = 96;
  CHECK_THROWS_AS(attention_prefill(c.device_batch(), c.total_q, bad_dim, c.dq(), c.q_row_stride, c.dk(), c.dv(),
                                    layout96, out.as<bf16>(), c.out_row_stride, nullptr),
                  Error);
  CHECK_THROWS_AS(attention_prefill(c.device_batch(), c.total_q, c.shape(), c.dq(), c.q_row_stride + 4, c.dk(), c.dv(),
                                    c.layout(), out.as<bf16>(), c.out_row_stride, nullptr),
                  Error);
  AttentionShape bad_group = c.shape();
  bad_group.q_heads = 5;
  CHECK_THROWS_AS(attention_prefill(c.device_batch(), c.total_q, bad_group, c.dq(), c.q_row_stride, c.dk(), c.dv(),
                                    c.layout(), out.as<bf16>(), c.out_row_stride, nullptr),
                  Error);
}

}  // namespace fc::test
