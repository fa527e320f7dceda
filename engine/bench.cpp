#include "engine/bench.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

#if FC_ENGINE_CUDA
#include <cuda_runtime.h>

#include "kernels/cuda_utils.cuh"
#endif

namespace fc {

#if FC_ENGINE_CUDA
DeviceInfo cuda_device_info() {
  if (cuda_device_count() == 0) fail("no CUDA GPU found");
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  DeviceInfo info;
  info.name = prop.name;
  CUDA_CHECK(cudaMemGetInfo(&info.free_bytes, &info.total_bytes));
  return info;
}

double measure_copy_bandwidth_gbs(size_t bytes, int iters) {
  if (cuda_device_count() == 0) fail("no CUDA GPU found");
  DeviceBuffer src(bytes, "copy-bandwidth source"), dst(bytes, "copy-bandwidth destination");
  CUDA_CHECK(cudaMemset(src.get(), 1, bytes));
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  CUDA_CHECK(cudaMemcpy(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice));  // warm-up
  CUDA_CHECK(cudaEventRecord(start));
  for (int i = 0; i < iters; ++i) CUDA_CHECK(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice));
  CUDA_CHECK(cudaEventRecord(stop));
  CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return 2.0 * double(bytes) * iters / (ms * 1e-3) / 1e9;
}
#else
DeviceInfo cuda_device_info() { fail("this flashcore was built without CUDA"); }
double measure_copy_bandwidth_gbs(size_t, int) { fail("this flashcore was built without CUDA"); }
#endif

double decode_weight_bytes(const Config& c, bool fp8_projections) {
  const double embed = double(c.vocab_size) * c.hidden_size;
  double params = double(c.parameter_count());
  if (!c.tie_word_embeddings) params -= embed;  // the table itself is only gathered
  if (!fp8_projections) return params * 2.0;
  // Per layer: [wq; wk; wv] (qkv_rows x hidden), wo (hidden x q_dim), [gate; up] (2 inter x hidden),
  // down (hidden x inter): 1 byte per element and 4 per output row instead of 2 per element.
  const double hidden = c.hidden_size, inter = c.intermediate_size, q_dim = c.q_dim();
  const double qkv_rows = q_dim + 2.0 * c.kv_dim();
  const double elements = qkv_rows * hidden + hidden * q_dim + 2 * inter * hidden + hidden * inter;
  const double rows = qkv_rows + hidden + 2 * inter + hidden;
  return (params - c.num_layers * elements) * 2.0 + c.num_layers * (elements + 4.0 * rows);
}

double kv_bytes_per_token(const Config& c) { return 2.0 * c.num_layers * c.kv_dim() * 2.0; }

double forward_flops(const Config& c, int64_t tokens, int64_t context) {
  const double embed = double(c.vocab_size) * c.hidden_size;
  const double matmul_params = double(c.parameter_count()) - (c.tie_word_embeddings ? 0.0 : embed);
  // Query i (0-based among the new ones) attends to context + i + 1 keys: QK^T and PV, 2 FLOPs each.
  const double keys = double(tokens) * context + double(tokens) * (tokens + 1) / 2.0;
  return 2.0 * matmul_params * tokens + 4.0 * keys * c.q_dim() * c.num_layers;
}

double percentile(std::vector<double> samples, double q) {
  if (samples.empty()) return 0;
  std::sort(samples.begin(), samples.end());
  const double rank = std::ceil(q / 100.0 * samples.size());
  const size_t index = static_cast<size_t>(std::clamp(rank, 1.0, double(samples.size()))) - 1;
  return samples[index];
}

}  // namespace fc
