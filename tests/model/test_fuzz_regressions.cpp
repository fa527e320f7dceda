// Hostile checkpoints beyond test_malformed.cpp: NaN/Inf weights (check_weights_finite, behind the CLI's
// --check-weights), a header of nested brackets, a model directory that cannot be read, and the replay of
// every input saved under fuzz/regressions/{safetensors,config}/ (fuzz/, scripts/fuzz.sh).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/error.h"
#include "model/llama_weights.h"
#include "tests/model/checkpoint_mutator.h"

using namespace fc;
using fc::test::ScratchCheckpoint;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {
const char* kFile = "model.safetensors";

// Overwrites element `index` of `tensor` in the scratch copy's model.safetensors with `value`
// (converted to the tensor's dtype).
void poke(const ScratchCheckpoint& c, const std::string& tensor, size_t index, float value) {
  c.set_element(kFile, tensor, index, value);
}

std::vector<std::filesystem::path> regressions(const char* target) {
  std::vector<std::filesystem::path> files;
  const auto dir = std::filesystem::path(FC_SOURCE_DIR) / "fuzz/regressions" / target;
  if (std::filesystem::exists(dir)) {
    for (const auto& e : std::filesystem::directory_iterator(dir)) files.push_back(e.path());
  }
  return files;
}
}  // namespace

TEST_CASE("check_weights_finite names the tensor and the first NaN/Inf", "[malformed][weights]") {
  ScratchCheckpoint c("tiny-llama3-gqa");
  SECTION("a clean checkpoint passes") {
    CHECK_NOTHROW(check_weights_finite(open_checkpoint(c.dir())));
  }
  SECTION("NaN") {
    poke(c, "model.layers.1.mlp.down_proj.weight", 37, std::numeric_limits<float>::quiet_NaN());
    CHECK_THROWS_WITH(check_weights_finite(open_checkpoint(c.dir())),
                      Contains("model.safetensors: tensor 'model.layers.1.mlp.down_proj.weight' has NaN at index 37 of "
                               "shape [128, 96]; the checkpoint is corrupted"));
  }
  SECTION("+Inf and -Inf, first one reported") {
    poke(c, "model.norm.weight", 100, -std::numeric_limits<float>::infinity());
    poke(c, "model.norm.weight", 5, std::numeric_limits<float>::infinity());
    CHECK_THROWS_WITH(check_weights_finite(open_checkpoint(c.dir())),
                      Contains("tensor 'model.norm.weight' has +Inf at index 5 of shape [128]"));
  }
  SECTION("-Inf") {
    poke(c, "model.embed_tokens.weight", 0, -std::numeric_limits<float>::infinity());
    CHECK_THROWS_WITH(check_weights_finite(open_checkpoint(c.dir())),
                      Contains("tensor 'model.embed_tokens.weight' has -Inf at index 0"));
  }
  SECTION("the plain loader does not scan (the check is opt-in)") {
    poke(c, "model.norm.weight", 3, std::numeric_limits<float>::quiet_NaN());
    CHECK_NOTHROW(open_checkpoint(c.dir()));
  }
}

TEST_CASE("check_tensor_finite reads every float dtype", "[weights]") {
  const float values[3] = {1.f, std::nanf(""), 2.f};
  uint16_t bf16[3], f16[3];
  for (int i = 0; i < 3; ++i) {
    bf16[i] = f32_to_bf16(values[i]);
    f16[i] = f32_to_f16(values[i]);
  }
  TensorInfo t;
  t.name = "w";
  t.file = "f";
  t.shape = {3};
  for (auto [dtype, data] : {std::pair{DType::F32, static_cast<const void*>(values)}, {DType::BF16, bf16}, {DType::F16, f16}}) {
    t.dtype = dtype;
    t.data = static_cast<const unsigned char*>(data);
    t.nbytes = 3 * dtype_size(dtype);
    CHECK_THROWS_WITH(check_tensor_finite(t), Contains("has NaN at index 1 of shape [3]"));
  }
  const int32_t ints[3] = {-1, -1, -1};  // all bits set: would read as NaN if integers were scanned
  t.dtype = DType::I32;
  t.data = reinterpret_cast<const unsigned char*>(ints);
  CHECK_NOTHROW(check_tensor_finite(t));
}

