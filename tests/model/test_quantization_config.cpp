// quantization_config: compressed-tensors FP8 ("float-quantized") parses; every other method or variant is
// refused with one line naming it and saying what FlashCore reads.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/config.h"

using namespace fc;
using nlohmann::json;
using Catch::Matchers::Contains;

namespace {

json base_config() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "hidden_size": 128, "intermediate_size": 256,
    "model_type": "llama", "num_attention_heads": 2, "num_hidden_layers": 2, "num_key_value_heads": 1,
    "vocab_size": 256, "torch_dtype": "bfloat16"})");
}

// RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8's quantization_config as published (per-tensor weights, static
// per-tensor activations).
json fp8_static() {
  return json::parse(R"({
    "config_groups": {"group_0": {
      "input_activations": {"actorder": null, "block_structure": null, "dynamic": false, "group_size": null,
                            "num_bits": 8, "observer": "minmax", "observer_kwargs": {}, "strategy": "tensor",
                            "symmetric": true, "type": "float"},
      "output_activations": null, "targets": ["Linear"],
      "weights": {"actorder": null, "block_structure": null, "dynamic": false, "group_size": null, "num_bits": 8,
                  "observer": "minmax", "observer_kwargs": {}, "strategy": "tensor", "symmetric": true,
                  "type": "float"}}},
    "format": "float-quantized", "global_compression_ratio": 1.24, "ignore": ["lm_head"],
    "kv_cache_scheme": null, "quant_method": "compressed-tensors", "quantization_status": "compressed"})");
}

// ...-FP8-dynamic: per-channel weights, dynamic per-token activations.
json fp8_dynamic() {
  json q = fp8_static();
  q["config_groups"]["group_0"]["weights"]["strategy"] = "channel";
  q["config_groups"]["group_0"]["input_activations"]["dynamic"] = true;
  q["config_groups"]["group_0"]["input_activations"]["strategy"] = "token";
  q["config_groups"]["group_0"]["input_activations"]["observer"] = nullptr;
  return q;
}

Config parse_with(const json& quantization) {
  json c = base_config();
  c["quantization_config"] = quantization;
  return parse_config(c, "config.json");
}

std::string refusal(const json& quantization) {
  try {
    parse_with(quantization);
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK(message.find('\n') == std::string::npos);  // one line
    return message;
  }
  return "(accepted)";
}

}  // namespace

TEST_CASE("quantization_config: compressed-tensors FP8 schemes parse", "[config][fp8]") {
  CHECK_FALSE(parse_config(base_config(), "config.json").quantization.has_value());
  SECTION("static per-tensor") {
    const Config c = parse_with(fp8_static());
    REQUIRE(c.quantization.has_value());
    const auto q = c.quantization->scheme_for("model.layers.0.self_attn.q_proj", "Linear");
    REQUIRE(q.has_value());
    CHECK(q->weight_scale == Fp8WeightScale::kPerTensor);
    CHECK(q->input_scale == Fp8InputScale::kStaticPerTensor);
    CHECK_FALSE(c.quantization->scheme_for("lm_head", "Linear").has_value());               // ignored
    CHECK_FALSE(c.quantization->scheme_for("model.embed_tokens", "Embedding").has_value());  // no target
  }
  SECTION("dynamic per-channel") {
    const auto q = parse_with(fp8_dynamic()).quantization->scheme_for("model.layers.1.mlp.down_proj", "Linear");
    REQUIRE(q.has_value());
    CHECK(q->weight_scale == Fp8WeightScale::kPerChannel);
    CHECK(q->input_scale == Fp8InputScale::kDynamicPerToken);
  }
  SECTION("weight-only (no input_activations)") {
    json j = fp8_dynamic();
    j["config_groups"]["group_0"]["input_activations"] = nullptr;
    const auto q = parse_with(j).quantization->scheme_for("model.layers.0.mlp.up_proj", "Linear");
    REQUIRE(q.has_value());
    CHECK(q->input_scale == Fp8InputScale::kNone);
  }
  SECTION("regex targets and ignore entries; a name beats a regex, which beats a class") {
    json j = fp8_static();
    j["config_groups"]["group_0"]["targets"] = {"re:.*self_attn\\.(q|k|v|o)_proj$"};
    j["config_groups"]["group_1"] = fp8_dynamic()["config_groups"]["group_0"];
    j["config_groups"]["group_1"]["targets"] = {"Linear"};
    j["ignore"] = {"re:.*lm_head", "model.layers.1.mlp.down_proj"};
    const Config c = parse_with(j);
    const auto attn = c.quantization->scheme_for("model.layers.0.self_attn.o_proj", "Linear");
    const auto mlp = c.quantization->scheme_for("model.layers.0.mlp.gate_proj", "Linear");
    REQUIRE(attn.has_value());
    REQUIRE(mlp.has_value());
    CHECK(attn->weight_scale == Fp8WeightScale::kPerTensor);  // group_0's regex, not group_1's class
    CHECK(mlp->weight_scale == Fp8WeightScale::kPerChannel);
    CHECK_FALSE(c.quantization->scheme_for("model.layers.1.mlp.down_proj", "Linear").has_value());
    CHECK_FALSE(c.quantization->scheme_for("lm_head", "Linear").has_value());
    CHECK(c.quantization->scheme_for("model.layers.0.mlp.down_proj", "Linear").has_value());
  }
  SECTION("two groups matching one module equally well with different schemes") {
    json j = fp8_static();
    j["config_groups"]["group_1"] = fp8_dynamic()["config_groups"]["group_0"];
    const Config c = parse_with(j);
    CHECK_THROWS_WITH(c.quantization->scheme_for("model.layers.0.mlp.up_proj", "Linear"),
                      Contains("'model.layers.0.mlp.up_proj' is targeted by more than one of config_groups"));
  }
}

