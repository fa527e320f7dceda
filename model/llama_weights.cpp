#include "model/llama_weights.h"

#include <cmath>
#include <cstring>
#include <set>

#include <spdlog/spdlog.h>

#include "core/error.h"

namespace fc {

namespace {

bool is_float_weight(DType d) { return d == DType::F32 || d == DType::F16 || d == DType::BF16; }

const char* const kNoQuantizationConfig =
    "but config.json has no quantization_config (FlashCore reads FP8 weights of compressed-tensors "
    "\"float-quantized\" checkpoints, whose config says which modules are FP8 and how they are scaled)";

class TensorChecker {
 public:
  TensorChecker(const Config& config, const TensorStore& store, const std::string& model_dir)
      : quant_(config.quantization ? &*config.quantization : nullptr), store_(store), model_dir_(model_dir) {}

  // A tensor stored in F32, F16 or BF16 with exactly `shape`.
  const TensorInfo* require(const std::string& name, std::vector<int64_t> shape, const char* meaning) {
    const TensorInfo* t = find(name);
    if (t->dtype == DType::F8_E4M3) {
      if (quant_ == nullptr) fail("{}: tensor '{}' is F8_E4M3 {}", t->file, name, kNoQuantizationConfig);
      fail("{}: tensor '{}' is F8_E4M3; FlashCore reads FP8 only for the attention and MLP projections "
           "(embeddings, norms and lm_head stay F32, F16 or BF16)", t->file, name);
    }
    if (!is_float_weight(t->dtype)) {
      fail("{}: tensor '{}' is {}, expected a floating-point weight (F32, F16 or BF16)", t->file, name,
           dtype_name(t->dtype));
    }
    check_shape(*t, std::move(shape), meaning);
    return t;
  }

  // The weight of Linear module `module` ("model.layers.0.self_attn.q_proj"): F32/F16/BF16, or F8_E4M3 with
  // its scales when the quantization_config quantizes that module.
  const TensorInfo* require_projection(const std::string& module, std::vector<int64_t> shape, const char* meaning,
                                       Fp8ScaleTensors& scales) {
    const std::string name = module + ".weight";
    const TensorInfo* t = find(name);
    const std::optional<Fp8Scheme> scheme = quant_ ? quant_->scheme_for(module, "Linear") : std::nullopt;
    if (t->dtype == DType::F8_E4M3) {
      if (quant_ == nullptr) fail("{}: tensor '{}' is F8_E4M3 {}", t->file, name, kNoQuantizationConfig);
      if (!scheme) {
        fail("{}: tensor '{}' is F8_E4M3 but the quantization_config of config.json leaves '{}' unquantized (it "
             "is in ignore or matches no target)", t->file, name, module);
      }
    } else if (scheme) {
      fail("{}: tensor '{}' is {}, but the quantization_config of config.json quantizes '{}' (expected F8_E4M3 "
           "with a weight_scale)", t->file, name, dtype_name(t->dtype), module);
    } else if (!is_float_weight(t->dtype)) {
      fail("{}: tensor '{}' is {}, expected a floating-point weight (F32, F16 or BF16)", t->file, name,
           dtype_name(t->dtype));
    }
    const int64_t rows = shape[0];
    check_shape(*t, std::move(shape), meaning);
    if (!scheme) return t;
    scales.scheme = *scheme;
    const bool per_tensor = scheme->weight_scale == Fp8WeightScale::kPerTensor;
    scales.weight = require_scale(*t, module + ".weight_scale", per_tensor ? 1 : rows,
                                  per_tensor ? "a per-tensor weight scale (weights strategy \"tensor\")"
                                             : "a per-channel weight scale (weights strategy \"channel\")");
    if (scheme->input_scale == Fp8InputScale::kStaticPerTensor) {
      scales.input = require_scale(*t, module + ".input_scale", 1,
                                   "a static per-tensor activation scale (input_activations dynamic false)");
    }
    return t;
  }

  void warn_unused() const {
    std::vector<std::string> unused;
    for (const auto& name : store_.names()) {
      if (!used_.count(name)) unused.push_back(name);
    }
    if (unused.empty()) return;
    std::string list;
    for (size_t i = 0; i < unused.size() && i < 5; ++i) list += (i ? ", " : "") + unused[i];
    if (unused.size() > 5) list += ", ...";
    spdlog::warn("{}: ignoring {} tensor(s) the model does not use: {}", model_dir_, unused.size(), list);
  }

 private:
  const TensorInfo* find(const std::string& name) {
    const TensorInfo* t = store_.find(name);
    if (t == nullptr) fail("{}: tensor '{}' is missing", model_dir_, name);
    used_.insert(name);
    return t;
  }

