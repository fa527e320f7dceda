// fc::gemv_chain (kernels/gemv_chain.cuh): a decode layer's o_proj -> gate/up -> down -> next qkv (or
// lm_head) in one persistent kernel, on fresh random inputs.
//
// 1. Bitwise: the chain must equal the same phases launched one by one with fc::gemv (per-warp bulk
//    kernel, 2 rows a task: the same sums in the same order; test_gemv.cpp checks that one against the
//    CPU references), in every output the phases write (the residual after both adds, the SwiGLU row,
//    the QKV row and both K/V pools, or the logits). Outputs are poisoned before every run; the chain is
//    launched several times in a row on one barrier (it must leave the barrier reusable), with PDL.
//    Sizes: in_dim with a partial last piece (not a multiple of 1024 elements), odd out_dim (a task with
//    one real row), a tiny grid's worth of tasks, and the LLaMA 3.1 8B shapes.
// 2. Against the CPU: the same chain composed from matmul_ref / rmsnorm_ref / swiglu_ref in fp32 with
//    bf16 roundings where the kernels round (x of each normed phase, the SwiGLU row). A flip of one bf16
//    rounding between CPU and GPU moves a logit by up to ~2^-8 of its inputs' scale, so the check is the
//    NMSE (< 1e-4) plus a loose per-element bound.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <tuple>
#include <vector>

#include "core/dtype.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/gemv.cuh"
#include "kernels/gemv_chain.cuh"
#include "tests/gpu/gpu_test_util.h"

namespace fc::test {
namespace {

// gemv_chain runs on sm_90 only; elsewhere a test case says so and passes without checking anything.
bool skip_without_sm90() {
  if (current_device_limits().cc_major >= 9) return false;
  WARN("gemv_chain needs sm_90; skipped");
  return true;
}

struct Shape {
  int hidden, inter, q_heads, kv_heads, head_dim;
  int vocab;  // > 0: the last phase is lm_head (kF32) into `vocab` logits; 0: the next layer's qkv (kRopeKV)
};

// Device state of one chain: weights, inputs, outputs. Built once per shape; run() poisons the outputs,
// resets the inputs and runs either the chain or the phases one by one.
struct ChainFixture {
  Shape s;
  int q_dim, qkv_dim, last_out;
  std::vector<float> wo, wgu, wd, wlast, norm2, norm_last, x_attn, residual0;
  std::vector<int32_t> positions{1234}, slots{5};
  std::vector<float> inv_freq;
  PagedKVLayout layout;
  size_t pool_count = 0;
  std::vector<uint16_t> pool_init;
  GuardedBuffer d_wo, d_wgu, d_wd, d_wlast, d_norm2, d_norm_last, d_x, d_residual, d_act, d_out, d_pos, d_slots,
      d_freq, d_k, d_v, d_barrier;

