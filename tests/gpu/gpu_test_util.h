// Shared checks for GPU kernel tests (see STYLE.md habit 13): fresh random inputs, outputs poisoned
// before each run, a sentinel region after each output, 100% of elements within atol + rtol*|ref|,
// NMSE reported, NaN/Inf rejected.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda_utils.cuh"

namespace fc::test {

// A seed for one test case's inputs (print it with INFO so a failure can be replayed).
inline uint32_t fresh_seed() {
  static std::random_device device;
  return device();
}

std::vector<float> random_floats(size_t count, std::mt19937& rng, float lo = -1.f, float hi = 1.f);
// bf16 round trip (what a bf16 tensor of these values holds).
std::vector<float> round_to_bf16(const std::vector<float>& values);
std::vector<uint16_t> to_bf16_bits(const std::vector<float>& values);
std::vector<float> from_bf16_bits(const std::vector<uint16_t>& bits);

// A device array of T with `sentinel_bytes` poisoned bytes after it. poison() fills the payload with
// 0xFF bytes (NaN for fp32 and bf16) and the sentinel with a known pattern; check_sentinel() fails the
// test if a kernel wrote past the end.
class GuardedBuffer {
 public:
  GuardedBuffer(size_t bytes, size_t sentinel_bytes = 256);
  void* get() const { return buffer_.get(); }
  template <typename T>
  T* as() const { return static_cast<T*>(buffer_.get()); }
  size_t bytes() const { return bytes_; }
  void poison();
  void upload(const void* host, size_t bytes);
  void download(void* host, size_t bytes) const;
  bool sentinel_intact() const;

 private:
  DeviceBuffer buffer_;
  size_t bytes_;
  size_t sentinel_bytes_;
};

struct CompareResult {
  bool ok = false;
  size_t bad = 0;          // elements outside atol + rtol*|ref|, or NaN/Inf
  size_t first_bad = 0;
  double max_abs_err = 0;
  double nmse = 0;         // sum (a-b)^2 / sum b^2
  std::string summary;     // one line for the test log
};
CompareResult compare(const std::vector<float>& got, const std::vector<float>& ref, double atol, double rtol);
// The same with an absolute tolerance per element.
CompareResult compare(const std::vector<float>& got, const std::vector<float>& ref, const std::vector<double>& atol,
                      double rtol);

}  // namespace fc::test
