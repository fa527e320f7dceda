// fc::Gemm (cuBLASLt, bf16 x bf16 -> bf16 / fp32 with fp32 accumulation) against matmul_ref on the same
// bf16-rounded inputs: decode shapes (M = 1..8), awkward M, the LLaMA 3.1 8B projections at small M,
// accumulate mode, pointers aligned to 16 but not 256 bytes, and replay inside a CUDA graph.
//
// Tolerance. Products of bf16 values are exact in fp32; the two sides differ only in how the K products
// are summed. Tensor cores add each k-block into the fp32 accumulator with truncation (Fasi et al.,
// "Numerical behavior of NVIDIA tensor cores", 2021), a bias of up to ~1 ulp of the partial sum per
// block: for inputs in [-1, 1] (partial sums ~ sqrt(K)/3) that is < 1e-7 * K in total, and the CPU's
// own rounding is smaller. atol = 1e-6 * K keeps a 10x margin; bf16 outputs add their final rounding
// (<= 2^-8 relative; rtol 2^-7, one ulp, for margin), fp32 outputs rtol 1e-5. Accumulating into a bf16
// output rounds twice: cuBLASLt rounds the product to bf16 before adding C (seen on an H200: 16% of
// elements one ulp off a single rounding), an extra 2^-8 * |x @ w^T| <= 2^-8 * (|ref| + max|C|), hence
// atol + 2^-8 * max|C| there. The NMSE must also stay below 1e-5 (bf16 rounding alone gives ~3e-6), so
// a systematic error cannot hide inside the per-element bound.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <tuple>
#include <vector>

#include "core/dtype.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.cuh"
#include "tests/gpu/gpu_test_util.h"

