#include "core/dtype.h"

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
  }
  return "?";
}

bool parse_dtype(const std::string& name, DType* out) {
  static const struct { const char* name; DType dtype; } table[] = {
      {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16},
      {"I64", DType::I64}, {"I32", DType::I32}, {"U8", DType::U8}};
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
