// The model shapes built into the binary (apps/model_shapes.h): `--synthetic NAME` must work from any
// directory and from an installed copy, so a name must never be looked up on the file system. Each lookup
// here runs from a fresh directory holding decoys (every file an old-style lookup would read, each a valid
// config of another shape): reading the working directory changes the answer. The binary itself must not
// carry the source tree's configs path (what the lookup used to read first).
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include <nlohmann/json.hpp>

#include "apps/model_shapes.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "tests/apps/cli_runner.h"

using Catch::Matchers::Contains;
using fc::test::run_flashcore;

namespace {

namespace fs = std::filesystem;

const std::string kConfigsDir = std::string(FC_SOURCE_DIR) + "/configs";

// Makes a fresh temporary directory the working directory for the scope, then restores and deletes it.
class TempWorkingDir {
 public:
  TempWorkingDir() : previous_(fs::current_path()) {
    std::random_device rd;
    path_ = fs::temp_directory_path() / ("fc_shapes_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(path_);
    fs::current_path(path_);
  }
  ~TempWorkingDir() {
    fs::current_path(previous_);
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempWorkingDir(const TempWorkingDir&) = delete;
  TempWorkingDir& operator=(const TempWorkingDir&) = delete;

 private:
  fs::path previous_, path_;
};

// A valid config of a shape no built-in has (hidden_size 64).
const char* kDecoy = R"({"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
  "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100, "max_position_embeddings": 128,
  "rms_norm_eps": 1e-5, "rope_theta": 10000.0})";

// Every file a lookup of `name` relative to the working directory could read.
void write_decoys(const std::string& name) {
  fs::create_directories("configs");
  std::ofstream("configs/" + name + ".json") << kDecoy;
  std::ofstream(name) << kDecoy;
  std::ofstream(name + ".json") << kDecoy;
}

fc::Config parse_file(const std::string& path) {
  return fc::parse_config(nlohmann::json::parse(fc::read_text_file(path)), path);
}

}  // namespace

TEST_CASE("model shapes: every configs/*.json is built in, byte for byte", "[shapes]") {
  std::set<std::string> on_disk;
  for (const auto& entry : fs::directory_iterator(kConfigsDir)) {
    if (entry.path().extension() == ".json") on_disk.insert(entry.path().stem().string());
  }
  std::set<std::string> built_in;
  for (const fc::BuiltinShape& shape : fc::builtin_shapes()) {
    built_in.insert(shape.name);
    INFO(shape.name);
    CHECK(std::string(shape.json) == fc::read_text_file(kConfigsDir + "/" + shape.name + ".json"));
  }
  CHECK(built_in == on_disk);
  CHECK(built_in.count("llama-3.1-8b") == 1);
  CHECK(fc::builtin_shape_names() == "llama-3.1-70b, llama-3.1-8b, llama-3.2-1b, llama-3.2-3b");
}

TEST_CASE("model shapes: a name is the built-in shape whatever the working directory holds", "[shapes]") {
  std::vector<std::pair<std::string, fc::Config>> expected;
  for (const fc::BuiltinShape& shape : fc::builtin_shapes()) {
    expected.emplace_back(shape.name, parse_file(kConfigsDir + "/" + shape.name + ".json"));
  }
  TempWorkingDir cwd;
  for (const auto& [name, config] : expected) {
    write_decoys(name);
    INFO(name);
    const fc::ModelShape shape = fc::load_model_shape(name, "--synthetic");
    CHECK(shape.source == "built-in " + name);
    CHECK(shape.config.hidden_size == config.hidden_size);
    CHECK(shape.config.num_layers == config.num_layers);
    CHECK(shape.config.num_kv_heads == config.num_kv_heads);
    CHECK(shape.config.vocab_size == config.vocab_size);
    CHECK(fc::check_model_shape(name).empty());
  }
  const fc::Config big = fc::load_model_shape("llama-3.1-8b", "--synthetic").config;
  CHECK(big.hidden_size == 4096);
  CHECK(big.num_layers == 32);
  CHECK(big.num_kv_heads == 8);
  CHECK(big.intermediate_size == 14336);
}

TEST_CASE("model shapes: a path is read as given and unknown names or missing files are one-line errors",
          "[shapes]") {
  const std::string hub_file = kConfigsDir + "/llama-3.2-1b.json";
  const fc::ModelShape by_path = fc::load_model_shape(hub_file, "--synthetic");
  CHECK(by_path.source == hub_file);
  CHECK(by_path.config.hidden_size == 2048);

  TempWorkingDir cwd;
  std::ofstream("mine.json") << kDecoy;
  CHECK(fc::load_model_shape("mine.json", "--synthetic").config.hidden_size == 64);  // relative path
  CHECK(fc::load_model_shape("./mine.json", "--synthetic").config.hidden_size == 64);
  std::ofstream("broken.json") << "{\"hidden_size\": ";
  CHECK_THROWS_WITH(fc::load_model_shape("broken.json", "--synthetic"), Contains("broken.json: not valid JSON"));

  CHECK_THROWS_WITH(fc::load_model_shape("./missing.json", "--synthetic"),
                    "--synthetic ./missing.json: no such file");
  CHECK_THROWS_WITH(fc::load_model_shape("llama-9", "--config"),
                    "--config llama-9: no built-in model shape of that name (built in: llama-3.1-70b, "
                    "llama-3.1-8b, llama-3.2-1b, llama-3.2-3b; or give a config.json path)");
  CHECK_THAT(fc::check_model_shape("llama-9"), Contains("built in: llama-3.1-70b, llama-3.1-8b"));
  CHECK(fc::check_model_shape("./missing.json") == "./missing.json: no such file");
  CHECK(fc::check_model_shape("mine.json").empty());
}

TEST_CASE("bench --synthetic: names resolve from another working directory and unknown ones list the built-in names",
          "[cli][bench][shapes]") {
  TempWorkingDir cwd;
  write_decoys("llama-3.2-1b");
  const auto unknown = run_flashcore("bench --synthetic nonexistent");
  CHECK(unknown.status == 1);
  CHECK(unknown.err_lines() == 1);
  CHECK_THAT(unknown.err, Contains("nonexistent: no built-in model shape of that name (built in: llama-3.1-70b, "
                                   "llama-3.1-8b, llama-3.2-1b, llama-3.2-3b; or give a config.json path)"));
  // The name passes the parse-time check and the command stops at the next rule, GPU or not.
  const auto known = run_flashcore("bench --synthetic llama-3.2-1b --device cpu");
  CHECK(known.status == 1);
  CHECK_THAT(known.err, Contains("--synthetic runs on the GPU only"));
  const auto help = run_flashcore("bench --help");
  CHECK(help.status == 0);
  CHECK_THAT(help.out, Contains("llama-3.1-70b, llama-3.1-8b, llama-3.2-1b, llama-3.2-3b"));
}

TEST_CASE("flashcore carries no path to the source tree's configs", "[cli][shapes]") {
  // What the lookup used to try first (FC_CONFIGS_DIR): an installed binary must not depend on the
  // source tree. Debug information names source files, not this directory (no source file lives there).
  const std::string binary = fc::read_text_file(FC_FLASHCORE_BIN);
  REQUIRE(binary.size() > 1000);
  CHECK(binary.find(kConfigsDir) == std::string::npos);
}