namespace fc::test {
namespace {

enum class Out { kBf16, kF32 };

// splitmix64: fast enough for the 525M-element lm_head weight (mt19937 would take seconds).
struct FastRng {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [-1, 1), already a bf16 value.
  float bf16_value() { return bf16_to_f32(f32_to_bf16(static_cast<float>(next() >> 40) * 0x1p-23f - 1.0f)); }
};

struct Bf16Matrix {
  std::vector<float> values;   // bf16-rounded
  std::vector<uint16_t> bits;
};

Bf16Matrix random_bf16(size_t count, FastRng& rng) {
  Bf16Matrix m;
  m.values.resize(count);
  m.bits.resize(count);
  for (size_t i = 0; i < count; ++i) {
    m.values[i] = rng.bf16_value();
    m.bits[i] = f32_to_bf16(m.values[i]);
  }
  return m;
}

uint64_t fresh_seed64() {  // a 64-bit seed (std::mt19937_64)
  static std::random_device device;
  return (static_cast<uint64_t>(device()) << 32) | device();
}

struct Stats {
  int cases = 0;
  double max_nmse_bf16 = 0, max_nmse_f32 = 0;
  ~Stats() {
    std::printf("[gemm] %d checks, max NMSE bf16 out %.3g, fp32 out %.3g\n", cases, max_nmse_bf16, max_nmse_f32);
  }
};

// Runs out = x @ w^T (+ out when accumulating) on the GPU and checks it. offset_* shift the x and out
// pointers by that many elements inside their buffers (16-byte aligned for multiples of 8 bf16).
void run_case(Gemm& gemm, Stats& stats, FastRng& rng, int rows, int in_dim, int out_dim, Out out_type,
              GemmMode mode = GemmMode::kOverwrite, int offset_x = 0, int offset_out = 0) {
  CAPTURE(rows, in_dim, out_dim, out_type == Out::kF32, mode == GemmMode::kAccumulate, offset_x, offset_out);
  const Bf16Matrix x = random_bf16(static_cast<size_t>(rows) * in_dim, rng);
  const Bf16Matrix w = random_bf16(static_cast<size_t>(out_dim) * in_dim, rng);
  const size_t out_count = static_cast<size_t>(rows) * out_dim;
  const size_t out_elem = out_type == Out::kF32 ? 4 : 2;

  GuardedBuffer d_x((offset_x + x.bits.size()) * 2), d_w(w.bits.size() * 2);
  GuardedBuffer d_out((offset_out + out_count) * out_elem);
  CUDA_CHECK(cudaMemcpy(d_x.as<uint16_t>() + offset_x, x.bits.data(), x.bits.size() * 2, cudaMemcpyHostToDevice));
  d_w.upload(w.bits.data(), w.bits.size() * 2);

  std::vector<float> ref(out_count, 0.0f);
  std::vector<float> initial(out_count, 0.0f);
  const float initial_max = 8.0f;
  if (mode == GemmMode::kAccumulate) {
    // Start from representable values of the output dtype, so the reference sees what the GPU sees.
    for (auto& v : initial) v = rng.bf16_value() * initial_max;
    if (out_type == Out::kF32) {
      CUDA_CHECK(cudaMemcpy(d_out.as<float>() + offset_out, initial.data(), out_count * 4, cudaMemcpyHostToDevice));
    } else {
      std::vector<uint16_t> bits(out_count);
      for (size_t i = 0; i < out_count; ++i) bits[i] = f32_to_bf16(initial[i]);
      CUDA_CHECK(cudaMemcpy(d_out.as<uint16_t>() + offset_out, bits.data(), out_count * 2, cudaMemcpyHostToDevice));
    }
  }
  const bf16* dx = d_x.as<bf16>() + offset_x;
  if (out_type == Out::kF32) {
    gemm.matmul(dx, d_w.as<bf16>(), d_out.as<float>() + offset_out, rows, in_dim, out_dim, nullptr, mode);
  } else {
    gemm.matmul(dx, d_w.as<bf16>(), d_out.as<bf16>() + offset_out, rows, in_dim, out_dim, nullptr, mode);
  }
  matmul_ref(x.values.data(), w.values.data(), rows, in_dim, out_dim, ref.data());
  for (size_t i = 0; i < out_count; ++i) ref[i] += initial[i];

  std::vector<float> got(out_count);
  CUDA_CHECK(cudaDeviceSynchronize());
  if (out_type == Out::kF32) {
    CUDA_CHECK(cudaMemcpy(got.data(), d_out.as<float>() + offset_out, out_count * 4, cudaMemcpyDeviceToHost));
  } else {
    std::vector<uint16_t> bits(out_count);
    CUDA_CHECK(cudaMemcpy(bits.data(), d_out.as<uint16_t>() + offset_out, out_count * 2, cudaMemcpyDeviceToHost));
    got = from_bf16_bits(bits);
  }
  const bool double_rounding = out_type == Out::kBf16 && mode == GemmMode::kAccumulate;
  const double atol = 1e-6 * in_dim + (double_rounding ? initial_max / 256.0 : 0.0);
  const double rtol = out_type == Out::kF32 ? 1e-5 : 1.0 / 128;
  const CompareResult r = compare(got, ref, atol, rtol);
  ++stats.cases;
  double& max_nmse = out_type == Out::kF32 ? stats.max_nmse_f32 : stats.max_nmse_bf16;
  max_nmse = std::max(max_nmse, r.nmse);
  INFO(r.summary);
  CHECK(r.ok);
  CHECK(r.nmse < 1e-5);
  CHECK(d_out.sentinel_intact());
}

}  // namespace

TEST_CASE("Gemm matches matmul_ref: decode, awkward M, LLaMA 3.1 8B shapes", "[gpu][gemm]") {
  const uint64_t seed = fresh_seed64();
  INFO("seed " << seed);
  FastRng rng{seed};
  Gemm gemm;
  Stats stats;
  SECTION("decode M = 1..8 (GEMV-like)") {
    for (int m = 1; m <= 8; ++m) run_case(gemm, stats, rng, m, 4096, 4096, Out::kBf16);
    run_case(gemm, stats, rng, 1, 4096, 4096, Out::kF32);
    run_case(gemm, stats, rng, 7, 4096, 4096, Out::kF32);
  }
  SECTION("awkward M and small K") {
    for (int m : {3, 54, 97, 129, 257}) run_case(gemm, stats, rng, m, 1024, 256, Out::kBf16);
    run_case(gemm, stats, rng, 257, 512, 384, Out::kF32);
    run_case(gemm, stats, rng, 257, 96, 64, Out::kBf16);
    run_case(gemm, stats, rng, 129, 64, 4096, Out::kF32);
  }
  SECTION("LLaMA 3.1 8B projections at small M") {
    run_case(gemm, stats, rng, 1, 4096, 6144, Out::kBf16);     // qkv
    run_case(gemm, stats, rng, 3, 4096, 6144, Out::kBf16);
    run_case(gemm, stats, rng, 2, 4096, 4096, Out::kBf16);     // o_proj
    run_case(gemm, stats, rng, 2, 4096, 28672, Out::kBf16);    // gate_up
    run_case(gemm, stats, rng, 5, 14336, 4096, Out::kBf16);    // down
    run_case(gemm, stats, rng, 1, 4096, 128256, Out::kF32);    // lm_head, fp32 logits
    run_case(gemm, stats, rng, 3, 4096, 128256, Out::kF32);
  }
  SECTION("accumulate (beta = 1) into bf16 and fp32") {
    run_case(gemm, stats, rng, 3, 4096, 4096, Out::kF32, GemmMode::kAccumulate);
    run_case(gemm, stats, rng, 1, 14336, 4096, Out::kF32, GemmMode::kAccumulate);
    run_case(gemm, stats, rng, 257, 512, 384, Out::kBf16, GemmMode::kAccumulate);
  }
  SECTION("pointers 16-byte but not 256-byte aligned") {
    run_case(gemm, stats, rng, 4, 4096, 1024, Out::kBf16, GemmMode::kOverwrite, 8, 8);
    run_case(gemm, stats, rng, 4, 4096, 1024, Out::kF32, GemmMode::kOverwrite, 8, 4);
    run_case(gemm, stats, rng, 33, 512, 512, Out::kBf16, GemmMode::kOverwrite, 24, 40);
  }
}

TEST_CASE("Gemm rejects misaligned pointers with a message", "[gpu][gemm]") {
  Gemm gemm;
  GuardedBuffer x(64 * 64 * 2 + 16), w(64 * 64 * 2), out(64 * 64 * 2);
  CHECK_THROWS_WITH(gemm.matmul(x.as<bf16>() + 1, w.as<bf16>(), out.as<bf16>(), 1, 64, 64, nullptr),
                    Catch::Contains("16-byte aligned"));
}

TEST_CASE("Gemm::tune keeps an algorithm that computes the same product", "[gpu][gemm]") {
  const uint64_t seed = fresh_seed64();
  INFO("seed " << seed);
  FastRng rng{seed};
  Gemm gemm;
  for (const auto& [rows, in_dim, out_dim, out_type] :
       {std::tuple{1, 4096, 4096, Out::kBf16}, std::tuple{8, 4096, 1024, Out::kF32}, std::tuple{33, 1024, 512, Out::kBf16}}) {
    CAPTURE(rows, in_dim, out_dim, out_type == Out::kF32);
    const Bf16Matrix x = random_bf16(static_cast<size_t>(rows) * in_dim, rng);
    std::vector<Bf16Matrix> w;
    std::vector<GuardedBuffer> d_w;
    std::vector<const bf16*> rotation;
    for (int c = 0; c < 3; ++c) {
      w.push_back(random_bf16(static_cast<size_t>(out_dim) * in_dim, rng));
      d_w.emplace_back(w.back().bits.size() * 2);
      d_w.back().upload(w.back().bits.data(), w.back().bits.size() * 2);
    }
    for (const GuardedBuffer& b : d_w) rotation.push_back(b.as<bf16>());
    GuardedBuffer d_x(x.bits.size() * 2);
    d_x.upload(x.bits.data(), x.bits.size() * 2);
    const size_t out_count = static_cast<size_t>(rows) * out_dim;
    GuardedBuffer d_out(out_count * (out_type == Out::kF32 ? 4 : 2));
    const size_t plans = gemm.plan_count();
    const double us = out_type == Out::kF32
                          ? gemm.tune(d_x.as<bf16>(), rotation, d_out.as<float>(), rows, in_dim, out_dim, nullptr)
                          : gemm.tune(d_x.as<bf16>(), rotation, d_out.as<bf16>(), rows, in_dim, out_dim, nullptr);
    INFO("tuned: " << us << " us per call");
    CHECK(std::isfinite(us));
    CHECK(us > 0);
    CHECK(gemm.plan_count() == plans + 1);
    d_out.poison();
    std::vector<float> got(out_count), ref(out_count);
    if (out_type == Out::kF32) {
      gemm.matmul(d_x.as<bf16>(), rotation[1], d_out.as<float>(), rows, in_dim, out_dim, nullptr);
      d_out.download(got.data(), out_count * 4);
    } else {
      gemm.matmul(d_x.as<bf16>(), rotation[1], d_out.as<bf16>(), rows, in_dim, out_dim, nullptr);
      std::vector<uint16_t> bits(out_count);
      d_out.download(bits.data(), out_count * 2);
      got = from_bf16_bits(bits);
    }
    CHECK(gemm.plan_count() == plans + 1);
    matmul_ref(x.values.data(), w[1].values.data(), rows, in_dim, out_dim, ref.data());
    const CompareResult r = compare(got, ref, 1e-6 * in_dim, out_type == Out::kF32 ? 1e-5 : 1.0 / 128);
    INFO(r.summary);
    CHECK(r.ok);
    CHECK(d_out.sentinel_intact());
  }
}

TEST_CASE("Gemm replays inside a CUDA graph without new plans", "[gpu][gemm]") {
  const uint64_t seed = fresh_seed64();
  INFO("seed " << seed);
  FastRng rng{seed};
  const int rows = 2, in_dim = 4096, out_dim = 4096;
  Gemm gemm;
  const Bf16Matrix x = random_bf16(static_cast<size_t>(rows) * in_dim, rng);
  const Bf16Matrix w = random_bf16(static_cast<size_t>(out_dim) * in_dim, rng);
  GuardedBuffer d_x(x.bits.size() * 2), d_w(w.bits.size() * 2), d_out(static_cast<size_t>(rows) * out_dim * 4);
  d_x.upload(x.bits.data(), x.bits.size() * 2);
  d_w.upload(w.bits.data(), w.bits.size() * 2);
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  // The plan is built outside the capture (first call); the captured call must only launch.
  gemm.matmul(d_x.as<bf16>(), d_w.as<bf16>(), d_out.as<float>(), rows, in_dim, out_dim, stream);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  const size_t plans = gemm.plan_count();
  d_out.poison();
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  gemm.matmul(d_x.as<bf16>(), d_w.as<bf16>(), d_out.as<float>(), rows, in_dim, out_dim, stream);
  CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  CHECK(gemm.plan_count() == plans);
  for (int replay = 0; replay < 3; ++replay) CUDA_CHECK(cudaGraphLaunch(exec, stream));
  CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<float> got(static_cast<size_t>(rows) * out_dim), ref(got.size());
  d_out.download(got.data(), got.size() * 4);
  matmul_ref(x.values.data(), w.values.data(), rows, in_dim, out_dim, ref.data());
  const CompareResult r = compare(got, ref, 1e-6 * in_dim, 1e-5);
  INFO(r.summary);
  CHECK(r.ok);
  CHECK(d_out.sentinel_intact());
  CUDA_CHECK(cudaGraphExecDestroy(exec));
  CUDA_CHECK(cudaGraphDestroy(graph));
  CUDA_CHECK(cudaStreamDestroy(stream));
}

}  // namespace fc::test
