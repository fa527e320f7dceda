// What `flashcore bench` measures with, kept out of apps/ so tests can check the accounting: the
// bytes a decode step must read (the roofline's numerator), the device's copy bandwidth (its
// denominator), and latency percentiles.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace fc {

struct DeviceInfo {
  std::string name;
  size_t total_bytes = 0;
  size_t free_bytes = 0;
};

// The current CUDA device. Throws fc::Error without CUDA or a GPU.
DeviceInfo cuda_device_info();

// Device-to-device cudaMemcpy of `bytes` (one buffer to another), timed with CUDA events over `iters`
// copies after one warm-up; returns (bytes read + bytes written) per second in GB/s (1e9), the number
// a memory-bound kernel is held to. Throws fc::Error without CUDA.
double measure_copy_bandwidth_gbs(size_t bytes, int iters);

// Bytes of weights one decode step reads: every matrix and norm except the embedding table, whose rows
// are gathered (a few KB). With tied embeddings the table is read anyway, as the lm_head. bf16, or with
// `fp8_projections` the attention and MLP projections at one byte per element plus one fp32 scale per
// output row (engine/device_layout.h); norms and lm_head stay bf16.
double decode_weight_bytes(const Config& config, bool fp8_projections = false);
// Bytes of K and V one token of context occupies (all layers, bf16): 128 KiB for LLaMA 3.1 8B.
double kv_bytes_per_token(const Config& config);
// Matmul FLOPs of a forward over `tokens` new tokens after `context` cached ones (2 x parameters x
// tokens, plus causal attention's QK^T and PV), for the prefill TFLOP/s figure.
double forward_flops(const Config& config, int64_t tokens, int64_t context);

// Nearest-rank percentile (q in [0, 100]) of `samples`; 0 for none.
double percentile(std::vector<double> samples, double q);

}  // namespace fc
