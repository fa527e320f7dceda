// config.json and generation_config.json of a Hugging Face LLaMA-family checkpoint.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kernels/rope.h"

namespace fc {

// FP8 (e4m3) Linear modules of a compressed-tensors checkpoint (quant_method "compressed-tensors", format
// "float-quantized", as llm-compressor writes them). The weight is stored F8_E4M3 beside a `weight_scale`
// tensor: w = e4m3 value x scale (model/quantization.h). Every other method or variant is refused by
// parse_config with one line naming it.
enum class Fp8WeightScale {
  kPerTensor,   // weights.strategy "tensor": weight_scale shape [] or [1]
  kPerChannel,  // weights.strategy "channel": weight_scale shape [out, 1]
};
enum class Fp8InputScale {
  kNone,             // input_activations null: weight-only FP8 (activations stay in the compute dtype)
  kStaticPerTensor,  // dynamic false, strategy "tensor": an `input_scale` tensor ([] or [1]) per Linear
  kDynamicPerToken,  // dynamic true, strategy "token": scales computed per token at run time, none stored
};
struct Fp8Scheme {
  Fp8WeightScale weight_scale = Fp8WeightScale::kPerTensor;
  Fp8InputScale input_scale = Fp8InputScale::kNone;
  bool operator==(const Fp8Scheme& o) const { return weight_scale == o.weight_scale && input_scale == o.input_scale; }
  bool operator!=(const Fp8Scheme& o) const { return !(*this == o); }
};
const char* to_string(Fp8WeightScale scale);  // "per-tensor" | "per-channel"
const char* to_string(Fp8InputScale scale);   // "none" | "static per-tensor" | "dynamic per-token"

struct QuantizationConfig {
  struct Group {
    std::string name;                  // its key in config_groups ("group_0")
    std::vector<std::string> targets;  // module names, "re:<regex>" or class names ("Linear")
    Fp8Scheme scheme;
  };
  std::string source;               // config.json path, for messages
  std::vector<Group> groups;        // config_groups, in file order
  std::vector<std::string> ignore;  // same forms as targets: these modules stay in their stored dtype

  // The scheme of module `name` (e.g. "model.layers.0.self_attn.q_proj", "lm_head") whose class is
  // `class_name` ("Linear", "Embedding"), or nullopt when it is ignored or no group targets it. Matching
  // follows compressed-tensors: a target equal to the name, a "re:" regex matching at the start of the name
  // (Python re.match), or the class name; an exact name beats a regex, which beats a class. Throws when two
  // groups match the module equally well.
  std::optional<Fp8Scheme> scheme_for(const std::string& name, const std::string& class_name) const;
};

struct Config {
  int hidden_size = 0;
  int intermediate_size = 0;
  int num_layers = 0;        // num_hidden_layers
  int num_heads = 0;         // num_attention_heads
  int num_kv_heads = 0;      // num_key_value_heads; absent = num_heads (MHA)
  int head_dim = 0;          // head_dim; absent = hidden_size / num_heads
  int vocab_size = 0;
  int max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.f;
  std::optional<Llama3RopeScaling> rope_llama3;  // rope_scaling {rope_type: llama3}; none = plain RoPE
  bool tie_word_embeddings = false;
  std::optional<int> bos_token_id;
  std::vector<int> eos_token_ids;  // eos_token_id: an int or a list
  std::string torch_dtype;         // as written ("bfloat16", ...); informational
  std::optional<QuantizationConfig> quantization;  // quantization_config; none = unquantized checkpoint

  int q_dim() const { return num_heads * head_dim; }
  int kv_dim() const { return num_kv_heads * head_dim; }
  // Parameter count of the whole model (embedding and lm_head counted once each unless tied).
  long long parameter_count() const;
};

// Parses and validates; `source` names the file in error messages. Throws fc::Error.
Config parse_config(const nlohmann::json& json, const std::string& source);
Config load_config(const std::string& model_dir);  // model_dir/config.json

struct GenerationConfig {
  std::optional<int> bos_token_id;
  std::vector<int> eos_token_ids;
  std::optional<bool> do_sample;
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int> top_k;
  std::optional<float> min_p;
  std::optional<float> repetition_penalty;
  std::optional<int> max_new_tokens;
  std::optional<int> max_length;
};

// model_dir/generation_config.json when present, else all fields empty.
GenerationConfig load_generation_config(const std::string& model_dir);

}  // namespace fc
