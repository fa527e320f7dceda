// GPU embedding, RMSNorm, add+RMSNorm, SwiGLU, RoPE + paged KV append against the CPU references of
// kernels/elementwise.h, rope.h and attention.h. Fresh random inputs every run (the seed is printed on
// failure), outputs poisoned with NaN before each launch, a sentinel after each output, 100% of elements
// within atol + rtol*|ref|.
//
// Tolerances. bf16 outputs are compared with the fp32 reference evaluated on the bf16-rounded inputs,
// so the only differences are the final rounding to bf16 (8 significant bits: at most half an ulp,
// <= 2^-8 relative) and the kernel's own fp32 arithmetic (sum-of-squares order, rsqrtf / expf /
// sincosf last bits: ~1e-6 relative). rtol = 2^-7 (one bf16 ulp) bounds both with a factor-2 margin;
// a wrong index, a missed element or a formula slip (1/(sqrt(ms)+eps), a missed weight) is off by far
// more. fp32 outputs that are exact conversions or a single IEEE add must match bit for bit.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.cuh"
#include "kernels/rmsnorm.cuh"
#include "kernels/rope.cuh"
#include "kernels/rope.h"
#include "kernels/swiglu.cuh"
#include "tests/gpu/gpu_test_util.h"

namespace fc::test {
namespace {

constexpr double kBf16Rtol = 1.0 / 128;  // one bf16 ulp, see the file comment
constexpr int kRows[] = {1, 3, 54, 97, 129, 257};

// Largest NMSE / abs error seen per kernel family, printed once per test case.
struct Stats {
  const char* name;
  int cases = 0;
  double max_nmse = 0, max_abs = 0;
  explicit Stats(const char* n) : name(n) {}
  void add(const CompareResult& r) {
    ++cases;
    max_nmse = std::max(max_nmse, r.nmse);
    max_abs = std::max(max_abs, r.max_abs_err);
  }
  ~Stats() { std::printf("[elementwise] %-12s %4d checks, max NMSE %.3g, max abs err %.3g\n", name, cases, max_nmse, max_abs); }
};

void check(Stats& stats, const std::vector<float>& got, const std::vector<float>& ref, double atol, double rtol) {
  const CompareResult r = compare(got, ref, atol, rtol);
  stats.add(r);
  INFO(r.summary);
  CHECK(r.ok);
}

std::vector<float> download_f32(const GuardedBuffer& b, size_t count) {
  std::vector<float> out(count);
  b.download(out.data(), count * sizeof(float));
  return out;
}

std::vector<float> download_bf16(const GuardedBuffer& b, size_t count) {
  std::vector<uint16_t> bits(count);
  b.download(bits.data(), count * sizeof(uint16_t));
  return from_bf16_bits(bits);
}

std::vector<uint16_t> download_bits(const GuardedBuffer& b, size_t count) {
  std::vector<uint16_t> bits(count);
  b.download(bits.data(), count * sizeof(uint16_t));
  return bits;
}

GuardedBuffer upload_bf16(const std::vector<float>& values) {
  const std::vector<uint16_t> bits = to_bf16_bits(values);
  GuardedBuffer b(bits.size() * sizeof(uint16_t));
  b.upload(bits.data(), bits.size() * sizeof(uint16_t));
  return b;
}

template <typename T>
GuardedBuffer upload(const std::vector<T>& values) {
  GuardedBuffer b(values.size() * sizeof(T));
  b.upload(values.data(), values.size() * sizeof(T));
  return b;
}

// Rows of very different magnitudes, so a norm that ignored the row statistics would fail.
std::vector<float> scaled_rows(int rows, int dim, std::mt19937& rng) {
  std::vector<float> x = random_floats(static_cast<size_t>(rows) * dim, rng, -1.f, 1.f);
  std::uniform_real_distribution<float> log_scale(-4.f, 4.f);
  for (int r = 0; r < rows; ++r) {
    const float s = std::exp(log_scale(rng));
    for (int j = 0; j < dim; ++j) x[static_cast<size_t>(r) * dim + j] *= s;
  }
  return x;
}

}  // namespace

TEST_CASE("embedding gathers bf16 rows into fp32 and NaN-fills bad ids", "[gpu][elementwise][embedding]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Stats stats("embedding");
  const int vocab = 1000;
  for (int hidden : {1, 36, 64, 96, 97, 128, 4096}) {
    const std::vector<float> table = round_to_bf16(random_floats(static_cast<size_t>(vocab) * hidden, rng, -3.f, 3.f));
    GuardedBuffer d_table = upload_bf16(table);
    for (int n : kRows) {
      CAPTURE(hidden, n);
      std::uniform_int_distribution<int32_t> pick(0, vocab - 1);
      std::vector<int32_t> ids(n);
      for (auto& id : ids) id = pick(rng);
      ids[0] = vocab - 1;  // the last row of the table
      GuardedBuffer d_ids = upload(ids);
      GuardedBuffer d_out(static_cast<size_t>(n) * hidden * sizeof(float));
      embedding(d_ids.as<int32_t>(), n, d_table.as<bf16>(), vocab, hidden, d_out.as<float>(), nullptr);
      std::vector<float> ref(static_cast<size_t>(n) * hidden);
      embedding_ref(table.data(), vocab, hidden, ids.data(), n, ref.data());
      check(stats, download_f32(d_out, ref.size()), ref, 0, 0);  // bf16 -> fp32 is exact
      CHECK(d_out.sentinel_intact());
    }
  }
  SECTION("out-of-range ids give NaN rows and read nothing outside the table") {
    const int hidden = 128;
    const std::vector<float> table = round_to_bf16(random_floats(static_cast<size_t>(vocab) * hidden, rng));
    GuardedBuffer d_table = upload_bf16(table);
    const std::vector<int32_t> ids = {5, -1, vocab, 7, 1 << 30};
    GuardedBuffer d_ids = upload(ids);
    GuardedBuffer d_out(ids.size() * hidden * sizeof(float));
    embedding(d_ids.as<int32_t>(), static_cast<int>(ids.size()), d_table.as<bf16>(), vocab, hidden, d_out.as<float>(),
              nullptr);
    const std::vector<float> got = download_f32(d_out, ids.size() * hidden);
    for (size_t t = 0; t < ids.size(); ++t) {
      const bool valid = ids[t] >= 0 && ids[t] < vocab;
      for (int j = 0; j < hidden; ++j) {
        const float v = got[t * hidden + j];
        if (valid) {
          REQUIRE(v == table[static_cast<size_t>(ids[t]) * hidden + j]);
        } else {
          REQUIRE(std::isnan(v));
        }
      }
    }
    CHECK(d_out.sentinel_intact());
  }
}

TEST_CASE("rmsnorm and add_rmsnorm match HF RMSNorm", "[gpu][elementwise][rmsnorm]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Stats norm_stats("rmsnorm"), add_stats("add_rmsnorm"), res_stats("add residual");
  const float eps = 1e-5f;
  // 64..4096: the LLaMA shapes and the vector paths with 1, 2 and 4 chunks per thread (5000, 8192);
  // 1, 36, 97: the scalar path; 33000: too long for registers, scalar path with 1024 threads.
  for (int dim : {1, 36, 64, 96, 97, 128, 200, 4096, 5000, 8192, 33000}) {
    const std::vector<float> weight = round_to_bf16(random_floats(dim, rng, -2.f, 2.f));
    GuardedBuffer d_weight = upload_bf16(weight);
    for (int rows : kRows) {
      if (dim >= 8192 && rows > 129) continue;  // the long rows need no more than a few rows
      CAPTURE(dim, rows);
      const size_t count = static_cast<size_t>(rows) * dim;
      const std::vector<float> x = scaled_rows(rows, dim, rng);
      GuardedBuffer d_x = upload(x);
      GuardedBuffer d_out(count * sizeof(uint16_t));
      rmsnorm(d_x.as<float>(), d_weight.as<bf16>(), rows, dim, eps, d_out.as<bf16>(), nullptr);
      std::vector<float> ref(count);
      rmsnorm_ref(x.data(), weight.data(), rows, dim, eps, ref.data());
      check(norm_stats, download_bf16(d_out, count), ref, 1e-6, kBf16Rtol);
      CHECK(d_out.sentinel_intact());

      // add_rmsnorm: residual fp32 += x bf16, then the norm of the new residual.
      std::vector<float> residual = scaled_rows(rows, dim, rng);
      const std::vector<float> add = round_to_bf16(scaled_rows(rows, dim, rng));
      GuardedBuffer d_residual = upload(residual);
      GuardedBuffer d_add = upload_bf16(add);
      d_out.poison();
      add_rmsnorm(d_residual.as<float>(), d_add.as<bf16>(), d_weight.as<bf16>(), rows, dim, eps, d_out.as<bf16>(),
                  nullptr);
      add_rmsnorm_ref(residual.data(), add.data(), weight.data(), rows, dim, eps, ref.data());
      check(add_stats, download_bf16(d_out, count), ref, 1e-6, kBf16Rtol);
      check(res_stats, download_f32(d_residual, count), residual, 0, 0);  // one IEEE add: exact
      CHECK(d_out.sentinel_intact());
      CHECK(d_residual.sentinel_intact());
    }
  }
}

TEST_CASE("swiglu matches silu(gate) * up", "[gpu][elementwise][swiglu]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Stats stats("swiglu");
  for (int cols : {1, 36, 64, 96, 97, 128, 4096, 14336}) {
    for (int rows : kRows) {
      CAPTURE(cols, rows);
      const size_t count = static_cast<size_t>(rows) * cols;
      // [-12, 12] reaches silu's saturated tails on both sides.
      const std::vector<float> gate_up = round_to_bf16(random_floats(2 * count, rng, -12.f, 12.f));
      GuardedBuffer d_gate_up = upload_bf16(gate_up);
      GuardedBuffer d_out(count * sizeof(uint16_t));
      swiglu(d_gate_up.as<bf16>(), rows, cols, d_out.as<bf16>(), nullptr);
      std::vector<float> ref(count);
      swiglu_ref(gate_up.data(), rows, cols, ref.data());
      check(stats, download_bf16(d_out, count), ref, 1e-6, kBf16Rtol);
      CHECK(d_out.sentinel_intact());
    }
  }
}

namespace {

struct RopeCase {
  int q_heads, kv_heads, head_dim;
  int64_t pad;  // extra elements at the end of each qkv row (row_stride > q + 2kv)
  bool llama3;
};

// Distinct, scattered slots: a random permutation of the whole pool, so consecutive tokens land in
// unrelated blocks (a non-contiguous block table) and block-internal offsets vary.
std::vector<int32_t> scattered_slots(int n_tokens, int num_blocks, int block_size, std::mt19937& rng) {
  std::vector<int32_t> all(static_cast<size_t>(num_blocks) * block_size);
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(n_tokens);
  return all;
}

}  // namespace

TEST_CASE("rope_kv_append rotates Q/K in place and appends K/V to the paged pools", "[gpu][elementwise][rope]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Stats q_stats("rope q"), k_stats("rope k");
  const RopeCase cases[] = {
      {32, 8, 128, 0, true},   // LLaMA 3.1 8B
      {4, 2, 64, 8, false},    // LLaMA-2-style theta, padded rows
      {3, 1, 96, 0, true},     // half = 48: vector path with 6 vectors per half
      {2, 2, 36, 2, false},    // half = 18: scalar path
  };
  for (const RopeCase& c : cases) {
    Llama3RopeScaling scaling;
    const float theta = c.llama3 ? 500000.f : 10000.f;
    const std::vector<float> inv_freq = rope_inv_freq(c.head_dim, theta, c.llama3 ? &scaling : nullptr);
    GuardedBuffer d_inv_freq = upload(inv_freq);
    const int64_t q_size = static_cast<int64_t>(c.q_heads) * c.head_dim;
    const int64_t kv_size = static_cast<int64_t>(c.kv_heads) * c.head_dim;
    const int64_t row_stride = q_size + 2 * kv_size + c.pad;
    for (int block_size : {1, 16}) {
      for (int n : kRows) {
        CAPTURE(c.q_heads, c.kv_heads, c.head_dim, c.pad, c.llama3, block_size, n);
        const size_t qkv_count = static_cast<size_t>(n) * row_stride;
        const std::vector<float> qkv = round_to_bf16(random_floats(qkv_count, rng, -2.f, 2.f));
        // Positions: random up to 131071, with the edges and the llama3 band edges spelled out.
        std::uniform_int_distribution<int32_t> pick_pos(0, 131071);
        std::vector<int32_t> positions(n);
        for (auto& p : positions) p = pick_pos(rng);
        const int32_t fixed[] = {0, 8191, 100000, 131071, 1, 2048};
        for (int i = 0; i < n && i < 6; ++i) positions[i] = fixed[i];
        const int num_blocks = (n + block_size - 1) / block_size * 2 + 3;
        std::vector<int32_t> slots = scattered_slots(n, num_blocks, block_size, rng);
        if (n > 3) slots[2] = -1;  // a padding token: rotated, not stored

        GuardedBuffer d_qkv = upload_bf16(qkv);
        GuardedBuffer d_pos = upload(positions);
        GuardedBuffer d_slots = upload(slots);
        const PagedKVLayout layout{block_size, c.kv_heads, c.head_dim};
        const size_t pool_count = static_cast<size_t>(num_blocks) * layout.block_stride();
        GuardedBuffer d_k_pool(pool_count * sizeof(uint16_t)), d_v_pool(pool_count * sizeof(uint16_t));

        RopeKVParams p;
        p.qkv = d_qkv.as<bf16>();
        p.row_stride = row_stride;
        p.n_tokens = n;
        p.q_heads = c.q_heads;
        p.kv_heads = c.kv_heads;
        p.head_dim = c.head_dim;
        p.positions = d_pos.as<int32_t>();
        p.inv_freq = d_inv_freq.as<float>();
        p.slot_mapping = d_slots.as<int32_t>();
        p.k_pool = d_k_pool.as<bf16>();
        p.v_pool = d_v_pool.as<bf16>();
        p.block_size = block_size;
        rope_kv_append(p, nullptr);

        // Reference: rotate Q and K of the fp32 copy of the bf16 input.
        std::vector<float> ref = qkv;
        rope_ref(ref.data(), n, c.q_heads, c.head_dim, row_stride, positions.data(), inv_freq.data());
        rope_ref(ref.data() + q_size, n, c.kv_heads, c.head_dim, row_stride, positions.data(), inv_freq.data());
        const std::vector<float> got = download_bf16(d_qkv, qkv_count);
        const std::vector<uint16_t> got_bits = download_bits(d_qkv, qkv_count);
        const std::vector<uint16_t> in_bits = to_bf16_bits(qkv);
        std::vector<float> got_q, ref_q, got_k, ref_k;
        bool v_and_pad_untouched = true;
        for (int t = 0; t < n; ++t) {
          const size_t row = static_cast<size_t>(t) * row_stride;
          got_q.insert(got_q.end(), got.begin() + row, got.begin() + row + q_size);
          ref_q.insert(ref_q.end(), ref.begin() + row, ref.begin() + row + q_size);
          got_k.insert(got_k.end(), got.begin() + row + q_size, got.begin() + row + q_size + kv_size);
          ref_k.insert(ref_k.end(), ref.begin() + row + q_size, ref.begin() + row + q_size + kv_size);
          for (int64_t j = q_size + kv_size; j < row_stride; ++j) {
            v_and_pad_untouched = v_and_pad_untouched && got_bits[row + j] == in_bits[row + j];
          }
        }
        // cos/sin of angles up to 1.3e5 rad: both sides take the same fp32 angle and an accurate sin/cos,
        // so the only gap is the bf16 rounding of the result (and ~1e-7 of fp32 noise near zero: atol).
        check(q_stats, got_q, ref_q, 1e-5, kBf16Rtol);
        check(k_stats, got_k, ref_k, 1e-5, kBf16Rtol);
        CHECK(v_and_pad_untouched);
        CHECK(d_qkv.sentinel_intact());

        // Pools: stored K is the rotated K bit for bit, stored V the input V; every other slot untouched.
        const std::vector<uint16_t> k_pool = download_bits(d_k_pool, pool_count);
        const std::vector<uint16_t> v_pool = download_bits(d_v_pool, pool_count);
        std::vector<char> written(pool_count, 0);
        bool pools_match = true;
        for (int t = 0; t < n; ++t) {
          if (slots[t] < 0) continue;
          for (int h = 0; h < c.kv_heads; ++h) {
            const int64_t dst = layout.offset(slots[t], h);
            const size_t src = static_cast<size_t>(t) * row_stride + q_size + static_cast<size_t>(h) * c.head_dim;
            for (int d = 0; d < c.head_dim; ++d) {
              pools_match = pools_match && k_pool[dst + d] == got_bits[src + d] &&
                            v_pool[dst + d] == in_bits[src + kv_size + d];
              written[dst + d] = 1;
            }
          }
        }
        bool rest_poisoned = true;
        for (size_t i = 0; i < pool_count; ++i) {
          if (!written[i]) rest_poisoned = rest_poisoned && k_pool[i] == 0xFFFF && v_pool[i] == 0xFFFF;
        }
        CHECK(pools_match);
        CHECK(rest_poisoned);
        CHECK(d_k_pool.sentinel_intact());
        CHECK(d_v_pool.sentinel_intact());
      }
    }
  }
}

TEST_CASE("kv_append copies K/V rows to scattered pool slots", "[gpu][elementwise][kv_append]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Stats stats("kv_append");
  for (int head_dim : {64, 128, 36}) {
    for (int block_size : {1, 16}) {
      for (int n : kRows) {
        const int kv_heads = 8;
        CAPTURE(head_dim, block_size, n);
        const int64_t row_stride = 2 * static_cast<int64_t>(kv_heads) * head_dim;  // [K | V] rows
        const std::vector<float> kv = round_to_bf16(random_floats(static_cast<size_t>(n) * row_stride, rng));
        const int num_blocks = (n + block_size - 1) / block_size * 2 + 1;
        const std::vector<int32_t> slots = scattered_slots(n, num_blocks, block_size, rng);
        GuardedBuffer d_kv = upload_bf16(kv);
        GuardedBuffer d_slots = upload(slots);
        const PagedKVLayout layout{block_size, kv_heads, head_dim};
        const size_t pool_count = static_cast<size_t>(num_blocks) * layout.block_stride();
        GuardedBuffer d_k_pool(pool_count * sizeof(uint16_t)), d_v_pool(pool_count * sizeof(uint16_t));
        const bf16* k = d_kv.as<bf16>();
        kv_append(k, k + static_cast<int64_t>(kv_heads) * head_dim, row_stride, n, d_slots.as<int32_t>(), layout,
                  d_k_pool.as<bf16>(), d_v_pool.as<bf16>(), nullptr);
        // Reference pools start from the same poison (NaN), so untouched slots compare as NaN == NaN below.
        std::vector<float> ref_k(pool_count, NAN), ref_v(pool_count, NAN);
        kv_append_ref(kv.data(), kv.data() + static_cast<int64_t>(kv_heads) * head_dim, row_stride, n, slots.data(),
                      layout, ref_k.data(), ref_v.data());
        const std::vector<float> got_k = download_bf16(d_k_pool, pool_count);
        const std::vector<float> got_v = download_bf16(d_v_pool, pool_count);
        bool same = true;
        for (size_t i = 0; i < pool_count; ++i) {
          const bool k_ok = std::isnan(ref_k[i]) ? std::isnan(got_k[i]) : got_k[i] == ref_k[i];
          const bool v_ok = std::isnan(ref_v[i]) ? std::isnan(got_v[i]) : got_v[i] == ref_v[i];
          same = same && k_ok && v_ok;
        }
        stats.add(CompareResult{same, same ? 0u : 1u, 0, 0, 0, ""});
        CHECK(same);
        CHECK(d_k_pool.sentinel_intact());
        CHECK(d_v_pool.sentinel_intact());
      }
    }
  }
}

}  // namespace fc::test