TEST_CASE("deeply nested or hostile headers are refused without a crash", "[malformed][fuzz]") {
  ScratchCheckpoint c("tiny-llama3-gqa");
  SECTION("100000 nested brackets") {
    c.edit_header(kFile, [](std::string& h) { h = std::string(100000, '[') + std::string(100000, ']'); });
    CHECK_THROWS_WITH(open_checkpoint(c.dir()), Contains("safetensors header is not a JSON object"));
  }
  SECTION("header length of 2^64-1") {
    std::string bytes = c.read(kFile);
    const uint64_t huge = ~0ull;
    std::memcpy(&bytes[0], &huge, 8);
    c.write(kFile, bytes);
    CHECK_THROWS_WITH(open_checkpoint(c.dir()), Contains("header length 18446744073709551615 exceeds the file"));
  }
  SECTION("shape whose element count overflows 64 bits") {
    c.edit_header_json(kFile, [](json& h) { h["model.norm.weight"]["shape"] = {1ull << 40, 1ull << 40}; });
    CHECK_THROWS_WITH(open_checkpoint(c.dir()), Contains("is impossibly large"));
  }
}

TEST_CASE("a model directory that cannot be read is a clear error", "[malformed]") {
  auto refusal = [](const std::string& dir) -> std::string {
    try {
      open_checkpoint(dir);
    } catch (const Error& e) {
      return e.what();
    }
    return "(accepted)";
  };
  ScratchCheckpoint c("tiny-llama3-gqa");
  SECTION("does not exist") {
    CHECK_THAT(refusal(c.path("no-such-dir")), Contains("no-such-dir/config.json: missing (is '" + c.path("no-such-dir") + "' a Hugging Face model directory?)"));
  }
  SECTION("is a file") {
    CHECK_THAT(refusal(c.path("config.json")), Contains("config.json/config.json: missing (is '"));
  }
  SECTION("config.json is a directory") {
    std::filesystem::remove(c.path("config.json"));
    std::filesystem::create_directory(c.path("config.json"));
    CHECK_THAT(refusal(c.dir()), Contains("config.json: missing (is '" + c.dir() + "' a Hugging Face model directory?)"));
  }
  SECTION("model.safetensors is a directory") {
    std::filesystem::remove(c.path(kFile));
    std::filesystem::create_directory(c.path(kFile));
    CHECK_THAT(refusal(c.dir()), Contains("no model.safetensors or model.safetensors.index.json"));
  }
}

TEST_CASE("a model directory without read permission is a clear error", "[malformed]") {
  if (geteuid() == 0) {
    WARN("running as root: permission bits do not stop reads; unreadable-directory case skipped");
    return;
  }
  ScratchCheckpoint c("tiny-llama3-gqa");
  std::filesystem::permissions(c.dir(), std::filesystem::perms::none);
  std::string message = "(accepted)";
  try {
    open_checkpoint(c.dir());
  } catch (const Error& e) {
    message = e.what();
  }
  std::filesystem::permissions(c.dir(), std::filesystem::perms::owner_all);
  CHECK_THAT(message, Contains(c.dir()));
}

TEST_CASE("safetensors and config.json fuzz findings are refused or accepted, never crash", "[fuzz]") {
  for (const auto& path : regressions("safetensors")) {
    INFO(path.string());
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), {});
    try {
      parse_safetensors(path.string(), reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
    } catch (const Error&) {
    }
  }
  for (const auto& path : regressions("config")) {
    INFO(path.string());
    const json j = json::parse(std::ifstream(path), nullptr, false);
    if (j.is_discarded()) continue;
    try {
      parse_config(j, path.string());
    } catch (const Error&) {
    }
  }
  SUCCEED();
}

TEST_CASE("config.json token ids must be non-negative", "[malformed][config]") {
  ScratchCheckpoint c("tiny-llama3-gqa");
  c.edit_json("config.json", [](json& j) { j["eos_token_id"] = -5; });
  CHECK_THROWS_WITH(open_checkpoint(c.dir()), Contains("config.json: field 'eos_token_id' must hold token ids in [0, 2^31), got -5"));
}

TEST_CASE("a header number too large for a double is a clear error (fuzz finding)", "[malformed][fuzz]") {
  const std::string path = std::string(FC_SOURCE_DIR) + "/fuzz/regressions/safetensors/number-overflow-1e999";
  CHECK_THROWS_WITH(SafetensorsFile(path), Contains("safetensors header is not valid JSON") && Contains("number overflow"));
}
