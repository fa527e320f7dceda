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
