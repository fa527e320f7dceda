// Every malformed checkpoint is refused with an fc::Error naming the file and the cause.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>

#include "core/error.h"
#include "model/llama_weights.h"
#include "tests/model/checkpoint_mutator.h"

using namespace fc;
using fc::test::ScratchCheckpoint;
using nlohmann::json;
using Catch::Matchers::Contains;

namespace {
const char* kFile = "model.safetensors";

std::string refusal(const ScratchCheckpoint& c) {
  try {
    open_checkpoint(c.dir());
  } catch (const Error& e) {
    return e.what();
  }
  return "(accepted)";
}
}  // namespace

TEST_CASE("malformed safetensors files are refused", "[malformed]") {
  ScratchCheckpoint c("tiny-llama3-gqa");
  SECTION("truncated data") {
    const std::string bytes = c.read(kFile);
    c.write(kFile, bytes.substr(0, bytes.size() - 1000));
    CHECK_THAT(refusal(c), Contains("lie outside the data area") && Contains(kFile));
  }
  SECTION("shorter than the length field") {
    c.write(kFile, "abc");
    CHECK_THAT(refusal(c), Contains("too short for a safetensors header"));
  }
  SECTION("empty file") {
    c.write(kFile, "");
    CHECK_THAT(refusal(c), Contains("0 bytes"));
  }
  SECTION("header length beyond the file") {
    std::string bytes = c.read(kFile);
    const uint64_t huge = 1ull << 60;
    std::memcpy(&bytes[0], &huge, 8);
    c.write(kFile, bytes);
    CHECK_THAT(refusal(c), Contains("header length 1152921504606846976 exceeds the file"));
  }
  SECTION("header is not JSON") {
    c.edit_header(kFile, [](std::string& h) { h[0] = '['; h[1] = '!'; });
    CHECK_THAT(refusal(c), Contains("header is not valid JSON"));
  }
  SECTION("offsets out of range") {
    c.edit_header_json(kFile, [](json& h) { h["model.norm.weight"]["data_offsets"] = {0, 1ull << 40}; });
    CHECK_THAT(refusal(c), Contains("'model.norm.weight'") && Contains("outside the data area"));
  }
  SECTION("negative offsets") {
    c.edit_header_json(kFile, [](json& h) { h["model.norm.weight"]["data_offsets"] = {-4, 252}; });
    CHECK_THAT(refusal(c), Contains("are not non-negative integers"));
  }
  SECTION("unsupported dtype") {
    c.edit_header_json(kFile, [](json& h) { h["model.norm.weight"]["dtype"] = "F8_E5M2"; });
    CHECK_THAT(refusal(c), Contains("dtype F8_E5M2, which FlashCore does not read (F32, F16, BF16, F8_E4M3, I64, I32, U8)"));
  }
  SECTION("shape disagrees with the byte count") {
    c.edit_header_json(kFile, [](json& h) { h["model.norm.weight"]["shape"] = {129}; });
    CHECK_THAT(refusal(c), Contains("'model.norm.weight': BF16 [129] needs 258 bytes but data_offsets span 256"));
  }
  SECTION("duplicate tensor names") {
    c.edit_header(kFile, [](std::string& h) {
      const std::string entry = "\"model.norm.weight\":";
      const size_t at = h.find(entry);
      const size_t end = h.find('}', at) + 1;
      h.insert(1, h.substr(at, end - at) + ",");
    });
    CHECK_THAT(refusal(c), Contains("'model.norm.weight' appears twice"));
  }
  SECTION("overlapping tensors") {
    c.edit_header_json(kFile, [](json& h) {
      h["model.layers.0.input_layernorm.weight"]["data_offsets"] = h["model.norm.weight"]["data_offsets"];
    });
    CHECK_THAT(refusal(c), Contains("overlap"));
  }
  SECTION("integer weights") {
    c.edit_header_json(kFile, [](json& h) {
      h["model.norm.weight"]["dtype"] = "I32";
      h["model.norm.weight"]["shape"] = {64};
    });
    CHECK_THAT(refusal(c), Contains("'model.norm.weight' is I32, expected a floating-point weight"));
  }
}

