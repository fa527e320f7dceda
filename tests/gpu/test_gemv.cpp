// fc::gemv (kernels/gemv.cuh) against the CPU references on fresh random inputs: every input/output mode,
// rows 1..8, in_dim not a multiple of the 256-element warp step (tails), odd out_dim (a task with one
// real row), the LLaMA 3.1 8B projection shapes, programmatic dependent launch on and off, and a PDL
// chain in which a kernel reads what the kernel before it writes (a missing wait reads the poison).
// Every kernel (GemvKernel): the CTA-cooperative bulk-copy kernel (the sm_90 default), the per-warp one,
// and the register kernel.
//
// Tolerance. bf16 x bf16 products are exact in fp32; the GPU and matmul_ref differ only in summation
// order, < 1e-6 * in_dim for inputs in [-1, 1] (see test_gemm.cpp). bf16 outputs add one rounding
// (rtol 2^-7 keeps a 2x margin), fp32 outputs rtol 1e-5. kRmsNorm: x is rounded to bf16 on both sides
// from inv_rms values that may differ in the last fp32 bit, so an element of x can differ by one bf16
// ulp (2^-8 relative, |x w| <= 4 here); atol adds 2^-6 for those rare flips. The NMSE must stay below
// 1e-5 in every case, so a systematic error cannot hide inside the per-element bounds.
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
#include "tests/gpu/gpu_test_util.h"

