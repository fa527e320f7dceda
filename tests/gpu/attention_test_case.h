// Shared fixture of the attention kernel tests: a random batch over a paged KV cache, on host (fp32,
// bf16-rounded, the oracle's input) and device (bf16), plus the checks every attention test makes.
//
// Traps built in:
//  - physical blocks are a random permutation (block tables are not contiguous or ordered);
//  - every pool slot no sequence owns (the tail of a last block, spare blocks) holds NaN, and unused
//    block-table entries point at an all-NaN spare block: reading a key that is not in the sequence's
//    causal range turns the output NaN instead of slightly wrong;
//  - Q lives in a fused qkv buffer (row stride (q_heads + 2 kv_heads) * head_dim, K/V parts random);
//  - the output has padded rows (stride > q_heads * head_dim); the padding must keep its poison.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <numeric>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "core/dtype.h"
#include "core/error.h"
#include "kernels/attention.h"
#include "tests/gpu/gpu_test_util.h"

namespace fc::test {

struct AttentionCase {
  int q_heads = 0, kv_heads = 0, head_dim = 0, block_size = 0;
  std::vector<int32_t> seq_lens, cu_seqlens_q, block_tables;
  int max_blocks_per_seq = 0, num_blocks = 0, total_q = 0;
  int64_t q_row_stride = 0, out_row_stride = 0;
  float scale = 0.f;
  std::vector<float> q, k_pool, v_pool;  // bf16-rounded values (NaN in unowned slots)
  DeviceBuffer d_q, d_k, d_v, d_cu, d_lens, d_tables;

