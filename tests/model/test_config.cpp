#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/config.h"
#include "tests/test_util.h"

using namespace fc;
using nlohmann::json;
using Catch::Matchers::Contains;

namespace {
// Meta-Llama-3.1-8B's config.json as published on the hub.
json llama31_8b() {
  return json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": 128001, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 131072,
    "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256})");
}
}  // namespace

TEST_CASE("LLaMA 3.1 8B config parses as the hub writes it", "[config]") {
  const Config c = parse_config(llama31_8b(), "config.json");
  CHECK(c.hidden_size == 4096);
  CHECK(c.num_layers == 32);
  CHECK(c.num_heads == 32);
  CHECK(c.num_kv_heads == 8);
  CHECK(c.head_dim == 128);
  CHECK(c.vocab_size == 128256);
  CHECK(c.rms_norm_eps == Approx(1e-5f));
  CHECK(c.rope_theta == 500000.f);
  REQUIRE(c.rope_llama3.has_value());
  CHECK(c.rope_llama3->factor == 8.f);
  CHECK(c.rope_llama3->original_max_position_embeddings == 8192);
  CHECK(c.eos_token_ids == std::vector<int>{128001});
  CHECK(c.bos_token_id == 128000);
  CHECK(c.parameter_count() == 8030261248LL);  // the published 8.03B
}

TEST_CASE("config defaults: MHA without num_key_value_heads, head_dim derived, eos list", "[config]") {
  json j = llama31_8b();
  j.erase("num_key_value_heads");
  j["eos_token_id"] = {128001, 128008, 128009};
  j["rope_scaling"] = nullptr;
  const Config c = parse_config(j, "config.json");
  CHECK(c.num_kv_heads == 32);
  CHECK_FALSE(c.rope_llama3.has_value());
  CHECK(c.eos_token_ids == std::vector<int>{128001, 128008, 128009});
}

TEST_CASE("config refusals name the field", "[config]") {
  auto refuse = [](const std::function<void(json&)>& edit, const std::string& message) {
    json j = llama31_8b();
    edit(j);
    CHECK_THROWS_WITH(parse_config(j, "cfg.json"), Contains(message));
  };
  refuse([](json& j) { j.erase("hidden_size"); }, "missing field 'hidden_size'");
  refuse([](json& j) { j["num_key_value_heads"] = 5; }, "not divisible by num_key_value_heads (5)");
  refuse([](json& j) { j["rope_scaling"]["rope_type"] = "yarn"; }, "rope_scaling type 'yarn' is not supported");
  refuse([](json& j) { j["model_type"] = "mistral"; }, "model_type \"mistral\" is not supported");
  refuse([](json& j) { j["architectures"] = {"GPT2LMHeadModel"}; }, "not supported (expected LlamaForCausalLM)");
  refuse([](json& j) { j["vocab_size"] = -3; }, "'vocab_size' must be a positive integer");
  refuse([](json& j) { j["hidden_size"] = "4096"; }, "'hidden_size' must be an integer");
  refuse([](json& j) { j["attention_bias"] = true; }, "attention_bias=true is not supported");
  refuse([](json& j) { j["head_dim"] = 7; }, "must be even");
  refuse([](json& j) { j["eos_token_id"] = 4294967303LL; }, "'eos_token_id' must hold token ids in [0, 2^31)");
  refuse([](json& j) { j["bos_token_id"] = 4294967296LL; }, "'bos_token_id' must be a token id in [0, 2^31)");
  refuse([](json& j) { j["rope_scaling"].erase("original_max_position_embeddings"); },
         "missing field 'original_max_position_embeddings'");
}

TEST_CASE("config.json on disk: missing file and invalid JSON", "[config]") {
  CHECK_THROWS_WITH(load_config("/nonexistent/dir"), Contains("config.json: missing"));
  const std::string bad = std::string(FC_BINARY_DIR) + "/bad_config_dir";
  std::filesystem::create_directories(bad);
  {
    std::ofstream(bad + "/config.json") << "{ \"hidden_size\": 4096, ";
  }
  CHECK_THROWS_WITH(load_config(bad), Contains("not valid JSON"));
  {
    std::ofstream(bad + "/config.json") << "{ \"hidden_size\": 1e999 }";
  }
  CHECK_THROWS_WITH(load_config(bad), Contains("not valid JSON"));
}

TEST_CASE("generation_config.json of the fixtures", "[config]") {
  const GenerationConfig g = load_generation_config(fc::test::data_path("models/tiny-llama3-gqa"));
  CHECK(g.eos_token_ids == std::vector<int>{2, 3});
  REQUIRE(g.temperature.has_value());
  CHECK(*g.temperature == Approx(0.6f));
  CHECK(load_generation_config("/nonexistent").eos_token_ids.empty());
}
