// The generic (fallback) attention and the row gather against their CPU references.
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>
#include <cmath>
#include <random>

#include "kernels/attention.h"
#include "kernels/attention_generic.cuh"
#include "kernels/gather.cuh"
#include "tests/gpu/gpu_test_util.h"

using namespace fc;
using namespace fc::test;

TEST_CASE("generic attention matches attention_ref (odd head dims, GQA, paged, prefix chunks)",
          "[gpu][attention_generic][sanitize]") {
  std::mt19937 rng(std::random_device{}());
  struct Case { int head_dim, q_heads, kv_heads, block_size; std::vector<int> n_q, seq_len; };
  const std::vector<Case> cases = {
      {16, 8, 2, 16, {48}, {48}},
      {24, 4, 1, 1, {1, 3, 37}, {54, 3, 37}},
      {16, 4, 4, 16, {1, 1, 17}, {97, 129, 33}},
      {256, 2, 1, 16, {5}, {257}},
  };
  for (const Case& k : cases) {
    INFO("head_dim " << k.head_dim << " q_heads " << k.q_heads << " kv_heads " << k.kv_heads << " block " << k.block_size);
    const int num_seqs = int(k.n_q.size());
    const int q_dim = k.q_heads * k.head_dim;
    const PagedKVLayout layout{k.block_size, k.kv_heads, k.head_dim};
    std::vector<int32_t> cu{0}, seq_lens(k.seq_len.begin(), k.seq_len.end());
    for (int n : k.n_q) cu.push_back(cu.back() + n);
    const int total_q = cu.back();
    int max_blocks = 0;
    for (int len : k.seq_len) max_blocks = std::max(max_blocks, (len + k.block_size - 1) / k.block_size);
    const int num_blocks = max_blocks * num_seqs + 3;
    std::vector<int32_t> physical(num_blocks);
    std::iota(physical.begin(), physical.end(), 0);
    std::shuffle(physical.begin(), physical.end(), rng);  // non-contiguous block tables
    std::vector<int32_t> tables(size_t(num_seqs) * max_blocks, 0);
    for (int s = 0, next = 0; s < num_seqs; ++s) {
      for (int b = 0; b < (k.seq_len[s] + k.block_size - 1) / k.block_size; ++b) tables[s * max_blocks + b] = physical[next++];
    }
    const size_t pool = size_t(num_blocks) * layout.block_stride();
    const auto q = round_to_bf16(random_floats(size_t(total_q) * q_dim, rng));
    const auto kp = round_to_bf16(random_floats(pool, rng));
    const auto vp = round_to_bf16(random_floats(pool, rng));
    const AttentionShape shape{k.q_heads, k.kv_heads, k.head_dim, 1.0f / std::sqrt(float(k.head_dim))};
    std::vector<float> ref(size_t(total_q) * q_dim);
    const AttentionBatch host{num_seqs, cu.data(), seq_lens.data(), tables.data(), max_blocks};
    attention_ref(host, shape, q.data(), q_dim, kp.data(), vp.data(), layout, ref.data(), q_dim);

    GuardedBuffer dq(q.size() * 2), dk(pool * 2), dv(pool * 2), dout(ref.size() * 2);
    GuardedBuffer dcu(cu.size() * 4), dlens(seq_lens.size() * 4), dtables(tables.size() * 4);
    dq.upload(to_bf16_bits(q).data(), q.size() * 2);
    dk.upload(to_bf16_bits(kp).data(), pool * 2);
    dv.upload(to_bf16_bits(vp).data(), pool * 2);
    dcu.upload(cu.data(), cu.size() * 4);
    dlens.upload(seq_lens.data(), seq_lens.size() * 4);
    dtables.upload(tables.data(), tables.size() * 4);
    const AttentionBatch dev{num_seqs, dcu.as<int32_t>(), dlens.as<int32_t>(), dtables.as<int32_t>(), max_blocks};
    attention_generic(dev, total_q, shape, dq.as<bf16>(), q_dim, dk.as<bf16>(), dv.as<bf16>(), layout,
                      dout.as<bf16>(), q_dim, nullptr);
    std::vector<uint16_t> bits(ref.size());
    dout.download(bits.data(), bits.size() * 2);
    // bf16 output rounding (2^-8 relative) on values of magnitude <= 1, fp32 accumulation otherwise.
    const CompareResult r = compare(from_bf16_bits(bits), ref, 2e-3, 8e-3);
    INFO(r.summary);
    CHECK(r.ok);
    CHECK(dout.sentinel_intact());
  }
}

TEST_CASE("gather_rows copies the requested rows (vector and scalar paths)", "[gpu][gather][sanitize]") {
  std::mt19937 rng(std::random_device{}());
  for (int dim : {72, 4096, 97}) {
    const int rows_in = 13;
    const std::vector<int32_t> rows{12, 0, 5, 5, 7};
    const auto in = round_to_bf16(random_floats(size_t(rows_in) * dim, rng));
    GuardedBuffer din(in.size() * 2), drows(rows.size() * 4), dout(rows.size() * dim * 2);
    din.upload(to_bf16_bits(in).data(), in.size() * 2);
    drows.upload(rows.data(), rows.size() * 4);
    gather_rows(din.as<bf16>(), drows.as<int32_t>(), int(rows.size()), dim, dout.as<bf16>(), nullptr);
    std::vector<uint16_t> bits(rows.size() * dim);
    dout.download(bits.data(), bits.size() * 2);
    std::vector<float> ref;
    for (int r : rows) ref.insert(ref.end(), in.begin() + size_t(r) * dim, in.begin() + size_t(r + 1) * dim);
    const CompareResult c = compare(from_bf16_bits(bits), ref, 0, 0);
    INFO("dim " << dim << ": " << c.summary);
    CHECK(c.ok);
    CHECK(dout.sentinel_intact());
  }
}
