// Every device allocation of the CUDA backend, computed in one place from the config and the options:
// the backend carves its buffers from these offsets (engine/cuda_weights.cpp, cuda_workspace.cpp) and the
// up-front fit check (engine/memory_plan.h) sums the same sizes, so the two cannot disagree. Pure host
// code: the CPU tests check it without a GPU.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "model/config.h"

namespace fc {

// The KV cache's shape as both backends derive it from the options: a whole number of blocks per
// sequence, and a pool of `num_blocks` (enough for max_sequences full contexts unless given).
struct KVGeometry {
  int block_size = 16;
  int blocks_per_seq = 0;
  int num_blocks = 0;
  int max_context = 0;  // blocks_per_seq * block_size
};
KVGeometry kv_geometry(const Config& config, const BackendOptions& options);
KVCacheManager make_kv_cache(const Config& config, const BackendOptions& options);

// Byte offsets inside one allocation; each tensor starts 256-byte aligned (cuBLASLt, 16-byte loads).
// FP8 projections (fp8: engine/fp8_support.h fp8_projections) hold one e4m3 byte per element and, right
// after each matrix, one fp32 scale per output row; embeddings, norms and lm_head stay bf16.
struct WeightOffsets {
  struct Layer {
    size_t attn_norm, wqkv, wo, mlp_norm, w_gate_up, w_down;  // wqkv = [wq; wk; wv], w_gate_up = [gate; up]
    // fp8 only: (rows) fp32 scales of each projection (0 when bf16)
    size_t wqkv_scales = 0, wo_scales = 0, w_gate_up_scales = 0, w_down_scales = 0;
  };
  bool fp8 = false;
  size_t embed = 0, lm_head = 0, final_norm = 0;  // lm_head == embed when tied
  std::vector<Layer> layers;
  size_t bytes = 0;
};

// The activation workspace, sized for max_batch_tokens rows (T) and max_logit_rows logit rows (L); the
// buffers a cuBLASLt product writes hold gemm_rows(T) / gemm_rows(L) rows (engine/memory_plan.h).
struct WorkspaceOffsets {
  size_t residual = 0;  // (TR, hidden) fp32
  size_t normed = 0;    // (TR, hidden) bf16
  size_t proj = 0;      // (TR, hidden) bf16
  size_t qkv = 0;       // (TR, q_dim + 2 kv_dim) bf16
  size_t attn = 0;      // (TR, q_dim) bf16
  size_t gate_up = 0;   // (TR, 2 intermediate) bf16
  size_t act = 0;       // (TR, intermediate) bf16
  size_t selected = 0;  // (LR, hidden) bf16: the rows whose logits are wanted
  size_t logits = 0;    // (LR, vocab) fp32
  size_t inv_freq = 0;  // (head_dim / 2) fp32
  // FP8 projections only (0 otherwise): a product's input quantized per token for the FP8 GEMM.
  size_t x_fp8 = 0;     // (TR, max(hidden, q_dim, intermediate)) e4m3
  size_t x_scales = 0;  // (TR) fp32
  // Per-call metadata, uploaded in one copy (int32): tokens, positions, slots, logit rows (T each),
  // cu_seqlens (S + 1), seq_lens (S + 1), block tables (S, blocks_per_seq).
  size_t meta = 0;
  size_t meta_count = 0;  // int32 elements
  size_t sample_params = 0;   // (L) SamplingParams, then (L) int32 history slots: one copy per step
  size_t sample_ids = 0;      // (L) int32
  size_t sample_history = 0;  // (S, vocab) uint32: each sequence's penalty history (kernels/sampling.h)
  size_t sample_scratch = 0;  // kSampleWorkspaceBytes: where the sampler's blocks of one row meet
  size_t bytes = 0;
};

struct DeviceLayout {
  KVGeometry kv;
  int max_sequences = 1;
  int max_batch_tokens = 1;  // T
  int max_logit_rows = 1;    // L
  int max_decode_splits = 0;
  bool tied_lm_head = false;
  WeightOffsets weights;            // allocation 1: the weights (bf16, or FP8 projections)
  size_t kv_layer_elems = 0;        // one layer's K (or V) pool, bf16 elements
  size_t kv_pool_bytes = 0;         // allocation 2: K and V of every layer
  WorkspaceOffsets workspace;       // allocation 3: activations, metadata, sampling
  size_t decode_attention_bytes = 0;  // allocation 4: split-KV partials (0: tensor-core decode not used)
  size_t cublas_workspace_bytes = 0;  // allocation 5: the one cuBLASLt workspace
  // FP8 projections quantized on load (--quantize fp8, synthetic FP8 models): a staging buffer for rows of
  // the unquantized matrices, allocated after the weights and freed before allocations 2-5 are made, so
  // it never coexists with them (not in allocations(); smaller than they are with the runtime reserve).
  size_t quantize_staging_bytes = 0;

  struct Allocation {
    std::string what;
    size_t bytes;
  };
  // Every device allocation the backend makes, in order (the zero-sized ones left out).
  std::vector<Allocation> allocations() const;
};

// Decode attention with the tensor-core kernels (head_dim 64 or 128); else the generic kernel.
bool uses_fast_attention(const Config& config);
DeviceLayout device_layout(const Config& config, const BackendOptions& options, bool tied_lm_head);

}  // namespace fc
