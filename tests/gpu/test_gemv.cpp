// fc::gemv (kernels/gemv.cuh) against the CPU references on fresh random inputs: every input/output mode,
// both kernels (the bulk-copy one where this build and GPU carry it; the test says when it is skipped),
// in_dim not a multiple of the 256-element warp step (tails), odd out_dim (a task with one real row),
// one and two rows per task, the LLaMA 3.1 8B projection shapes, programmatic dependent launch on and
// off, and a PDL chain in which a kernel reads what the kernel before it writes (a missing wait reads
// the poison). The same cases with e4m3 weights ([fp8]): per-output-row scales as --quantize fp8 makes
// them (quantize_fp8_per_channel) and a per-tensor scale folded over the rows (an FP8 checkpoint's
// "tensor" strategy), against matmul_ref on the dequantized weights (code x scale in fp32, as the CPU
// backend computes with them).
//
// Tolerance. bf16 x bf16 products are exact in fp32; the GPU and matmul_ref differ only in summation
// order, < 1e-6 * in_dim for inputs in [-1, 1] (see test_gemm.cpp). e4m3 weights: the kernel computes
// scale x sum(code x x), the reference sum((code x scale) x x); both products are exact in fp32 but the
// reference rounds code x scale per element (relative 2^-24: 6e-8 x sum |w x|, inside the same bound), and
// the dequantized weights lie in [-1, 1] like the bf16 ones, so the bounds below hold unchanged. bf16
// outputs add one rounding
// (rtol 2^-7 keeps a 2x margin), fp32 outputs rtol 1e-5. kRmsNorm: x is rounded to bf16 on both sides
// from inv_rms values that may differ in the last fp32 bit, so an element of x that lies within a few
// fp32 ulps of a bf16 rounding midpoint can round the other way on the GPU. Such elements are found on
// the CPU, and each output's tolerance adds what flipping all of them could move it: sum |w| x one bf16
// ulp of x over those elements (usually none). SwiGLU carries the product errors through silu(g) * u
// per element (|silu'| <= 1.1, |silu(g)| <= |g|), so no output gets a tolerance from another's scale.
// The NMSE must stay below 1e-5 (fp32) or 2e-5 (bf16) in every case, so a systematic error cannot hide
// inside the per-element bounds.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <tuple>
#include <vector>

#include "core/dtype.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/gemv.cuh"
#include "kernels/rope.h"
#include "model/quantization.h"
#include "tests/gpu/gpu_test_util.h"

