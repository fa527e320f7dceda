// config.json and generation_config.json of a Hugging Face LLaMA-family checkpoint.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "kernels/rope.h"

namespace fc {

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