  PagedKVLayout layout() const {
    PagedKVLayout l;
    l.block_size = block_size;
    l.kv_heads = kv_heads;
    l.head_dim = head_dim;
    return l;
  }
  AttentionShape shape() const { return AttentionShape{q_heads, kv_heads, head_dim, scale}; }
  int num_seqs() const { return static_cast<int>(seq_lens.size()); }
  AttentionBatch host_batch() const {
    return AttentionBatch{num_seqs(), cu_seqlens_q.data(), seq_lens.data(), block_tables.data(), max_blocks_per_seq};
  }
  AttentionBatch device_batch() const {
    return AttentionBatch{num_seqs(), d_cu.as<int32_t>(), d_lens.as<int32_t>(), d_tables.as<int32_t>(),
                          max_blocks_per_seq};
  }
  const bf16* dq() const { return d_q.as<bf16>(); }
  const bf16* dk() const { return d_k.as<bf16>(); }
  const bf16* dv() const { return d_v.as<bf16>(); }
};

inline DeviceBuffer upload_bytes(const void* host, size_t bytes) {
  DeviceBuffer buffer(bytes, "attention test input");
  CUDA_CHECK(cudaMemcpy(buffer.get(), host, bytes, cudaMemcpyHostToDevice));
  return buffer;
}

// seq_lens[s] keys, the last n_qs[s] of them are queries (n_q = seq_len: prefill; 1: decode).
inline AttentionCase make_attention_case(std::mt19937& rng, int q_heads, int kv_heads, int head_dim, int block_size,
                                         const std::vector<int>& seq_lens, const std::vector<int>& n_qs) {
  AttentionCase c;
  c.q_heads = q_heads;
  c.kv_heads = kv_heads;
  c.head_dim = head_dim;
  c.block_size = block_size;
  c.scale = 1.f / std::sqrt(static_cast<float>(head_dim));
  const int num_seqs = static_cast<int>(seq_lens.size());
  c.cu_seqlens_q.assign(1, 0);
  for (int s = 0; s < num_seqs; ++s) {
    c.seq_lens.push_back(seq_lens[s]);
    c.cu_seqlens_q.push_back(c.cu_seqlens_q.back() + n_qs[s]);
    c.max_blocks_per_seq = std::max(c.max_blocks_per_seq, (seq_lens[s] + block_size - 1) / block_size);
  }
  c.total_q = c.cu_seqlens_q.back();

  // Physical blocks: a shuffled permutation, with two spare (all-NaN) blocks nobody owns.
  int owned = 0;
  for (int len : seq_lens) owned += (len + block_size - 1) / block_size;
  c.num_blocks = owned + 2;
  std::vector<int32_t> physical(c.num_blocks);
  std::iota(physical.begin(), physical.end(), 0);
  std::shuffle(physical.begin(), physical.end(), rng);
  const int32_t spare = physical[owned];
  c.block_tables.assign(static_cast<size_t>(num_seqs) * c.max_blocks_per_seq, spare);
  int next = 0;
  for (int s = 0; s < num_seqs; ++s) {
    for (int b = 0; b < (seq_lens[s] + block_size - 1) / block_size; ++b) {
      c.block_tables[static_cast<size_t>(s) * c.max_blocks_per_seq + b] = physical[next++];
    }
  }

  const PagedKVLayout layout = c.layout();
  const size_t pool_elems = static_cast<size_t>(c.num_blocks) * layout.block_stride();
  c.k_pool.assign(pool_elems, std::nanf(""));
  c.v_pool.assign(pool_elems, std::nanf(""));
  std::uniform_real_distribution<float> unit(-1.f, 1.f);
  for (int s = 0; s < num_seqs; ++s) {
    for (int j = 0; j < seq_lens[s]; ++j) {
      const int64_t slot =
          static_cast<int64_t>(c.block_tables[static_cast<size_t>(s) * c.max_blocks_per_seq + j / block_size]) *
              block_size + j % block_size;
      for (int h = 0; h < kv_heads; ++h) {
        const int64_t at = layout.offset(slot, h);
        for (int d = 0; d < head_dim; ++d) {
          c.k_pool[at + d] = bf16_to_f32(f32_to_bf16(unit(rng)));
          c.v_pool[at + d] = bf16_to_f32(f32_to_bf16(unit(rng)));
        }
      }
    }
  }
  // Q in [-4, 4): scores q.k/sqrt(d) have a standard deviation near 1.3, so softmax rows are peaked
  // enough that a wrong max, mask or scale shows up.
  c.q_row_stride = static_cast<int64_t>(q_heads + 2 * kv_heads) * head_dim;
  c.out_row_stride = static_cast<int64_t>(q_heads) * head_dim + 64;
  c.q = random_floats(static_cast<size_t>(c.total_q) * c.q_row_stride, rng, -4.f, 4.f);
  c.q = round_to_bf16(c.q);

  c.d_q = upload_bytes(to_bf16_bits(c.q).data(), c.q.size() * 2);
  c.d_k = upload_bytes(to_bf16_bits(c.k_pool).data(), pool_elems * 2);
  c.d_v = upload_bytes(to_bf16_bits(c.v_pool).data(), pool_elems * 2);
  c.d_cu = upload_bytes(c.cu_seqlens_q.data(), c.cu_seqlens_q.size() * 4);
  c.d_lens = upload_bytes(c.seq_lens.data(), c.seq_lens.size() * 4);
  c.d_tables = upload_bytes(c.block_tables.data(), c.block_tables.size() * 4);
  return c;
}

// Output buffer of a case: (total_q, out_row_stride) bf16, poisoned, with a sentinel after it.
inline GuardedBuffer make_attention_output(const AttentionCase& c) {
  return GuardedBuffer(static_cast<size_t>(c.total_q) * c.out_row_stride * 2);
}

// Tolerance. Both sides see the same bf16-rounded Q/K/V; the kernel differs from the fp32 oracle by
//  (1) P rounded to bf16 before P V: each p_j off by <= 2^-9 relative, so |dO| <= 2^-9 * max|v| ~ 2e-3
//      in the worst case (and ~1e-4 for random rounding over many keys),
//  (2) the output rounded to bf16: <= 2^-9 |o|,
//  (3) fp32 sums in a different order and ex2.approx: ~1e-6.
// atol 4e-3 + rtol 1e-2 covers (1)+(2); measured on an H200 over ~650 cases: worst max |err| 3.3e-3
// (every element inside atol + rtol |ref|), worst NMSE 3.7e-6. The element test alone cannot see one
// key missing out of 257 (~2e-3 per element), so the NMSE must also stay under 1e-4: the rounding
// above gives ~3e-6, a missing or doubled key ~1e-3.
constexpr double kAttentionAtol = 4e-3;
constexpr double kAttentionRtol = 1e-2;
constexpr double kAttentionMaxNmse = 1e-4;

// Worst accuracy seen per kernel, printed when the test program exits ("[attention accuracy] ...").
struct AttentionAccuracyReport {
  struct Stats {
    int cases = 0;
    double worst_nmse = 0, worst_abs_err = 0;
  };
  std::map<std::string, Stats> by_kernel;
  ~AttentionAccuracyReport() {
    for (const auto& [kernel, st] : by_kernel) {
      std::printf("[attention accuracy] %s: %d cases, worst NMSE %.3g, worst max |err| %.3g (atol %g, rtol %g)\n",
                  kernel.c_str(), st.cases, st.worst_nmse, st.worst_abs_err, kAttentionAtol, kAttentionRtol);
    }
  }
};
inline AttentionAccuracyReport& attention_accuracy_report() {
  static AttentionAccuracyReport report;
  return report;
}

// Runs the oracle, downloads the kernel's output, checks values, NaN, padding and sentinel.
inline void check_attention_output(const AttentionCase& c, const GuardedBuffer& out, const std::string& kernel) {
  const int row_width = c.q_heads * c.head_dim;
  std::vector<float> ref(static_cast<size_t>(c.total_q) * row_width);
  attention_ref(c.host_batch(), c.shape(), c.q.data(), c.q_row_stride, c.k_pool.data(), c.v_pool.data(), c.layout(),
                ref.data(), row_width);
  std::vector<uint16_t> bits(static_cast<size_t>(c.total_q) * c.out_row_stride);
  out.download(bits.data(), bits.size() * 2);
  std::vector<float> got(ref.size());
  size_t padding_touched = 0;
  for (int r = 0; r < c.total_q; ++r) {
    for (int i = 0; i < row_width; ++i) got[static_cast<size_t>(r) * row_width + i] = bf16_to_f32(bits[r * c.out_row_stride + i]);
    for (int64_t i = row_width; i < c.out_row_stride; ++i) padding_touched += bits[r * c.out_row_stride + i] != 0xFFFF;
  }
  const CompareResult result = compare(got, ref, kAttentionAtol, kAttentionRtol);
  AttentionAccuracyReport::Stats& st = attention_accuracy_report().by_kernel[kernel];
  ++st.cases;
  st.worst_nmse = std::max(st.worst_nmse, result.nmse);
  st.worst_abs_err = std::max(st.worst_abs_err, result.max_abs_err);
  INFO(result.summary);
  CHECK(result.ok);
  CHECK(result.nmse < kAttentionMaxNmse);
  CHECK(padding_touched == 0);
  CHECK(out.sentinel_intact());
}

inline std::string describe_lens(const std::vector<int>& seq_lens, const std::vector<int>& n_qs) {
  std::string s;
  for (size_t i = 0; i < seq_lens.size(); ++i) {
    s += (i ? " " : "") + std::to_string(n_qs[i]) + "/" + std::to_string(seq_lens[i]);
  }
  return s + " (n_q/seq_len)";
}

}  // namespace fc::test