  ChainFixture(const Shape& shape, std::mt19937& rng)
      : s(shape),
        q_dim(shape.q_heads * shape.head_dim),
        qkv_dim((shape.q_heads + 2 * shape.kv_heads) * shape.head_dim),
        last_out(shape.vocab > 0 ? shape.vocab : qkv_dim),
        layout{16, shape.kv_heads, shape.head_dim},
        pool_count(size_t(8) * layout.block_stride()),
        d_wo(size_t(s.hidden) * q_dim * 2),
        d_wgu(size_t(2) * s.inter * s.hidden * 2),
        d_wd(size_t(s.hidden) * s.inter * 2),
        d_wlast(size_t(last_out) * s.hidden * 2),
        d_norm2(size_t(s.hidden) * 2),
        d_norm_last(size_t(s.hidden) * 2),
        d_x(size_t(q_dim) * 2),
        d_residual(size_t(s.hidden) * 4),
        d_act(size_t(s.inter) * 2),
        d_out(size_t(last_out) * 4),
        d_pos(4),
        d_slots(4),
        d_freq(size_t(s.head_dim / 2) * 4),
        d_k(pool_count * 2),
        d_v(pool_count * 2),
        d_barrier(kGemvChainBarrierBytes) {
    // Scales that keep every stage O(1): weights ~ 1/sqrt(in_dim).
    auto weights = [&](size_t rows, int in_dim) {
      const float a = 1.7f / std::sqrt(float(in_dim));
      return round_to_bf16(random_floats(rows * in_dim, rng, -a, a));
    };
    wo = weights(s.hidden, q_dim);
    wgu = weights(size_t(2) * s.inter, s.hidden);
    wd = weights(s.hidden, s.inter);
    wlast = weights(last_out, s.hidden);
    norm2 = round_to_bf16(random_floats(s.hidden, rng, 0.5f, 1.5f));
    norm_last = round_to_bf16(random_floats(s.hidden, rng, 0.5f, 1.5f));
    x_attn = round_to_bf16(random_floats(q_dim, rng));
    residual0 = random_floats(s.hidden, rng, -2.f, 2.f);
    inv_freq.resize(s.head_dim / 2);
    for (int i = 0; i < s.head_dim / 2; ++i) inv_freq[i] = std::pow(500000.f, -2.f * i / s.head_dim);
    pool_init = to_bf16_bits(round_to_bf16(random_floats(pool_count, rng)));
    d_wo.upload(to_bf16_bits(wo).data(), wo.size() * 2);
    d_wgu.upload(to_bf16_bits(wgu).data(), wgu.size() * 2);
    d_wd.upload(to_bf16_bits(wd).data(), wd.size() * 2);
    d_wlast.upload(to_bf16_bits(wlast).data(), wlast.size() * 2);
    d_norm2.upload(to_bf16_bits(norm2).data(), norm2.size() * 2);
    d_norm_last.upload(to_bf16_bits(norm_last).data(), norm_last.size() * 2);
    d_pos.upload(positions.data(), 4);
    d_slots.upload(slots.data(), 4);
    d_freq.upload(inv_freq.data(), inv_freq.size() * 4);
    d_barrier.poison();
    CUDA_CHECK(cudaMemset(d_barrier.get(), 0, kGemvChainBarrierBytes));
  }

  GemvArgs base(const GuardedBuffer& w, int in_dim, int out_dim, GemvOutput out, void* dst) const {
    GemvArgs a;
    a.w = w.as<bf16>();
    a.in_dim = in_dim;
    a.out_dim = out_dim;
    a.output = out;
    a.out = dst;
    a.eps = 1e-5f;
    a.pdl = true;
    return a;
  }
  GemvArgs normed(const GuardedBuffer& w, const GuardedBuffer& norm, int out_dim, GemvOutput out, void* dst) const {
    GemvArgs a = base(w, s.hidden, out_dim, out, dst);
    a.input = GemvInput::kRmsNorm;
    a.residual = d_residual.as<float>();
    a.norm_weight = norm.as<bf16>();
    return a;
  }

  GemvChainArgs chain(int count) const {
    GemvChainArgs c;
    c.count = count;
    c.barrier = d_barrier.as<uint32_t>();
    c.phases[0] = base(d_wo, q_dim, s.hidden, GemvOutput::kAddF32, d_residual.get());
    c.phases[0].x = d_x.as<bf16>();
    c.phases[1] = normed(d_wgu, d_norm2, 2 * s.inter, GemvOutput::kSwiglu, d_act.get());
    c.phases[2] = base(d_wd, s.inter, s.hidden, GemvOutput::kAddF32, d_residual.get());
    c.phases[2].x = d_act.as<bf16>();
    if (s.vocab > 0) {
      c.phases[3] = normed(d_wlast, d_norm_last, last_out, GemvOutput::kF32, d_out.get());
    } else {
      c.phases[3] = normed(d_wlast, d_norm_last, last_out, GemvOutput::kRopeKV, d_out.get());
      c.phases[3].rope = {s.q_heads, s.kv_heads, s.head_dim, d_pos.as<int32_t>(), d_freq.as<float>(),
                          d_slots.as<int32_t>(), d_k.as<bf16>(), d_v.as<bf16>(), layout};
    }
    return c;
  }

