// model/quantization.h: per-output-channel FP8 (e4m3) weights, the arithmetic the CUDA path must match.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "core/error.h"
#include "model/quantization.h"

using namespace fc;
using Catch::Matchers::Contains;

namespace {

// A tensor over caller-owned bytes (what the safetensors mapping gives the loader).
TensorInfo tensor(const std::string& name, DType dtype, std::vector<int64_t> shape, const void* data) {
  TensorInfo t;
  t.name = name;
  t.file = "test.safetensors";
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = static_cast<const unsigned char*>(data);
  t.nbytes = static_cast<size_t>(t.numel()) * dtype_size(dtype);
  return t;
}

std::vector<float> gaussian(size_t n, float std, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, std);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

}  // namespace

TEST_CASE("quantize_fp8_per_channel: absmax / 448 per row, nearest e4m3, saturating, zero rows exact", "[fp8]") {
  const int64_t rows = 5, cols = 37;
  std::vector<float> w = gaussian(rows * cols, 0.1f, 3);
  std::fill(w.begin() + 2 * cols, w.begin() + 3 * cols, 0.f);  // row 2: all zero
  w[4 * cols + 7] = -3.0f;                                      // row 4: a negative outlier sets its scale
  const Fp8Matrix m = quantize_fp8_per_channel(w.data(), rows, cols);
  REQUIRE(m.rows == rows);
  REQUIRE(m.cols == cols);
  REQUIRE(m.codes.size() == size_t(rows * cols));
  CHECK(m.input_scale == 0);
  for (int64_t r = 0; r < rows; ++r) {
    INFO("row " << r);
    float amax = 0;
    for (int64_t c = 0; c < cols; ++c) amax = std::max(amax, std::fabs(w[r * cols + c]));
    if (r == 2) {
      CHECK(m.scales[r] == 1.0f);
      for (int64_t c = 0; c < cols; ++c) CHECK(m.codes[r * cols + c] == 0);
      continue;
    }
    const float scale = amax / 448.0f;  // the documented arithmetic, bit for bit
    CHECK(m.scales[r] == scale);
    bool saw_max = false;
    for (int64_t c = 0; c < cols; ++c) {
      const float x = w[r * cols + c];
      const uint8_t code = m.codes[r * cols + c];
      CHECK(code == f32_to_e4m3(x / scale));
      saw_max = saw_max || (code & 0x7f) == 0x7e;
      // Error bound of round-to-nearest on the e4m3 grid: half an ulp (1/16 relative for normals,
      // 2^-10 x scale in the subnormal range), plus the fp32 rounding of the division and the multiply.
      const float deq = e4m3_to_f32(code) * scale;
      CHECK(std::fabs(deq - x) <= std::max(std::fabs(x) / 16, std::ldexp(scale, -10)) * 1.0001f + 1e-30f);
    }
    CHECK(saw_max);  // the absmax element lands on +-448
  }
  CHECK(m.codes[4 * cols + 7] == 0xfe);
  // dequantize_fp8 is code value x row scale.
  std::vector<float> deq(rows * cols);
  dequantize_fp8(m, deq.data());
  for (int64_t i = 0; i < rows * cols; ++i) CHECK(deq[i] == e4m3_to_f32(m.codes[i]) * m.scales[i / cols]);
}

TEST_CASE("quantize_fp8_per_channel: rows are independent, so fusing before or after gives the same", "[fp8]") {
  const std::vector<float> a = gaussian(3 * 16, 0.02f, 5), b = gaussian(4 * 16, 2.0f, 6);
  std::vector<float> fused = a;
  fused.insert(fused.end(), b.begin(), b.end());
  const Fp8Matrix qa = quantize_fp8_per_channel(a.data(), 3, 16), qb = quantize_fp8_per_channel(b.data(), 4, 16);
  const Fp8Matrix qf = quantize_fp8_per_channel(fused.data(), 7, 16);
  std::vector<uint8_t> codes = qa.codes;
  codes.insert(codes.end(), qb.codes.begin(), qb.codes.end());
  std::vector<float> scales = qa.scales;
  scales.insert(scales.end(), qb.scales.begin(), qb.scales.end());
  CHECK(qf.codes == codes);
  CHECK(qf.scales == scales);
}

