// The CUDA backend's step functions: each lists every launch of a step, in order.
//
//   run_decode_fused  one sequence, one token (the latency case): 4 GEMVs and the attention a layer, each
//                     GEMV reading its weights once with its neighbours fused (table below). One CUDA graph,
//                     kernels chained by programmatic dependent launch.
//   run_layers        prefill chunks, batched decode, and one-row decode with fusion switched off:
//                     cuBLASLt products (the GEMV for one row), separate norm / RoPE / SwiGLU kernels.
//
// FP8 projections (DeviceWeights::fp8): the same launches; each GEMV reads e4m3 weights (GemvWeight::kE4m3,
// activations stay bf16), and each cuBLASLt product of two or more rows becomes a per-token quantization
// of its input (kernels/fp8_quant.cuh; the checkpoint's static input_scale when it has one) and an FP8
// tensor-core product (Gemm::matmul_fp8). lm_head and the embedding stay bf16.
#include <cmath>
#include <deque>
#include <string>
#include <type_traits>

#include "core/error.h"
#include "engine/cuda_parts.h"
#include "engine/memory_plan.h"
#include "engine/nvtx.h"
#include "kernels/attention_generic.cuh"
#include "kernels/attention_prefill.cuh"
#include "kernels/embedding.cuh"
#include "kernels/fp8_quant.cuh"
#include "kernels/gather.cuh"
#include "kernels/rmsnorm.cuh"
#include "kernels/rope.cuh"
#include "kernels/swiglu.cuh"

namespace fc::cuda {

namespace {

using K = GemvKernel;

// The kernel of each projection of the fused one-row decode step, each the fastest in the whole step
// on an H200 (docs/PERFORMANCE.md, ablation): the bulk-copy ring for qkv and gate/up, whose RMSNorm-
// staged input leaves the register kernel's double buffer short of bytes in flight; registers for
// o_proj, down and lm_head. Without sm_90 code for this GPU, registers throughout.
//                                      qkv           o_proj          gate_up       down            lm_head
constexpr DecodeKernels kHopperKernels{K::kBulkCopy, K::kRegisters, K::kBulkCopy, K::kRegisters, K::kRegisters};
constexpr DecodeKernels kPortableKernels{K::kRegisters, K::kRegisters, K::kRegisters, K::kRegisters, K::kRegisters};
// FP8 projections: not measured yet (issue 16): the bf16 table's choices until `bench --quantize fp8
// --ablate` prices each kernel per projection. An e4m3 step moves the same bytes per warp as a bf16 one,
// so the bulk-copy ring's advantage for the RMSNorm-staged inputs should carry over.
constexpr DecodeKernels kHopperFp8Kernels = kHopperKernels;

// The fused step's GEMVs of one layer (and the lm_head), with the epilogue / prologue each carries.
struct FusedGemvs {
  const StepContext& ctx;