TEST_CASE("checkpoints whose tensors disagree with the config are refused", "[malformed]") {
  ScratchCheckpoint c("tiny-llama3-gqa");
  SECTION("missing tensor") {
    c.edit_header_json(kFile, [](json& h) { h.erase("model.layers.1.mlp.up_proj.weight"); });
    CHECK_THAT(refusal(c), Contains("tensor 'model.layers.1.mlp.up_proj.weight' is missing"));
  }
  SECTION("missing lm_head without tied embeddings") {
    c.edit_header_json(kFile, [](json& h) { h.erase("lm_head.weight"); });
    CHECK_THAT(refusal(c), Contains("'lm_head.weight' is missing and config.json has tie_word_embeddings=false"));
  }
  SECTION("config vocab disagrees with the embedding") {
    c.edit_json("config.json", [](json& j) { j["vocab_size"] = 512; });
    CHECK_THAT(refusal(c), Contains("'model.embed_tokens.weight' has shape [320, 128], expected [512, 128]"));
  }
  SECTION("config has fewer layers than the weights") {
    c.edit_json("config.json", [](json& j) { j["num_hidden_layers"] = 1; });
    CHECK_THAT(refusal(c), Contains("more layers than num_hidden_layers=1"));
  }
  SECTION("config has more layers than the weights") {
    c.edit_json("config.json", [](json& j) { j["num_hidden_layers"] = 3; });
    CHECK_THAT(refusal(c), Contains("'model.layers.2.input_layernorm.weight' is missing"));
  }
  SECTION("kv heads disagree with k_proj") {
    c.edit_json("config.json", [](json& j) { j["num_key_value_heads"] = 4; });
    CHECK_THAT(refusal(c), Contains("'model.layers.0.self_attn.k_proj.weight' has shape [32, 128], expected [64, 128]"));
  }
  SECTION("heads not divisible by kv heads") {
    c.edit_json("config.json", [](json& j) { j["num_key_value_heads"] = 3; });
    CHECK_THAT(refusal(c), Contains("num_attention_heads (8) is not divisible by num_key_value_heads (3)"));
  }
  SECTION("config not JSON") {
    c.write("config.json", "hidden_size = 4096\n");
    CHECK_THAT(refusal(c), Contains("config.json: not valid JSON"));
  }
  SECTION("config missing a field") {
    c.edit_json("config.json", [](json& j) { j.erase("intermediate_size"); });
    CHECK_THAT(refusal(c), Contains("missing field 'intermediate_size'"));
  }
  SECTION("no weights at all") {
    std::filesystem::remove(c.path(kFile));
    CHECK_THAT(refusal(c), Contains("no model.safetensors or model.safetensors.index.json"));
  }
  SECTION("weights file with no tensors") {
    const std::string header = "{}      ";
    const uint64_t n = header.size();
    c.write(kFile, std::string(reinterpret_cast<const char*>(&n), 8) + header);
    CHECK_THAT(refusal(c), Contains("tensor 'model.embed_tokens.weight' is missing"));
  }
  SECTION("not a model directory") {
    std::filesystem::remove(c.path("config.json"));
    CHECK_THAT(refusal(c), Contains("config.json: missing"));
  }
}

TEST_CASE("sharded checkpoints: index problems are refused", "[malformed]") {
  ScratchCheckpoint c("tiny-llama2-mha-sharded");
  const char* index = "model.safetensors.index.json";
  SECTION("index names a shard that does not exist") {
    c.edit_json(index, [](json& j) { j["weight_map"]["lm_head.weight"] = "model-00009-of-00005.safetensors"; });
    CHECK_THAT(refusal(c), Contains("model-00009-of-00005.safetensors: cannot open"));
  }
  SECTION("index points at the wrong shard") {
    c.edit_json(index, [](json& j) { j["weight_map"]["lm_head.weight"] = "model-00001-of-00005.safetensors"; });
    CHECK_THAT(refusal(c), Contains("'lm_head.weight' is listed in") && Contains("but not in model-00001-of-00005"));
  }
  SECTION("index escapes the directory") {
    c.edit_json(index, [](json& j) { j["weight_map"]["lm_head.weight"] = "../../etc/passwd"; });
    CHECK_THAT(refusal(c), Contains("outside the model directory"));
  }
  SECTION("index is not JSON") {
    c.write(index, "{");
    CHECK_THAT(refusal(c), Contains("not valid JSON"));
  }
  SECTION("a shard is truncated") {
    const std::string shard = "model-00003-of-00005.safetensors";
    c.write(shard, c.read(shard).substr(0, 100));
    CHECK_THAT(refusal(c), Contains(shard) && Contains("exceeds the file"));
  }
}