TEST_CASE("quantize_fp8_per_channel refuses NaN and Inf weights, naming the row", "[fp8]") {
  std::vector<float> w(8, 0.5f);
  w[6] = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(quantize_fp8_per_channel(w.data(), 2, 4, "m.safetensors: tensor 'x'"),
                    Contains("m.safetensors: tensor 'x': row 1 holds nan") && Contains("non-finite"));
  w[6] = -std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH(quantize_fp8_per_channel(w.data(), 2, 4), Contains("row 1 holds -inf"));
}

TEST_CASE("quantize_fp8_per_channel: a row of subnormal weights keeps a positive scale", "[fp8]") {
  const float tiny = std::numeric_limits<float>::denorm_min();
  const std::vector<float> w{tiny, -tiny, 0.f, tiny};
  const Fp8Matrix m = quantize_fp8_per_channel(w.data(), 1, 4);
  CHECK(m.scales[0] > 0);
  CHECK(std::isfinite(m.scales[0]));
}

TEST_CASE("stack_fp8 folds per-tensor and per-channel scales into per-row scales exactly", "[fp8]") {
  // q: 2 rows, per-tensor F32 scale of shape []; k: 3 rows, per-channel BF16 [3, 1]; v: 1 row, F16 [1].
  const std::vector<uint8_t> q_codes{0x38, 0xb8, 0x01, 0x7e}, k_codes{0x40, 0x41, 0x42, 0x43, 0x44, 0x45},
      v_codes{0x7e, 0xfe};
  const float q_scale = 0.0123f;
  const uint16_t k_scales[3] = {f32_to_bf16(0.5f), f32_to_bf16(0.001f), f32_to_bf16(3.0f)};
  const uint16_t v_scale = f32_to_f16(0.25f);
  const float q_in = 0.5f, k_in = 0.75f, v_in = 0.25f;
  const TensorInfo q = tensor("q.weight", DType::F8_E4M3, {2, 2}, q_codes.data());
  const TensorInfo k = tensor("k.weight", DType::F8_E4M3, {3, 2}, k_codes.data());
  const TensorInfo v = tensor("v.weight", DType::F8_E4M3, {1, 2}, v_codes.data());
  const TensorInfo qs = tensor("q.weight_scale", DType::F32, {}, &q_scale);
  const TensorInfo ks = tensor("k.weight_scale", DType::BF16, {3, 1}, k_scales);
  const TensorInfo vs = tensor("v.weight_scale", DType::F16, {1}, &v_scale);
  const TensorInfo qi = tensor("q.input_scale", DType::F32, {}, &q_in);
  const TensorInfo ki = tensor("k.input_scale", DType::F32, {1}, &k_in);
  const TensorInfo vi = tensor("v.input_scale", DType::F32, {1}, &v_in);
  Fp8ScaleTensors q_s{&qs, &qi, {}}, k_s{&ks, &ki, {}}, v_s{&vs, &vi, {}};
  const Fp8Matrix m = stack_fp8({{&q, &q_s}, {&k, &k_s}, {&v, &v_s}});
  CHECK(m.rows == 6);
  CHECK(m.cols == 2);
  const std::vector<uint8_t> codes{0x38, 0xb8, 0x01, 0x7e, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x7e, 0xfe};
  CHECK(m.codes == codes);
  const std::vector<float> scales{q_scale, q_scale, bf16_to_f32(k_scales[0]), bf16_to_f32(k_scales[1]),
                                  bf16_to_f32(k_scales[2]), 0.25f};
  CHECK(m.scales == scales);
  CHECK(m.input_scale == 0.75f);  // the largest of the parts' (they share one input)
  // projection_to_f32 of one part: code value x its scale, in fp32.
  std::vector<float> k_f32(6);
  projection_to_f32({&k, &k_s}, k_f32.data());
  for (int i = 0; i < 6; ++i) CHECK(k_f32[i] == e4m3_to_f32(k_codes[i]) * bf16_to_f32(k_scales[i / 2]));
  // An unquantized part has no FP8 form.
  const std::vector<float> plain{1.f, 2.f};
  const TensorInfo p = tensor("p.weight", DType::F32, {1, 2}, plain.data());
  CHECK_THROWS_WITH(stack_fp8({{&q, &q_s}, {&p, nullptr}}), Contains("'p.weight' is F32, not an FP8 weight"));
  CHECK(fp8_input_scale({{&q, &q_s}, {&p, nullptr}}) == 0);
  std::vector<float> p_f32(2);
  projection_to_f32({&p, nullptr}, p_f32.data());
  CHECK(p_f32 == plain);
}
