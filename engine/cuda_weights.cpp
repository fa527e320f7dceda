// The CUDA backend's weights: one allocation carved at engine/device_layout.h's offsets, Q/K/V and
// gate/up fused so that a layer runs 4 products. Projections are bf16, or (FP8 layouts) e4m3 codes with one
// fp32 scale per output row: an FP8 checkpoint's codes are copied as stored and its scales folded per row
// (model/quantization.h fp8_channel_scales: a per-tensor scale repeated over its rows, which is exact);
// everything stored F32/F16/BF16 is quantized on the GPU (kernels/fp8_quant.cuh, the arithmetic of
// quantize_fp8_per_channel bit for bit, from the stored values, never through bf16 first).
#include <chrono>

#include <spdlog/spdlog.h>

#include "core/dtype.h"
#include "core/error.h"
#include "engine/cuda_parts.h"
#include "engine/progress.h"
#include "kernels/fp8_quant.cuh"
#include "kernels/random_fill.cuh"
#include "model/quantization.h"

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

// Quantizes matrices to e4m3 per output row on the GPU, whole rows at a time through one staging buffer
// (engine/device_layout.h quantize_staging_bytes): rows are independent, so pieces give the same codes
// and scales as the whole matrix.
class RowQuantizer {
 public:
  explicit RowQuantizer(size_t staging_bytes)
      : staging_(staging_bytes, "FP8 quantization staging (freed after loading)"),
        bad_row_(sizeof(int32_t), "FP8 quantization status") {}

  // A checkpoint tensor (rows, cols) stored F32/F16/BF16 -> codes (rows, cols) and scales (rows).
  void tensor(const TensorInfo& t, uint8_t* codes, float* scales, ProgressBar& progress) {
    const int64_t rows = t.shape[0], cols = t.shape[1];
    const size_t row_bytes = static_cast<size_t>(cols) * dtype_size(t.dtype);
    for (int64_t r0 = 0; r0 < rows;) {
      const int64_t n = std::min<int64_t>(rows - r0, rows_per_piece(row_bytes));
      CUDA_CHECK(cudaMemcpy(staging_.get(), t.data + r0 * row_bytes, n * row_bytes, cudaMemcpyHostToDevice));
      const int32_t none = INT32_MAX;
      CUDA_CHECK(cudaMemcpy(bad_row_.get(), &none, sizeof none, cudaMemcpyHostToDevice));
      quantize_rows_fp8(staging_.get(), t.dtype, n, cols, codes + r0 * cols, scales + r0, bad_row_.as<int32_t>(),
                        nullptr);
      int32_t bad = INT32_MAX;
      CUDA_CHECK(cudaMemcpy(&bad, bad_row_.get(), sizeof bad, cudaMemcpyDeviceToHost));
      if (bad != INT32_MAX) {
        fail("{}: tensor '{}': row {} holds a NaN or Inf: cannot quantize a non-finite weight to FP8", t.file, t.name,
             r0 + bad);
      }
      progress.advance(n * row_bytes);
      r0 += n;
    }
  }

  // The synthetic matrix fill_random_bf16(seed, mean 0, std 0.02) would draw as bf16 -> codes and scales.
  void random(int64_t rows, int64_t cols, uint64_t seed, uint8_t* codes, float* scales, cudaStream_t s) {
    for (int64_t r0 = 0; r0 < rows;) {
      const int64_t n = std::min<int64_t>(rows - r0, rows_per_piece(static_cast<size_t>(cols) * 2));
      fill_random_bf16(staging_.as<bf16>(), n * cols, seed, 0.f, 0.02f, s, static_cast<size_t>(r0 * cols));
      quantize_rows_fp8(staging_.get(), DType::BF16, n, cols, codes + r0 * cols, scales + r0, nullptr, s);
      r0 += n;
    }
  }

 private:
  int64_t rows_per_piece(size_t row_bytes) const {
    const int64_t rows = static_cast<int64_t>(staging_.bytes() / row_bytes);
    if (rows < 1) fail("FP8 quantization: a row of {} bytes exceeds the {}-byte staging buffer", row_bytes, staging_.bytes());
    return rows;
  }

  DeviceBuffer staging_, bad_row_;
};

// Uploads the fused parts of one projection: bf16, or FP8 (codes copied or quantized, scales per row).
void upload_projection(Projection& dst, std::initializer_list<ProjectionTensors> parts, std::vector<uint16_t>& staging,
                       RowQuantizer* quantizer, ProgressBar& progress) {
  if (!dst.fp8()) {
    bf16* out = static_cast<bf16*>(dst.w);
    for (const ProjectionTensors& p : parts) {
      upload_tensor(*p.weight, out, staging, progress);
      out += p.weight->numel();
    }
    return;
  }
  uint8_t* codes = static_cast<uint8_t*>(dst.w);
  float* scales = dst.scales;
  for (const ProjectionTensors& p : parts) {
    const int64_t rows = p.weight->shape[0];
    if (p.fp8()) {
      CUDA_CHECK(cudaMemcpy(codes, p.weight->data, p.weight->nbytes, cudaMemcpyHostToDevice));
      const std::vector<float> row_scales = fp8_channel_scales({p});
      CUDA_CHECK(cudaMemcpy(scales, row_scales.data(), row_scales.size() * sizeof(float), cudaMemcpyHostToDevice));
      progress.advance(p.weight->nbytes + p.scales->weight->nbytes);
    } else {
      quantizer->tensor(*p.weight, codes, scales, progress);
    }
    codes += p.weight->numel();
    scales += rows;
  }
  dst.input_scale = fp8_input_scale(parts);
}

}  // namespace

