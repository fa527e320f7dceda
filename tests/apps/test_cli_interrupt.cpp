// Ctrl-C through the flashcore executable: SIGINT during a long `generate` stops it at the next token
// with exit status 0, the text so far and the statistics line ("stop: cancelled"), as README says; SIGINT
// during `validate --dump-logits` ends the process (status 130, killed by SIGINT) without leaving the
// output file or its temporary (.partial) behind.
//
// A run long enough to be interrupted: a scratch copy of tiny-llama3-bpe whose config allows a context of
// a million tokens (plain RoPE, so positions past the 256 it was made with are only unusual, not
// invalid), generating greedily; its greedy continuation of "the cat" holds no <eos> in the first 250
// tokens (test_cli_generate.cpp), so it is still running when the first text arrives.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <random>

#include <nlohmann/json.hpp>

#include "model/safetensors.h"
#include "tests/apps/cli_process.h"
#include "tests/model/checkpoint_mutator.h"

using fc::test::CliProcess;
using fc::test::ScratchCheckpoint;
using Catch::Matchers::Contains;
using Catch::Matchers::EndsWith;
using Catch::Matchers::StartsWith;
using nlohmann::json;

namespace {

const std::string kFixture = "tiny-llama3-bpe";
constexpr int kLongContext = 1000000;

std::unique_ptr<ScratchCheckpoint> long_context_checkpoint() {
  auto c = std::make_unique<ScratchCheckpoint>(kFixture);
  c->edit_json("config.json", [](json& j) { j["max_position_embeddings"] = kLongContext; });
  return c;
}

std::vector<std::string> long_generation(const std::string& dir) {
  return {"generate", "--model", dir, "--device", "cpu", "--no-bos", "--temperature", "0", "--max-context",
          std::to_string(kLongContext), "--max-new-tokens", std::to_string(kLongContext - 10), "--prompt", "the cat"};
}

int lines(const std::string& text) { return static_cast<int>(std::count(text.begin(), text.end(), '\n')); }

}  // namespace

TEST_CASE("Ctrl-C during generate: stops at the next token, statistics printed, exit status 0", "[cli][signals]") {
  const auto c = long_context_checkpoint();
  CliProcess p(long_generation(c->dir()));
  REQUIRE(p.started());
  // Some text has streamed out: the process is in the generation loop (its handler is installed).
  REQUIRE(p.wait_for_stdout(40, 20000));
  REQUIRE(p.running());
  p.send(SIGINT);
  const int status = p.wait(20000);
  INFO("stdout: " << p.out() << "\nstderr: " << p.err());
  CHECK(status == 0);
  CHECK_THAT(p.out(), EndsWith("\n"));
  CHECK(lines(p.err()) == 1);
  CHECK_THAT(p.err(), StartsWith("prompt ") && Contains("ms/token") && Contains("stop: cancelled"));
}

TEST_CASE("Ctrl-C during generate --json: one JSON object with stop_reason cancelled", "[cli][signals]") {
  const auto c = long_context_checkpoint();
  std::vector<std::string> args = long_generation(c->dir());
  args.push_back("--json");
  // --json prints only at the end, so nothing shows when the process is past loading (a few ms; more under
  // ASan or a loaded machine). A SIGINT while it loads ends it with status 130 and no output, as README
  // says; then the test tries again, waiting longer (1.5, 3, 6, 12 s) before the signal.
  int status = -1;
  std::string out, err;
  for (int wait_ms = 1500; wait_ms <= 12000; wait_ms *= 2) {
    CliProcess p(args);
    REQUIRE(p.started());
    usleep(static_cast<useconds_t>(wait_ms) * 1000);
    REQUIRE(p.running());
    p.send(SIGINT);
    status = p.wait(20000);
    out = p.out();
    err = p.err();
    if (!(status == 130 && out.empty())) break;
  }
  INFO("stdout: " << out << "\nstderr: " << err);
  CHECK(status == 0);
  const json j = json::parse(out);
  CHECK(j["stop_reason"] == "cancelled");
  CHECK(j["generated_tokens"].get<int>() > 0);
  CHECK(j["ids"].size() == j["generated_tokens"].get<size_t>());
}

TEST_CASE("Ctrl-C during validate --dump-logits leaves no output file, partial or whole", "[cli][signals]") {
  // A reference of 6000 positions (random ids and logits: validate would fail the tolerance, which does
  // not matter here) keeps validate busy for well over the time before the signal.
  ScratchCheckpoint c(kFixture);
  c.edit_json("config.json", [](json& j) { j["max_position_embeddings"] = 8192; });
  const int n = 6000, vocab = 557;
  std::mt19937 rng(7);
  std::vector<int64_t> ids(n);
  for (auto& id : ids) id = std::uniform_int_distribution<int64_t>(0, vocab - 2)(rng);
  std::vector<float> logits(static_cast<size_t>(n) * vocab);
  for (auto& v : logits) v = std::normal_distribution<float>(0.f, 1.f)(rng);
  fc::write_safetensors(c.path("long.safetensors"), {{"input_ids", fc::DType::I64, {n}, ids.data()},
                                                     {"logits", fc::DType::F32, {n, vocab}, logits.data()}});
  const std::string out = c.path("dump.safetensors");

  CliProcess p({"validate", "--model", c.dir(), "--reference", c.path("long.safetensors"), "--device", "cpu",
                "--dump-logits", out});
  REQUIRE(p.started());
  usleep(300 * 1000);
  REQUIRE(p.running());  // else the run was too short to test anything
  p.send(SIGINT);
  const int status = p.wait(20000);
  INFO("stdout: " << p.out() << "\nstderr: " << p.err());
  CHECK(status == 128 + SIGINT);  // validate keeps Ctrl-C's default: it ends at once
  CHECK_FALSE(std::filesystem::exists(out));
  CHECK_FALSE(std::filesystem::exists(out + ".partial"));
}
