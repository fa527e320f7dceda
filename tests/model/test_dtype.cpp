#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "core/dtype.h"

using namespace fc;

TEST_CASE("bf16 conversion rounds to nearest even and keeps NaN/inf", "[dtype]") {
  CHECK(bf16_to_f32(f32_to_bf16(1.0f)) == 1.0f);
  CHECK(f32_to_bf16(1.0f + 1.0f / 256) == f32_to_bf16(1.0f));           // exactly half an ulp: to even (down)
  CHECK(f32_to_bf16(1.0f + 3.0f / 256) == f32_to_bf16(1.0f + 4.0f / 256));  // half an ulp above odd: up
  CHECK(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(std::isinf(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::infinity()))));
}

TEST_CASE("f16 conversion round-trips every half value and rounds floats to nearest even", "[dtype]") {
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float f = f16_to_f32(static_cast<uint16_t>(bits));
    if (std::isnan(f)) continue;
    INFO("bits " << bits << " value " << f);
    REQUIRE(f32_to_f16(f) == bits);
  }
  CHECK(f16_to_f32(0x3c00) == 1.0f);
  CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
  CHECK(f16_to_f32(0xfbff) == -65504.0f);
  CHECK(f32_to_f16(70000.f) == 0x7c00);                 // overflow to inf
  CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie: to even
  // Random floats: the rounded value is the nearest half (compare against neighbours).
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-60000.f, 60000.f);
  for (int i = 0; i < 20000; ++i) {
    const float x = dist(rng) * (i % 2 ? 1e-4f : 1.f);
    const uint16_t h = f32_to_f16(x);
    const float err = std::fabs(f16_to_f32(h) - x);
    CHECK(err <= std::fabs(f16_to_f32(h + 1) - x));
    if ((h & 0x7fff) != 0) CHECK(err <= std::fabs(f16_to_f32(h - 1) - x));
  }
}

namespace {
float e4m3_reference(int code) {  // from the format's definition, independently of core/dtype.cpp's table
  const int e = (code >> 3) & 15, m = code & 7;
  const double magnitude = e == 0 ? m / 512.0 : (1.0 + m / 8.0) * std::pow(2.0, e - 7);
  return static_cast<float>((code & 0x80) ? -magnitude : magnitude);
}
}  // namespace

TEST_CASE("e4m3: all 256 codes decode exactly, NaN is S.1111.111, and every finite code round-trips", "[dtype][fp8]") {
  DType d;
  REQUIRE(parse_dtype("F8_E4M3", &d));
  CHECK(d == DType::F8_E4M3);
  CHECK(dtype_size(DType::F8_E4M3) == 1);
  CHECK(std::string(dtype_name(DType::F8_E4M3)) == "F8_E4M3");
  CHECK_FALSE(parse_dtype("F8_E5M2", &d));
  for (int code = 0; code < 256; ++code) {
    INFO("code 0x" << std::hex << code);
    const float v = e4m3_to_f32(static_cast<uint8_t>(code));
    if ((code & 0x7f) == 0x7f) {
      CHECK(std::isnan(v));
      continue;
    }
    CHECK(v == e4m3_reference(code));
    CHECK(std::signbit(v) == ((code & 0x80) != 0));  // 0x80 is -0
    CHECK(f32_to_e4m3(v) == code);
  }
  CHECK(e4m3_to_f32(0x01) == std::ldexp(1.0f, -9));  // smallest subnormal
  CHECK(e4m3_to_f32(0x08) == std::ldexp(1.0f, -6));  // smallest normal
  CHECK(e4m3_to_f32(0x38) == 1.0f);
  CHECK(e4m3_to_f32(0x7e) == 448.0f);
  CHECK(e4m3_to_f32(0xfe) == -448.0f);
  // Finite codes in order of value: 0x00..0x7e strictly increasing.
  for (int code = 1; code <= 0x7e; ++code) CHECK(e4m3_to_f32(code) > e4m3_to_f32(code - 1));
  // convert_to_f32 reads F8_E4M3 tensors (raw values, no scale), unaligned as safetensors allows.
  unsigned char bytes[5] = {0, 0x38, 0xc0, 0x7e, 0x01};
  float out[4];
  convert_to_f32(DType::F8_E4M3, bytes + 1, 4, out);
  CHECK(out[0] == 1.0f);
  CHECK(out[1] == -2.0f);
  CHECK(out[2] == 448.0f);
  CHECK(out[3] == std::ldexp(1.0f, -9));
}

