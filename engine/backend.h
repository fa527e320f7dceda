// A backend runs the LLaMA forward for a batch of sequences: CPU reference (fp32) or CUDA (bf16).
// Prefill and decode are the same call with different shapes.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "engine/kv_cache.h"
#include "kernels/sampling.h"
#include "model/config.h"
#include "model/llama_weights.h"

namespace fc {

enum class DeviceKind { Cpu, Cuda };

// The CUDA decode fast path (engine/cuda_forward.cpp), each part switchable so that `flashcore bench
// --ablate` can price it. Everything is on by default; the CPU backend ignores these.
struct DecodeOptions {
  bool cuda_graph = true;  // a decode step is one CUDA graph replay (captured per batch size and split count)
  bool gemv = true;        // one-row products by our bandwidth-bound GEMV (kernels/gemv.cuh), not cuBLASLt
  bool bulk_gemv = true;   // the bulk-copy GEMV where the decode table picks it (sm_90); false: registers only
  bool fuse = true;        // RMSNorm, RoPE + KV append, SwiGLU and the residual adds fused into the GEMVs
  bool pdl = true;         // programmatic dependent launch: each kernel starts while the last one drains
  // One-sequence decode: the attention's KV splits aim at one CTA per SM rather than the kernel's
  // occupancy (2); batches always use the occupancy (batch 8 at 4k measured 0.5-1% slower with one).
  bool attn_one_cta_per_sm = true;
};
// How the backend holds the attention and MLP projection weights (embeddings, norms and lm_head are
// never quantized).
enum class WeightFormat {
  kAsStored,  // as the checkpoint stores them (an FP8 checkpoint's projections stay FP8)
  kFp8,       // --quantize fp8: projections stored F32/F16/BF16 are quantized on load to e4m3 with one scale
              // per output channel (model/quantization.h); those stored FP8 keep their own scales
};
struct BackendOptions {
  WeightFormat weights = WeightFormat::kAsStored;
  int kv_block_size = 16;
  int max_context = 0;     // tokens per sequence; 0 = the model's max_position_embeddings
  int kv_blocks = 0;       // KV pool size in blocks; 0 = enough for max_sequences full contexts
  int max_sequences = 1;
  int max_batch_tokens = 0;  // tokens in one forward call (prefill chunk); 0 = max_context
  bool show_progress = true; // the weight-loading progress bar (drawn only when stderr is a terminal)
  bool bucket_gemm_rows = true;  // CUDA: cuBLASLt products over gemm_rows(n) rows (engine/memory_plan.h), so
                                 // that prompt lengths share plans; false = exact row counts (the soak's control)
  DecodeOptions decode;
};

// New tokens of each sequence in one forward call. Sequence s appends n_tokens[s] tokens (taken in
// order from `tokens`) after the ones already in its KV cache.
struct ForwardBatch {
  std::vector<int> seq_ids;
  std::vector<int> n_tokens;
  std::vector<int32_t> tokens;
  bool all_logits = false;  // logits for every new token (validate); else for each sequence's last one
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const Config& config() const = 0;
  virtual KVCacheManager& kv_cache() = 0;
  virtual DeviceKind device() const = 0;
  // Switches parts of the decode fast path on or off from the next call (benchmark ablations); the
  // CPU backend has none and ignores it.
  virtual void set_decode_options(const DecodeOptions&) {}
  // Writes logits (rows, vocab) into `logits` (resized), rows in batch order.
  virtual void forward(const ForwardBatch& batch, std::vector<float>& logits) = 0;
  // forward() for each sequence's last token, then the sampler of kernels/sampling.h with params[s]
  // (one entry per sequence; the caller sets each step) -> ids (one per sequence). Same ids on every
  // backend for the same logits. The CUDA backend samples on the GPU so only the ids cross to the host
  // (a 128k-vocab fp32 logits row is 513 KB; at batch 32 the copy alone would cost ~1 ms per step).
  // A row with a penalty reads its sequence's history and adds its id to it; the history must have been
  // set for this request (set_sampling_history).
  virtual void forward_sample(const ForwardBatch& batch, const std::vector<SamplingParams>& params,
                              std::vector<int32_t>& ids);
  // Starts a request's penalty history for `seq_id`: the ids of its context (prompt, earlier turns) are
  // marked and those it has generated so far counted (none for a new request; a preempted request being
  // recomputed passes its own). Call it before the request's first forward_sample when any of its
  // penalties is on.
  virtual void set_sampling_history(int seq_id, const std::vector<int32_t>& context,
                                    const std::vector<int32_t>& generated = {});

  // Bytes of device memory this backend holds (weights, KV pool, workspaces); 0 on the CPU.
  virtual size_t device_memory_bytes() const { return 0; }

 private:
  std::vector<std::vector<uint32_t>> histories_;  // per sequence id, for the host sampler above
};

std::unique_ptr<Backend> make_cpu_backend(const Checkpoint& checkpoint, const BackendOptions& options);
// Throws fc::Error when the build has no CUDA or no GPU is present.
std::unique_ptr<Backend> make_cuda_backend(const Checkpoint& checkpoint, const BackendOptions& options);
// A model of `config`'s shape with random bf16 weights drawn on the GPU (benchmarks: no files).
std::unique_ptr<Backend> make_synthetic_cuda_backend(const Config& config, uint64_t seed, const BackendOptions& options);
std::unique_ptr<Backend> make_backend(DeviceKind device, const Checkpoint& checkpoint, const BackendOptions& options);

// The CUDA toolkit this build used and the GPU code it carries ("CUDA 13.0, GPU code: sm_80, sm_90a"), or
// that it has no CUDA backend.
std::string cuda_build_info();
// The kernel paths the CUDA backend takes on the current GPU, chosen by what the build carries for it
// ("NVIDIA H200 (sm_90): prefill attention wgmma, decode GEMV bulk copy + registers, PDL"); "" when there
// is no GPU (or no CUDA backend).
std::string cuda_kernel_paths();

}  // namespace fc