  static void check_shape(const TensorInfo& t, std::vector<int64_t> shape, const char* meaning) {
    if (t.shape == shape) return;
    TensorInfo expected;
    expected.shape = std::move(shape);
    fail("{}: tensor '{}' has shape {}, expected {} from config.json ({})", t.file, t.name, t.shape_string(),
         expected.shape_string(), meaning);
  }

  // A scale of FP8 weight `weight`: `count` == 1: shape [] or [1]; else [count, 1]. Every value finite and
  // > 0 (a zero scale would silently zero the weight; a negative one flip it).
  const TensorInfo* require_scale(const TensorInfo& weight, const std::string& name, int64_t count,
                                  const char* what) {
    const TensorInfo* s = store_.find(name);
    if (s == nullptr) {
      fail("{}: tensor '{}' is missing: the F8_E4M3 weight '{}' needs {}", weight.file, name, weight.name, what);
    }
    used_.insert(name);
    if (!is_float_weight(s->dtype)) {
      fail("{}: tensor '{}' is {}, expected a floating-point scale (F32, BF16 or F16)", s->file, name,
           dtype_name(s->dtype));
    }
    const bool shape_ok = count == 1 ? (s->shape.empty() || s->shape == std::vector<int64_t>{1})
                                     : s->shape == std::vector<int64_t>{count, 1};
    if (!shape_ok) {
      fail("{}: tensor '{}' has shape {}, expected {} ({} of '{}' {})", s->file, name, s->shape_string(),
           count == 1 ? std::string("[] or [1]") : fmt::format("[{}, 1]", count), what, weight.name,
           weight.shape_string());
    }
    const std::vector<float> values = tensor_to_f32(*s);
    for (size_t i = 0; i < values.size(); ++i) {
      const float v = values[i];
      if (!(v > 0) || !std::isfinite(v)) {
        fail("{}: tensor '{}' holds {} at index {}; an FP8 scale must be finite and > 0", s->file, name, v, i);
      }
    }
    return s;
  }

  const QuantizationConfig* quant_;
  const TensorStore& store_;
  std::string model_dir_;
  std::set<std::string> used_;
};

// Fused partners (Q/K/V, gate/up) become one matrix: all FP8 or none, and one activation scheme.
void check_fused(const std::string& what, std::initializer_list<std::pair<const TensorInfo*, const Fp8ScaleTensors*>> parts) {
  const auto& [first_weight, first] = *parts.begin();
  for (const auto& [weight, scales] : parts) {
    if (scales->fp8() != first->fp8()) {
      fail("{}: tensor '{}' is {} but '{}' is {}: {} are fused and must be all FP8 or all unquantized", weight->file,
           weight->name, dtype_name(weight->dtype), first_weight->name, dtype_name(first_weight->dtype), what);
    }
    if (scales->fp8() && scales->scheme.input_scale != first->scheme.input_scale) {
      fail("{}: '{}' has {} activation scales but '{}' has {}: {} are fused and need one activation scheme",
           weight->file, weight->name, to_string(scales->scheme.input_scale), first_weight->name,
           to_string(first->scheme.input_scale), what);
    }
  }
}

}  // namespace

LlamaTensors map_llama_tensors(const Config& c, const TensorStore& store, const std::string& model_dir) {
  if (c.quantization) {
    // FlashCore keeps the embeddings and lm_head unquantized (the CUDA path reads lm_head in bf16).
    if (c.quantization->scheme_for("lm_head", "Linear")) {
      fail("{}: the quantization_config of config.json quantizes lm_head, which FlashCore keeps unquantized "
           "(list \"lm_head\" in ignore)", c.quantization->source);
    }
    if (c.quantization->scheme_for("model.embed_tokens", "Embedding")) {
      fail("{}: the quantization_config of config.json quantizes model.embed_tokens, which FlashCore keeps "
           "unquantized", c.quantization->source);
    }
  }
  TensorChecker check(c, store, model_dir);
  const int64_t hidden = c.hidden_size, vocab = c.vocab_size, inter = c.intermediate_size;
  LlamaTensors t;
  t.embed = check.require("model.embed_tokens.weight", {vocab, hidden}, "vocab_size, hidden_size");
  t.final_norm = check.require("model.norm.weight", {hidden}, "hidden_size");
  if (c.tie_word_embeddings) {
    t.lm_head = t.embed;
    if (store.find("lm_head.weight") != nullptr) {
      check.require("lm_head.weight", {vocab, hidden}, "vocab_size, hidden_size");
      spdlog::debug("{}: tie_word_embeddings is true: lm_head.weight is ignored", model_dir);
    }
  } else {
    if (store.find("lm_head.weight") == nullptr) {
      fail("{}: tensor 'lm_head.weight' is missing and config.json has tie_word_embeddings=false", model_dir);
    }
    t.lm_head = check.require("lm_head.weight", {vocab, hidden}, "vocab_size, hidden_size");
  }
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    LlamaLayerTensors l;
    l.attn_norm = check.require(p + "input_layernorm.weight", {hidden}, "hidden_size");
    l.wq = check.require_projection(p + "self_attn.q_proj", {c.q_dim(), hidden},
                                    "num_attention_heads * head_dim, hidden_size", l.wq_scale);
    l.wk = check.require_projection(p + "self_attn.k_proj", {c.kv_dim(), hidden},
                                    "num_key_value_heads * head_dim, hidden_size", l.wk_scale);
    l.wv = check.require_projection(p + "self_attn.v_proj", {c.kv_dim(), hidden},
                                    "num_key_value_heads * head_dim, hidden_size", l.wv_scale);
    l.wo = check.require_projection(p + "self_attn.o_proj", {hidden, c.q_dim()},
                                    "hidden_size, num_attention_heads * head_dim", l.wo_scale);
    l.mlp_norm = check.require(p + "post_attention_layernorm.weight", {hidden}, "hidden_size");
    l.w_gate = check.require_projection(p + "mlp.gate_proj", {inter, hidden}, "intermediate_size, hidden_size",
                                        l.w_gate_scale);
    l.w_up = check.require_projection(p + "mlp.up_proj", {inter, hidden}, "intermediate_size, hidden_size",
                                      l.w_up_scale);
    l.w_down = check.require_projection(p + "mlp.down_proj", {hidden, inter}, "hidden_size, intermediate_size",
                                        l.w_down_scale);
    check_fused("q_proj, k_proj and v_proj", {{l.wq, &l.wq_scale}, {l.wk, &l.wk_scale}, {l.wv, &l.wv_scale}});
    check_fused("gate_proj and up_proj", {{l.w_gate, &l.w_gate_scale}, {l.w_up, &l.w_up_scale}});
    for (const Fp8ScaleTensors* s : {&l.wq_scale, &l.wo_scale, &l.w_gate_scale, &l.w_down_scale}) {
      t.fp8 = t.fp8 || s->fp8();
    }
    t.layers.push_back(l);
  }
  // A layer beyond num_hidden_layers means config and weights disagree on depth.
  const std::string extra_layer = "model.layers." + std::to_string(c.num_layers) + ".input_layernorm.weight";
  if (store.find(extra_layer) != nullptr) {
    fail("{}: the weights have more layers than num_hidden_layers={} in config.json ('{}' exists)", model_dir,
         c.num_layers, extra_layer);
  }
  check.warn_unused();
  return t;
}