namespace fc::test {
namespace {

struct Case {
  int rows, in_dim, out_dim;
  GemvInput input;
  GemvOutput output;
  bool pdl;
  GemvTuning tuning = {};
};

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

const char* name(GemvKernel k) {
  switch (k) {
    case GemvKernel::kRegisters: return "registers";
    case GemvKernel::kBulkWarp: return "bulk_warp";
    case GemvKernel::kBulkCta: return "bulk_cta";
  }
  return "?";
}
constexpr GemvKernel kKernels[] = {GemvKernel::kBulkCta, GemvKernel::kBulkWarp, GemvKernel::kRegisters};

struct Stats {
  int cases = 0;
  double max_nmse = 0;
  ~Stats() { std::printf("[gemv] %d checks, max NMSE %.3g\n", cases, max_nmse); }
};

void run_case(const Case& c, std::mt19937& rng, Stats& stats) {
  CAPTURE(c.rows, c.in_dim, c.out_dim, name(c.input), name(c.output), c.pdl, c.tuning.rows_per_task,
          c.tuning.persistent, c.tuning.ctas_per_sm, name(c.tuning.kernel), c.tuning.slots);
  const size_t K = c.in_dim, N = c.out_dim, M = c.rows;
  const std::vector<float> w = round_to_bf16(random_floats(N * K, rng));
  GuardedBuffer d_w(N * K * 2);
  d_w.upload(to_bf16_bits(w).data(), N * K * 2);

  // x as the kernel sees it (bf16 values), and the device inputs.
  std::vector<float> x(M * K);
  GuardedBuffer d_x(M * K * 2), d_residual(M * K * 4), d_norm(K * 2);
  if (c.input == GemvInput::kBf16) {
    x = round_to_bf16(random_floats(M * K, rng));
    d_x.upload(to_bf16_bits(x).data(), M * K * 2);
  } else {
    std::vector<float> residual = random_floats(M * K, rng, -3.f, 3.f);
    const std::vector<float> norm = round_to_bf16(random_floats(K, rng, 0.5f, 1.5f));
    d_residual.upload(residual.data(), M * K * 4);
    d_norm.upload(to_bf16_bits(norm).data(), K * 2);
    rmsnorm_ref(residual.data(), norm.data(), static_cast<int>(M), static_cast<int>(K), 1e-5f, x.data());
    x = round_to_bf16(x);
  }

  std::vector<float> product(M * N);
  matmul_ref(x.data(), w.data(), static_cast<int>(M), static_cast<int>(K), static_cast<int>(N), product.data());
  const bool swiglu = c.output == GemvOutput::kSwiglu;
  const size_t out_cols = swiglu ? N / 2 : N;
  const bool f32_out = c.output == GemvOutput::kF32 || c.output == GemvOutput::kAddF32;
  std::vector<float> ref(M * out_cols), initial(M * out_cols, 0.f);
  GuardedBuffer d_out(M * out_cols * (f32_out ? 4 : 2));
  d_out.poison();
  if (c.output == GemvOutput::kAddF32) {
    initial = random_floats(M * out_cols, rng, -8.f, 8.f);
    d_out.upload(initial.data(), M * out_cols * 4);
  }
  if (swiglu) {
    std::vector<float> gate_up(M * N);  // matmul output is already [gate | up] per row
    gate_up = product;
    swiglu_ref(gate_up.data(), static_cast<int>(M), static_cast<int>(out_cols), ref.data());
  } else {
    for (size_t i = 0; i < ref.size(); ++i) ref[i] = product[i] + initial[i];
  }

  GemvArgs a;
  a.w = d_w.as<bf16>();
  a.rows = c.rows;
  a.in_dim = c.in_dim;
  a.out_dim = c.out_dim;
  a.input = c.input;
  a.x = d_x.as<bf16>();
  a.residual = d_residual.as<float>();
  a.norm_weight = d_norm.as<bf16>();
  a.eps = 1e-5f;
  a.output = c.output;
  a.out = d_out.get();
  a.pdl = c.pdl;
  REQUIRE(gemv_supported(a));
  gemv(a, c.tuning, nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());

  std::vector<float> got(M * out_cols);
  if (f32_out) {
    d_out.download(got.data(), got.size() * 4);
  } else {
    std::vector<uint16_t> bits(got.size());
    d_out.download(bits.data(), bits.size() * 2);
    got = from_bf16_bits(bits);
  }
  double atol = 1e-6 * K + (c.input == GemvInput::kRmsNorm ? 1.0 / 64 : 0.0);
  if (swiglu) {
    // silu(g) * u: an error d in g or u reaches the output scaled by |silu'(g)| |u| <= 1.1 |u| or by
    // |silu(g)| <= |g|. With K = 4096 |g|, |u| reach ~100, so one flipped bf16 element of the normalized
    // x (inv_rms differing in its last bit between CPU and GPU) moves a near-zero-u output by ~0.5
    // (seen on an H200: 70 of 114688 elements, NMSE 2.8e-6).
    double max_gu = 0;
    for (float v : product) max_gu = std::max(max_gu, double(std::fabs(v)));
    atol *= 2.1 * max_gu;
  }
  const double rtol = f32_out ? 1e-5 : 1.0 / 128;
  const CompareResult r = compare(got, ref, atol, rtol);
  ++stats.cases;
  stats.max_nmse = std::max(stats.max_nmse, r.nmse);
  INFO(r.summary);
  CHECK(r.ok);
  // bf16 outputs: rounding alone gives each element a relative error up to 2^-8, so NMSE up to 2^-16
  // (1.5e-5) when only a few elements are compared (seen: one SwiGLU element, NMSE 1.42e-5).
  CHECK(r.nmse < (f32_out ? 1e-5 : 2e-5));
  CHECK(d_out.sentinel_intact());
}

}  // namespace

TEST_CASE("gemv matches matmul_ref in every mode (rows 1..8, tails, odd out_dim, PDL on/off)", "[gpu][gemv]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Stats stats;
  const GemvOutput outs[] = {GemvOutput::kBf16, GemvOutput::kF32, GemvOutput::kAddF32, GemvOutput::kSwiglu};
  for (GemvInput in : {GemvInput::kBf16, GemvInput::kRmsNorm}) {
    for (GemvOutput out : outs) {
      for (int rows = 1; rows <= kGemvMaxRows; ++rows) {
        const bool pdl = rows % 2 == 0;
        run_case({rows, 264, 38, in, out, pdl}, rng, stats);  // 33 chunks: one full warp step + 1 lane
      }
      run_case({1, 8, out == GemvOutput::kSwiglu ? 2 : 1, in, out, false}, rng, stats);  // smallest shape
      run_case({3, 2056, 518, in, out, true}, rng, stats);  // 257 chunks: 8 warp-unrolled batches + 1
      if (out != GemvOutput::kSwiglu) run_case({5, 72, 17, in, out, false}, rng, stats);  // odd rows per task
      // Every launch shape of each kernel: rows per task 1 and 2, persistent (grid-strided) and
      // one-CTA-per-8-tasks grids, the smallest and largest rings, 1 and 2 CTAs per SM. The CTA kernel
      // needs in_dim % 64 == 0 (else it falls back): 1088 = 17 chunks a warp share (a partial lane
      // step), 8256 = 129 (one row a task, tail piece), with out_dim leaving a partial last task.
      for (GemvKernel k : kKernels) {
        for (int r : {1, 2}) {
          if (r == 1 && out == GemvOutput::kSwiglu) continue;
          for (bool persistent : {true, false}) {
            const GemvTuning t{r, persistent, 2, k, 3};
            run_case({r + 1, 1032, out == GemvOutput::kSwiglu ? 20002 : 20001, in, out, true, t}, rng, stats);
          }
        }
        if (k != GemvKernel::kRegisters) {
          for (int slots : {2, 8}) {
            run_case({1, 2056, 518, in, out, slots == 2, {0, true, 1, k, slots}}, rng, stats);
            run_case({slots == 2 ? 3 : 8, 1088, out == GemvOutput::kSwiglu ? 1030 : 1027, in, out, true, {0, true, slots / 2, k, slots}}, rng, stats);
          }
          run_case({2, 8256, out == GemvOutput::kSwiglu ? 262 : 261, in, out, false, {0, true, 1, k, 3}}, rng, stats);
          if (k == GemvKernel::kBulkWarp) {  // part of the ring filled after the wait (GemvTuning::prewait_slots)
            for (int pre : {1, 2}) {
              GemvTuning t{0, true, 2, k, 3};
              t.prewait_slots = pre;
              t.carveout = pre == 1 ? 100 : -1;  // and a carveout set, then back to the driver's choice
              run_case({pre, 2056, out == GemvOutput::kSwiglu ? 518 : 517, in, out, true, t}, rng, stats);
            }
          }
          run_case({1, 64, out == GemvOutput::kSwiglu ? 2 : 1, in, out, true, {0, true, 2, k, 3}}, rng, stats);
        } else {
          GemvTuning carve{0, true, 2, k};
          carve.carveout = 100;
          run_case({2, 264, 38, in, out, true, carve}, rng, stats);
          run_case({4, 264, 38, in, out, true, {0, true, 2, k}}, rng, stats);
          run_case({1, 2056, 518, in, out, false, {0, true, 2, k}}, rng, stats);
        }
      }
    }
  }
}

// GemvArgs::trace: every CTA of the launch stamps entry <= past the wait <= exit and the grid size.
TEST_CASE("gemv trace stamps", "[gpu][gemv][quick]") {
  std::mt19937 rng(5);
  const int K = 4096, N = 6144;
  const std::vector<float> w = round_to_bf16(random_floats(size_t(N) * K, rng));
  const std::vector<float> x = round_to_bf16(random_floats(K, rng));
  GuardedBuffer d_w(w.size() * 2), d_x(K * 2), d_out(N * 2);
  d_w.upload(to_bf16_bits(w).data(), w.size() * 2);
  d_x.upload(to_bf16_bits(x).data(), K * 2);
  const size_t max_ctas = size_t(current_device_limits().sms) * 4;
  DeviceBuffer trace(max_ctas * 4 * 8, "trace");
  for (GemvKernel k : kKernels) {
    CAPTURE(name(k));
    CUDA_CHECK(cudaMemset(trace.get(), 0, trace.bytes()));
    GemvArgs a;
    a.w = d_w.as<bf16>();
    a.in_dim = K;
    a.out_dim = N;
    a.x = d_x.as<bf16>();
    a.out = d_out.get();
    a.pdl = true;
    a.trace = trace.as<uint64_t>();
    GemvTuning t;
    t.kernel = k;
    gemv(a, t, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<uint64_t> h(max_ctas * 4);
    CUDA_CHECK(cudaMemcpy(h.data(), trace.get(), h.size() * 8, cudaMemcpyDeviceToHost));
    const uint64_t grid = h[3] & 0xffffffffu;
    REQUIRE(grid >= 1);
    REQUIRE(grid <= max_ctas);
    for (uint64_t c = 0; c < grid; ++c) {
      CAPTURE(c);
      CHECK((h[c * 4 + 3] & 0xffffffffu) == grid);
      CHECK((h[c * 4 + 3] >> 32) < uint64_t(current_device_limits().sms));
      CHECK(h[c * 4] > 0);
      CHECK(h[c * 4] <= h[c * 4 + 1]);
      CHECK(h[c * 4 + 1] <= h[c * 4 + 2]);
    }
    if (grid < max_ctas) CHECK(h[grid * 4] == 0);  // no stamps past the grid
  }
}

TEST_CASE("gemv at the LLaMA 3.1 8B decode shapes", "[gpu][gemv]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Stats stats;
  for (GemvKernel k : kKernels) {
    GemvTuning t;
    t.kernel = k;
    for (int rows : {1, 8}) {
      run_case({rows, 4096, 6144, GemvInput::kRmsNorm, GemvOutput::kBf16, true, t}, rng, stats);    // qkv
      run_case({rows, 4096, 4096, GemvInput::kBf16, GemvOutput::kAddF32, true, t}, rng, stats);     // o_proj
      run_case({rows, 4096, 28672, GemvInput::kRmsNorm, GemvOutput::kSwiglu, true, t}, rng, stats); // gate_up
      run_case({rows, 14336, 4096, GemvInput::kBf16, GemvOutput::kAddF32, true, t}, rng, stats);    // down
    }
  }
  run_case({1, 4096, 32003, GemvInput::kRmsNorm, GemvOutput::kF32, true}, rng, stats);  // lm_head-like, odd N
}

TEST_CASE("gemv quick", "[gpu][gemv][quick]") {
  std::mt19937 rng(7);
  Stats stats;
  run_case({2, 264, 38, GemvInput::kRmsNorm, GemvOutput::kSwiglu, true}, rng, stats);
  run_case({3, 2056, 70, GemvInput::kBf16, GemvOutput::kAddF32, true}, rng, stats);
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
  for (int rep = 0; rep < 20; ++rep) {
    GemvTuning t;  // every kernel after every kernel (rep 0..8), including itself
    t.kernel = kKernels[rep % 3];
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
    a.prefetch = d_w2.get();  // the next kernel's weights into L2 (odd reps: a size not a multiple of 16)
    a.prefetch_bytes = rep % 2 ? w2.size() * 2 - 8 : w2.size() * 2;
    gemv(a, t, nullptr);
    a.prefetch = nullptr;
    t.kernel = kKernels[(rep / 3) % 3];
    a.w = d_w2.as<bf16>();
    a.x = d_y.as<bf16>();
    a.output = GemvOutput::kF32;
    a.out = d_z.get();
    gemv(a, t, nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<float> got(N);
    d_z.download(got.data(), N * 4);
    const CompareResult r = compare(got, z, 1e-6 * K + 1e-3, 1.0 / 128);
    INFO("rep " << rep << ": " << r.summary);
    REQUIRE(r.ok);
  }
}

// kRopeKV against matmul_ref -> bf16 -> rope_ref -> bf16 -> kv_append_ref: the QKV row and both pools
// (every element: unwritten slots must keep their random contents). One token has slot -1 (appends
// nothing). GQA 4 q heads / 2 kv heads, head_dim 64 and 128, positions up to 100000 (llama3-scale angles).
void run_rope_case(int rows, int in_dim, int head_dim, bool pdl, GemvKernel kernel, std::mt19937& rng, Stats& stats) {
  CAPTURE(rows, in_dim, head_dim, pdl, name(kernel));
  const int q_heads = 4, kv_heads = 2, block_size = 16, num_blocks = 5;
  const int out_dim = (q_heads + 2 * kv_heads) * head_dim, q_dim = q_heads * head_dim, kv_dim = kv_heads * head_dim;
  const size_t K = in_dim, N = out_dim, M = rows;
  const std::vector<float> w = round_to_bf16(random_floats(N * K, rng));
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
    slots[m] = M > 1 && m == M / 2 ? -1 : all_slots[m];
  }
  std::vector<float> inv_freq(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) inv_freq[i] = std::pow(500000.f, -2.f * i / head_dim);
  rope_ref(qkv.data(), rows, q_heads + kv_heads, head_dim, out_dim, positions.data(), inv_freq.data());
  qkv = round_to_bf16(qkv);
  const PagedKVLayout layout{block_size, kv_heads, head_dim};
  const size_t pool_count = size_t(num_blocks) * layout.block_stride();
  std::vector<float> k_pool = round_to_bf16(random_floats(pool_count, rng)), v_pool = round_to_bf16(random_floats(pool_count, rng));
  GuardedBuffer d_w(N * K * 2), d_residual(M * K * 4), d_norm(K * 2), d_out(M * N * 2), d_pos(M * 4), d_slots(M * 4),
      d_freq(inv_freq.size() * 4), d_k(pool_count * 2), d_v(pool_count * 2);
  d_w.upload(to_bf16_bits(w).data(), N * K * 2);
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
  a.w = d_w.as<bf16>();
  a.rows = rows;
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
  GemvTuning tuning;
  tuning.kernel = kernel;
  gemv(a, tuning, nullptr);
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
  for (GemvKernel k : kKernels) {
    run_rope_case(1, 264, 64, true, k, rng, stats);
    run_rope_case(3, 1088, 128, false, k, rng, stats);
    run_rope_case(8, 4096, 128, true, k, rng, stats);
    run_rope_case(1, 4096, 128, true, k, rng, stats);
  }
}

TEST_CASE("gemv refuses what it does not support", "[gpu][gemv]") {
  DeviceBuffer buf(1 << 20);
  GemvArgs a;
  a.w = buf.as<bf16>();
  a.x = buf.as<bf16>();
  a.out = buf.get();
  a.in_dim = 64;
  a.out_dim = 16;
  a.rows = 9;
  CHECK_FALSE(gemv_supported(a));
  CHECK_THROWS_WITH(gemv(a, nullptr), Catch::Contains("rows 9"));
  a.rows = 1;
  a.in_dim = 60;  // not a multiple of 8
  CHECK_FALSE(gemv_supported(a));
  a.in_dim = 64;
  a.x = buf.as<bf16>() + 1;  // misaligned
  CHECK_FALSE(gemv_supported(a));
  a.x = buf.as<bf16>();
  a.input = GemvInput::kRmsNorm;
  a.residual = buf.as<float>();
  a.norm_weight = buf.as<bf16>();
  a.rows = 8;
  a.in_dim = 8192;  // 128 KB of normalized x would not fit in shared memory
  CHECK_FALSE(gemv_supported(a));
  a.rows = 1;
  CHECK(gemv_supported(a));
  a.prefetch = buf.as<uint8_t>() + 8;  // the L2 prefetch must be 16-byte aligned
  a.prefetch_bytes = 4096;
  CHECK_FALSE(gemv_supported(a));
}

}  // namespace fc::test
