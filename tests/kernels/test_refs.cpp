// Properties of the CPU references that the end-to-end fixtures would not pin down on their own.
#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>
#include <random>

#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/rope.h"

using namespace fc;

TEST_CASE("rmsnorm puts eps inside the square root (HF), not outside", "[ref]") {
  const std::vector<float> x{1e-3f, -2e-3f, 3e-3f, 0.f};
  const std::vector<float> w{1.f, 2.f, 0.5f, 1.f};
  std::vector<float> out(4);
  const float eps = 1e-5f;
  rmsnorm_ref(x.data(), w.data(), 1, 4, eps, out.data());
  const double ms = (1e-6 + 4e-6 + 9e-6) / 4;
  for (int i = 0; i < 4; ++i) CHECK(out[i] == Approx(w[i] * x[i] / std::sqrt(ms + eps)).epsilon(1e-6));
}

TEST_CASE("rope: position 0 is the identity, rotation preserves pair norms, matches the closed form", "[ref]") {
  const int head_dim = 8, heads = 2;
  const std::vector<float> inv_freq = rope_inv_freq(head_dim, 10000.f, nullptr);
  CHECK(inv_freq[0] == 1.f);
  CHECK(inv_freq[1] == Approx(std::pow(10000.f, -0.25f)));
  std::vector<float> x(heads * head_dim);
  std::iota(x.begin(), x.end(), 1.f);
  std::vector<float> y = x;
  const int32_t zero = 0, pos = 7;
  rope_ref(y.data(), 1, heads, head_dim, heads * head_dim, &zero, inv_freq.data());
  CHECK(y == x);
  rope_ref(y.data(), 1, heads, head_dim, heads * head_dim, &pos, inv_freq.data());
  for (int h = 0; h < heads; ++h) {
    for (int i = 0; i < head_dim / 2; ++i) {
      const float a = x[h * head_dim + i], b = x[h * head_dim + i + head_dim / 2];
      const float c = std::cos(7 * inv_freq[i]), s = std::sin(7 * inv_freq[i]);
      CHECK(y[h * head_dim + i] == Approx(a * c - b * s));
      CHECK(y[h * head_dim + i + head_dim / 2] == Approx(b * c + a * s));
    }
  }
}

TEST_CASE("llama3 rope scaling: high frequencies kept, low ones divided by factor, band interpolated", "[ref]") {
  Llama3RopeScaling s;  // Llama 3.1: factor 8, low 1, high 4, original 8192
  const std::vector<float> plain = rope_inv_freq(128, 500000.f, nullptr);
  const std::vector<float> scaled = rope_inv_freq(128, 500000.f, &s);
  const float pi = 3.14159265f;
  int kept = 0, divided = 0, interpolated = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    const float wavelen = 2 * pi / plain[i];
    if (wavelen < 8192.f / 4) {
      CHECK(scaled[i] == plain[i]);
      ++kept;
    } else if (wavelen > 8192.f) {
      CHECK(scaled[i] == Approx(plain[i] / 8).epsilon(1e-6));
      ++divided;
    } else {
      CHECK(scaled[i] < plain[i]);
      CHECK(scaled[i] > plain[i] / 8);
      ++interpolated;
    }
  }
  CHECK(kept > 0);
  CHECK(divided > 0);
  CHECK(interpolated > 0);
}

TEST_CASE("attention_ref: block size and physical block order do not change the result", "[ref]") {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  const int kv_heads = 2, q_heads = 4, head_dim = 8, seq_len = 21, n_q = 5;
  const AttentionShape shape{q_heads, kv_heads, head_dim, 0.35f};
  std::vector<float> k(seq_len * kv_heads * head_dim), v(k.size()), q(n_q * q_heads * head_dim);
  for (auto* vec : {&k, &v, &q}) for (auto& e : *vec) e = dist(rng);
  std::vector<std::vector<float>> outs;
  for (int block_size : {1, 4, 16, 32}) {
    const PagedKVLayout layout{block_size, kv_heads, head_dim};
    const int blocks = (seq_len + block_size - 1) / block_size;
    std::vector<int32_t> table(blocks);
    for (int b = 0; b < blocks; ++b) table[b] = blocks - 1 - b;  // reversed physical order
    std::vector<int32_t> slots(seq_len);
    for (int t = 0; t < seq_len; ++t) slots[t] = table[t / block_size] * block_size + t % block_size;
    std::vector<float> kp(blocks * layout.block_stride()), vp(kp.size());
    kv_append_ref(k.data(), v.data(), kv_heads * head_dim, seq_len, slots.data(), layout, kp.data(), vp.data());
    const std::vector<int32_t> cu{0, n_q}, lens{seq_len};
    const AttentionBatch batch{1, cu.data(), lens.data(), table.data(), blocks};
    std::vector<float> out(q.size());
    attention_ref(batch, shape, q.data(), q_heads * head_dim, kp.data(), vp.data(), layout, out.data(),
                  q_heads * head_dim);
    outs.push_back(out);
  }
  for (size_t i = 1; i < outs.size(); ++i) {
    for (size_t j = 0; j < outs[0].size(); ++j) CHECK(outs[i][j] == Approx(outs[0][j]).margin(1e-6));
  }
  // The last query row attends to every key; with one key the output is that key's value.
  const std::vector<int32_t> cu1{0, 1}, len1{1}, table1{0};
  const PagedKVLayout layout{16, kv_heads, head_dim};
  std::vector<float> kp(layout.block_stride()), vp(kp.size());
  const int32_t slot0 = 0;
  kv_append_ref(k.data(), v.data(), kv_heads * head_dim, 1, &slot0, layout, kp.data(), vp.data());
  std::vector<float> out(q_heads * head_dim);
  const AttentionBatch one{1, cu1.data(), len1.data(), table1.data(), 1};
  attention_ref(one, shape, q.data(), q_heads * head_dim, kp.data(), vp.data(), layout, out.data(), q_heads * head_dim);
  for (int h = 0; h < q_heads; ++h)
    for (int d = 0; d < head_dim; ++d) CHECK(out[h * head_dim + d] == Approx(v[(h / 2) * head_dim + d]));
}
