#include "model/llama_weights.h"

#include <cstring>
#include <set>

#include <spdlog/spdlog.h>

#include "core/error.h"

namespace fc {

namespace {

class TensorChecker {
 public:
  TensorChecker(const TensorStore& store, const std::string& model_dir) : store_(store), model_dir_(model_dir) {}

  const TensorInfo* require(const std::string& name, std::vector<int64_t> shape, const char* meaning) {
    const TensorInfo* t = store_.find(name);
    if (t == nullptr) fail("{}: tensor '{}' is missing", model_dir_, name);
    used_.insert(name);
    if (t->dtype != DType::F32 && t->dtype != DType::F16 && t->dtype != DType::BF16) {
      fail("{}: tensor '{}' is {}, expected a floating-point weight (F32, F16 or BF16)", t->file, name,
           dtype_name(t->dtype));
    }
    if (t->shape != shape) {
      TensorInfo expected;
      expected.shape = std::move(shape);
      fail("{}: tensor '{}' has shape {}, expected {} from config.json ({})", t->file, name, t->shape_string(),
           expected.shape_string(), meaning);
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
  const TensorStore& store_;
  std::string model_dir_;
  std::set<std::string> used_;
};

}  // namespace

LlamaTensors map_llama_tensors(const Config& c, const TensorStore& store, const std::string& model_dir) {
  TensorChecker check(store, model_dir);
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
    l.wq = check.require(p + "self_attn.q_proj.weight", {c.q_dim(), hidden}, "num_attention_heads * head_dim, hidden_size");
    l.wk = check.require(p + "self_attn.k_proj.weight", {c.kv_dim(), hidden}, "num_key_value_heads * head_dim, hidden_size");
    l.wv = check.require(p + "self_attn.v_proj.weight", {c.kv_dim(), hidden}, "num_key_value_heads * head_dim, hidden_size");
    l.wo = check.require(p + "self_attn.o_proj.weight", {hidden, c.q_dim()}, "hidden_size, num_attention_heads * head_dim");
    l.mlp_norm = check.require(p + "post_attention_layernorm.weight", {hidden}, "hidden_size");
    l.w_gate = check.require(p + "mlp.gate_proj.weight", {inter, hidden}, "intermediate_size, hidden_size");
    l.w_up = check.require(p + "mlp.up_proj.weight", {inter, hidden}, "intermediate_size, hidden_size");
    l.w_down = check.require(p + "mlp.down_proj.weight", {hidden, inter}, "hidden_size, intermediate_size");
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
