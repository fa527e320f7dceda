// The CPU reference backend: the LLaMA forward in fp32, op by op from kernels/*_ref.cpp. It is the
// oracle for the CUDA backend and what CI runs end to end. FP8 projections (checkpoint or --quantize fp8)
// are dequantized exactly at load (model/quantization.h), so it is the oracle for FP8 weights too. Written for clarity; it mirrors the CUDA
// backend's structure (fused QKV and gate/up weights, residual add fused into the next RMSNorm) so a
// reader can set the two side by side.
#include <algorithm>
#include <chrono>
#include <cmath>

#include <spdlog/spdlog.h>

#include "core/error.h"
#include "engine/backend.h"
#include "engine/device_layout.h"
#include "engine/batch_plan.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/rope.h"
#include "model/quantization.h"

namespace fc {

namespace {

// Rows of `tensors` (F32/F16/BF16: embeddings and norms), each converted to fp32, stacked in order.
std::vector<float> stack_f32(std::initializer_list<const TensorInfo*> tensors) {
  size_t total = 0;
  for (const TensorInfo* t : tensors) total += static_cast<size_t>(t->numel());
  std::vector<float> out(total);
  size_t offset = 0;
  for (const TensorInfo* t : tensors) {
    convert_to_f32(t->dtype, t->data, static_cast<size_t>(t->numel()), out.data() + offset);
    offset += static_cast<size_t>(t->numel());
  }
  return out;
}

// Projection weights in fp32 as the model computes with them, parts stacked in order (fused Q/K/V and
// gate/up). FP8 parts are dequantized exactly (code x fp32 scale, model/quantization.h); with
// WeightFormat::kFp8 the F32/F16/BF16 parts are quantized per output channel first and dequantized the
// same way, so the CPU computes with exactly the weights an FP8 GPU path holds.
class ProjectionLoader {
 public:
  explicit ProjectionLoader(WeightFormat format) : format_(format) {}

  std::vector<float> operator()(std::initializer_list<ProjectionTensors> parts) {
    size_t total = 0;
    for (const ProjectionTensors& p : parts) total += static_cast<size_t>(p.weight->numel());
    std::vector<float> out(total);
    float* dst = out.data();
    for (const ProjectionTensors& p : parts) {
      projection_to_f32(p, dst);
      const int64_t rows = p.weight->shape[0], cols = p.weight->shape[1];
      if (format_ == WeightFormat::kFp8 && !p.fp8()) {
        const auto t0 = std::chrono::steady_clock::now();
        dequantize_fp8(quantize_fp8_per_channel(dst, rows, cols, p.weight->file + ": tensor '" + p.weight->name + "'"),
                       dst);
        quantize_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        ++quantized_;
        quantized_weights_ += rows * cols;
      }
      dst += rows * cols;
    }
    return out;
  }

  // One log line: what --quantize fp8 did and how long it took.
  void report() const {
    if (format_ != WeightFormat::kFp8) return;
    spdlog::info("--quantize fp8: quantized {} projection weights ({:.2f} M parameters) to e4m3 per output "
                 "channel in {:.3f} s (CPU: dequantized again to fp32)",
                 quantized_, quantized_weights_ / 1e6, quantize_s_);
  }

 private:
  WeightFormat format_;
  int quantized_ = 0;
  double quantized_weights_ = 0, quantize_s_ = 0;
};

struct CpuLayer {
  std::vector<float> attn_norm;  // (hidden)
  std::vector<float> wqkv;       // (q_dim + 2 kv_dim, hidden)
  std::vector<float> wo;         // (hidden, q_dim)
  std::vector<float> mlp_norm;   // (hidden)
  std::vector<float> w_gate_up;  // (2 intermediate, hidden)
  std::vector<float> w_down;     // (hidden, intermediate)
  std::vector<float> k_pool, v_pool;  // (blocks, kv_heads, block_size, head_dim), grown on demand
};

class CpuBackend final : public Backend {
 public:
  CpuBackend(const Checkpoint& ckpt, const BackendOptions& options)
      : config_(ckpt.config),
        kv_(make_kv_cache(ckpt.config, options)),
        layout_{options.kv_block_size, ckpt.config.num_kv_heads, ckpt.config.head_dim} {
    const LlamaTensors& t = ckpt.tensors;
    embed_ = stack_f32({t.embed});
    final_norm_ = stack_f32({t.final_norm});
    if (t.lm_head != t.embed) lm_head_ = stack_f32({t.lm_head});
    ProjectionLoader projection(options.weights);
    for (const auto& l : t.layers) {
      CpuLayer layer;
      layer.attn_norm = stack_f32({l.attn_norm});
      layer.wqkv = projection({{l.wq, &l.wq_scale}, {l.wk, &l.wk_scale}, {l.wv, &l.wv_scale}});
      layer.wo = projection({{l.wo, &l.wo_scale}});
      layer.mlp_norm = stack_f32({l.mlp_norm});
      layer.w_gate_up = projection({{l.w_gate, &l.w_gate_scale}, {l.w_up, &l.w_up_scale}});
      layer.w_down = projection({{l.w_down, &l.w_down_scale}});
      layers_.push_back(std::move(layer));
    }
    projection.report();
    inv_freq_ = rope_inv_freq(config_.head_dim, config_.rope_theta,
                              config_.rope_llama3 ? &*config_.rope_llama3 : nullptr);
  }

