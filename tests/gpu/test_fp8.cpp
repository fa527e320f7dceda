// FP8 kernels other than the GEMV (that one is in test_gemv.cpp): the row quantizer (kernels/fp8_quant.cuh)
// bit for bit against model/quantization.h / core/dtype.h, and the FP8 product (Gemm::matmul_fp8) against a
// CPU reference on the same quantized inputs. Kernel-level: these run whatever kFp8CudaVerified says.
//
// GEMM tolerance. Both sides multiply the same e4m3 codes (products exact); the reference sums in double
// and applies x_scale[i] * w_scale[j] once. The GPU accumulates on Hopper's FP8 tensor cores, whose
// accumulator keeps fewer bits than fp32 between cuBLASLt's promotions into fp32 (about 14 mantissa bits
// over a 128-deep slice), so each element gets atol = 2^-11 x sx x sw x sum_k |x_k w_k| (a 4x margin on
// 2^-13), plus rtol 2^-7 for the bf16 output (one rounding, 2x margin). NMSE < 2e-5 (bf16 output).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <tuple>
#include <vector>

#include "core/dtype.h"
#include "kernels/fp8_quant.cuh"
#include "kernels/gemm.cuh"
#include "model/quantization.h"
#include "tests/gpu/gpu_test_util.h"

namespace fc::test {
namespace {

// `values` stored as `dtype` (the bits a checkpoint would hold) and the fp32 values those bits are.
struct Stored {
  std::vector<unsigned char> bytes;
  std::vector<float> widened;
};

Stored store_as(const std::vector<float>& values, DType dtype) {
  Stored s;
  s.bytes.resize(values.size() * dtype_size(dtype));
  s.widened.resize(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == DType::F32) {
      std::memcpy(s.bytes.data() + 4 * i, &values[i], 4);
      s.widened[i] = values[i];
    } else {
      const uint16_t bits = dtype == DType::BF16 ? f32_to_bf16(values[i]) : f32_to_f16(values[i]);
      std::memcpy(s.bytes.data() + 2 * i, &bits, 2);
      s.widened[i] = dtype == DType::BF16 ? bf16_to_f32(bits) : f16_to_f32(bits);
    }
  }
  return s;
}

// Rows that exercise every branch of the arithmetic: random magnitudes over many octaves, an all-zero row
// (scale 1, codes +0), -0 and tiny negatives (code 0x80), a row whose amax is 448 (scale exactly 1, so the
// codes are f32_to_e4m3 of the values themselves: ties between e4m3 neighbours, the subnormal grid,
// values just below and above 448), and a row of subnormal fp32 weights (amax / 448 underflows).
std::vector<float> test_rows(int64_t rows, int64_t cols, std::mt19937& rng) {
  std::vector<float> v(static_cast<size_t>(rows * cols));
  std::uniform_real_distribution<float> mant(-1.f, 1.f);
  std::uniform_int_distribution<int> octave(-12, 6);
  for (float& x : v) x = std::ldexp(mant(rng), octave(rng));
  if (rows > 1) std::fill(v.begin() + cols, v.begin() + 2 * cols, 0.f);  // row 1: zeros
  if (rows > 2) {                                                          // row 2: scale exactly 1
    float* r = v.data() + 2 * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const float a = e4m3_to_f32(static_cast<uint8_t>(c % 126)), b = e4m3_to_f32(static_cast<uint8_t>(c % 126 + 1));
      switch (c % 6) {
        case 0: r[c] = 0.5f * (a + b); break;  // a tie
        case 1: r[c] = -0.0f; break;
        case 2: r[c] = -1e-30f; break;
        case 3: r[c] = std::nextafter(0.5f * (a + b), 0.f); break;
        case 4: r[c] = 447.9f; break;
        default: r[c] = -a; break;
      }
    }
    r[0] = 448.0f;
  }
  if (rows > 3) {  // row 3: subnormal fp32 values
    float* r = v.data() + 3 * cols;
    for (int64_t c = 0; c < cols; ++c) r[c] = std::numeric_limits<float>::denorm_min() * float(1 + c % 50);
  }
  return v;
}

}  // namespace

