#include "core/dtype.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace fc {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::I64: return 8;
    case DType::I32: return 4;
    case DType::U8: return 1;
    case DType::F8_E4M3: return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I64: return "I64";
    case DType::I32: return "I32";
    case DType::U8: return "U8";
    case DType::F8_E4M3: return "F8_E4M3";
  }
  return "?";
}

bool parse_dtype(const std::string& name, DType* out) {
  static const struct { const char* name; DType dtype; } table[] = {
      {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16},
      {"I64", DType::I64}, {"I32", DType::I32}, {"U8", DType::U8}, {"F8_E4M3", DType::F8_E4M3}};
  for (const auto& entry : table) {
    if (name == entry.name) {
      *out = entry.dtype;
      return true;
    }
  }
  return false;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int shift = 0;
      while ((mantissa & 0x400u) == 0) {
        mantissa <<= 1;
        ++shift;
      }
      mantissa &= 0x3ffu;
      bits = sign | (static_cast<uint32_t>(127 - 15 - shift + 1) << 23) | (mantissa << 13);
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;          // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;         // overflow (incl. inf)
  if (abs < 0x38800000u) {                               // subnormal or zero in f16
    if (abs < 0x33000000u) return sign;                  // below half the smallest subnormal
    // value = mantissa24 * 2^(exponent - 150); in units of 2^-24 that is mantissa24 >> (126 - exponent)
    const uint32_t exponent = abs >> 23;
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exponent;
    uint32_t result = mantissa >> shift;
    const uint32_t rem = mantissa & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (result & 1u))) ++result;
    return static_cast<uint16_t>(sign | result);
  }
  uint32_t result = ((abs - 0x38000000u) >> 13);
  const uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (result & 1u))) ++result;
  return static_cast<uint16_t>(sign | result);
}

namespace {

// The 256 e4m3fn values, built once from the definition: exponent field e, mantissa m:
// e == 0: m * 2^-9 (subnormal); 0 < e: (1 + m/8) * 2^(e-7); e == 15 and m == 7: NaN.
struct E4m3Table {
  float value[256];
  E4m3Table() {
    for (int code = 0; code < 256; ++code) {
      const int e = (code >> 3) & 0xf, m = code & 7;
      float v;
      if (e == 15 && m == 7) {
        v = std::numeric_limits<float>::quiet_NaN();
      } else if (e == 0) {
        v = std::ldexp(static_cast<float>(m), -9);
      } else {
        v = std::ldexp(static_cast<float>(8 + m), e - 10);  // (8 + m) / 8 * 2^(e-7)
      }
      value[code] = (code & 0x80) ? -v : v;
    }
  }
};
const E4m3Table& e4m3_table() {
  static const E4m3Table table;
  return table;
}

}  // namespace

float e4m3_to_f32(uint8_t code) { return e4m3_table().value[code]; }

uint8_t f32_to_e4m3(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return 0x7f;              // NaN
  if (abs >= 0x43e00000u) return sign | 0x7e;      // >= 448 (Inf included): saturate
  if (abs < 0x3c800000u) {                         // below 2^-6, the smallest normal: subnormal grid m * 2^-9
    // |f| * 2^9 is exact (a power-of-two scale, no overflow) and < 8; round it to the nearest integer,
    // ties to even. 8 is code 0x08, which is 2^-6: the carry into the smallest normal is the right code.
    float a;
    std::memcpy(&a, &abs, sizeof a);
    const float scaled = a * 512.0f;
    const float below = std::floor(scaled);
    const float rest = scaled - below;  // exact: both are < 8 with at most 24 significant bits
    uint32_t m = static_cast<uint32_t>(below);
    if (rest > 0.5f || (rest == 0.5f && (m & 1u))) ++m;
    return static_cast<uint8_t>(sign | m);
  }
  // Normal: keep 3 of fp32's 23 mantissa bits, rounding the 20 dropped bits to nearest even. A carry out
  // of the mantissa bumps the exponent, which is the right code; |f| < 448 never rounds past 0x7e.
  const uint32_t exponent = (abs >> 23) - 127 + 7;  // 1..8+7
  const uint32_t mantissa = (abs >> 20) & 7u;
  const uint32_t dropped = abs & 0xfffffu;
  uint32_t code = (exponent << 3) | mantissa;
  if (dropped > 0x80000u || (dropped == 0x80000u && (mantissa & 1u))) ++code;
  return static_cast<uint8_t>(sign | code);
}

namespace {
template <typename Fn>
void convert_elements(DType dtype, const void* src, size_t count, Fn&& store) {
  const unsigned char* bytes = static_cast<const unsigned char*>(src);
  switch (dtype) {
    case DType::F32:
      for (size_t i = 0; i < count; ++i) {
        float v;
        std::memcpy(&v, bytes + 4 * i, 4);
        store(i, v);
      }
      return;
    case DType::F16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * i, 2);
        store(i, f16_to_f32(h));
      }
      return;
    case DType::BF16:
      for (size_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, bytes + 2 * i, 2);
        store(i, bf16_to_f32(h));
      }
      return;
    case DType::F8_E4M3: {
      const float* table = e4m3_table().value;
      for (size_t i = 0; i < count; ++i) store(i, table[bytes[i]]);
      return;
    }
    default:
      fail("cannot convert a {} tensor to floating point", dtype_name(dtype));
  }
}
}  // namespace

void convert_to_f32(DType dtype, const void* src, size_t count, float* dst) {
  convert_elements(dtype, src, count, [dst](size_t i, float v) { dst[i] = v; });
}

void convert_to_bf16(DType dtype, const void* src, size_t count, uint16_t* dst) {
  if (dtype == DType::BF16) {
    std::memcpy(dst, src, count * 2);
    return;
  }
  convert_elements(dtype, src, count, [dst](size_t i, float v) { dst[i] = f32_to_bf16(v); });
}

}  // namespace fc
