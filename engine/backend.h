// A backend runs the LLaMA forward for a batch of sequences: CPU reference (fp32) or CUDA (bf16).
// Prefill and decode are the same call with different shapes.
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "engine/kv_cache.h"
#include "kernels/sampling.h"
#include "model/config.h"
#include "model/llama_weights.h"

namespace fc {

enum class DeviceKind { Cpu, Cuda };

// The CUDA decode fast path, each part switchable so `flashcore bench --ablate` can price it. The parts
// that pay are on by default; the CPU backend ignores them.
struct DecodeOptions {
  bool cuda_graph = true;  // a decode step is one CUDA graph replay (captured per batch size and split count)
  bool gemv = true;        // 1..8-row products by our bandwidth-bound GEMV (kernels/gemv.cuh), not cuBLASLt
  // The GEMV kernel (kernels/gemv.cuh GemvKernel: 0 registers, 1 per-warp bulk copies, 2 CTA-cooperative
  // bulk copies) per fused decode projection: qkv, o_proj, gate_up, down, lm_head. Each the fastest in the
  // whole decode step on an H200 (docs/PERFORMANCE.md, "GEMV kernels"); lm_head stays on registers (the
  // CTA kernel measured within noise of it there and is not racecheck-clean); unfused GEMVs use registers.
  int gemv_kernel_of[5] = {1, 0, 1, 0, 0};
  bool bulk_gemv = true;   // false: the register kernel for every projection (the ablation)
  // The GEMV's launch shape, for measurements (`bench --gemv-tuning`); -1 / 0 = the defaults above and
  // kernels/gemv.cuh's.
  int gemv_kernel = -1;    // every projection
  int gemv_slots = 0;      // bulk ring slots per warp
  int gemv_ctas_per_sm = 0;
  int gemv_late_trigger = -1;  // 0/1: GemvTuning::late_trigger
  int gemv_prewait = 0;        // GemvTuning::prewait_slots (per-warp bulk kernel; 0 = the whole ring)
  int gemv_carveout = -1;      // GemvTuning::carveout (-1 = the driver's choice)
  bool fuse = true;        // RMSNorm, SwiGLU and the residual adds fused into the GEMVs (4 kernels a layer)
  // One-row fused steps: each layer's o_proj, gate/up, down and the next qkv (or lm_head) as one persistent
  // kernel (kernels/gemv_chain.cuh) instead of 4 GEMV launches; needs sm_90. Off: measured slower on an
  // H200 (4.57 against 4.19 ms a step at context 0; docs/PERFORMANCE.md, session 5).
  bool gemv_chain = false;
  // One-row fused steps without the chain: each GEMV pulls the first gemv_prefetch_mb MB of the next
  // projection's weights into L2 once its own work is done (GemvArgs::prefetch); 0 = off.
  int gemv_prefetch_mb = 0;  // measured: 8 MB no gain in decode, 16+ slower (docs/PERFORMANCE.md)
  bool pdl = true;         // programmatic dependent launch: each GEMV prefetches weights while the last kernel ends
  // Single-sequence decode steps: the attention's KV splits aim at this many CTAs per SM
  // (kernels/attention_decode.cuh; 0 = the kernel's occupancy, 2, which batches always use). 1 measured
  // 2.2% faster a step at 4k-32k on an H200 (docs/PERFORMANCE.md).
  int attn_ctas_per_sm = 1;
  int gemv_max_rows = 1;   // GEMV for steps of at most this many rows (1..8); cuBLASLt beyond (measured faster
                           // from 2 rows on an H200: fc_bench_gemv)
  // Pipelined decode (Backend::queue_sample): the next step is queued, its token read on the device from
  // the last step's sampled id, before that id reaches the host, so the host's part of a step (reading
  // the id, streaming, stop checks, the next plan, the graph launch) overlaps the GPU's. Off until
  // measured on a GPU.
  bool async_sample = false;
};

struct BackendOptions {
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
  virtual void forward_sample(const ForwardBatch& batch, const std::vector<SamplingParams>& params,
                              std::vector<int32_t>& ids) {
    std::vector<float> logits;
    forward(batch, logits);
    const int vocab = config().vocab_size;
    ids.resize(params.size());
    for (size_t r = 0; r < params.size(); ++r) {
      const SamplingParams& p = params[r];
      ids[r] = sample_ref(logits.data() + r * vocab, vocab, p, sampling_random(p.seed, p.step)).id;
    }
  }

  // Pipelined sampling. queue_sample() starts forward_sample(batch, params) and may return before its
  // ids exist; take_sampled() waits for the oldest queued call and returns its ids. With `feed_sampled`
  // the values of batch.tokens (one per sequence) are ignored: each sequence's token is the id that the
  // previous queued call sampled for it (the same sequences in the same order, one token each), read
  // where it was sampled. KV lengths advance when a call is queued; a caller that drops a queued step
  // (its sequence stopped) takes it, then truncates the sequence. At most kMaxQueuedSamples calls are
  // outstanding; forward() and forward_sample() need none outstanding.
  //
  // pipelines_sampling() says whether queueing overlaps anything: generate() pipelines only then. The
  // default below runs each call at once (in queue_sample), which any backend can use.
  static constexpr int kMaxQueuedSamples = 2;
  virtual bool pipelines_sampling() const { return false; }
  virtual void queue_sample(const ForwardBatch& batch, const std::vector<SamplingParams>& params, bool feed_sampled);
  virtual void take_sampled(std::vector<int32_t>& ids);

 private:
  std::deque<std::vector<int32_t>> queued_;  // the default's ids of each queued call, oldest first
  std::vector<int32_t> last_sampled_;        // the default's ids of the newest queued call
};

std::unique_ptr<Backend> make_cpu_backend(const Checkpoint& checkpoint, const BackendOptions& options);
// Throws fc::Error when the build has no CUDA or no GPU is present.
std::unique_ptr<Backend> make_cuda_backend(const Checkpoint& checkpoint, const BackendOptions& options);
// A model of `config`'s shape with random bf16 weights drawn on the GPU (benchmarks: no files).
std::unique_ptr<Backend> make_synthetic_cuda_backend(const Config& config, uint64_t seed, const BackendOptions& options);
std::unique_ptr<Backend> make_backend(DeviceKind device, const Checkpoint& checkpoint, const BackendOptions& options);

}  // namespace fc