Checkpoint open_checkpoint(const std::string& model_dir) {
  Checkpoint ckpt;
  ckpt.dir = model_dir;
  ckpt.config = load_config(model_dir);
  ckpt.generation = load_generation_config(model_dir);
  ckpt.store = TensorStore::open_dir(model_dir);
  ckpt.tensors = map_llama_tensors(ckpt.config, ckpt.store, model_dir);
  return ckpt;
}

namespace {

// Index of the first element whose exponent bits are all ones (NaN or Inf), or `count`. Works on the raw
// bits so a BF16/F16 tensor is never widened; memcpy because safetensors offsets may be unaligned.
template <typename Bits>
size_t first_non_finite(const unsigned char* data, size_t count, Bits exponent_mask) {
  for (size_t i = 0; i < count; ++i) {
    Bits bits;
    std::memcpy(&bits, data + i * sizeof(Bits), sizeof(Bits));
    if ((bits & exponent_mask) == exponent_mask) return i;
  }
  return count;
}

}  // namespace

void check_tensor_finite(const TensorInfo& t) {
  const size_t count = static_cast<size_t>(t.numel());
  size_t bad = count;
  float value = 0.f;
  switch (t.dtype) {
    case DType::F32:
      bad = first_non_finite<uint32_t>(t.data, count, 0x7f800000u);
      break;
    case DType::F16:
      bad = first_non_finite<uint16_t>(t.data, count, 0x7c00u);
      break;
    case DType::BF16:
      bad = first_non_finite<uint16_t>(t.data, count, 0x7f80u);
      break;
    case DType::F8_E4M3:  // e4m3fn has no infinities; NaN is S.1111.111
      bad = first_non_finite<uint8_t>(t.data, count, 0x7fu);
      break;
    default:
      return;  // integer tensors have no NaN
  }
  if (bad == count) return;
  convert_to_f32(t.dtype, t.data + bad * dtype_size(t.dtype), 1, &value);
  const char* what = value != value ? "NaN" : (value > 0 ? "+Inf" : "-Inf");
  fail("{}: tensor '{}' has {} at index {} of shape {}; the checkpoint is corrupted", t.file, t.name, what, bad,
       t.shape_string());
}

void check_weights_finite(const Checkpoint& checkpoint) {
  for (const std::string& name : checkpoint.store.names()) check_tensor_finite(*checkpoint.store.find(name));
}

}  // namespace fc