  GemvArgs base(const Projection& w, int in_dim, int out_dim, GemvOutput output, void* out, GemvKernel kernel) const {
    GemvArgs a;
    a.w = w.w;
    a.weight = w.fp8() ? GemvWeight::kE4m3 : GemvWeight::kBf16;
    a.w_scales = w.scales;
    a.in_dim = in_dim;
    a.out_dim = out_dim;
    a.output = output;
    a.out = out;
    a.eps = ctx.config.rms_norm_eps;
    a.kernel = kernel;
    a.pdl = ctx.decode.pdl;
    return a;
  }
  // RMSNorm of the fp32 residual computed in the GEMV's prologue.
  GemvArgs normed(const Projection& w, const bf16* norm, int out_dim, GemvOutput output, void* out,
                  GemvKernel k) const {
    GemvArgs a = base(w, ctx.config.hidden_size, out_dim, output, out, k);
    a.input = GemvInput::kRmsNorm;
    a.residual = ctx.ws.residual;
    a.norm_weight = norm;
    return a;
  }
  // norm -> QKV -> RoPE on Q and K -> K/V appended to the layer's paged pools.
  GemvArgs qkv(size_t layer) const {
    const Config& c = ctx.config;
    const LayerWeights& L = ctx.weights.layers[layer];
    GemvArgs a = normed(L.wqkv, L.attn_norm, c.q_dim() + 2 * c.kv_dim(), GemvOutput::kRopeKV, ctx.ws.qkv,
                        ctx.kernels.qkv);
    a.rope = {c.num_heads, c.num_kv_heads, c.head_dim, ctx.ws.positions, ctx.ws.inv_freq, ctx.ws.slot_mapping,
              ctx.ws.k_pool(layer), ctx.ws.v_pool(layer), ctx.ws.kv_layout};
    return a;
  }
  // attention output -> o_proj, added to the residual in fp32.
  GemvArgs o_proj(size_t layer) const {
    const Config& c = ctx.config;
    GemvArgs a = base(ctx.weights.layers[layer].wo, c.q_dim(), c.hidden_size, GemvOutput::kAddF32, ctx.ws.residual,
                      ctx.kernels.o_proj);
    a.x = ctx.ws.attn;
    return a;
  }
  // norm -> [gate; up] -> silu(gate) * up.
  GemvArgs gate_up(size_t layer) const {
    const LayerWeights& L = ctx.weights.layers[layer];
    return normed(L.w_gate_up, L.mlp_norm, 2 * ctx.config.intermediate_size, GemvOutput::kSwiglu, ctx.ws.act,
                  ctx.kernels.gate_up);
  }
  // SwiGLU output -> down, added to the residual in fp32.
  GemvArgs down(size_t layer) const {
    const Config& c = ctx.config;
    GemvArgs a = base(ctx.weights.layers[layer].w_down, c.intermediate_size, c.hidden_size, GemvOutput::kAddF32,
                      ctx.ws.residual, ctx.kernels.down);
    a.x = ctx.ws.act;
    return a;
  }
  // final norm -> lm_head -> fp32 logits.
  GemvArgs lm_head() const {
    return normed(Projection{ctx.weights.lm_head}, ctx.weights.final_norm, ctx.config.vocab_size, GemvOutput::kF32,
                  ctx.ws.logits, ctx.kernels.lm_head);  // bf16 in every weight format
  }
};

// Attention of one layer over ws.qkv (rotated, appended) into ws.attn.
void attention(const StepContext& ctx, const StepShape& st, size_t layer) {
  const Config& c = ctx.config;
  const Workspace& ws = ctx.ws;
  const int qkv_dim = c.q_dim() + 2 * c.kv_dim();
  const AttentionShape shape{c.num_heads, c.num_kv_heads, c.head_dim, 1.0f / std::sqrt(float(c.head_dim))};
  const AttentionBatch batch{st.num_seqs, ws.cu_seqlens, ws.seq_lens, ws.block_tables, st.max_blocks_per_seq};
  const bf16 *k_pool = ws.k_pool(layer), *v_pool = ws.v_pool(layer);
  const int n = st.n_tokens;
  if (!ctx.fast_attention) {
    attention_generic(batch, n, shape, ws.qkv, qkv_dim, k_pool, v_pool, ws.kv_layout, ws.attn, c.q_dim(), ctx.stream);
  } else if (st.decode) {
    AttentionDecodePlan plan = st.attn;
    plan.pdl = ctx.decode.pdl;
    attention_decode(batch, n, shape, ws.qkv, qkv_dim, k_pool, v_pool, ws.kv_layout, ws.attn, c.q_dim(), plan,
                     ws.decode_attention.get(), ws.decode_attention.bytes(), ctx.stream);
  } else {
    attention_prefill(batch, n, shape, ws.qkv, qkv_dim, k_pool, v_pool, ws.kv_layout, ws.attn, c.q_dim(), ctx.stream);
  }
}

void run_decode_fused(const StepContext& ctx, const StepShape& st, const OnLogits& on_logits) {
  const Config& c = ctx.config;
  const FusedGemvs g{ctx};
  cudaStream_t s = ctx.stream;
  const NvtxRange step("decode step (1 row, fused)");
  embedding(ctx.ws.tokens, 1, ctx.weights.embed, c.vocab_size, c.hidden_size, ctx.ws.residual, s);
  for (size_t layer = 0; layer < ctx.weights.layers.size(); ++layer) {
    const NvtxRange in_layer(nvtx_layer_name(layer));
    {
      const NvtxRange r("attention block: qkv GEMV, attention, o_proj GEMV");
      gemv(g.qkv(layer), s);      // norm, QKV, RoPE, K/V append
      attention(ctx, st, layer);  // split-KV decode (+ merge)
      gemv(g.o_proj(layer), s);   // o_proj, residual add
    }
    const NvtxRange r("MLP: gate/up GEMV, down GEMV");
    gemv(g.gate_up(layer), s);  // norm, gate/up, SwiGLU
    gemv(g.down(layer), s);     // down, residual add
  }
  const NvtxRange r("lm_head and sampling");
  gemv(g.lm_head(), s);  // final norm, lm_head
  on_logits(0, 1);
}

// y = x @ w^T for the step's rows: the GEMV for one row (unfused: registers), cuBLASLt otherwise, over
// the rows padded to their bucket (engine/memory_plan.h gemm_rows; every buffer passed here holds
// gemm_rows(its capacity) rows and the padding rows compute values nothing reads).
template <typename Out>
void matmul(const StepContext& ctx, const bf16* x, const Projection& w, Out* out, int rows, int in_dim, int out_dim) {
  if (rows == 1 && ctx.gemv_rows) {
    GemvArgs a;
    a.w = w.w;
    a.weight = w.fp8() ? GemvWeight::kE4m3 : GemvWeight::kBf16;
    a.w_scales = w.scales;
    a.x = x;
    a.in_dim = in_dim;
    a.out_dim = out_dim;
    a.output = std::is_same_v<Out, float> ? GemvOutput::kF32 : GemvOutput::kBf16;
    a.out = out;
    a.pdl = ctx.decode.pdl;
    return gemv(a, ctx.stream);
  }
  const int gemm_rows_n = ctx.bucket_gemm_rows ? gemm_rows(rows) : rows;
  if (w.fp8()) {
    if constexpr (std::is_same_v<Out, bf16>) {
      // The input quantized per token (or with the static input_scale) into ws.x_fp8, then one FP8 product.
      if (w.input_scale > 0) {
        quantize_rows_fp8_static(x, gemm_rows_n, in_dim, w.input_scale, ctx.ws.x_fp8, ctx.ws.x_scales, ctx.stream);
      } else {
        quantize_rows_fp8(x, DType::BF16, gemm_rows_n, in_dim, ctx.ws.x_fp8, ctx.ws.x_scales, nullptr, ctx.stream);
      }
      return ctx.gemm->matmul_fp8(ctx.ws.x_fp8, ctx.ws.x_scales, static_cast<const uint8_t*>(w.w), w.scales, out,
                                  gemm_rows_n, in_dim, out_dim, ctx.stream);
    } else {
      fail("FP8 products write bf16");  // no FP8 projection has an fp32 output (lm_head stays bf16)
    }
  }
  ctx.gemm->matmul(x, static_cast<const bf16*>(w.w), out, gemm_rows_n, in_dim, out_dim, ctx.stream);
}

RopeKVParams rope_params(const StepContext& ctx, size_t layer, int n) {
  const Config& c = ctx.config;
  RopeKVParams rope;
  rope.qkv = ctx.ws.qkv;
  rope.row_stride = c.q_dim() + 2 * c.kv_dim();
  rope.n_tokens = n;
  rope.q_heads = c.num_heads;
  rope.kv_heads = c.num_kv_heads;
  rope.head_dim = c.head_dim;
  rope.positions = ctx.ws.positions;
  rope.inv_freq = ctx.ws.inv_freq;
  rope.slot_mapping = ctx.ws.slot_mapping;
  rope.k_pool = ctx.ws.k_pool(layer);
  rope.v_pool = ctx.ws.v_pool(layer);
  rope.block_size = ctx.ws.kv_layout.block_size;
  return rope;
}

void run_layers(const StepContext& ctx, const StepShape& st, const OnLogits& on_logits) {
  const Config& c = ctx.config;
  const Workspace& ws = ctx.ws;
  const DeviceWeights& w = ctx.weights;
  cudaStream_t s = ctx.stream;
  const int n = st.n_tokens, hidden = c.hidden_size, inter = c.intermediate_size;
  const int qkv_dim = c.q_dim() + 2 * c.kv_dim();
  const float eps = c.rms_norm_eps;

  const NvtxRange step(st.decode ? "decode step (unfused)" : "prefill step");
  embedding(ws.tokens, n, w.embed, c.vocab_size, hidden, ws.residual, s);
  rmsnorm(ws.residual, w.layers[0].attn_norm, n, hidden, eps, ws.normed, s);
  for (size_t layer = 0; layer < w.layers.size(); ++layer) {
    const NvtxRange in_layer(nvtx_layer_name(layer));
    const LayerWeights& L = w.layers[layer];
    {
      const NvtxRange r("attention block: qkv, RoPE + KV append, attention, o_proj, add + norm");
      matmul(ctx, ws.normed, L.wqkv, ws.qkv, n, hidden, qkv_dim);
      rope_kv_append(rope_params(ctx, layer, n), s);
      attention(ctx, st, layer);
      matmul(ctx, ws.attn, L.wo, ws.proj, n, c.q_dim(), hidden);
      add_rmsnorm(ws.residual, ws.proj, L.mlp_norm, n, hidden, eps, ws.normed, s);
    }
    const NvtxRange r("MLP: gate/up, SwiGLU, down, add + norm");
    matmul(ctx, ws.normed, L.w_gate_up, ws.gate_up, n, hidden, 2 * inter);
    swiglu(ws.gate_up, n, inter, ws.act, s);
    matmul(ctx, ws.act, L.w_down, ws.proj, n, inter, hidden);
    const bf16* next_norm = layer + 1 < w.layers.size() ? w.layers[layer + 1].attn_norm : w.final_norm;
    add_rmsnorm(ws.residual, ws.proj, next_norm, n, hidden, eps, ws.normed, s);
  }
  // lm_head over the rows whose logits are wanted, in chunks of max_logit_rows.
  const NvtxRange r("lm_head and sampling");
  for (int r0 = 0; r0 < st.logit_rows; r0 += ctx.max_logit_rows) {
    const int chunk = std::min(ctx.max_logit_rows, st.logit_rows - r0);
    gather_rows(ws.normed, ws.logit_rows + r0, chunk, hidden, ws.selected, s);
    matmul(ctx, ws.selected, Projection{w.lm_head}, ws.logits, chunk, hidden, c.vocab_size);
    on_logits(r0, chunk);
  }
}

}  // namespace

const char* nvtx_layer_name(size_t layer) {
  static std::deque<std::string> names;  // a deque never moves its strings
  while (names.size() <= layer) names.push_back("layer " + std::to_string(names.size()));
  return names[layer].c_str();
}

DecodeKernels decode_kernels(const DecodeOptions& options, bool fp8) {
  if (!(options.bulk_gemv && gemv_bulk_copy_available())) return kPortableKernels;
  return fp8 ? kHopperFp8Kernels : kHopperKernels;
}

bool gemv_takes_model(const Config& c, bool fp8) {
  const int multiple = fp8 ? 16 : 8;  // one 16-byte load of weights: 8 bf16 or 16 e4m3
  return c.hidden_size % multiple == 0 && c.q_dim() % multiple == 0 && c.intermediate_size % multiple == 0;
}

bool fused_decode_supported(const Config& config, const DeviceWeights& weights, const Workspace& ws,
                            const DecodeKernels& kernels, std::string* why) {
  const DecodeOptions options;
  const StepContext ctx{config, options, weights, ws, nullptr, nullptr, true, true, 1, true, true, kernels};
  const FusedGemvs g{ctx};
  const std::pair<const char*, GemvArgs> products[] = {
      {"qkv", g.qkv(0)}, {"o_proj", g.o_proj(0)}, {"gate_up", g.gate_up(0)}, {"down", g.down(0)},
      {"lm_head", g.lm_head()}};
  for (const auto& [name, args] : products) {
    if (!gemv_supported(args)) {
      *why = fmt::format("the {} GEMV does not take in_dim {} / out_dim {}", name, args.in_dim, args.out_dim);
      return false;
    }
  }
  return true;
}

void run_step(const StepContext& ctx, const StepShape& st, const OnLogits& on_logits) {
  if (st.decode && st.n_tokens == 1 && st.logit_rows == 1 && ctx.fused_decode && ctx.decode.fuse &&
      ctx.decode.gemv) {
    return run_decode_fused(ctx, st, on_logits);
  }
  run_layers(ctx, st, on_logits);
}

}  // namespace fc::cuda
