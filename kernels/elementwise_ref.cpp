#include <cmath>
#include <cstring>

#include "core/error.h"
#include "kernels/elementwise.h"

namespace fc {

void embedding_ref(const float* table, int vocab, int hidden, const int32_t* ids, int n, float* out) {
  for (int i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) fail("token id {} out of range (vocab size {})", ids[i], vocab);
    std::memcpy(out + static_cast<int64_t>(i) * hidden, table + static_cast<int64_t>(ids[i]) * hidden,
                sizeof(float) * hidden);
  }
}

void rmsnorm_ref(const float* x, const float* weight, int rows, int dim, float eps, float* out) {
  for (int r = 0; r < rows; ++r) {
    const float* row = x + static_cast<int64_t>(r) * dim;
    double sum_squares = 0.0;
    for (int j = 0; j < dim; ++j) sum_squares += static_cast<double>(row[j]) * row[j];
    // HF: hidden * torch.rsqrt(variance + eps), variance = mean(x^2): eps inside the root.
    const float inv_rms = static_cast<float>(1.0 / std::sqrt(sum_squares / dim + eps));
    float* dst = out + static_cast<int64_t>(r) * dim;
    for (int j = 0; j < dim; ++j) dst[j] = weight[j] * (row[j] * inv_rms);
  }
}

void add_rmsnorm_ref(float* residual, const float* x, const float* weight, int rows, int dim, float eps,
                     float* out) {
  const int64_t count = static_cast<int64_t>(rows) * dim;
  for (int64_t i = 0; i < count; ++i) residual[i] += x[i];
  rmsnorm_ref(residual, weight, rows, dim, eps, out);
}

void swiglu_ref(const float* gate_up, int rows, int cols, float* out) {
  for (int r = 0; r < rows; ++r) {
    const float* gate = gate_up + static_cast<int64_t>(r) * 2 * cols;
    const float* up = gate + cols;
    float* dst = out + static_cast<int64_t>(r) * cols;
    for (int j = 0; j < cols; ++j) {
      const float g = gate[j];
      dst[j] = g / (1.0f + std::exp(-g)) * up[j];
    }
  }
}

void matmul_ref(const float* x, const float* w, int rows, int in_dim, int out_dim, float* out) {
  // Four output columns at a time keeps the tiny fixtures fast without obscuring the formula.
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + static_cast<int64_t>(r) * in_dim;
    float* dst = out + static_cast<int64_t>(r) * out_dim;
    for (int o = 0; o < out_dim; ++o) {
      const float* wo = w + static_cast<int64_t>(o) * in_dim;
      float acc0 = 0.f, acc1 = 0.f, acc2 = 0.f, acc3 = 0.f;
      int k = 0;
      for (; k + 4 <= in_dim; k += 4) {
        acc0 += xr[k] * wo[k];
        acc1 += xr[k + 1] * wo[k + 1];
        acc2 += xr[k + 2] * wo[k + 2];
        acc3 += xr[k + 3] * wo[k + 3];
      }
      for (; k < in_dim; ++k) acc0 += xr[k] * wo[k];
      dst[o] = (acc0 + acc1) + (acc2 + acc3);
    }
  }
}

int argmax_ref(const float* logits, int vocab) {
  int best = 0;
  for (int i = 1; i < vocab; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

}  // namespace fc
