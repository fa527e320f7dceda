// The CUDA backend's parts, one job per file (internal to engine/cuda_*.cpp):
//   cuda_weights.cpp    the weights: one allocation carved at engine/device_layout.h's offsets, uploaded
//                       from a checkpoint (any float dtype -> bf16) or drawn at random (synthetic models)
//   cuda_workspace.cpp  the KV pool, the activation workspace, the decode attention partials, the
//                       pinned staging of each call, all at the layout's sizes
//   cuda_graphs.cpp     the cache of captured decode graphs
//   cuda_forward.cpp    the step functions: every launch of a step, in order, and the decode kernel table
//   cuda_backend.cpp    the Backend: plans a call, uploads it, runs a step, returns logits or ids
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "engine/backend.h"
#include "engine/device_layout.h"
#include "kernels/attention_decode.cuh"
#include "kernels/cuda_utils.cuh"
#include "kernels/gemm.cuh"
#include "kernels/gemv.cuh"
#include "kernels/sampling.h"
#include "model/llama_weights.h"

namespace fc::cuda {

// One projection matrix (out, in) row-major: bf16, or e4m3 codes with one fp32 scale per output row.
struct Projection {
  void* w = nullptr;
  float* scales = nullptr;  // e4m3 only: (out)
  float input_scale = 0;    // e4m3 only: the checkpoint's static activation scale; 0: per-token scales
  bool fp8() const { return scales != nullptr; }
};

struct LayerWeights {
  bf16* attn_norm;       // (hidden)
  Projection wqkv;       // (q_dim + 2 kv_dim, hidden): [wq; wk; wv]
  Projection wo;         // (hidden, q_dim)
  bf16* mlp_norm;        // (hidden)
  Projection w_gate_up;  // (2 intermediate, hidden): [w_gate; w_up]
  Projection w_down;     // (hidden, intermediate)
};

struct DeviceWeights {
  DeviceBuffer buffer;
  bool fp8 = false;  // every projection is e4m3 (else every one is bf16)
  bf16 *embed = nullptr, *lm_head = nullptr, *final_norm = nullptr;  // lm_head == embed when tied
  std::vector<LayerWeights> layers;
};
DeviceWeights allocate_weights(const DeviceLayout& layout);
// FP8 weights: an FP8 checkpoint's codes and folded per-row scales are copied; projections stored
// F32/F16/BF16 are quantized on the GPU (kernels/fp8_quant.cuh, model/quantization.h's arithmetic) through
// a staging buffer of layout.quantize_staging_bytes. Sets the projections' static input scales.
void upload_weights(DeviceWeights& weights, const DeviceLayout& layout, const Checkpoint& checkpoint,
                    bool show_progress);
// HF's initialization scale (std 0.02) for matrices, norms near 1; synchronizes `stream`. FP8: the same
// bf16 values drawn into the staging buffer, then quantized per output row.
void fill_random_weights(const DeviceWeights& weights, const DeviceLayout& layout, const Config& config, uint64_t seed,
                         cudaStream_t stream);

// Every buffer a step reads or writes besides the weights. Carved once; nothing is allocated per call.
struct Workspace {
  DeviceBuffer buffer, kv_buffer, decode_attention;
  float *residual = nullptr, *logits = nullptr, *inv_freq = nullptr;
  bf16 *normed = nullptr, *proj = nullptr, *qkv = nullptr, *attn = nullptr, *gate_up = nullptr, *act = nullptr,
       *selected = nullptr;
  uint8_t* x_fp8 = nullptr;   // FP8 projections: a product's input quantized (rows, in) e4m3
  float* x_scales = nullptr;  // and its (rows) scales
  // The per-call metadata (WorkspaceOffsets::meta), uploaded in one copy from host_meta.
  int32_t *meta = nullptr, *tokens = nullptr, *positions = nullptr, *slot_mapping = nullptr, *logit_rows = nullptr,
          *cu_seqlens = nullptr, *seq_lens = nullptr, *block_tables = nullptr;
  SamplingParams* sample_params = nullptr;  // (L), followed by the rows' history slots (L int32)
  int32_t* sample_ids = nullptr;
  uint32_t* sample_history = nullptr;       // (S, vocab)
  void* sample_scratch = nullptr;
  bf16* kv_pool = nullptr;  // layer l: K at 2l * kv_layer_elems, V at (2l + 1) * kv_layer_elems
  size_t kv_layer_elems = 0;
  PagedKVLayout kv_layout;
  PinnedBuffer host_meta, host_params, host_ids;  // page-locked staging: the copies are real async DMA
  // A step of `rows` rows: params at sample_params, the slots right after them (one copy for both).
  int32_t* sample_slots(int rows) const { return reinterpret_cast<int32_t*>(sample_params + rows); }