TEST_CASE("quantize_rows_fp8 matches quantize_fp8_per_channel bit for bit", "[gpu][fp8]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (DType dtype : {DType::BF16, DType::F16, DType::F32}) {
    const std::vector<std::pair<int64_t, int64_t>> shapes = {{1, 16}, {4, 24}, {5, 1000}, {97, 4104}, {3, 14336}};
    for (const auto& [rows, cols] : shapes) {
      CAPTURE(dtype_name(dtype), rows, cols);
      std::vector<float> values = test_rows(rows, cols, rng);
      if (dtype == DType::F16) {  // keep the subnormal row inside f16's range: f16's smallest subnormals
        for (int64_t c = 0; rows > 3 && c < cols; ++c) values[3 * cols + c] = std::ldexp(float(1 + c % 50), -24);
      }
      const Stored in = store_as(values, dtype);
      const Fp8Matrix ref = quantize_fp8_per_channel(in.widened.data(), rows, cols);
      GuardedBuffer d_in(in.bytes.size()), d_codes(size_t(rows * cols)), d_scales(size_t(rows) * 4), d_bad(4);
      d_in.upload(in.bytes.data(), in.bytes.size());
      d_codes.poison();
      d_scales.poison();
      const int32_t none = std::numeric_limits<int32_t>::max();
      d_bad.upload(&none, 4);
      quantize_rows_fp8(d_in.get(), dtype, rows, cols, d_codes.as<uint8_t>(), d_scales.as<float>(),
                        d_bad.as<int32_t>(), nullptr);
      CUDA_CHECK(cudaDeviceSynchronize());
      std::vector<uint8_t> codes(size_t(rows * cols));
      std::vector<float> scales(static_cast<size_t>(rows));
      int32_t bad = 0;
      d_codes.download(codes.data(), codes.size());
      d_scales.download(scales.data(), scales.size() * 4);
      d_bad.download(&bad, 4);
      CHECK(bad == none);
      size_t code_mismatches = 0, first = 0;
      for (size_t i = 0; i < codes.size(); ++i) {
        if (codes[i] != ref.codes[i] && code_mismatches++ == 0) first = i;
      }
      INFO("first code mismatch at " << first << ": value " << in.widened[first] << " GPU " << int(codes[first])
                                     << " CPU " << int(ref.codes[first]));
      CHECK(code_mismatches == 0);
      CHECK(std::memcmp(scales.data(), ref.scales.data(), scales.size() * 4) == 0);
      CHECK(d_codes.sentinel_intact());
      CHECK(d_scales.sentinel_intact());
    }
  }
}

TEST_CASE("quantize_rows_fp8 reports the first row with a NaN or Inf", "[gpu][fp8]") {
  const int64_t rows = 6, cols = 40;
  std::vector<float> values(rows * cols, 0.25f);
  values[4 * cols + 7] = std::numeric_limits<float>::infinity();
  values[2 * cols + 39] = std::numeric_limits<float>::quiet_NaN();
  GuardedBuffer d_in(values.size() * 4), d_codes(values.size()), d_scales(rows * 4), d_bad(4);
  d_in.upload(values.data(), values.size() * 4);
  const int32_t none = std::numeric_limits<int32_t>::max();
  d_bad.upload(&none, 4);
  quantize_rows_fp8(d_in.get(), DType::F32, rows, cols, d_codes.as<uint8_t>(), d_scales.as<float>(),
                    d_bad.as<int32_t>(), nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  int32_t bad = 0;
  d_bad.download(&bad, 4);
  CHECK(bad == 2);
}

TEST_CASE("quantize_rows_fp8_static matches f32_to_e4m3(x / scale) bit for bit", "[gpu][fp8]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  const int64_t rows = 17, cols = 4104;
  const std::vector<float> x = round_to_bf16(test_rows(rows, cols, rng));
  for (float scale : {1.0f, 0.0123f, 3.7e-3f}) {
    CAPTURE(scale);
    GuardedBuffer d_x(x.size() * 2), d_codes(x.size()), d_scales(rows * 4);
    d_x.upload(to_bf16_bits(x).data(), x.size() * 2);
    d_codes.poison();
    d_scales.poison();
    quantize_rows_fp8_static(d_x.as<bf16>(), rows, cols, scale, d_codes.as<uint8_t>(), d_scales.as<float>(), nullptr);
    CUDA_CHECK(cudaDeviceSynchronize());
    std::vector<uint8_t> codes(x.size());
    std::vector<float> scales(rows);
    d_codes.download(codes.data(), codes.size());
    d_scales.download(scales.data(), rows * 4);
    size_t mismatches = 0;
    for (size_t i = 0; i < x.size(); ++i) mismatches += codes[i] != f32_to_e4m3(x[i] / scale);
    CHECK(mismatches == 0);
    for (float s : scales) CHECK(s == scale);
    CHECK(d_codes.sentinel_intact());
    CHECK(d_scales.sentinel_intact());
  }
}

TEST_CASE("scale_rows_cols_bf16 is bf16(float(out) x (row x col)) bit for bit", "[gpu][fp8]") {
  std::mt19937 rng(5);
  const int64_t rows = 37, cols = 264;
  const std::vector<float> out = round_to_bf16(random_floats(rows * cols, rng, -300.f, 300.f));
  const std::vector<float> rs = random_floats(rows, rng, 1e-4f, 1e-2f), cs = random_floats(cols, rng, 1e-4f, 1e-2f);
  GuardedBuffer d_out(out.size() * 2), d_rs(rows * 4), d_cs(cols * 4);
  d_out.upload(to_bf16_bits(out).data(), out.size() * 2);
  d_rs.upload(rs.data(), rows * 4);
  d_cs.upload(cs.data(), cols * 4);
  scale_rows_cols_bf16(d_out.as<bf16>(), rows, cols, d_rs.as<float>(), d_cs.as<float>(), nullptr);
  CUDA_CHECK(cudaDeviceSynchronize());
  std::vector<uint16_t> got(out.size());
  d_out.download(got.data(), got.size() * 2);
  size_t mismatches = 0;
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      mismatches += got[i * cols + j] != f32_to_bf16(out[i * cols + j] * (rs[i] * cs[j]));
    }
  }
  CHECK(mismatches == 0);
  CHECK(d_out.sentinel_intact());
}

