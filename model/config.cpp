#include "model/config.h"

#include <climits>
#include <regex>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"

namespace fc {

namespace {

using json = nlohmann::json;

const json* find_field(const json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

int positive_int(const json& object, const char* key, const std::string& source, bool required = true,
                 int fallback = 0) {
  const json* value = find_field(object, key);
  if (value == nullptr) {
    if (required) fail("{}: missing field '{}'", source, key);
    return fallback;
  }
  if (!value->is_number_integer()) fail("{}: field '{}' must be an integer, got {}", source, key, value->dump());
  const long long v = value->get<long long>();
  if (v <= 0 || v > (1LL << 30)) fail("{}: field '{}' must be a positive integer, got {}", source, key, v);
  return static_cast<int>(v);
}

float number(const json& object, const char* key, const std::string& source, float fallback) {
  const json* value = find_field(object, key);
  if (value == nullptr) return fallback;
  if (!value->is_number()) fail("{}: field '{}' must be a number, got {}", source, key, value->dump());
  return value->get<float>();
}

std::vector<int> token_id_list(const json& object, const char* key, const std::string& source) {
  const json* value = find_field(object, key);
  std::vector<int> ids;
  if (value == nullptr) return ids;
  auto add = [&](const json& v) {
    if (!v.is_number_integer() || v.get<long long>() < 0 || v.get<long long>() > INT32_MAX) {
      fail("{}: field '{}' must hold token ids in [0, 2^31), got {}", source, key, v.dump());
    }
    ids.push_back(v.get<int>());
  };
  if (value->is_array()) {
    for (const auto& v : *value) add(v);
  } else {
    add(*value);
  }
  return ids;
}

std::optional<int> optional_token_id(const json& object, const char* key, const std::string& source) {
  const json* value = find_field(object, key);
  if (value == nullptr) return std::nullopt;
  if (!value->is_number_integer() || value->get<long long>() < 0 || value->get<long long>() > INT32_MAX) {
    fail("{}: field '{}' must be a token id in [0, 2^31), got {}", source, key, value->dump());
  }
  return value->get<int>();
}

json parse_json_file(const std::string& path) {
  const std::string text = read_text_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for numbers like 1e999
    fail("{}: not valid JSON ({})", path, e.what());
  }
}

// rope_scaling (hub format) or rope_parameters (transformers >= 5): null/default = plain RoPE,
// llama3 = Llama 3.x frequency scaling; anything else is refused by name.
void parse_rope(const json& object, const std::string& source, Config& config) {
  const json* params = find_field(object, "rope_scaling");
  if (params == nullptr) params = find_field(object, "rope_parameters");
  if (params == nullptr) return;
  if (!params->is_object()) fail("{}: rope_scaling must be an object or null, got {}", source, params->dump());
  if (const json* theta = find_field(*params, "rope_theta")) {
    if (find_field(object, "rope_theta") == nullptr) config.rope_theta = theta->get<float>();
  }
  std::string type;
  if (const json* t = find_field(*params, "rope_type")) type = t->is_string() ? t->get<std::string>() : "";
  else if (const json* t2 = find_field(*params, "type")) type = t2->is_string() ? t2->get<std::string>() : "";
  if (type.empty() || type == "default") return;
  if (type != "llama3") {
    fail("{}: rope_scaling type '{}' is not supported (FlashCore implements: default, llama3)", source, type);
  }
  Llama3RopeScaling s;
  const std::string where = source + " rope_scaling";
  s.factor = number(*params, "factor", where, 0.f);
  s.low_freq_factor = number(*params, "low_freq_factor", where, 0.f);
  s.high_freq_factor = number(*params, "high_freq_factor", where, 0.f);
  s.original_max_position_embeddings = positive_int(*params, "original_max_position_embeddings", where);
  if (!(s.factor > 0) || !(s.low_freq_factor > 0) || !(s.high_freq_factor > s.low_freq_factor)) {
    fail("{}: llama3 rope_scaling needs factor > 0 and high_freq_factor > low_freq_factor > 0, got {}", source,
         params->dump());
  }
  config.rope_llama3 = s;
}

// What FlashCore reads, for the refusal messages.
const char* const kSupportedQuantization =
    "FlashCore reads compressed-tensors FP8 checkpoints: quant_method \"compressed-tensors\", format "
    "\"float-quantized\", e4m3 weights with strategy \"tensor\" or \"channel\", activations static per tensor, "
    "dynamic per token or none; or unquantized F32/F16/BF16 weights, which --quantize fp8 quantizes on load";

std::string json_string(const json* value) { return value != nullptr && value->is_string() ? value->get<std::string>() : ""; }

// Python's re.match: the pattern must match at the start of the name (not necessarily to its end).
bool regex_matches_start(const std::string& pattern, const std::string& name) {
  return std::regex_search(name, std::regex(pattern), std::regex_constants::match_continuous);
}

// One of weights / input_activations of a config group: type float, 8 bits, symmetric, no groups or blocks.
// `what` names it in messages ("config_groups.group_0.weights").
void check_fp8_args(const json& args, const std::string& source, const std::string& what) {
  if (!args.is_object()) fail("{}: quantization_config {} must be an object, got {}", source, what, args.dump());
  const std::string type = json_string(find_field(args, "type"));
  const json* bits = find_field(args, "num_bits");
  const long long num_bits = bits != nullptr && bits->is_number_integer() ? bits->get<long long>() : -1;
  if (type != "float" || num_bits != 8) {
    fail("{}: quantization_config {}: type \"{}\" with num_bits {} is not supported ({})", source, what, type,
         bits != nullptr ? bits->dump() : "(missing)", kSupportedQuantization);
  }
  if (const json* sym = find_field(args, "symmetric"); sym != nullptr && !(sym->is_boolean() && sym->get<bool>())) {
    fail("{}: quantization_config {}: asymmetric FP8 (symmetric {}) is not supported ({})", source, what,
         sym->dump(), kSupportedQuantization);
  }
  for (const char* key : {"group_size", "block_structure"}) {
    if (const json* v = find_field(args, key)) {
      fail("{}: quantization_config {}: {} {} (group- or block-wise scales) is not supported ({})", source, what,
           key, v->dump(), kSupportedQuantization);
    }
  }
  if (const json* v = find_field(args, "actorder"); v != nullptr && !(v->is_boolean() && !v->get<bool>())) {
    fail("{}: quantization_config {}: actorder {} is not supported ({})", source, what, v->dump(),
         kSupportedQuantization);
  }
}

Fp8Scheme parse_fp8_group(const json& group, const std::string& source, const std::string& name) {
  const std::string where = "config_groups." + name;
  if (!group.is_object()) fail("{}: quantization_config {} must be an object", source, where);
  if (const json* format = find_field(group, "format"); format != nullptr && json_string(format) != "float-quantized") {
    fail("{}: quantization_config {} format {} is not supported ({})", source, where, format->dump(),
         kSupportedQuantization);
  }
  Fp8Scheme scheme;
  const json* weights = find_field(group, "weights");
  if (weights == nullptr) fail("{}: quantization_config {} has no weights scheme ({})", source, where, kSupportedQuantization);
  check_fp8_args(*weights, source, where + ".weights");
  const std::string strategy = json_string(find_field(*weights, "strategy"));
  if (strategy == "tensor") {
    scheme.weight_scale = Fp8WeightScale::kPerTensor;
  } else if (strategy == "channel") {
    scheme.weight_scale = Fp8WeightScale::kPerChannel;
  } else {
    fail("{}: quantization_config {}.weights strategy \"{}\" is not supported ({})", source, where, strategy,
         kSupportedQuantization);
  }
  if (const json* dynamic = find_field(*weights, "dynamic"); dynamic != nullptr && !(dynamic->is_boolean() && !dynamic->get<bool>())) {
    fail("{}: quantization_config {}.weights dynamic {} is not supported (weights are quantized once, stored)",
         source, where, dynamic->dump());
  }
  if (const json* inputs = find_field(group, "input_activations")) {
    check_fp8_args(*inputs, source, where + ".input_activations");
    const std::string in_strategy = json_string(find_field(*inputs, "strategy"));
    const json* dyn = find_field(*inputs, "dynamic");
    const bool dynamic = dyn != nullptr && dyn->is_boolean() && dyn->get<bool>();
    if (!dynamic && in_strategy == "tensor") {
      scheme.input_scale = Fp8InputScale::kStaticPerTensor;
    } else if (dynamic && in_strategy == "token") {
      scheme.input_scale = Fp8InputScale::kDynamicPerToken;
    } else {
      fail("{}: quantization_config {}.input_activations {} with strategy \"{}\" is not supported ({})", source,
           where, dynamic ? "dynamic" : "static", in_strategy, kSupportedQuantization);
    }
  }
  if (const json* outputs = find_field(group, "output_activations")) {
    fail("{}: quantization_config {}.output_activations {} is not supported ({})", source, where, outputs->dump(),
         kSupportedQuantization);
  }
  return scheme;
}

std::vector<std::string> module_patterns(const json& object, const char* key, const std::string& source,
                                         const std::string& where) {
  std::vector<std::string> out;
  const json* list = find_field(object, key);
  if (list == nullptr) return out;
  if (!list->is_array()) fail("{}: quantization_config {}{} must be a list of strings", source, where, key);
  for (const json& v : *list) {
    if (!v.is_string()) fail("{}: quantization_config {}{} must be a list of strings, got {}", source, where, key, v.dump());
    std::string pattern = v.get<std::string>();
    if (pattern.rfind("re:", 0) == 0) {
      try {
        (void)std::regex(pattern.substr(3));
      } catch (const std::regex_error&) {
        fail("{}: quantization_config {}{}: '{}' is not a regular expression FlashCore can read", source, where, key,
             pattern);
      }
    }
    out.push_back(std::move(pattern));
  }
  return out;
}

// quantization_config of config.json: compressed-tensors float-quantized (FP8) only; everything else is
// refused by name.
QuantizationConfig parse_quantization(const json& qc, const std::string& source) {
  if (!qc.is_object()) fail("{}: quantization_config must be an object, got {}", source, qc.dump());
  const json* method_field = find_field(qc, "quant_method");
  if (method_field == nullptr) fail("{}: quantization_config has no quant_method ({})", source, kSupportedQuantization);
  const std::string method = json_string(method_field);
  if (method != "compressed-tensors") {
    std::string detail;
    if (const json* block = find_field(qc, "weight_block_size")) detail = " with weight_block_size " + block->dump();
    else if (const json* bits = find_field(qc, "bits")) detail = " with bits " + bits->dump();
    fail("{}: quantization_config quant_method {}{} is not supported ({})", source, method_field->dump(), detail,
         kSupportedQuantization);
  }
  if (const json* format = find_field(qc, "format"); format != nullptr && json_string(format) != "float-quantized") {
    fail("{}: quantization_config format {} is not supported ({})", source, format->dump(), kSupportedQuantization);
  }
  if (const json* status = find_field(qc, "quantization_status");
      status != nullptr && json_string(status) != "compressed") {
    fail("{}: quantization_config quantization_status {} is not supported (FlashCore reads weights stored "
         "compressed)", source, status->dump());
  }
  if (const json* kv = find_field(qc, "kv_cache_scheme")) {
    fail("{}: quantization_config kv_cache_scheme {} (a quantized KV cache) is not supported (FlashCore keeps K/V "
         "in bf16)", source, kv->dump());
  }
  if (const json* sparsity = find_field(qc, "sparsity_config")) {
    const std::string sparse_format = sparsity->is_object() ? json_string(find_field(*sparsity, "format")) : "";
    if (!sparsity->is_object() || (!sparse_format.empty() && sparse_format != "dense")) {
      fail("{}: quantization_config sparsity_config {} is not supported (dense weights only)", source,
           sparsity->dump());
    }
  }
  QuantizationConfig q;
  q.source = source;
  const json* groups = find_field(qc, "config_groups");
  if (groups == nullptr || !groups->is_object() || groups->empty()) {
    fail("{}: quantization_config has no config_groups ({})", source, kSupportedQuantization);
  }
  bool has_format = find_field(qc, "format") != nullptr;
  for (auto it = groups->begin(); it != groups->end(); ++it) {
    QuantizationConfig::Group g;
    g.name = it.key();
    g.scheme = parse_fp8_group(it.value(), source, g.name);
    g.targets = module_patterns(it.value(), "targets", source, "config_groups." + g.name + ".");
    if (g.targets.empty()) fail("{}: quantization_config config_groups.{} has no targets", source, g.name);
    has_format = has_format || find_field(it.value(), "format") != nullptr;
    q.groups.push_back(std::move(g));
  }
  if (!has_format) fail("{}: quantization_config has no format ({})", source, kSupportedQuantization);
  q.ignore = module_patterns(qc, "ignore", source, "");
  return q;
}

// 3: the target is the module's name; 2: a "re:" regex matching it; 1: its class name; 0: no match.
int match_rank(const std::string& target, const std::string& name, const std::string& class_name) {
  if (target == name) return 3;
  if (target.rfind("re:", 0) == 0) return regex_matches_start(target.substr(3), name) ? 2 : 0;
  return target == class_name ? 1 : 0;
}

}  // namespace

const char* to_string(Fp8WeightScale scale) {
  return scale == Fp8WeightScale::kPerTensor ? "per-tensor" : "per-channel";
}

const char* to_string(Fp8InputScale scale) {
  switch (scale) {
    case Fp8InputScale::kNone: return "none";
    case Fp8InputScale::kStaticPerTensor: return "static per-tensor";
    case Fp8InputScale::kDynamicPerToken: return "dynamic per-token";
  }
  return "?";
}

std::optional<Fp8Scheme> QuantizationConfig::scheme_for(const std::string& name, const std::string& class_name) const {
  for (const std::string& pattern : ignore) {
    if (match_rank(pattern, name, class_name) > 0) return std::nullopt;
  }
  const Group* best = nullptr;
  int best_rank = 0;
  bool tie = false;
  for (const Group& g : groups) {
    int rank = 0;
    for (const std::string& target : g.targets) rank = std::max(rank, match_rank(target, name, class_name));
    if (rank == 0) continue;
    if (rank > best_rank) {
      best = &g;
      best_rank = rank;
      tie = false;
    } else if (rank == best_rank && g.scheme != best->scheme) {
      tie = true;
    }
  }
  if (tie) {
    fail("{}: quantization_config: module '{}' is targeted by more than one of config_groups with different "
         "schemes", source, name);
  }
  if (best == nullptr) return std::nullopt;
  return best->scheme;
}

long long Config::parameter_count() const {
  const long long h = hidden_size;
  const long long per_layer = h * (q_dim() + 2LL * kv_dim()) + static_cast<long long>(q_dim()) * h +
                              3LL * h * intermediate_size + 2 * h;
  return static_cast<long long>(vocab_size) * h * (tie_word_embeddings ? 1 : 2) + num_layers * per_layer + h;
}

Config parse_config(const json& object, const std::string& source) {
  if (!object.is_object()) fail("{}: expected a JSON object", source);
  if (const json* type = find_field(object, "model_type")) {
    if (!type->is_string() || type->get<std::string>() != "llama") {
      fail("{}: model_type {} is not supported (FlashCore runs model_type \"llama\")", source, type->dump());
    }
  }
  if (const json* archs = find_field(object, "architectures")) {
    bool llama = false;
    if (archs->is_array()) {
      for (const auto& a : *archs) llama = llama || (a.is_string() && a.get<std::string>() == "LlamaForCausalLM");
    }
    if (!llama) fail("{}: architectures {} is not supported (expected LlamaForCausalLM)", source, archs->dump());
  }
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    if (const json* bias = find_field(object, key)) {
      if (bias->is_boolean() && bias->get<bool>()) fail("{}: {}=true is not supported", source, key);
    }
  }
  if (const json* act = find_field(object, "hidden_act")) {
    if (!act->is_string() || act->get<std::string>() != "silu") {
      fail("{}: hidden_act {} is not supported (expected \"silu\")", source, act->dump());
    }
  }