TEST_CASE("quantization_config: other methods and variants are refused by name", "[config][fp8]") {
  const char* supported = "FlashCore reads compressed-tensors FP8 checkpoints";
  SECTION("GPTQ") {
    CHECK_THAT(refusal(json{{"quant_method", "gptq"}, {"bits", 4}, {"group_size", 128}}),
               Contains("config.json: quantization_config quant_method \"gptq\" with bits 4 is not supported") &&
                   Contains(supported));
  }
  SECTION("AWQ") {
    CHECK_THAT(refusal(json{{"quant_method", "awq"}, {"bits", 4}}), Contains("quant_method \"awq\""));
  }
  SECTION("bitsandbytes") {
    CHECK_THAT(refusal(json{{"quant_method", "bitsandbytes"}, {"load_in_4bit", true}}),
               Contains("quant_method \"bitsandbytes\" is not supported"));
  }
  SECTION("block-wise FP8 (quant_method fp8 with weight_block_size)") {
    CHECK_THAT(refusal(json{{"quant_method", "fp8"}, {"activation_scheme", "dynamic"}, {"weight_block_size", {128, 128}}}),
               Contains("quant_method \"fp8\" with weight_block_size [128,128] is not supported"));
  }
  SECTION("no quant_method") {
    CHECK_THAT(refusal(json{{"bits", 4}}), Contains("quantization_config has no quant_method"));
  }
  SECTION("compressed-tensors INT8 weights") {
    json j = fp8_static();
    j["format"] = "int-quantized";
    CHECK_THAT(refusal(j), Contains("format \"int-quantized\" is not supported"));
    j["format"] = "float-quantized";
    j["config_groups"]["group_0"]["weights"]["type"] = "int";
    CHECK_THAT(refusal(j), Contains("group_0.weights: type \"int\" with num_bits 8 is not supported"));
  }
  SECTION("compressed-tensors FP4 / INT4 packs") {
    json j = fp8_static();
    j["format"] = "nvfp4-pack-quantized";
    CHECK_THAT(refusal(j), Contains("format \"nvfp4-pack-quantized\""));
    j["format"] = "float-quantized";
    j["config_groups"]["group_0"]["weights"]["num_bits"] = 4;
    CHECK_THAT(refusal(j), Contains("type \"float\" with num_bits 4 is not supported"));
  }
  SECTION("block and group strategies") {
    json j = fp8_static();
    j["config_groups"]["group_0"]["weights"]["strategy"] = "block";
    j["config_groups"]["group_0"]["weights"]["block_structure"] = {128, 128};
    CHECK_THAT(refusal(j), Contains("block_structure [128,128] (group- or block-wise scales) is not supported"));
    j["config_groups"]["group_0"]["weights"]["block_structure"] = nullptr;
    CHECK_THAT(refusal(j), Contains("weights strategy \"block\" is not supported"));
    j["config_groups"]["group_0"]["weights"]["strategy"] = "group";
    j["config_groups"]["group_0"]["weights"]["group_size"] = 128;
    CHECK_THAT(refusal(j), Contains("group_size 128"));
  }
  SECTION("activation variants") {
    json j = fp8_static();
    j["config_groups"]["group_0"]["input_activations"]["dynamic"] = true;  // dynamic per tensor
    CHECK_THAT(refusal(j), Contains("input_activations dynamic with strategy \"tensor\" is not supported"));
    j = fp8_static();
    j["config_groups"]["group_0"]["input_activations"]["symmetric"] = false;
    CHECK_THAT(refusal(j), Contains("asymmetric FP8"));
    j = fp8_static();
    j["config_groups"]["group_0"]["output_activations"] = fp8_static()["config_groups"]["group_0"]["weights"];
    CHECK_THAT(refusal(j), Contains("output_activations"));
  }
  SECTION("FP8 KV cache, sparsity, uncompressed status, missing groups") {
    json j = fp8_static();
    j["kv_cache_scheme"] = {{"num_bits", 8}, {"type", "float"}, {"strategy", "tensor"}};
    CHECK_THAT(refusal(j), Contains("kv_cache_scheme"));
    j = fp8_static();
    j["sparsity_config"] = {{"format", "sparse-24-bitmask"}};
    CHECK_THAT(refusal(j), Contains("sparsity_config"));
    j = fp8_static();
    j["quantization_status"] = "frozen";
    CHECK_THAT(refusal(j), Contains("quantization_status \"frozen\""));
    j = fp8_static();
    j.erase("config_groups");
    CHECK_THAT(refusal(j), Contains("has no config_groups"));
    j = fp8_static();
    j.erase("format");
    CHECK_THAT(refusal(j), Contains("has no format"));
    j = fp8_static();
    j["ignore"] = {"re:(?P<x>lm_head)"};
    CHECK_THAT(refusal(j), Contains("not a regular expression FlashCore can read"));
  }
}