namespace fc::test {
namespace {

enum class Fp8Scales { kPerChannel, kPerTensor };

struct Case {
  int in_dim, out_dim;
  GemvInput input;
  GemvOutput output;
  bool pdl;
  GemvKernel kernel;
  GemvWeight weight = GemvWeight::kBf16;
  Fp8Scales scales = Fp8Scales::kPerChannel;  // kE4m3 only
};

const char* name(GemvWeight w) { return w == GemvWeight::kBf16 ? "bf16" : "e4m3"; }
const char* name(Fp8Scales s) { return s == Fp8Scales::kPerChannel ? "per-channel" : "per-tensor"; }

// A case's weights (out_dim N, in_dim K) on the device and the fp32 values the reference multiplies with:
// bf16 values; or e4m3 codes with per-row scales, and code x scale.
struct CaseWeights {
  std::vector<float> values;
  GuardedBuffer w, scales;
};

CaseWeights make_weights(GemvWeight type, Fp8Scales scale_kind, size_t N, size_t K, std::mt19937& rng) {
  if (type == GemvWeight::kBf16) {
    CaseWeights cw{round_to_bf16(random_floats(N * K, rng)), GuardedBuffer(N * K * 2), GuardedBuffer(4)};
    cw.w.upload(to_bf16_bits(cw.values).data(), N * K * 2);
    return cw;
  }
  const std::vector<float> raw = random_floats(N * K, rng);
  Fp8Matrix m;
  if (scale_kind == Fp8Scales::kPerChannel) {
    m = quantize_fp8_per_channel(raw.data(), int64_t(N), int64_t(K));
  } else {  // one scale for the whole matrix, repeated over its rows (model/quantization.h fp8_channel_scales)
    float amax = 0;
    for (float v : raw) amax = std::max(amax, std::fabs(v));
    const float scale = amax / kE4m3Max;
    m.rows = int64_t(N);
    m.cols = int64_t(K);
    m.scales.assign(N, scale);
    m.codes.resize(N * K);
    for (size_t i = 0; i < N * K; ++i) m.codes[i] = f32_to_e4m3(raw[i] / scale);
  }
  CaseWeights cw{std::vector<float>(N * K), GuardedBuffer(N * K), GuardedBuffer(N * 4)};
  dequantize_fp8(m, cw.values.data());
  cw.w.upload(m.codes.data(), N * K);
  cw.scales.upload(m.scales.data(), N * 4);
  return cw;
}

const char* name(GemvInput i) { return i == GemvInput::kBf16 ? "bf16" : "rmsnorm"; }
const char* name(GemvOutput o) {
  switch (o) {
    case GemvOutput::kBf16: return "bf16";
    case GemvOutput::kF32: return "f32";
    case GemvOutput::kAddF32: return "add_f32";
    case GemvOutput::kSwiglu: return "swiglu";
    case GemvOutput::kRopeKV: return "rope_kv";
  }
  return "?";
}
const char* name(GemvKernel k) { return k == GemvKernel::kRegisters ? "registers" : "bulk_copy"; }

// The kernels this build runs on this GPU; says once which it skips.
std::vector<GemvKernel> kernels() {
  static const bool bulk = [] {
    const bool available = gemv_bulk_copy_available();
    if (!available) std::printf("[gemv] bulk-copy kernel not in this build for this GPU: its cases are skipped\n");
    return available;
  }();
  if (bulk) return {GemvKernel::kRegisters, GemvKernel::kBulkCopy};
  return {GemvKernel::kRegisters};
}

struct Stats {
  int cases = 0;
  double max_nmse = 0;
  ~Stats() { std::printf("[gemv] %d checks, max NMSE %.3g\n", cases, max_nmse); }
};

// One bf16 ulp of the bf16 value nearest v (the step between it and its neighbour away from zero).
double bf16_ulp(float v) {
  const double a = std::fabs(double(v));
  if (a == 0) return std::ldexp(1.0, -133);
  return std::ldexp(1.0, std::ilogb(a) - 7);
}

// Whether fp32 value v lies so close to the midpoint between two bf16 values that a last-bit change of
// the normalization could round it the other way.
bool near_bf16_midpoint(float v) {
  const double ulp = bf16_ulp(v);
  const double below = std::floor(double(v) / ulp) * ulp;
  return std::fabs(double(v) - (below + ulp / 2)) <= 8e-7 * std::fabs(double(v));
}

void run_case(const Case& c, std::mt19937& rng, Stats& stats) {
  CAPTURE(c.in_dim, c.out_dim, name(c.input), name(c.output), c.pdl, name(c.kernel), name(c.weight), name(c.scales));
  const size_t K = c.in_dim, N = c.out_dim;
  const CaseWeights cw = make_weights(c.weight, c.scales, N, K, rng);
  const std::vector<float>& w = cw.values;

  // x as the kernel sees it (bf16 values), the device inputs, and the x elements that may round the
  // other way on the GPU (kRmsNorm) with the size of that flip.
  std::vector<float> x(K);
  std::vector<std::pair<size_t, double>> flips;
  GuardedBuffer d_x(K * 2), d_residual(K * 4), d_norm(K * 2);
  if (c.input == GemvInput::kBf16) {
    x = round_to_bf16(random_floats(K, rng));
    d_x.upload(to_bf16_bits(x).data(), K * 2);
  } else {
    std::vector<float> residual = random_floats(K, rng, -3.f, 3.f);
    const std::vector<float> norm = round_to_bf16(random_floats(K, rng, 0.5f, 1.5f));
    d_residual.upload(residual.data(), K * 4);
    d_norm.upload(to_bf16_bits(norm).data(), K * 2);
    rmsnorm_ref(residual.data(), norm.data(), 1, static_cast<int>(K), 1e-5f, x.data());
    for (size_t k = 0; k < K; ++k) {
      if (near_bf16_midpoint(x[k])) flips.push_back({k, bf16_ulp(x[k])});
    }
    x = round_to_bf16(x);
  }

  std::vector<float> product(N);
  matmul_ref(x.data(), w.data(), 1, static_cast<int>(K), static_cast<int>(N), product.data());
  // Each product's bound: summation order, plus every possible flip of x.
  std::vector<double> product_err(N, 1e-6 * K);
  for (size_t n = 0; n < N; ++n) {
    for (const auto& [k, ulp] : flips) product_err[n] += std::fabs(w[n * K + k]) * ulp;
  }
  const bool swiglu = c.output == GemvOutput::kSwiglu;
  const size_t out_cols = swiglu ? N / 2 : N;
  const bool f32_out = c.output == GemvOutput::kF32 || c.output == GemvOutput::kAddF32;
  std::vector<float> ref(out_cols), initial(out_cols, 0.f);
  std::vector<double> atol(out_cols);
  GuardedBuffer d_out(out_cols * (f32_out ? 4 : 2));
  d_out.poison();
  if (c.output == GemvOutput::kAddF32) {
    initial = random_floats(out_cols, rng, -8.f, 8.f);
    d_out.upload(initial.data(), out_cols * 4);
  }
  if (swiglu) {
    swiglu_ref(product.data(), 1, static_cast<int>(out_cols), ref.data());  // product is [gate | up]
    for (size_t j = 0; j < out_cols; ++j) {
      const double g = std::fabs(product[j]), u = std::fabs(product[out_cols + j]);
      const double dg = product_err[j], du = product_err[out_cols + j];
      atol[j] = 1.1 * (u + du) * dg + (g + dg) * du;
    }
  } else {
    for (size_t j = 0; j < N; ++j) {
      ref[j] = product[j] + initial[j];
      atol[j] = product_err[j];
    }
  }

  GemvArgs a;
  a.w = cw.w.get();
  a.weight = c.weight;
  a.w_scales = c.weight == GemvWeight::kE4m3 ? cw.scales.as<float>() : nullptr;
  a.in_dim = c.in_dim;
  a.out_dim = c.out_dim;
  a.input = c.input;
  a.x = d_x.as<bf16>();
  a.residual = d_residual.as<float>();
  a.norm_weight = d_norm.as<bf16>();
  a.eps = 1e-5f;
  a.output = c.output;
  a.out = d_out.get();
  a.kernel = c.kernel;
  a.pdl = c.pdl;
  REQUIRE(gemv_supported(a));
  gemv(a, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());

  std::vector<float> got(out_cols);
  if (f32_out) {
    d_out.download(got.data(), got.size() * 4);
  } else {
    std::vector<uint16_t> bits(got.size());
    d_out.download(bits.data(), bits.size() * 2);
    got = from_bf16_bits(bits);
  }
  const double rtol = f32_out ? 1e-5 : 1.0 / 128;
  const CompareResult r = compare(got, ref, atol, rtol);
  ++stats.cases;
  stats.max_nmse = std::max(stats.max_nmse, r.nmse);
  INFO(r.summary << "; " << flips.size() << " x elements near a rounding midpoint");
  CHECK(r.ok);
  // bf16 outputs: rounding alone gives each element a relative error up to 2^-8, so NMSE up to 2^-16
  // (1.5e-5) when only a few elements are compared (seen: one SwiGLU element, NMSE 1.42e-5).
  CHECK(r.nmse < (f32_out ? 1e-5 : 2e-5));
  CHECK(d_out.sentinel_intact());
}

}  // namespace

TEST_CASE("gemv matches matmul_ref in every mode (tails, odd out_dim, PDL on/off, both kernels)", "[gpu][gemv]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Stats stats;
  const GemvOutput outs[] = {GemvOutput::kBf16, GemvOutput::kF32, GemvOutput::kAddF32, GemvOutput::kSwiglu};
  for (GemvKernel k : kernels()) {
    for (GemvInput in : {GemvInput::kBf16, GemvInput::kRmsNorm}) {
      for (GemvOutput out : outs) {
        const bool sw = out == GemvOutput::kSwiglu;
        for (bool pdl : {false, true}) {
          run_case({264, 38, in, out, pdl, k}, rng, stats);  // 33 chunks: one full warp step + 1 lane
        }
        run_case({8, sw ? 2 : 1, in, out, false, k}, rng, stats);      // the smallest shape
        run_case({64, sw ? 2 : 1, in, out, true, k}, rng, stats);      // one task, a partial lane step
        run_case({2056, 518, in, out, true, k}, rng, stats);           // 257 chunks: 8 unrolled batches + 1
        if (!sw) run_case({72, 17, in, out, false, k}, rng, stats);    // odd out_dim: a task with one real row
        // Many tasks per warp (grid-strided), a partial last round, two rows per task; and 6336 rows, which
        // on a 132-SM GPU fill 3 whole rounds of one-row tasks (launch_tuned's wave-quantization choice).
        run_case({1032, sw ? 20002 : 20001, in, out, true, k}, rng, stats);
        if (!sw) run_case({1032, 6336, in, out, false, k}, rng, stats);
        run_case({8256, sw ? 262 : 261, in, out, false, k}, rng, stats);  // 1032 chunks: a tail piece
      }
    }
  }
}

TEST_CASE("gemv at the LLaMA 3.1 8B decode shapes", "[gpu][gemv]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Stats stats;
  for (GemvKernel k : kernels()) {
    run_case({4096, 6144, GemvInput::kRmsNorm, GemvOutput::kBf16, true, k}, rng, stats);     // qkv
    run_case({4096, 4096, GemvInput::kBf16, GemvOutput::kAddF32, true, k}, rng, stats);      // o_proj
    run_case({4096, 28672, GemvInput::kRmsNorm, GemvOutput::kSwiglu, true, k}, rng, stats);  // gate_up
    run_case({14336, 4096, GemvInput::kBf16, GemvOutput::kAddF32, true, k}, rng, stats);     // down
    run_case({4096, 32003, GemvInput::kRmsNorm, GemvOutput::kF32, true, k}, rng, stats);     // lm_head-like, odd N
  }
}

TEST_CASE("gemv quick", "[gpu][gemv][quick]") {
  std::mt19937 rng(7);
  Stats stats;
  for (GemvKernel k : kernels()) {
    run_case({264, 38, GemvInput::kRmsNorm, GemvOutput::kSwiglu, true, k}, rng, stats);
    run_case({2056, 70, GemvInput::kBf16, GemvOutput::kAddF32, true, k}, rng, stats);
  }
}

// A PDL chain: kernel 2 reads kernel 1's output, kernel 3 reads kernel 2's. If griddepcontrol.wait were
// missing, the later kernels would start on poisoned (NaN) inputs and the check would fail.
TEST_CASE("gemv chained with programmatic dependent launch reads complete inputs", "[gpu][gemv][quick]") {
  std::mt19937 rng(11);
  const int K = 4096, N = 4096;
  const std::vector<float> w1 = round_to_bf16(random_floats(size_t(N) * K, rng, -0.03f, 0.03f));
  const std::vector<float> w2 = round_to_bf16(random_floats(size_t(N) * K, rng, -0.03f, 0.03f));
  const std::vector<float> x = round_to_bf16(random_floats(K, rng));
  GuardedBuffer d_w1(w1.size() * 2), d_w2(w2.size() * 2), d_x(K * 2), d_y(N * 2), d_z(N * 4);
  d_w1.upload(to_bf16_bits(w1).data(), w1.size() * 2);
  d_w2.upload(to_bf16_bits(w2).data(), w2.size() * 2);
  d_x.upload(to_bf16_bits(x).data(), K * 2);
  std::vector<float> y(N), z(N);
  matmul_ref(x.data(), w1.data(), 1, K, N, y.data());
  y = round_to_bf16(y);
  matmul_ref(y.data(), w2.data(), 1, K, N, z.data());
  const std::vector<GemvKernel> ks = kernels();
  for (int rep = 0; rep < 16; ++rep) {  // every kernel after every kernel, itself included
    d_y.poison();
    d_z.poison();
    CUDA_CHECK(cudaDeviceSynchronize());
    GemvArgs a;
    a.w = d_w1.as<bf16>();
    a.in_dim = K;
    a.out_dim = N;
    a.x = d_x.as<bf16>();
    a.out = d_y.get();
    a.pdl = true;
    a.kernel = ks[rep % ks.size()];
    gemv(a, nullptr);
    a.kernel = ks[(rep / ks.size()) % ks.size()];
    a.w = d_w2.as<bf16>();
    a.x = d_y.as<bf16>();
    a.output = GemvOutput::kF32;
    a.out = d_z.get();
    gemv(a, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> got(N);
    d_z.download(got.data(), N * 4);
    const CompareResult r = compare(got, z, 1e-6 * K + 1e-3, 1.0 / 128);
    INFO("rep " << rep << ": " << r.summary);
    REQUIRE(r.ok);
  }
}

// kRopeKV against matmul_ref -> bf16 -> rope_ref -> bf16 -> kv_append_ref: the QKV row and both pools
// (every element: unwritten slots must keep their random contents). Slot -1 appends nothing. GQA 4 q
// heads / 2 kv heads, head_dim 64 and 128, positions up to 100000 (llama3-scale angles).
void run_rope_case(int in_dim, int head_dim, bool append, bool pdl, GemvKernel kernel, std::mt19937& rng,
                   Stats& stats, GemvWeight weight = GemvWeight::kBf16, Fp8Scales scales = Fp8Scales::kPerChannel) {
  const int rows = 1;
  CAPTURE(in_dim, head_dim, append, pdl, name(kernel), name(weight), name(scales));
  const int q_heads = 4, kv_heads = 2, block_size = 16, num_blocks = 5;
  const int out_dim = (q_heads + 2 * kv_heads) * head_dim, q_dim = q_heads * head_dim, kv_dim = kv_heads * head_dim;
  const size_t K = in_dim, N = out_dim, M = rows;
  const CaseWeights cw = make_weights(weight, scales, N, K, rng);
  const std::vector<float>& w = cw.values;
  std::vector<float> residual = random_floats(M * K, rng, -3.f, 3.f);
  const std::vector<float> norm = round_to_bf16(random_floats(K, rng, 0.5f, 1.5f));
  std::vector<float> x(M * K);
  rmsnorm_ref(residual.data(), norm.data(), rows, in_dim, 1e-5f, x.data());
  x = round_to_bf16(x);
  std::vector<float> qkv(M * N);
  matmul_ref(x.data(), w.data(), rows, in_dim, out_dim, qkv.data());
  qkv = round_to_bf16(qkv);
  std::vector<int32_t> positions(M), slots(M);
  std::uniform_int_distribution<int> pos_dist(0, 100000);
  std::vector<int32_t> all_slots(num_blocks * block_size);
  for (size_t i = 0; i < all_slots.size(); ++i) all_slots[i] = static_cast<int32_t>(i);
  std::shuffle(all_slots.begin(), all_slots.end(), rng);
  for (size_t m = 0; m < M; ++m) {
    positions[m] = pos_dist(rng);
    slots[m] = append ? all_slots[m] : -1;
  }
  std::vector<float> inv_freq(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) inv_freq[i] = std::pow(500000.f, -2.f * i / head_dim);
  rope_ref(qkv.data(), rows, q_heads + kv_heads, head_dim, out_dim, positions.data(), inv_freq.data());
  qkv = round_to_bf16(qkv);
  const PagedKVLayout layout{block_size, kv_heads, head_dim};
  const size_t pool_count = size_t(num_blocks) * layout.block_stride();
  std::vector<float> k_pool = round_to_bf16(random_floats(pool_count, rng)), v_pool = round_to_bf16(random_floats(pool_count, rng));
  GuardedBuffer d_residual(M * K * 4), d_norm(K * 2), d_out(M * N * 2), d_pos(M * 4), d_slots(M * 4),
      d_freq(inv_freq.size() * 4), d_k(pool_count * 2), d_v(pool_count * 2);
  d_residual.upload(residual.data(), M * K * 4);
  d_norm.upload(to_bf16_bits(norm).data(), K * 2);
  d_pos.upload(positions.data(), M * 4);
  d_slots.upload(slots.data(), M * 4);
  d_freq.upload(inv_freq.data(), inv_freq.size() * 4);
  d_k.upload(to_bf16_bits(k_pool).data(), pool_count * 2);
  d_v.upload(to_bf16_bits(v_pool).data(), pool_count * 2);
  d_out.poison();
  for (int m = 0; m < rows; ++m) {  // kv_append_ref takes real slots only
    if (slots[m] < 0) continue;
    const float* row = qkv.data() + size_t(m) * out_dim;
    kv_append_ref(row + q_dim, row + q_dim + kv_dim, out_dim, 1, &slots[m], layout, k_pool.data(), v_pool.data());
  }

  GemvArgs a;
  a.w = cw.w.get();
  a.weight = weight;
  a.w_scales = weight == GemvWeight::kE4m3 ? cw.scales.as<float>() : nullptr;
  a.in_dim = in_dim;
  a.out_dim = out_dim;
  a.input = GemvInput::kRmsNorm;
  a.residual = d_residual.as<float>();
  a.norm_weight = d_norm.as<bf16>();
  a.output = GemvOutput::kRopeKV;
  a.out = d_out.get();
  a.rope = {q_heads, kv_heads, head_dim, d_pos.as<int32_t>(), d_freq.as<float>(), d_slots.as<int32_t>(),
            d_k.as<bf16>(), d_v.as<bf16>(), layout};
  a.pdl = pdl;
  REQUIRE(gemv_supported(a));
  a.kernel = kernel;
  gemv(a, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  auto download_bf16 = [](const GuardedBuffer& b, size_t count) {
    std::vector<uint16_t> bits(count);
    b.download(bits.data(), count * 2);
    return from_bf16_bits(bits);
  };
  // The projection is rounded to bf16 before the rotation, and the two summation orders can round an
  // element to neighbouring bf16 values: one ulp of the largest element, 2^-8 max|x| (0.5 at |x| ~ 100,
  // seen at K = 4096), which the rotation can move onto a small output. atol covers two such ulps; the
  // NMSE bound below is what catches a real error.
  double max_abs = 0;
  for (float v : qkv) max_abs = std::max(max_abs, double(std::fabs(v)));
  const double atol = 1e-6 * K + max_abs / 128, rtol = 1.0 / 128;
  for (const auto& [got, ref, what] : {std::make_tuple(download_bf16(d_out, M * N), qkv, "qkv row"),
                                       std::make_tuple(download_bf16(d_k, pool_count), k_pool, "k pool"),
                                       std::make_tuple(download_bf16(d_v, pool_count), v_pool, "v pool")}) {
    const CompareResult r = compare(got, ref, atol, rtol);
    ++stats.cases;
    stats.max_nmse = std::max(stats.max_nmse, r.nmse);
    INFO(what << ": " << r.summary);
    CHECK(r.ok);
    CHECK(r.nmse < 2e-5);  // bf16 out: see run_case
  }
  CHECK(d_out.sentinel_intact());
  CHECK(d_k.sentinel_intact());
  CHECK(d_v.sentinel_intact());
}

TEST_CASE("gemv kRopeKV: projection, RoPE and paged K/V append in one kernel", "[gpu][gemv][quick]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Stats stats;
  for (GemvKernel k : kernels()) {
    run_rope_case(264, 64, true, true, k, rng, stats);
    run_rope_case(1088, 128, false, false, k, rng, stats);
    run_rope_case(4096, 128, true, false, k, rng, stats);
    run_rope_case(4096, 128, true, true, k, rng, stats);
  }
}

// e4m3 weights: every input/output mode, both kernels, both scale kinds, in_dim a multiple of 16 (one
// 16-byte load of codes) but not of the 512-element warp step (tails), odd out_dim, one and two rows per
// task, many tasks per warp; then the LLaMA 3.1 8B decode shapes and the fused RoPE + K/V append.
TEST_CASE("gemv with e4m3 weights matches matmul_ref on the dequantized weights", "[gpu][gemv][fp8]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Stats stats;
  const GemvWeight e4m3 = GemvWeight::kE4m3;
  const GemvOutput outs[] = {GemvOutput::kBf16, GemvOutput::kF32, GemvOutput::kAddF32, GemvOutput::kSwiglu};
  for (GemvKernel k : kernels()) {
    for (Fp8Scales sc : {Fp8Scales::kPerChannel, Fp8Scales::kPerTensor}) {
      for (GemvInput in : {GemvInput::kBf16, GemvInput::kRmsNorm}) {
        for (GemvOutput out : outs) {
          const bool sw = out == GemvOutput::kSwiglu;
          for (bool pdl : {false, true}) run_case({528, 38, in, out, pdl, k, e4m3, sc}, rng, stats);  // 33 loads
          run_case({16, sw ? 2 : 1, in, out, false, k, e4m3, sc}, rng, stats);   // the smallest shape
          run_case({128, sw ? 2 : 1, in, out, true, k, e4m3, sc}, rng, stats);   // one task, a partial lane step
          run_case({4112, 518, in, out, true, k, e4m3, sc}, rng, stats);         // 257 loads: 8 batches + 1
          if (!sw) run_case({144, 17, in, out, false, k, e4m3, sc}, rng, stats);  // odd out_dim
          run_case({1040, sw ? 20002 : 20001, in, out, true, k, e4m3, sc}, rng, stats);  // many tasks per warp
          if (!sw) run_case({1040, 6336, in, out, false, k, e4m3, sc}, rng, stats);
          run_case({16512, sw ? 262 : 261, in, out, false, k, e4m3, sc}, rng, stats);  // 1032 loads: a tail piece
        }
      }
      for (const auto& [in_dim, head_dim, append, pdl] :
           {std::tuple{528, 64, true, true}, std::tuple{1088, 128, false, false}, std::tuple{4096, 128, true, true}}) {
        run_rope_case(in_dim, head_dim, append, pdl, k, rng, stats, e4m3, sc);
      }
    }
  }
}

TEST_CASE("gemv with e4m3 weights at the LLaMA 3.1 8B decode shapes", "[gpu][gemv][fp8]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Stats stats;
  const GemvWeight e4m3 = GemvWeight::kE4m3;
  const Fp8Scales ch = Fp8Scales::kPerChannel;
  for (GemvKernel k : kernels()) {
    run_rope_case(4096, 128, true, true, k, rng, stats, e4m3, ch);                                   // qkv
    run_case({4096, 4096, GemvInput::kBf16, GemvOutput::kAddF32, true, k, e4m3, ch}, rng, stats);     // o_proj
    run_case({4096, 28672, GemvInput::kRmsNorm, GemvOutput::kSwiglu, true, k, e4m3, ch}, rng, stats);  // gate_up
    run_case({14336, 4096, GemvInput::kBf16, GemvOutput::kAddF32, true, k, e4m3, ch}, rng, stats);    // down
  }
}

TEST_CASE("gemv with e4m3 weights refuses what it does not support", "[gpu][gemv][fp8]") {
  DeviceBuffer buf(1 << 20);
  GemvArgs a;
  a.w = buf.get();
  a.weight = GemvWeight::kE4m3;
  a.w_scales = buf.as<float>();
  a.x = buf.as<bf16>();
  a.out = buf.get();
  a.in_dim = 24;  // a multiple of 8 (enough for bf16) but not of 16
  a.out_dim = 16;
  CHECK_FALSE(gemv_supported(a));
  CHECK_THROWS_WITH(gemv(a, nullptr), Catch::Contains("e4m3"));
  a.in_dim = 32;
  CHECK(gemv_supported(a));
  a.w_scales = nullptr;  // e4m3 needs its row scales
  CHECK_FALSE(gemv_supported(a));
}

TEST_CASE("gemv refuses what it does not support", "[gpu][gemv]") {
  DeviceBuffer buf(1 << 20);
  GemvArgs a;
  a.w = buf.as<bf16>();
  a.x = buf.as<bf16>();
  a.out = buf.get();
  a.in_dim = 60;  // not a multiple of 8
  a.out_dim = 16;
  CHECK_FALSE(gemv_supported(a));
  CHECK_THROWS_WITH(gemv(a, nullptr), Catch::Contains("in_dim 60"));
  a.in_dim = 64;
  CHECK(gemv_supported(a));
  a.x = buf.as<bf16>() + 1;  // misaligned
  CHECK_FALSE(gemv_supported(a));
  a.x = buf.as<bf16>();
  a.output = GemvOutput::kSwiglu;
  a.out_dim = 15;  // gate/up pairs
  CHECK_FALSE(gemv_supported(a));
  a.output = GemvOutput::kBf16;
  a.input = GemvInput::kRmsNorm;
  a.residual = buf.as<float>();
  a.norm_weight = buf.as<bf16>();
  a.in_dim = 65536;  // 128 KB of normalized x would not fit in shared memory
  CHECK_FALSE(gemv_supported(a));
  a.in_dim = 8192;
  CHECK(gemv_supported(a));
  // The bulk-copy kernel: where this build and GPU carry it, it takes these arguments; elsewhere it is
  // refused with a message naming what is missing, never replaced by the register kernel.
  a.kernel = GemvKernel::kBulkCopy;
  if (gemv_bulk_copy_available()) {
    CHECK(gemv_supported(a));
  } else {
    CHECK_FALSE(gemv_supported(a));
    CHECK_THROWS_WITH(gemv(a, nullptr), Catch::Contains("sm_90"));
  }
}

}  // namespace fc::test