  const Config& config() const override { return config_; }
  KVCacheManager& kv_cache() override { return kv_; }
  DeviceKind device() const override { return DeviceKind::Cpu; }

  void forward(const ForwardBatch& batch, std::vector<float>& logits) override {
    const BatchPlan plan = plan_batch(batch, kv_, config_.vocab_size);
    grow_pools(plan);
    const Config& c = config_;
    const int n = plan.num_tokens, hidden = c.hidden_size, inter = c.intermediate_size;
    const int qkv_dim = c.q_dim() + 2 * c.kv_dim();
    std::vector<float> residual(static_cast<size_t>(n) * hidden);  // (n, hidden)
    std::vector<float> normed(residual.size());                     // (n, hidden)
    std::vector<float> qkv(static_cast<size_t>(n) * qkv_dim);       // (n, q_dim + 2 kv_dim): [Q | K | V]
    std::vector<float> attn(static_cast<size_t>(n) * c.q_dim());    // (n, q_dim)
    std::vector<float> proj(residual.size());                       // (n, hidden)
    std::vector<float> gate_up(static_cast<size_t>(n) * 2 * inter); // (n, 2 inter)
    std::vector<float> act(static_cast<size_t>(n) * inter);         // (n, inter)
    const AttentionShape shape{c.num_heads, c.num_kv_heads, c.head_dim, 1.0f / std::sqrt(float(c.head_dim))};

    embedding_ref(embed_.data(), c.vocab_size, hidden, batch.tokens.data(), n, residual.data());
    rmsnorm_ref(residual.data(), layers_[0].attn_norm.data(), n, hidden, c.rms_norm_eps, normed.data());
    for (size_t li = 0; li < layers_.size(); ++li) {
      CpuLayer& L = layers_[li];
      matmul_ref(normed.data(), L.wqkv.data(), n, hidden, qkv_dim, qkv.data());
      float* q = qkv.data();
      float* k = q + c.q_dim();
      float* v = k + c.kv_dim();
      rope_ref(q, n, c.num_heads, c.head_dim, qkv_dim, plan.positions.data(), inv_freq_.data());
      rope_ref(k, n, c.num_kv_heads, c.head_dim, qkv_dim, plan.positions.data(), inv_freq_.data());
      kv_append_ref(k, v, qkv_dim, n, plan.slot_mapping.data(), layout_, L.k_pool.data(), L.v_pool.data());
      attention_ref(plan.attention_batch(), shape, q, qkv_dim, L.k_pool.data(), L.v_pool.data(), layout_,
                    attn.data(), c.q_dim());
      matmul_ref(attn.data(), L.wo.data(), n, c.q_dim(), hidden, proj.data());
      add_rmsnorm_ref(residual.data(), proj.data(), L.mlp_norm.data(), n, hidden, c.rms_norm_eps, normed.data());
      matmul_ref(normed.data(), L.w_gate_up.data(), n, hidden, 2 * inter, gate_up.data());
      swiglu_ref(gate_up.data(), n, inter, act.data());
      matmul_ref(act.data(), L.w_down.data(), n, inter, hidden, proj.data());
      const float* next_norm = li + 1 < layers_.size() ? layers_[li + 1].attn_norm.data() : final_norm_.data();
      add_rmsnorm_ref(residual.data(), proj.data(), next_norm, n, hidden, c.rms_norm_eps, normed.data());
    }
    const int rows = static_cast<int>(plan.logit_rows.size());
    std::vector<float> selected(static_cast<size_t>(rows) * hidden);
    for (int r = 0; r < rows; ++r) {
      std::copy_n(normed.data() + static_cast<size_t>(plan.logit_rows[r]) * hidden, hidden,
                  selected.data() + static_cast<size_t>(r) * hidden);
    }
    logits.resize(static_cast<size_t>(rows) * c.vocab_size);
    const std::vector<float>& head = lm_head_.empty() ? embed_ : lm_head_;
    matmul_ref(selected.data(), head.data(), rows, hidden, c.vocab_size, logits.data());
    commit_batch(batch, plan, kv_);
  }

 private:

  // The CPU pools hold only the blocks handed out so far (the allocator hands out low ids first).
  void grow_pools(const BatchPlan& plan) {
    int32_t max_block = -1;
    for (int32_t slot : plan.slot_mapping) max_block = std::max(max_block, slot / layout_.block_size);
    const size_t needed = static_cast<size_t>(max_block + 1) * layout_.block_stride();
    for (auto& L : layers_) {
      if (L.k_pool.size() < needed) {
        L.k_pool.resize(needed, 0.f);
        L.v_pool.resize(needed, 0.f);
      }
    }
  }

  Config config_;
  KVCacheManager kv_;
  PagedKVLayout layout_;
  std::vector<float> embed_, final_norm_, lm_head_;
  std::vector<CpuLayer> layers_;
  std::vector<float> inv_freq_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const Checkpoint& checkpoint, const BackendOptions& options) {
  return std::make_unique<CpuBackend>(checkpoint, options);
}

std::unique_ptr<Backend> make_backend(DeviceKind device, const Checkpoint& checkpoint, const BackendOptions& options) {
  if (device == DeviceKind::Cuda) return make_cuda_backend(checkpoint, options);
  return make_cpu_backend(checkpoint, options);
}

}  // namespace fc