TEST_CASE("FP8 checkpoints made here load, per tensor and per channel, in every scale dtype", "[malformed][fp8]") {
  for (const bool per_channel : {false, true}) {
    for (const DType scale_dtype : {DType::F32, DType::BF16, DType::F16}) {
      INFO("per_channel " << per_channel << " scales " << dtype_name(scale_dtype));
      ScratchCheckpoint c("tiny-llama3-gqa");
      fc::test::Fp8Recipe r;
      r.per_channel = per_channel;
      r.static_inputs = !per_channel;
      r.scale_dtype = scale_dtype;
      r.scalar_0d = scale_dtype == DType::F16;
      fc::test::make_fp8(c, r);
      const Checkpoint ckpt = open_checkpoint(c.dir());
      CHECK(ckpt.tensors.fp8);
      const LlamaLayerTensors& l = ckpt.tensors.layers[1];
      CHECK(l.w_down->dtype == DType::F8_E4M3);
      REQUIRE(l.w_down_scale.fp8());
      CHECK(l.w_down_scale.weight->dtype == scale_dtype);
      CHECK((l.wk_scale.input != nullptr) == !per_channel);
      CHECK(ckpt.tensors.lm_head->dtype == DType::BF16);
    }
  }
}

TEST_CASE("malformed FP8 checkpoints are refused, naming the file and the tensor", "[malformed][fp8]") {
  const std::string q0 = "model.layers.0.self_attn.q_proj";
  SECTION("per-channel scales") {
    ScratchCheckpoint c("tiny-llama3-gqa");
    fc::test::make_fp8(c, {});
    SECTION("missing weight_scale") {
      c.edit_header_json(kFile, [&](json& h) { h.erase(q0 + ".weight_scale"); });
      CHECK_THAT(refusal(c), Contains(kFile) && Contains("tensor '" + q0 + ".weight_scale' is missing") &&
                                 Contains("per-channel weight scale"));
    }
    SECTION("misshapen weight_scale") {
      c.edit_header_json(kFile, [&](json& h) { h[q0 + ".weight_scale"]["shape"] = {1, 128}; });
      CHECK_THAT(refusal(c), Contains(kFile) && Contains("'" + q0 + ".weight_scale' has shape [1, 128], expected [128, 1]"));
    }
    SECTION("scale of the wrong dtype") {
      c.edit_header_json(kFile, [&](json& h) { h[q0 + ".weight_scale"]["dtype"] = "I32"; });
      CHECK_THAT(refusal(c), Contains("'" + q0 + ".weight_scale' is I32, expected a floating-point scale"));
    }
    const std::string down1 = "model.layers.1.mlp.down_proj.weight_scale";
    SECTION("zero scale") {
      c.set_element(kFile, down1, 17, 0.f);
      CHECK_THAT(refusal(c), Contains(kFile) && Contains("tensor '" + down1 + "' holds 0 at index 17") &&
                                 Contains("must be finite and > 0"));
    }
    SECTION("negative scale") {
      c.set_element(kFile, down1, 3, -0.01f);
      CHECK_THAT(refusal(c), Contains("'" + down1 + "' holds -0.01 at index 3"));
    }
    SECTION("NaN scale") {
      c.set_element(kFile, down1, 0, std::nanf(""));
      CHECK_THAT(refusal(c), Contains("'" + down1 + "' holds nan at index 0"));
    }
    SECTION("infinite scale") {
      c.set_element(kFile, down1, 127, std::numeric_limits<float>::infinity());
      CHECK_THAT(refusal(c), Contains("'" + down1 + "' holds inf at index 127"));
    }
    SECTION("FP8 tensor in the ignore list") {
      c.edit_json("config.json", [](json& j) { j["quantization_config"]["ignore"].push_back("model.layers.1.mlp.down_proj"); });
      CHECK_THAT(refusal(c), Contains(kFile) && Contains("'model.layers.1.mlp.down_proj.weight' is F8_E4M3 but") &&
                                 Contains("leaves 'model.layers.1.mlp.down_proj' unquantized"));
    }
    SECTION("FP8 tensor outside the targets") {
      c.edit_json("config.json", [](json& j) {
        j["quantization_config"]["config_groups"]["group_0"]["targets"] = {"re:.*self_attn\\..*"};
      });
      CHECK_THAT(refusal(c), Contains("'model.layers.0.mlp.gate_proj.weight' is F8_E4M3 but") &&
                                 Contains("matches no target"));
    }
    SECTION("FP8 tensor without quantization_config") {
      c.edit_json("config.json", [](json& j) { j.erase("quantization_config"); });
      CHECK_THAT(refusal(c), Contains(kFile) && Contains("'" + q0 + ".weight' is F8_E4M3 but config.json has no "
                                                         "quantization_config"));
    }
    SECTION("quantized lm_head") {
      c.edit_json("config.json", [](json& j) { j["quantization_config"]["ignore"] = json::array(); });
      CHECK_THAT(refusal(c), Contains("config.json: the quantization_config of config.json quantizes lm_head"));
    }
    SECTION("FP8 norm") {
      c.edit_header_json(kFile, [](json& h) {
        h["model.norm.weight"]["dtype"] = "F8_E4M3";
        h["model.norm.weight"]["shape"] = {256};
      });
      CHECK_THAT(refusal(c), Contains("'model.norm.weight' is F8_E4M3; FlashCore reads FP8 only for the attention "
                                      "and MLP projections"));
    }
  }
  SECTION("per-tensor scales, static inputs") {
    ScratchCheckpoint c("tiny-llama3-gqa");
    fc::test::Fp8Recipe r;
    r.per_channel = false;
    r.static_inputs = true;
    fc::test::make_fp8(c, r);
    SECTION("misshapen per-tensor scale") {
      c.edit_header_json(kFile, [&](json& h) { h[q0 + ".weight_scale"]["shape"] = {1, 1}; });
      CHECK_THAT(refusal(c), Contains("has shape [1, 1], expected [] or [1] (a per-tensor weight scale"));
    }
    SECTION("missing input_scale") {
      c.edit_header_json(kFile, [&](json& h) { h.erase(q0 + ".input_scale"); });
      CHECK_THAT(refusal(c), Contains("'" + q0 + ".input_scale' is missing") && Contains("static per-tensor activation"));
    }
    SECTION("zero input_scale") {
      c.set_element(kFile, q0 + ".input_scale", 0, 0.f);
      CHECK_THAT(refusal(c), Contains("'" + q0 + ".input_scale' holds 0 at index 0"));
    }
    SECTION("per-channel scale where the config says per tensor") {
      c.edit_json("config.json", [](json& j) {
        j["quantization_config"]["config_groups"]["group_0"]["weights"]["strategy"] = "channel";
      });
      CHECK_THAT(refusal(c), Contains("'" + q0 + ".weight_scale' has shape [1], expected [128, 1]"));
    }
  }
  SECTION("fused partners disagree") {
    ScratchCheckpoint c("tiny-llama3-gqa");
    fc::test::Fp8Recipe r;
    r.keep = {"model.layers.0.self_attn.k_proj"};
    fc::test::make_fp8(c, r);
    CHECK_THAT(refusal(c), Contains("'model.layers.0.self_attn.k_proj.weight' is BF16 but '" + q0 +
                                    ".weight' is F8_E4M3: q_proj, k_proj and v_proj are fused"));
  }
  SECTION("a BF16 weight the config quantizes") {
    ScratchCheckpoint c("tiny-llama3-gqa");
    c.edit_json("config.json", [](json& j) { j["quantization_config"] = fc::test::fp8_quantization_config({}); });
    CHECK_THAT(refusal(c), Contains(kFile) && Contains("'" + q0 + ".weight' is BF16, but the quantization_config of "
                                                       "config.json quantizes '" + q0 + "'"));
  }
  SECTION("another quantization method") {
    ScratchCheckpoint c("tiny-llama3-gqa");
    c.edit_json("config.json", [](json& j) { j["quantization_config"] = {{"quant_method", "awq"}, {"bits", 4}}; });
    CHECK_THAT(refusal(c), Contains("config.json: quantization_config quant_method \"awq\" with bits 4 is not supported"));
  }
}