  Config c;
  c.hidden_size = positive_int(object, "hidden_size", source);
  c.intermediate_size = positive_int(object, "intermediate_size", source);
  c.num_layers = positive_int(object, "num_hidden_layers", source);
  c.num_heads = positive_int(object, "num_attention_heads", source);
  c.num_kv_heads = positive_int(object, "num_key_value_heads", source, false, c.num_heads);
  c.vocab_size = positive_int(object, "vocab_size", source);
  c.max_position_embeddings = positive_int(object, "max_position_embeddings", source, false, 2048);
  if (c.num_heads % c.num_kv_heads != 0) {
    fail("{}: num_attention_heads ({}) is not divisible by num_key_value_heads ({})", source, c.num_heads,
         c.num_kv_heads);
  }
  if (find_field(object, "head_dim") != nullptr) {
    c.head_dim = positive_int(object, "head_dim", source);
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      fail("{}: hidden_size ({}) is not divisible by num_attention_heads ({}) and no head_dim is given", source,
           c.hidden_size, c.num_heads);
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0) fail("{}: head_dim ({}) must be even for rotary embeddings", source, c.head_dim);
  c.rms_norm_eps = number(object, "rms_norm_eps", source, 1e-6f);
  if (!(c.rms_norm_eps > 0)) fail("{}: rms_norm_eps must be positive", source);
  c.rope_theta = number(object, "rope_theta", source, 10000.f);
  parse_rope(object, source, c);
  if (!(c.rope_theta > 0)) fail("{}: rope_theta must be positive", source);
  if (const json* tie = find_field(object, "tie_word_embeddings")) {
    if (!tie->is_boolean()) fail("{}: tie_word_embeddings must be true or false", source);
    c.tie_word_embeddings = tie->get<bool>();
  }
  c.bos_token_id = optional_token_id(object, "bos_token_id", source);
  c.eos_token_ids = token_id_list(object, "eos_token_id", source);
  if (const json* dtype = find_field(object, "torch_dtype")) c.torch_dtype = dtype->is_string() ? dtype->get<std::string>() : "";
  else if (const json* dtype2 = find_field(object, "dtype")) c.torch_dtype = dtype2->is_string() ? dtype2->get<std::string>() : "";
  if (const json* qc = find_field(object, "quantization_config")) c.quantization = parse_quantization(*qc, source);
  return c;
}

