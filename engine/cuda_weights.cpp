// The CUDA backend's weights: one bf16 allocation carved at engine/device_layout.h's offsets, Q/K/V and
// gate/up fused so that a layer runs 4 products.
#include <spdlog/spdlog.h>

#include "core/dtype.h"
#include "engine/cuda_parts.h"
#include "engine/progress.h"
#include "kernels/random_fill.cuh"

namespace fc::cuda {

namespace {

// Copies `t` (any float dtype) into `dst` as bf16, in chunks, through a host staging buffer.
void upload_tensor(const TensorInfo& t, bf16* dst, std::vector<uint16_t>& staging, ProgressBar& progress) {
  const size_t count = static_cast<size_t>(t.numel());
  constexpr size_t kChunk = size_t{16} << 20;  // elements
  for (size_t begin = 0; begin < count; begin += kChunk) {
    const size_t len = std::min(kChunk, count - begin);
    const void* src = t.data + begin * dtype_size(t.dtype);
    if (t.dtype == DType::BF16) {
      CUDA_CHECK(cudaMemcpy(dst + begin, src, len * 2, cudaMemcpyHostToDevice));
    } else {
      staging.resize(len);
      convert_to_bf16(t.dtype, src, len, staging.data());
      CUDA_CHECK(cudaMemcpy(dst + begin, staging.data(), len * 2, cudaMemcpyHostToDevice));
    }
    progress.advance(len * dtype_size(t.dtype));
  }
}

}  // namespace

DeviceWeights allocate_weights(const DeviceLayout& layout) {
  const WeightOffsets& o = layout.weights;
  DeviceWeights w;
  w.buffer = DeviceBuffer(o.bytes, "the model weights (bf16)");
  char* base = w.buffer.as<char>();
  auto at = [&](size_t offset) { return reinterpret_cast<bf16*>(base + offset); };
  w.embed = at(o.embed);
  w.lm_head = at(o.lm_head);
  w.final_norm = at(o.final_norm);
  for (const WeightOffsets::Layer& L : o.layers) {
    w.layers.push_back({at(L.attn_norm), at(L.wqkv), at(L.wo), at(L.mlp_norm), at(L.w_gate_up), at(L.w_down)});
  }
  return w;
}

void upload_weights(const DeviceWeights& w, const Checkpoint& ckpt, bool show_progress) {
  const LlamaTensors& t = ckpt.tensors;
  size_t source_bytes = 0;
  for (const auto& name : ckpt.store.names()) source_bytes += ckpt.store.find(name)->nbytes;
  ProgressBar progress("loading weights", source_bytes, show_progress);
  std::vector<uint16_t> staging;
  auto load = [&](bf16* dst, std::initializer_list<const TensorInfo*> parts) {
    for (const TensorInfo* p : parts) {
      upload_tensor(*p, dst, staging, progress);
      dst += p->numel();
    }
  };
  load(w.embed, {t.embed});
  if (w.lm_head != w.embed) load(w.lm_head, {t.lm_head});
  load(w.final_norm, {t.final_norm});
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LlamaLayerTensors& l = t.layers[i];
    const LayerWeights& L = w.layers[i];
    load(L.attn_norm, {l.attn_norm});
    load(L.wqkv, {l.wq, l.wk, l.wv});
    load(L.wo, {l.wo});
    load(L.mlp_norm, {l.mlp_norm});
    load(L.w_gate_up, {l.w_gate, l.w_up});
    load(L.w_down, {l.w_down});
  }
  progress.finish();
  spdlog::info("weights: {:.2f} GB bf16 on the GPU in {:.1f} s", w.buffer.bytes() / 1e9, progress.seconds());
}

void fill_random_weights(const DeviceWeights& w, const Config& c, uint64_t seed, cudaStream_t s) {
  const size_t hidden = c.hidden_size, inter = c.intermediate_size;
  const size_t qkv_rows = c.q_dim() + 2 * c.kv_dim();
  uint64_t tensor = seed * 1000;
  auto matrix = [&](bf16* p, size_t count) { fill_random_bf16(p, count, ++tensor, 0.f, 0.02f, s); };
  auto norm = [&](bf16* p) { fill_random_bf16(p, hidden, ++tensor, 1.f, 0.1f, s); };
  matrix(w.embed, size_t(c.vocab_size) * hidden);
  if (w.lm_head != w.embed) matrix(w.lm_head, size_t(c.vocab_size) * hidden);
  norm(w.final_norm);
  for (const LayerWeights& L : w.layers) {
    norm(L.attn_norm);
    matrix(L.wqkv, qkv_rows * hidden);
    matrix(L.wo, hidden * c.q_dim());
    norm(L.mlp_norm);
    matrix(L.w_gate_up, 2 * inter * hidden);
    matrix(L.w_down, hidden * inter);
  }
  CUDA_CHECK(cudaStreamSynchronize(s));
  spdlog::info("weights: {:.2f} GB of random bf16 drawn on the GPU (synthetic model)", w.buffer.bytes() / 1e9);
}

}  // namespace fc::cuda
