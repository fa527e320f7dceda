#include <cmath>

#include "kernels/rope.h"

namespace fc {

std::vector<float> rope_inv_freq(int head_dim, float theta, const Llama3RopeScaling* llama3) {
  const int half = head_dim / 2;
  std::vector<float> inv_freq(half);
  for (int i = 0; i < half; ++i) {
    // torch: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all in fp32.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    inv_freq[i] = 1.0f / std::pow(theta, exponent);
  }
  if (llama3 == nullptr) return inv_freq;
  const float pi = 3.14159265358979323846f;
  const float old_context = static_cast<float>(llama3->original_max_position_embeddings);
  const float low_freq_wavelen = old_context / llama3->low_freq_factor;
  const float high_freq_wavelen = old_context / llama3->high_freq_factor;
  for (int i = 0; i < half; ++i) {
    const float wavelen = 2.0f * pi / inv_freq[i];
    // Long wavelengths (low frequencies) are slowed down by `factor`; short ones are kept; the band
    // between is interpolated smoothly.
    const float scaled = wavelen > low_freq_wavelen ? inv_freq[i] / llama3->factor : inv_freq[i];
    const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    if (medium) {
      const float smooth = (old_context / wavelen - llama3->low_freq_factor) /
                           (llama3->high_freq_factor - llama3->low_freq_factor);
      inv_freq[i] = (1.0f - smooth) * scaled / llama3->factor + smooth * scaled;
    } else {
      inv_freq[i] = scaled;
    }
  }
  return inv_freq;
}

void rope_ref(float* x, int n_tokens, int heads, int head_dim, int64_t row_stride, const int32_t* positions,
              const float* inv_freq) {
  const int half = head_dim / 2;
  for (int t = 0; t < n_tokens; ++t) {
    for (int h = 0; h < heads; ++h) {
      float* v = x + t * row_stride + static_cast<int64_t>(h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float angle = static_cast<float>(positions[t]) * inv_freq[i];
        const float c = std::cos(angle), s = std::sin(angle);
        const float x1 = v[i], x2 = v[i + half];
        v[i] = x1 * c - x2 * s;
        v[i + half] = x2 * c + x1 * s;
      }
    }
  }
}

}  // namespace fc