  bf16* k_pool(size_t layer) const { return kv_pool + (2 * layer) * kv_layer_elems; }
  bf16* v_pool(size_t layer) const { return kv_pool + (2 * layer + 1) * kv_layer_elems; }
};
// Allocates and carves every buffer of `layout` but the weights; zeroes the KV pool and the workspace
// (a benchmark that sets lengths without prefilling reads finite K/V; the padding rows of a bucketed
// product read rows no kernel has written yet); uploads the RoPE inverse frequencies.
Workspace allocate_workspace(const DeviceLayout& layout, const Config& config);

// Decode graphs, one per (rows, attention split count, sampler kernel: 1 argmax / 0 the others). A
// step's positions, slots, lengths, block tables and sampling parameters are read from the device, so one
// graph serves every step of its key. The first step of a key runs eagerly (it initializes cuBLASLt plans and kernel attributes
// outside any capture); the second captures and instantiates; later ones only replay.
class GraphCache {
 public:
  using Key = std::tuple<int, int, int>;
  GraphCache() = default;
  GraphCache(const GraphCache&) = delete;
  GraphCache& operator=(const GraphCache&) = delete;
  ~GraphCache();
  // Replays the graph captured for `key`; false when there is none yet (then call run()). The decode
  // loop's common case: no std::function is built, nothing is allocated.
  bool replay(const Key& key, cudaStream_t stream);
  // The launches for a key without a graph: eagerly the first time, captured and replayed the second.
  void run(const Key& key, cudaStream_t stream, const std::function<void()>& launches);
  void clear();

 private:
  static constexpr size_t kMaxGraphs = 64;
  std::map<Key, cudaGraphExec_t> graphs_;
  std::set<Key> seen_;
};

// The kernel of each projection of a fused one-row decode step (engine/cuda_forward.cpp).
struct DecodeKernels {
  GemvKernel qkv, o_proj, gate_up, down, lm_head;
};

// What the launches of one step depend on besides device buffers: a captured graph is valid for every
// step with the same (n_tokens, split count, sampler kernel).
struct StepShape {
  int n_tokens = 0, num_seqs = 0, max_blocks_per_seq = 0, logit_rows = 0;
  bool decode = false;  // one new token per sequence
  AttentionDecodePlan attn;
};

// Everything a step's launches read.
struct StepContext {
  const Config& config;
  const DecodeOptions& decode;
  const DeviceWeights& weights;
  const Workspace& ws;
  Gemm* gemm;  // cuBLASLt products
  cudaStream_t stream;
  bool fast_attention;   // tensor-core attention (head_dim 64 / 128), else the generic kernel
  bool bucket_gemm_rows;
  int max_logit_rows;
  bool gemv_rows;        // one-row products may use the GEMV (the model's shapes allow it)
  bool fused_decode;     // one-row decode steps take the fused GEMV path
  DecodeKernels kernels;
};

// Called on the stream after rows [first, first + count) of the step's logits land in ws.logits.
using OnLogits = std::function<void(int first, int count)>;

// The decode kernel table for these options, this weight format, on this GPU and build.
DecodeKernels decode_kernels(const DecodeOptions& options, bool fp8);
// Whether one-row decode steps of this model can take the fused GEMV path with these kernels (every
// projection's shape is one the GEMV takes); `why` says why not.
bool fused_decode_supported(const Config& config, const DeviceWeights& weights, const Workspace& ws,
                            const DecodeKernels& kernels, std::string* why);
// Whether the GEMV takes every one-row product of this model with these weights (else cuBLASLt does).
bool gemv_takes_model(const Config& config, bool fp8);

// Every launch of one forward step, in order, reading the plan uploaded into ws.meta.
void run_step(const StepContext& ctx, const StepShape& st, const OnLogits& on_logits);

}  // namespace fc::cuda
