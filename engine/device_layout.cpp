#include "engine/device_layout.h"

#include <algorithm>
#include <cstdint>

#include "engine/fp8_support.h"
#include "engine/memory_plan.h"
#include "kernels/attention.h"
#include "kernels/sampling.h"

namespace fc {

namespace {

constexpr size_t kAlign = 256;
size_t align_up(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// Hands out aligned byte offsets of one allocation, in order.
class Carving {
 public:
  size_t take(size_t bytes) {
    const size_t at = size_;
    size_ += align_up(bytes);
    return at;
  }
  size_t size() const { return size_; }

 private:
  size_t size_ = 0;
};

// Split-KV decode: at most this many splits per sequence (the plan's cap, kernels/attention_decode.cuh).
constexpr int kMaxDecodeSplits = 32;
// The one cuBLASLt workspace (kernels/gemm.cuh).
constexpr size_t kCublasWorkspaceBytes = size_t{32} << 20;

}  // namespace

KVGeometry kv_geometry(const Config& c, const BackendOptions& o) {
  KVGeometry g;
  g.block_size = std::max(1, o.kv_block_size);
  const int context = o.max_context > 0 ? o.max_context : c.max_position_embeddings;
  g.blocks_per_seq = (context + g.block_size - 1) / g.block_size;
  g.num_blocks = o.kv_blocks > 0 ? o.kv_blocks : g.blocks_per_seq * std::max(1, o.max_sequences);
  g.max_context = g.blocks_per_seq * g.block_size;
  return g;
}

KVCacheManager make_kv_cache(const Config& config, const BackendOptions& options) {
  const KVGeometry g = kv_geometry(config, options);
  return KVCacheManager(g.num_blocks, g.block_size, g.blocks_per_seq);
}

bool uses_fast_attention(const Config& c) { return c.head_dim == 64 || c.head_dim == 128; }

std::vector<DeviceLayout::Allocation> DeviceLayout::allocations() const {
  std::vector<Allocation> all = {{weights.fp8 ? "the model weights (FP8 projections)" : "the model weights (bf16)",
                                  weights.bytes},
                                 {"the KV cache", kv_pool_bytes},
                                 {"activation workspace", workspace.bytes},
                                 {"decode attention workspace", decode_attention_bytes},
                                 {"cuBLASLt workspace", cublas_workspace_bytes}};
  all.erase(std::remove_if(all.begin(), all.end(), [](const Allocation& a) { return a.bytes == 0; }), all.end());
  return all;
}

DeviceLayout device_layout(const Config& c, const BackendOptions& o, bool tied_lm_head) {
  DeviceLayout d;
  d.kv = kv_geometry(c, o);
  d.max_sequences = std::max(1, o.max_sequences);
  d.max_batch_tokens = std::max(o.max_batch_tokens > 0 ? o.max_batch_tokens : d.kv.max_context, d.max_sequences);
  d.max_logit_rows = std::max(d.max_sequences, std::min(d.max_batch_tokens, 1024));
  d.tied_lm_head = tied_lm_head;

  // Weights: embedding, lm_head (unless tied), final norm, then each layer with Q/K/V and gate/up fused
  // so that a layer runs 4 products. FP8: each projection's e4m3 bytes, then its fp32 row scales.
  const size_t hidden = c.hidden_size, inter = c.intermediate_size, vocab = c.vocab_size;
  const size_t q_dim = c.q_dim(), qkv_rows = q_dim + 2 * static_cast<size_t>(c.kv_dim());
  const size_t bf = 2;
  const bool fp8 = fp8_projections(c, o);
  d.weights.fp8 = fp8;
  const size_t proj_bytes = fp8 ? 1 : bf;
  Carving w;
  // A projection of `rows` x `cols`: its matrix, and its scales when FP8.
  auto projection = [&](size_t rows, size_t cols, size_t* scales) {
    const size_t at = w.take(rows * cols * proj_bytes);
    if (fp8) *scales = w.take(rows * 4);
    return at;
  };
  d.weights.embed = w.take(vocab * hidden * bf);
  d.weights.lm_head = tied_lm_head ? d.weights.embed : w.take(vocab * hidden * bf);
  d.weights.final_norm = w.take(hidden * bf);
  for (int l = 0; l < c.num_layers; ++l) {
    WeightOffsets::Layer L;
    L.attn_norm = w.take(hidden * bf);
    L.wqkv = projection(qkv_rows, hidden, &L.wqkv_scales);
    L.wo = projection(hidden, q_dim, &L.wo_scales);
    L.mlp_norm = w.take(hidden * bf);
    L.w_gate_up = projection(2 * inter, hidden, &L.w_gate_up_scales);
    L.w_down = projection(hidden, inter, &L.w_down_scales);
    d.weights.layers.push_back(L);
  }
  d.weights.bytes = w.size();

  // KV pool: per layer a K and a V pool of num_blocks x kv_heads x block_size x head_dim bf16.
  const PagedKVLayout kv_layout{d.kv.block_size, c.num_kv_heads, c.head_dim};
  d.kv_layer_elems = static_cast<size_t>(d.kv.num_blocks) * kv_layout.block_stride();
  d.kv_pool_bytes = d.kv_layer_elems * bf * 2 * c.num_layers;

  // Workspace.
  const size_t T = d.max_batch_tokens, L = d.max_logit_rows, S = d.max_sequences;
  const size_t TR = gemm_rows(d.max_batch_tokens), LR = gemm_rows(d.max_logit_rows);
  WorkspaceOffsets& ws = d.workspace;
  Carving a;
  ws.residual = a.take(TR * hidden * 4);
  ws.normed = a.take(TR * hidden * bf);
  ws.proj = a.take(TR * hidden * bf);
  ws.qkv = a.take(TR * qkv_rows * bf);
  ws.attn = a.take(TR * q_dim * bf);
  ws.gate_up = a.take(TR * 2 * inter * bf);
  ws.act = a.take(TR * inter * bf);
  ws.selected = a.take(LR * hidden * bf);
  ws.logits = a.take(LR * vocab * 4);
  ws.inv_freq = a.take(static_cast<size_t>(c.head_dim) / 2 * 4);
  if (fp8) {
    ws.x_fp8 = a.take(TR * std::max({hidden, q_dim, inter}));
    ws.x_scales = a.take(TR * 4);
  }
  ws.meta_count = 4 * T + 2 * (S + 1) + S * static_cast<size_t>(d.kv.blocks_per_seq);
  ws.meta = a.take(ws.meta_count * sizeof(int32_t));
  ws.sample_params = a.take(L * (sizeof(SamplingParams) + sizeof(int32_t)));
  ws.sample_ids = a.take(L * sizeof(int32_t));
  ws.sample_history = a.take(S * vocab * sizeof(uint32_t));
  ws.sample_scratch = a.take(kSampleWorkspaceBytes);
  ws.bytes = a.size();

  if (uses_fast_attention(c)) {
    d.max_decode_splits = kMaxDecodeSplits;
    d.decode_attention_bytes = attention_decode_workspace_bytes(d.max_sequences, c.num_heads, c.head_dim,
                                                                kMaxDecodeSplits);
  }
  d.cublas_workspace_bytes = kCublasWorkspaceBytes;
  // Whole rows of the widest projection input, at most 64 MiB of fp32 (the widest stored dtype) but at
  // least one row.
  if (fp8) d.quantize_staging_bytes = std::max<size_t>(size_t{64} << 20, std::max({hidden, q_dim, inter}) * 4);
  return d;
}

}  // namespace fc
