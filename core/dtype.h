// Storage dtypes of checkpoint tensors and conversions between them on the host.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace fc {

enum class DType { F32, F16, BF16, I64, I32, U8 };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);  // safetensors spelling: "F32", "BF16", ...
// Parses a safetensors dtype string; returns false for dtypes FlashCore does not read.
bool parse_dtype(const std::string& name, DType* out);

inline float bf16_to_f32(uint16_t bits) {
  uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even, as torch's .to(torch.bfloat16) does; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float f16_to_f32(uint16_t bits);
uint16_t f32_to_f16(float f);

// Converts `count` elements of a floating-point tensor (F32/F16/BF16) at `src` to fp32.
// `src` need not be aligned (safetensors offsets are arbitrary).
void convert_to_f32(DType dtype, const void* src, size_t count, float* dst);
// Converts `count` elements of a floating-point tensor to bf16 bits.
void convert_to_bf16(DType dtype, const void* src, size_t count, uint16_t* dst);

}  // namespace fc