DeviceWeights allocate_weights(const DeviceLayout& layout) {
  const WeightOffsets& o = layout.weights;
  DeviceWeights w;
  w.buffer = DeviceBuffer(o.bytes, o.fp8 ? "the model weights (FP8 projections)" : "the model weights (bf16)");
  w.fp8 = o.fp8;
  char* base = w.buffer.as<char>();
  auto at = [&](size_t offset) { return reinterpret_cast<bf16*>(base + offset); };
  auto projection = [&](size_t offset, size_t scales) {
    Projection p;
    p.w = base + offset;
    if (o.fp8) p.scales = reinterpret_cast<float*>(base + scales);
    return p;
  };
  w.embed = at(o.embed);
  w.lm_head = at(o.lm_head);
  w.final_norm = at(o.final_norm);
  for (const WeightOffsets::Layer& L : o.layers) {
    w.layers.push_back({at(L.attn_norm), projection(L.wqkv, L.wqkv_scales), projection(L.wo, L.wo_scales),
                        at(L.mlp_norm), projection(L.w_gate_up, L.w_gate_up_scales),
                        projection(L.w_down, L.w_down_scales)});
  }
  return w;
}

void upload_weights(DeviceWeights& w, const DeviceLayout& layout, const Checkpoint& ckpt, bool show_progress) {
  const LlamaTensors& t = ckpt.tensors;
  size_t source_bytes = 0;
  for (const auto& name : ckpt.store.names()) source_bytes += ckpt.store.find(name)->nbytes;
  ProgressBar progress("loading weights", source_bytes, show_progress);
  std::vector<uint16_t> staging;
  std::unique_ptr<RowQuantizer> quantizer;
  if (w.fp8) quantizer = std::make_unique<RowQuantizer>(layout.quantize_staging_bytes);
  auto load = [&](bf16* dst, const TensorInfo* tensor) { upload_tensor(*tensor, dst, staging, progress); };
  auto project = [&](Projection& dst, std::initializer_list<ProjectionTensors> parts) {
    upload_projection(dst, parts, staging, quantizer.get(), progress);
  };
  load(w.embed, t.embed);
  if (w.lm_head != w.embed) load(w.lm_head, t.lm_head);
  load(w.final_norm, t.final_norm);
  for (size_t i = 0; i < w.layers.size(); ++i) {
    const LlamaLayerTensors& l = t.layers[i];
    LayerWeights& L = w.layers[i];
    load(L.attn_norm, l.attn_norm);
    project(L.wqkv, {{l.wq, &l.wq_scale}, {l.wk, &l.wk_scale}, {l.wv, &l.wv_scale}});
    project(L.wo, {{l.wo, &l.wo_scale}});
    load(L.mlp_norm, l.mlp_norm);
    project(L.w_gate_up, {{l.w_gate, &l.w_gate_scale}, {l.w_up, &l.w_up_scale}});
    project(L.w_down, {{l.w_down, &l.w_down_scale}});
  }
  progress.finish();
  spdlog::info("weights: {:.2f} GB {} on the GPU in {:.1f} s", w.buffer.bytes() / 1e9,
               w.fp8 ? (t.fp8 ? "(FP8 projections as stored)" : "(projections quantized to FP8 on load)") : "bf16",
               progress.seconds());
}

void fill_random_weights(const DeviceWeights& w, const DeviceLayout& layout, const Config& c, uint64_t seed,
                         cudaStream_t s) {
  const auto start = std::chrono::steady_clock::now();
  const size_t hidden = c.hidden_size, inter = c.intermediate_size;
  const size_t qkv_rows = c.q_dim() + 2 * c.kv_dim();
  std::unique_ptr<RowQuantizer> quantizer;
  if (w.fp8) quantizer = std::make_unique<RowQuantizer>(layout.quantize_staging_bytes);
  uint64_t tensor = seed * 1000;
  auto matrix = [&](bf16* p, size_t count) { fill_random_bf16(p, count, ++tensor, 0.f, 0.02f, s); };
  // The same draws as a bf16 model of this seed: an FP8 synthetic model is that model quantized.
  auto projection = [&](const Projection& p, size_t rows, size_t cols) {
    if (!p.fp8()) return matrix(static_cast<bf16*>(p.w), rows * cols);
    quantizer->random(static_cast<int64_t>(rows), static_cast<int64_t>(cols), ++tensor, static_cast<uint8_t*>(p.w),
                      p.scales, s);
  };
  auto norm = [&](bf16* p) { fill_random_bf16(p, hidden, ++tensor, 1.f, 0.1f, s); };
  matrix(w.embed, size_t(c.vocab_size) * hidden);
  if (w.lm_head != w.embed) matrix(w.lm_head, size_t(c.vocab_size) * hidden);
  norm(w.final_norm);
  for (const LayerWeights& L : w.layers) {
    norm(L.attn_norm);
    projection(L.wqkv, qkv_rows, hidden);
    projection(L.wo, hidden, c.q_dim());
    norm(L.mlp_norm);
    projection(L.w_gate_up, 2 * inter, hidden);
    projection(L.w_down, hidden, inter);
  }
  CUDA_CHECK(cudaStreamSynchronize(s));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  spdlog::info("weights: {:.2f} GB of random {} drawn on the GPU in {:.2f} s (synthetic model)", w.buffer.bytes() / 1e9,
               w.fp8 ? "bf16 quantized to FP8 (per output row)" : "bf16", seconds);
}

}  // namespace fc::cuda
