// Storage dtypes of checkpoint tensors and conversions between them on the host.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace fc {

// F8_E4M3 is OCP/NVIDIA e4m3fn (torch.float8_e4m3fn): 1 sign, 4 exponent (bias 7), 3 mantissa bits; no
// infinities; NaN = S.1111.111 (0x7f, 0xff); largest finite 448 (0x7e); subnormals m * 2^-9.
enum class DType { F32, F16, BF16, I64, I32, U8, F8_E4M3 };

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

// Exact: every e4m3fn code is an fp32 value (0x7f/0xff decode to NaN, 0x80 to -0).
float e4m3_to_f32(uint8_t code);
// Round to nearest even on the e4m3fn grid, saturating: |f| >= 448 (Inf included) gives +-448 (0x7e/0xfe),
// NaN gives 0x7f. Ties between two codes go to the even mantissa (code with bit 0 clear); values below
// half the smallest subnormal (2^-10) give +-0 (sign kept). This is torch's `x.clamp(-448, 448).to(
// torch.float8_e4m3fn)` (what llm-compressor does) and CUDA's `__nv_cvt_float_to_fp8(x, __NV_SATFINITE,
// __NV_E4M3)`; torch's plain cast differs only above 448 (it rounds [448, 464) to 448 and gives NaN beyond).
uint8_t f32_to_e4m3(float f);

// Converts `count` elements of a floating-point tensor (F32/F16/BF16/F8_E4M3) at `src` to fp32. F8_E4M3
// gives the raw e4m3 values: the caller applies the tensor's scale (model/quantization.h).
// `src` need not be aligned (safetensors offsets are arbitrary).
void convert_to_f32(DType dtype, const void* src, size_t count, float* dst);
// Converts `count` elements of a floating-point tensor to bf16 bits.
void convert_to_bf16(DType dtype, const void* src, size_t count, uint16_t* dst);

}  // namespace fc
