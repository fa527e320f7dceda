#include "tests/gpu/gpu_test_util.h"

#include <cmath>
#include <cstring>

#include <fmt/format.h>

#include "core/dtype.h"

namespace fc::test {

std::vector<float> random_floats(size_t count, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> values(count);
  for (auto& v : values) v = dist(rng);
  return values;
}

std::vector<float> round_to_bf16(const std::vector<float>& values) {
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = bf16_to_f32(f32_to_bf16(values[i]));
  return out;
}

std::vector<uint16_t> to_bf16_bits(const std::vector<float>& values) {
  std::vector<uint16_t> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = f32_to_bf16(values[i]);
  return out;
}

std::vector<float> from_bf16_bits(const std::vector<uint16_t>& bits) {
  std::vector<float> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) out[i] = bf16_to_f32(bits[i]);
  return out;
}

namespace {
constexpr unsigned char kSentinel = 0xA5;
}

GuardedBuffer::GuardedBuffer(size_t bytes, size_t sentinel_bytes)
    : buffer_(bytes + sentinel_bytes, "test buffer"), bytes_(bytes), sentinel_bytes_(sentinel_bytes) {
  poison();
}

void GuardedBuffer::poison() {
  CUDA_CHECK(cudaMemset(buffer_.get(), 0xFF, bytes_));
  CUDA_CHECK(cudaMemset(static_cast<char*>(buffer_.get()) + bytes_, kSentinel, sentinel_bytes_));
}

void GuardedBuffer::upload(const void* host, size_t bytes) {
  CUDA_CHECK(cudaMemcpy(buffer_.get(), host, bytes, cudaMemcpyHostToDevice));
}

void GuardedBuffer::download(void* host, size_t bytes) const {
  CUDA_CHECK(cudaDeviceSynchronize());
  CUDA_CHECK(cudaMemcpy(host, buffer_.get(), bytes, cudaMemcpyDeviceToHost));
}

bool GuardedBuffer::sentinel_intact() const {
  std::vector<unsigned char> tail(sentinel_bytes_);
  CUDA_CHECK(cudaDeviceSynchronize());
  CUDA_CHECK(cudaMemcpy(tail.data(), static_cast<char*>(buffer_.get()) + bytes_, sentinel_bytes_,
                        cudaMemcpyDeviceToHost));
  for (unsigned char c : tail) {
    if (c != kSentinel) return false;
  }
  return true;
}

CompareResult compare(const std::vector<float>& got, const std::vector<float>& ref, double atol, double rtol) {
  return compare(got, ref, std::vector<double>(ref.size(), atol), rtol);
}

CompareResult compare(const std::vector<float>& got, const std::vector<float>& ref, const std::vector<double>& atol,
                      double rtol) {
  CompareResult r;
  if (got.size() != ref.size() || atol.size() != ref.size()) {
    r.summary = fmt::format("size mismatch: got {} ref {} atol {}", got.size(), ref.size(), atol.size());
    r.bad = ref.size() + 1;
    return r;
  }
  double err2 = 0, ref2 = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double a = got[i], b = ref[i];
    const double diff = std::fabs(a - b);
    const bool finite = std::isfinite(a);
    if (!finite || diff > atol[i] + rtol * std::fabs(b)) {
      if (r.bad == 0) r.first_bad = i;
      ++r.bad;
    }
    if (finite) {
      r.max_abs_err = std::max(r.max_abs_err, diff);
      err2 += diff * diff;
    }
    ref2 += b * b;
  }
  r.nmse = ref2 > 0 ? err2 / ref2 : err2;
  r.ok = r.bad == 0;
  r.summary = fmt::format("{} elements, {} bad (first at {}: got {} ref {}), max abs err {:.3g}, NMSE {:.3g}",
                          ref.size(), r.bad, r.first_bad, r.bad ? got[r.first_bad] : 0.f,
                          r.bad ? ref[r.first_bad] : 0.f, r.max_abs_err, r.nmse);
  return r;
}

}  // namespace fc::test