// x (bf16 on the device) quantized there per token, or with a static scale; w quantized per channel on
// the host; Gemm::matmul_fp8 against the reference on the same codes.
TEST_CASE("Gemm::matmul_fp8 matches the CPU product of the quantized operands", "[gpu][fp8][gemm]") {
  const uint32_t seed = fresh_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  Gemm gemm;
  double max_nmse = 0;
  int cases = 0;
  // rows not multiples of 16 (1, 3, 17, 97, 129, 257); in_dim multiples of 16; out_dim multiples of 8.
  for (const auto& [rows, in_dim, out_dim] : {std::tuple{1, 64, 32}, std::tuple{3, 256, 48}, std::tuple{17, 1024, 272},
                                              std::tuple{97, 4096, 1024}, std::tuple{129, 14336, 4096},
                                              std::tuple{257, 4096, 6144}, std::tuple{16, 4096, 28672}}) {
    for (bool static_scale : {false, true}) {
      CAPTURE(rows, in_dim, out_dim, static_scale);
      const size_t M = rows, K = in_dim, N = out_dim;
      const std::vector<float> x = round_to_bf16(random_floats(M * K, rng, -4.f, 4.f));
      const std::vector<float> w = random_floats(N * K, rng, -0.05f, 0.05f);
      const Fp8Matrix wq = quantize_fp8_per_channel(w.data(), int64_t(N), int64_t(K));
      Fp8Matrix xq;
      if (static_scale) {
        const float s = 4.0f / kE4m3Max * 0.75f;  // some values saturate, as a static scale allows
        xq.codes.resize(M * K);
        xq.scales.assign(M, s);
        for (size_t i = 0; i < M * K; ++i) xq.codes[i] = f32_to_e4m3(x[i] / s);
      } else {
        xq = quantize_fp8_per_channel(x.data(), int64_t(M), int64_t(K));
      }
      GuardedBuffer d_x(M * K * 2), d_x8(M * K), d_xs(M * 4), d_w(N * K), d_ws(N * 4), d_out(M * N * 2);
      d_x.upload(to_bf16_bits(x).data(), M * K * 2);
      d_w.upload(wq.codes.data(), N * K);
      d_ws.upload(wq.scales.data(), N * 4);
      d_out.poison();
      if (static_scale) {
        quantize_rows_fp8_static(d_x.as<bf16>(), rows, in_dim, xq.scales[0], d_x8.as<uint8_t>(), d_xs.as<float>(),
                                 nullptr);
      } else {
        quantize_rows_fp8(d_x.get(), DType::BF16, rows, in_dim, d_x8.as<uint8_t>(), d_xs.as<float>(), nullptr, nullptr);
      }
      gemm.matmul_fp8(d_x8.as<uint8_t>(), d_xs.as<float>(), d_w.as<uint8_t>(), d_ws.as<float>(), d_out.as<bf16>(),
                      rows, in_dim, out_dim, nullptr);
      CUDA_CHECK(cudaDeviceSynchronize());
      std::vector<uint8_t> x8(M * K);
      d_x8.download(x8.data(), x8.size());
      REQUIRE(x8 == xq.codes);  // the device quantizer, bit for bit (also checked above)
      std::vector<float> ref(M * N), got(M * N);
      std::vector<double> atol(M * N);
      for (size_t i = 0; i < M; ++i) {
        for (size_t j = 0; j < N; ++j) {
          double sum = 0, abs_sum = 0;
          for (size_t k = 0; k < K; ++k) {
            const double p = double(e4m3_to_f32(xq.codes[i * K + k])) * e4m3_to_f32(wq.codes[j * K + k]);
            sum += p;
            abs_sum += std::fabs(p);
          }
          const double s = double(xq.scales[i]) * wq.scales[j];
          ref[i * N + j] = float(sum * s);
          atol[i * N + j] = std::ldexp(abs_sum * s, -11) + 1e-30;
        }
      }
      std::vector<uint16_t> bits(M * N);
      d_out.download(bits.data(), bits.size() * 2);
      got = from_bf16_bits(bits);
      const CompareResult r = compare(got, ref, atol, 1.0 / 128);
      ++cases;
      max_nmse = std::max(max_nmse, r.nmse);
      INFO(r.summary);
      CHECK(r.ok);
      CHECK(r.nmse < 2e-5);
      CHECK(d_out.sentinel_intact());
    }
  }
  std::printf("[gemm fp8] %d checks, max NMSE %.3g, %zu plan(s) on the scale-epilogue fallback\n", cases, max_nmse,
              gemm.fp8_fallback_plans());
}

}  // namespace fc::test
