// Device memory the CUDA backend will allocate, computed up front from the config and the options, so
// that a model or a KV pool too large for the GPU is refused with numbers and a suggestion before the
// first cudaMalloc, instead of failing half-way through a load. Pure host code (no CUDA): the CPU tests
// check it with made-up free-memory figures.
//
// The sizes are those of engine/device_layout.h, the layout the CUDA backend allocates and carves.
#pragma once
#include <cstddef>

#include "engine/backend.h"
#include "model/config.h"

namespace fc {

// Whether the GPU holds lm_head as its own matrix or reuses the embedding table (tied checkpoints, and
// every synthetic model: the CUDA backend draws one table for both).
enum class LmHeadStorage { SharedWithEmbedding, Separate };

struct GpuMemoryPlan {
  size_t weights = 0;    // one bf16 buffer, Q/K/V and gate/up fused, each tensor 256-byte aligned
  size_t kv_pool = 0;    // K and V of every layer: blocks x block_size x kv_heads x head_dim bf16
  size_t workspace = 0;  // activations (max batch tokens), logits rows, metadata, sampling; decode
                         // attention split-KV partials; cuBLASLt workspace
  size_t reserve = 0;    // not allocated by us: kernel modules the runtime loads lazily, cuBLASLt's handle
  size_t total = 0;      // the sum, each allocation rounded up to the driver's 2 MiB granularity

  // The geometry the sizes were computed for, as the backend derives it from the options.
  int max_context = 0;     // tokens per sequence: a whole number of blocks
  int kv_blocks = 0;       // blocks in the pool
  int max_sequences = 0;
  int max_batch_tokens = 0;  // rows of the activation workspace
  size_t kv_bytes_per_token = 0;  // all layers, K and V

  // The inputs, so that check_fits_gpu can work out what would fit instead.
  Config config;
  BackendOptions options;
  LmHeadStorage lm_head = LmHeadStorage::Separate;
};

// The row count the CUDA backend's cuBLASLt products run with for a step of `rows` rows, and so the rows
// its activation buffers hold. cuBLASLt plans (and the kernels they select, loaded lazily into host
// memory) are per shape: with the exact count, every new prompt length adds plans for good and host
// memory grows with the number of distinct lengths seen (measured: +0.24 MB per new length on the 1B).
// Buckets keep the set of shapes small: exact up to 16 rows (decode batches), then rounded up to a
// multiple of max(16, 2^(floor(log2 rows) - 4)), so 16 buckets per octave and at most 1/16 extra rows,
// which cuBLASLt's 64- to 256-row tiles mostly compute anyway. Non-decreasing, and gemm_rows(r) >= r.
int gemm_rows(int rows);

GpuMemoryPlan plan_gpu_memory(const Config& config, const BackendOptions& options, LmHeadStorage lm_head);
// lm_head from config.tie_word_embeddings (what map_llama_tensors does for a checkpoint).
GpuMemoryPlan plan_gpu_memory(const Config& config, const BackendOptions& options);

// Throws fc::Error (one line: needed vs available in GB, and what to change) when `plan` does not fit
// in `free_bytes` of device memory (`total_bytes`: the GPU's size, for the message). Three cases:
//   - the weights alone (plus the fixed reserve) exceed the free memory: the model is larger than the GPU
//     (or than what other processes left of it);
//   - a smaller context would fit: the message names the largest --max-context that does (and, with
//     several sequences, how many sequences fit at the asked context);
//   - nothing fits, not even one KV block per sequence: the weights plus minimal buffers are too large.
void check_fits_gpu(const GpuMemoryPlan& plan, size_t free_bytes, size_t total_bytes);

// The largest context (tokens per sequence, a multiple of the block size) whose plan fits in
// `free_bytes` with the other options unchanged; 0 when not even one block does. (Derived KV pools only:
// with BackendOptions::kv_blocks given, the pool does not shrink with the context.)
int largest_fitting_context(const Config& config, const BackendOptions& options, LmHeadStorage lm_head,
                            size_t free_bytes);

}  // namespace fc
