// The device math more than one kernel computes, written once so that fused and unfused kernels give
// the same bits: bf16 <-> fp32 pack/unpack, RMSNorm's scaling, SwiGLU, RoPE's rotation and the paged
// K/V address. Each helper is exactly the operation sequence the kernels had before it was shared (same
// fp32 operations in the same order, one bf16 rounding at the same point); a change here changes all
// of them together, which is the point. Callers keep their own loads, stores and reductions: those set
// the kernels' speed and differ on purpose (see each kernel's header comment).
#pragma once
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "kernels/attention.h"
#include "kernels/cuda_utils.cuh"

namespace fc {

// ---- bf16 <-> fp32 ----
// bf16 is the top half of an fp32, so widening is a shift or a mask: exact, no conversion instruction,
// and the same on every architecture (the cuda_bf16 intrinsics take a cvt on sm_90 and a mov elsewhere).

// The low / high bf16 of a 32-bit word (element 2j / 2j + 1 of a little-endian vector).
__device__ __forceinline__ float bf16_lo(uint32_t v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }

// 8 bf16 (one 16-byte load) -> f[0..7].
__device__ __forceinline__ void unpack_bf16x8(const uint4& v, float* f) {
  f[0] = bf16_lo(v.x); f[1] = bf16_hi(v.x); f[2] = bf16_lo(v.y); f[3] = bf16_hi(v.y);
  f[4] = bf16_lo(v.z); f[5] = bf16_hi(v.z); f[6] = bf16_lo(v.w); f[7] = bf16_hi(v.w);
}

// Two floats rounded to nearest-even bf16, `lo` in the low 16 bits (one cvt.rn.bf16x2.f32 on sm_80+).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// f[0..7] rounded to bf16 -> one 16-byte store.
__device__ __forceinline__ uint4 pack_bf16x8(const float* f) {
  return make_uint4(pack_bf16x2(f[0], f[1]), pack_bf16x2(f[2], f[3]), pack_bf16x2(f[4], f[5]),
                    pack_bf16x2(f[6], f[7]));
}

// x as the bf16 value it would be stored as (a product that a fused epilogue must see rounded exactly
// like the unfused kernel that reads it back from memory).
__device__ __forceinline__ float round_bf16(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

// ---- e4m3fn <-> fp32 (FP8 weights and activations, model/quantization.h's arithmetic) ----
// Every e4m3fn value is an fp16 value, so the widening is exact: one cvt.rn.f16x2.e4m3x2 per two codes on
// sm_89+ (the cuda_fp8.h intrinsic; older targets get its exact software emulation, never launched: the
// backend refuses FP8 below sm_89), then fp16 -> fp32 (exact). Codes 0x7f/0xff decode to NaN.

// Two codes (the low 16 bits of `v`, element 0 in the low byte) -> f[0..1].
__device__ __forceinline__ void unpack_e4m3x2(uint32_t v, float* f) {
  const __half2_raw raw = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(v & 0xffffu), __NV_E4M3);
  const float2 pair = __half22float2(__half2(raw));
  f[0] = pair.x;
  f[1] = pair.y;
}

// 8 codes (two 32-bit words, element 0 in the low byte of `lo`) -> f[0..7].
__device__ __forceinline__ void unpack_e4m3x8(uint32_t lo, uint32_t hi, float* f) {
  unpack_e4m3x2(lo, f);
  unpack_e4m3x2(lo >> 16, f + 2);
  unpack_e4m3x2(hi, f + 4);
  unpack_e4m3x2(hi >> 16, f + 6);
}

// fp32 -> e4m3fn code, round to nearest even, saturating to +-448 (NaN -> 0x7f): core/dtype.h's
// f32_to_e4m3 (one cvt.rn.satfinite.e4m3x2.f32 on sm_89+).
__device__ __forceinline__ uint8_t f32_to_e4m3_rn_sat(float v) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
}

// ---- RMSNorm (HF LlamaRMSNorm, statistics in fp32) ----
// Every normalizing kernel sums the squares in its own order (fixed per kernel, so results are
// deterministic); from the sum on, they share these two steps.

// rsqrt(mean(x^2) + eps): HF's formula, not 1 / (sqrt(ms) + eps).
__device__ __forceinline__ float rms_inv(float sum_squares, int dim, float eps) {
  return rsqrtf(sum_squares / dim + eps);
}

// HF computes weight * (x * inv_rms) in fp32 and rounds once to bf16 (the caller's pack / store).
__device__ __forceinline__ float rms_scale(float x, float inv_rms, float weight) { return weight * (x * inv_rms); }

// 8 normalized values x[0..7] with weights w[0..7], packed to bf16.
__device__ __forceinline__ uint4 rms_scale_bf16x8(const float* x, float inv_rms, const float* w) {
  return make_uint4(pack_bf16x2(rms_scale(x[0], inv_rms, w[0]), rms_scale(x[1], inv_rms, w[1])),
                    pack_bf16x2(rms_scale(x[2], inv_rms, w[2]), rms_scale(x[3], inv_rms, w[3])),
                    pack_bf16x2(rms_scale(x[4], inv_rms, w[4]), rms_scale(x[5], inv_rms, w[5])),
                    pack_bf16x2(rms_scale(x[6], inv_rms, w[6]), rms_scale(x[7], inv_rms, w[7])));
}

// ---- SwiGLU ----
// silu(g) * u = g / (1 + e^-g) * u: e^-g overflows to inf for g < -88 and the quotient is then -0, the
// right limit. Accurate expf, not __expf (whose error grows with |g|): both callers are memory-bound.
__device__ __forceinline__ float silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// ---- RoPE (HF rotate-half) + paged K/V append ----

// cos and sin of the angle of frequency inv_freq at `position`: the fp32 product float(position) *
// inv_freq like the CPU reference (kernels/rope.h), and the accurate sincosf, since positions reach
// 131072 and __sincosf loses all accuracy at such angles.
__device__ __forceinline__ void rope_cos_sin(int32_t position, float inv_freq, float& cos_v, float& sin_v) {
  sincosf(static_cast<float>(position) * inv_freq, &sin_v, &cos_v);
}

// The pair (x1, x2) = (x[i], x[i + head_dim/2]) rotated by the angle whose cos / sin are given.
__device__ __forceinline__ void rope_rotate(float x1, float x2, float cos_v, float sin_v, float& y1, float& y2) {
  y1 = x1 * cos_v - x2 * sin_v;
  y2 = x2 * cos_v + x1 * sin_v;
}

// Token `token`'s pool slot, or -1 when it stores nothing (a padding token, or no slot_mapping given).
__device__ __forceinline__ int64_t kv_slot(const int32_t* slot_mapping, int token) {
  return slot_mapping != nullptr ? slot_mapping[token] : -1;
}

// The head_dim values of (slot, kv_head) in a K or V pool laid out by `layout` (kernels/attention.h): the
// value of PagedKVLayout::offset, in its nested form (one multiply fewer per address than the strides;
// rope_kv_kernel's registers went up by 2-6 with the strided form).
__device__ __forceinline__ bf16* kv_pool_row(bf16* pool, const PagedKVLayout& layout, int64_t slot, int kv_head) {
  const int64_t block = slot / layout.block_size, in_block = slot % layout.block_size;
  return pool + ((block * layout.kv_heads + kv_head) * layout.block_size + in_block) * layout.head_dim;
}

}  // namespace fc