TEST_CASE("e4m3: rounding to nearest, ties to even, saturating at 448, NaN stays NaN", "[dtype][fp8]") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  CHECK(f32_to_e4m3(nan) == 0x7f);
  CHECK(std::isnan(e4m3_to_f32(f32_to_e4m3(-nan))));
  CHECK(f32_to_e4m3(448.f) == 0x7e);
  CHECK(f32_to_e4m3(449.f) == 0x7e);
  CHECK(f32_to_e4m3(464.f) == 0x7e);  // torch's plain cast gives NaN from 464 on; saturating gives 448
  CHECK(f32_to_e4m3(1e30f) == 0x7e);
  CHECK(f32_to_e4m3(inf) == 0x7e);
  CHECK(f32_to_e4m3(-inf) == 0xfe);
  CHECK(f32_to_e4m3(-1000.f) == 0xfe);
  CHECK(f32_to_e4m3(432.f) == 0x7e);  // halfway between 416 (0x7d, odd) and 448 (0x7e, even)
  CHECK(f32_to_e4m3(std::nextafter(432.f, 0.f)) == 0x7d);
  CHECK(f32_to_e4m3(std::ldexp(1.0f, -10)) == 0x00);  // half the smallest subnormal: tie to 0 (even)
  CHECK(f32_to_e4m3(std::nextafter(std::ldexp(1.0f, -10), 1.f)) == 0x01);
  CHECK(f32_to_e4m3(-std::ldexp(1.0f, -12)) == 0x80);  // underflow keeps the sign
  CHECK(f32_to_e4m3(std::numeric_limits<float>::denorm_min()) == 0x00);
  // Every midpoint between neighbouring codes (subnormal, subnormal-normal, normal, across exponents),
  // positive and negative: the tie goes to the even code; a hair either side goes to the nearer one.
  for (int code = 0; code < 0x7e; ++code) {
    for (int sign : {0, 0x80}) {
      const float lo = e4m3_to_f32(code | sign), hi = e4m3_to_f32((code + 1) | sign);
      const float mid = (lo + hi) / 2;  // exact: at most 5 significant bits
      INFO("codes 0x" << std::hex << (code | sign) << ", 0x" << ((code + 1) | sign) << " mid " << mid);
      CHECK(f32_to_e4m3(mid) == (((code & 1) == 0 ? code : code + 1) | sign));
      CHECK(f32_to_e4m3(std::nextafter(mid, lo)) == (code | sign));
      CHECK(f32_to_e4m3(std::nextafter(mid, hi)) == ((code + 1) | sign));
    }
  }
  // Random floats across the range: the code is the nearest (no neighbour is closer).
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> exponent(-14.f, 9.5f);
  for (int i = 0; i < 50000; ++i) {
    const float x = (i % 2 ? -1.f : 1.f) * std::exp2(exponent(rng));
    const uint8_t c = f32_to_e4m3(x);
    const float err = std::fabs(e4m3_to_f32(c) - x);
    INFO("x " << x << " code " << int(c));
    if (std::fabs(x) >= 448.f) {
      CHECK((c & 0x7f) == 0x7e);
      continue;
    }
    const int mag = c & 0x7f, sign = c & 0x80;
    if (mag < 0x7e) CHECK(err <= std::fabs(e4m3_to_f32((mag + 1) | sign) - x));
    if (mag > 0) CHECK(err <= std::fabs(e4m3_to_f32((mag - 1) | sign) - x));
  }
}
