// FP8 (e4m3fn) projection weights on the host, in the one form every backend uses: a row-major [out, in]
// matrix of e4m3 codes with one fp32 scale per output channel (row). Fused projections (Q/K/V, gate/up)
// are their parts' rows stacked, each row keeping its own scale, so a per-tensor scale folds into the fused
// matrix exactly (it is repeated over that tensor's rows). No CUDA here.
//
// The arithmetic, which the CUDA path must match bit for bit:
//  - value of element (r, c):  e4m3_to_f32(codes[r * cols + c]) * scales[r]  (one fp32 multiply, round to
//    nearest even; as torch's `w.to(torch.float32) * scale.to(torch.float32)`). A checkpoint's scale stored
//    in BF16 or F16 is first widened to fp32 (exact).
//  - quantizing row r (`--quantize fp8`, quantize_fp8_per_channel): amax = max_c |w[r][c]| in fp32;
//    amax == 0: scale 1 and every code 0 (+0; a zero row stays exactly zero); else scale = amax / 448.0f
//    (one fp32 division, round to nearest even; should that underflow to 0, for weights below 448 x 2^-149,
//    the scale is 2^-149 instead) and codes[r][c] = f32_to_e4m3(w[r][c] / scale) (one fp32
//    division, then core/dtype.h's round-to-nearest-even saturating conversion: the amax element lands
//    on +-448 even when the division rounds a hair above 448). The input w is the stored value widened to
//    fp32 (BF16/F16 -> fp32 is exact; never rounded through bf16 first). Rows are independent, so quantizing a
//    fused matrix or its parts separately gives the same codes and scales.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "model/llama_weights.h"

namespace fc {

constexpr float kE4m3Max = 448.0f;  // largest finite e4m3fn value

struct Fp8Matrix {
  int64_t rows = 0, cols = 0;
  std::vector<uint8_t> codes;  // (rows, cols) e4m3fn codes, row-major [out, in]
  std::vector<float> scales;   // (rows) fp32 scale of each output channel, finite and > 0
  // Static activation scale of the matrix's input (the checkpoint's input_scale; for a fused matrix the
  // largest of its parts', as vLLM does: the parts share one input); 0 when there is none (dynamic
  // per-token or weight-only schemes, and --quantize fp8).
  float input_scale = 0;
};

// One projection as the checkpoint stores it: the weight and, for an F8_E4M3 weight, its scales.
struct ProjectionTensors {
  const TensorInfo* weight = nullptr;
  const Fp8ScaleTensors* scales = nullptr;  // null or !fp8(): the weight is F32/F16/BF16
  bool fp8() const { return scales != nullptr && scales->fp8(); }
};

// The checkpoint's FP8 parts stacked in order (their codes copied, their scales folded into one fp32
// scale per row). Every part must be F8_E4M3 (throws otherwise). The CUDA upload may copy codes straight
// from the mapping instead and use fp8_channel_scales for the scales: the result is the same.
Fp8Matrix stack_fp8(std::initializer_list<ProjectionTensors> parts);
// The per-row fp32 scales of the stacked parts: a per-tensor scale repeated over its tensor's rows, a
// per-channel scale taken row by row.
std::vector<float> fp8_channel_scales(std::initializer_list<ProjectionTensors> parts);
// The largest input_scale of the parts (all FP8 with static activation scales), else 0.
float fp8_input_scale(std::initializer_list<ProjectionTensors> parts);

// `--quantize fp8`: per-output-channel absmax scales, round to nearest even, saturating (arithmetic
// above). `w` is (rows, cols) row-major fp32; throws fc::Error naming `what` and the row on a NaN or Inf.
Fp8Matrix quantize_fp8_per_channel(const float* w, int64_t rows, int64_t cols, const std::string& what = "weight");

// The fp32 values of `m` (rows, cols) into `out`: code value x row scale.
void dequantize_fp8(const Fp8Matrix& m, float* out);

// The projection's weights in fp32 as the model computes with them: F32/F16/BF16 widened; F8_E4M3 times
// its scales (dequantize_fp8 of stack_fp8 of that one part). `out` holds weight->numel() floats.
void projection_to_f32(const ProjectionTensors& projection, float* out);

}  // namespace fc