  struct Outputs {
    std::vector<uint32_t> residual, act, out, k, v;  // raw bits (bitwise comparison)
  };

  Outputs run(bool chained, int count, int slots = 3) {
    d_x.upload(to_bf16_bits(x_attn).data(), x_attn.size() * 2);
    d_residual.upload(residual0.data(), residual0.size() * 4);
    d_act.poison();
    d_out.poison();
    d_k.upload(pool_init.data(), pool_count * 2);
    d_v.upload(pool_init.data(), pool_count * 2);
    GemvChainArgs c = chain(count);
    c.slots = slots;
    if (chained) {
      REQUIRE(gemv_chain_supported(c));
      gemv_chain(c, nullptr);
    } else {
      GemvTuning t;
      t.kernel = GemvKernel::kBulkWarp;
      t.rows_per_task = 2;
      for (int i = 0; i < count; ++i) gemv(c.phases[i], t, nullptr);
    }
    CUDA_CHECK(cudaDeviceSynchronize());
    Outputs o;
    auto bits = [](const GuardedBuffer& b, size_t bytes) {
      std::vector<uint32_t> v((bytes + 3) / 4);
      b.download(v.data(), bytes);
      return v;
    };
    o.residual = bits(d_residual, size_t(s.hidden) * 4);
    o.act = bits(d_act, size_t(s.inter) * 2);
    o.out = bits(d_out, size_t(last_out) * (s.vocab > 0 ? 4 : 2));
    o.k = bits(d_k, pool_count * 2);
    o.v = bits(d_v, pool_count * 2);
    CHECK(d_residual.sentinel_intact());
    CHECK(d_act.sentinel_intact());
    CHECK(d_out.sentinel_intact());
    CHECK(d_k.sentinel_intact());
    CHECK(d_v.sentinel_intact());
    CHECK(d_barrier.sentinel_intact());
    return o;
  }
};

size_t differing(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b) {
  size_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
  return n;
}

void check_bitwise(ChainFixture& f, int count, int slots) {
  CAPTURE(f.s.hidden, f.s.inter, f.s.q_heads, f.s.kv_heads, f.s.head_dim, f.s.vocab, count, slots);
  const ChainFixture::Outputs ref = f.run(false, count);
  for (int rep = 0; rep < 3; ++rep) {  // the barrier must come back zeroed for the next launch
    CAPTURE(rep);
    const ChainFixture::Outputs got = f.run(true, count, slots);
    CHECK(differing(got.residual, ref.residual) == 0);
    if (count >= 2) CHECK(differing(got.act, ref.act) == 0);
    if (count >= 4) {
      CHECK(differing(got.out, ref.out) == 0);
      CHECK(differing(got.k, ref.k) == 0);
      CHECK(differing(got.v, ref.v) == 0);
    }
  }
  std::vector<uint32_t> barrier(kGemvChainBarrierBytes / 4);
  f.d_barrier.download(barrier.data(), kGemvChainBarrierBytes);
  for (size_t i = 0; i < barrier.size(); ++i) {
    CAPTURE(i);
    if (i != 1) CHECK(barrier[i] == 0);  // arrivals, exits, task counters reset; [1] counts barriers passed
  }
}

TEST_CASE("gemv_chain equals the phases launched one by one, bitwise", "[gpu][gemv][chain][quick]") {
  if (skip_without_sm90()) return;
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  {
    ChainFixture f({264, 200, 4, 2, 64, 0}, rng);  // one short piece per row, rope last
    for (int count = 1; count <= 4; ++count) check_bitwise(f, count, 3);
    check_bitwise(f, 4, 2);
  }
  {
    ChainFixture f({1032, 2056, 8, 2, 128, 3001}, rng);  // partial last pieces, odd vocab
    check_bitwise(f, 4, 3);
    check_bitwise(f, 4, 2);
  }
}

TEST_CASE("gemv_chain at the LLaMA 3.1 8B decode shapes", "[gpu][gemv][chain]") {
  if (skip_without_sm90()) return;
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  {
    ChainFixture f({4096, 14336, 32, 8, 128, 0}, rng);
    check_bitwise(f, 4, 3);
  }
  {
    ChainFixture f({4096, 14336, 32, 8, 128, 32003}, rng);
    check_bitwise(f, 4, 3);
  }
}

TEST_CASE("gemv_chain against the CPU references", "[gpu][gemv][chain][quick]") {
  if (skip_without_sm90()) return;
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (const Shape& shape : {Shape{1032, 2056, 8, 2, 128, 3001}, Shape{4096, 14336, 32, 8, 128, 32003}}) {
    CAPTURE(shape.hidden, shape.inter, shape.vocab);
    ChainFixture f(shape, rng);
    const ChainFixture::Outputs got = f.run(true, 4);
    const int H = shape.hidden, I = shape.inter;
    std::vector<float> r = f.residual0, proj(H), xn(H), gu(2 * size_t(I)), act(I), logits(shape.vocab);
    matmul_ref(f.x_attn.data(), f.wo.data(), 1, f.q_dim, H, proj.data());
    for (int i = 0; i < H; ++i) r[i] += proj[i];
    rmsnorm_ref(r.data(), f.norm2.data(), 1, H, 1e-5f, xn.data());
    xn = round_to_bf16(xn);
    matmul_ref(xn.data(), f.wgu.data(), 1, H, 2 * I, gu.data());
    swiglu_ref(gu.data(), 1, I, act.data());
    act = round_to_bf16(act);
    matmul_ref(act.data(), f.wd.data(), 1, I, H, proj.data());
    for (int i = 0; i < H; ++i) r[i] += proj[i];
    rmsnorm_ref(r.data(), f.norm_last.data(), 1, H, 1e-5f, xn.data());
    xn = round_to_bf16(xn);
    matmul_ref(xn.data(), f.wlast.data(), 1, H, shape.vocab, logits.data());

    std::vector<float> got_residual(H), got_logits(shape.vocab);
    std::memcpy(got_residual.data(), got.residual.data(), size_t(H) * 4);
    std::memcpy(got_logits.data(), got.out.data(), size_t(shape.vocab) * 4);
    for (const auto& [g, ref, what] : {std::make_tuple(got_residual, r, "residual"),
                                       std::make_tuple(got_logits, logits, "logits")}) {
      double scale = 0;
      for (float v : ref) scale = std::max(scale, double(std::fabs(v)));
      const CompareResult cmp = compare(g, ref, scale / 32, 1.0 / 32);
      INFO(what << ": " << cmp.summary);
      CHECK(cmp.ok);
      CHECK(cmp.nmse < 1e-4);
    }
  }
}

TEST_CASE("gemv_chain refuses what it does not support", "[gpu][gemv][chain]") {
  if (skip_without_sm90()) return;
  std::mt19937 rng(3);
  ChainFixture f({264, 200, 4, 2, 64, 0}, rng);
  GemvChainArgs c = f.chain(4);
  CHECK(gemv_chain_supported(c));
  c.barrier = nullptr;
  CHECK_FALSE(gemv_chain_supported(c));
  CHECK_THROWS_WITH(gemv_chain(c, nullptr), Catch::Contains("gemv_chain: unsupported"));
  c = f.chain(4);
  c.phases[1].rows = 2;  // one-row phases only
  CHECK_FALSE(gemv_chain_supported(c));
  c = f.chain(4);
  c.phases[0].output = GemvOutput::kBf16;  // kBf16 -> kBf16 is not a chain phase
  CHECK_FALSE(gemv_chain_supported(c));
  c = f.chain(4);
  c.count = 0;
  CHECK_FALSE(gemv_chain_supported(c));
  c.count = kGemvChainMaxPhases + 1;
  CHECK_FALSE(gemv_chain_supported(c));
}

}  // namespace
}  // namespace fc::test
