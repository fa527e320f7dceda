#include "model/quantization.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace fc {

namespace {

void require_fp8(const ProjectionTensors& p) {
  if (!p.fp8()) {
    fail("{}: tensor '{}' is {}, not an FP8 weight with scales", p.weight->file, p.weight->name,
         dtype_name(p.weight->dtype));
  }
}

// Appends the part's per-row scales to `out`.
void append_row_scales(const ProjectionTensors& p, std::vector<float>& out) {
  require_fp8(p);
  const std::vector<float> stored = tensor_to_f32(*p.scales->weight);  // BF16/F16 -> fp32 is exact
  const int64_t rows = p.weight->shape[0];
  if (stored.size() == 1) {
    out.insert(out.end(), static_cast<size_t>(rows), stored[0]);
  } else {
    out.insert(out.end(), stored.begin(), stored.end());  // [rows, 1], checked at load
  }
}

}  // namespace

std::vector<float> fp8_channel_scales(std::initializer_list<ProjectionTensors> parts) {
  std::vector<float> scales;
  for (const ProjectionTensors& p : parts) append_row_scales(p, scales);
  return scales;
}

float fp8_input_scale(std::initializer_list<ProjectionTensors> parts) {
  float scale = 0;
  for (const ProjectionTensors& p : parts) {
    if (!p.fp8() || p.scales->input == nullptr) return 0;
    scale = std::max(scale, tensor_to_f32(*p.scales->input)[0]);
  }
  return scale;
}

Fp8Matrix stack_fp8(std::initializer_list<ProjectionTensors> parts) {
  Fp8Matrix m;
  for (const ProjectionTensors& p : parts) {
    require_fp8(p);
    if (m.cols == 0) m.cols = p.weight->shape[1];
    if (p.weight->shape[1] != m.cols) {
      fail("{}: tensor '{}' has {} columns, its fused partners {}", p.weight->file, p.weight->name,
           p.weight->shape[1], m.cols);
    }
    m.rows += p.weight->shape[0];
  }
  m.codes.resize(static_cast<size_t>(m.rows * m.cols));
  size_t offset = 0;
  for (const ProjectionTensors& p : parts) {
    std::memcpy(m.codes.data() + offset, p.weight->data, p.weight->nbytes);
    offset += p.weight->nbytes;
  }
  m.scales = fp8_channel_scales(parts);
  m.input_scale = fp8_input_scale(parts);
  return m;
}

Fp8Matrix quantize_fp8_per_channel(const float* w, int64_t rows, int64_t cols, const std::string& what) {
  Fp8Matrix m;
  m.rows = rows;
  m.cols = cols;
  m.codes.resize(static_cast<size_t>(rows * cols));
  m.scales.resize(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = w + r * cols;
    float amax = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const float a = std::fabs(row[c]);
      if (!(a <= std::numeric_limits<float>::max())) fail("{}: row {} holds {}: cannot quantize a non-finite weight to FP8", what, r, row[c]);
      amax = std::max(amax, a);
    }
    uint8_t* codes = m.codes.data() + r * cols;
    if (amax == 0) {  // an all-zero row: any scale is exact; 1 keeps it a plain number
      m.scales[r] = 1.0f;
      std::fill(codes, codes + cols, uint8_t{0});
      continue;
    }
    // amax / 448 can underflow to 0 only for amax < 448 * 2^-149 (subnormal weights): then use the
    // smallest positive float, so that scale stays > 0 (values saturate to +-448 x that scale).
    float scale = amax / kE4m3Max;
    if (scale == 0) scale = std::numeric_limits<float>::denorm_min();
    m.scales[r] = scale;
    for (int64_t c = 0; c < cols; ++c) codes[c] = f32_to_e4m3(row[c] / scale);
  }
  return m;
}

void dequantize_fp8(const Fp8Matrix& m, float* out) {
  for (int64_t r = 0; r < m.rows; ++r) {
    const uint8_t* codes = m.codes.data() + r * m.cols;
    const float scale = m.scales[r];
    for (int64_t c = 0; c < m.cols; ++c) out[r * m.cols + c] = e4m3_to_f32(codes[c]) * scale;
  }
}

void projection_to_f32(const ProjectionTensors& p, float* out) {
  if (!p.fp8()) {
    convert_to_f32(p.weight->dtype, p.weight->data, static_cast<size_t>(p.weight->numel()), out);
    return;
  }
  dequantize_fp8(stack_fp8({p}), out);
}

}  // namespace fc