Config load_config(const std::string& model_dir) {
  const std::string path = join_path(model_dir, "config.json");
  if (!file_exists(path)) fail("{}: missing (is '{}' a Hugging Face model directory?)", path, model_dir);
  return parse_config(parse_json_file(path), path);
}

GenerationConfig load_generation_config(const std::string& model_dir) {
  GenerationConfig g;
  const std::string path = join_path(model_dir, "generation_config.json");
  if (!file_exists(path)) return g;
  const json object = parse_json_file(path);
  if (!object.is_object()) fail("{}: expected a JSON object", path);
  g.bos_token_id = optional_token_id(object, "bos_token_id", path);
  g.eos_token_ids = token_id_list(object, "eos_token_id", path);
  if (const json* v = find_field(object, "do_sample"); v && v->is_boolean()) g.do_sample = v->get<bool>();
  if (find_field(object, "temperature")) g.temperature = number(object, "temperature", path, 1.f);
  if (find_field(object, "top_p")) g.top_p = number(object, "top_p", path, 1.f);
  if (const json* v = find_field(object, "top_k"); v && v->is_number_integer()) g.top_k = v->get<int>();
  if (find_field(object, "min_p")) g.min_p = number(object, "min_p", path, 0.f);
  if (find_field(object, "repetition_penalty")) g.repetition_penalty = number(object, "repetition_penalty", path, 1.f);
  if (const json* v = find_field(object, "max_new_tokens"); v && v->is_number_integer()) g.max_new_tokens = v->get<int>();
  if (const json* v = find_field(object, "max_length"); v && v->is_number_integer()) g.max_length = v->get<int>();
  return g;
}

}  // namespace fc
