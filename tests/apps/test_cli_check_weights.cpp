// --check-weights through the flashcore executable: a scratch copy of tiny-llama3-bpe with one NaN in a
// weight is refused with one line naming the file, the tensor and the element by generate, chat and
// validate; without the flag the same checkpoint loads and runs (the scan is opt-in).
//
// The NaN goes into the embedding row of token 556 (<eos>, also the fixture's BOS): with --no-bos no
// prompt here and no reference input id holds 556, and a sampled 556 stops generation before it is fed
// back, so the poisoned row is never read and the unflagged runs give exactly the clean fixture's output.
#include <catch2/catch.hpp>

#include <limits>

#include "tests/apps/cli_runner.h"
#include "tests/model/checkpoint_mutator.h"
#include "tests/test_util.h"

using fc::test::CliResult;
using fc::test::data_path;
using fc::test::run_flashcore;
using fc::test::ScratchCheckpoint;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {

const std::string kFixture = "tiny-llama3-bpe";
constexpr int kHidden = 64;        // the fixture's hidden_size
constexpr size_t kBadIndex = 556 * kHidden + 3;  // row 556 (<eos>), column 3

std::string generate_args(const std::string& dir, const std::string& extra = "") {
  return "generate --model " + dir + " --device cpu --no-bos --temperature 0 --max-new-tokens 8 --prompt \"the cat\" " +
         extra;
}

void check_refused(const CliResult& r, const std::string& dir) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.status == 1);
  CHECK(r.err_lines() == 1);
  CHECK_THAT(r.err, StartsWith("error: " + dir + "/model.safetensors: tensor 'model.embed_tokens.weight' has NaN at "
                               "index " + std::to_string(kBadIndex) + " of shape [557, 64]; the checkpoint is corrupted"));
}

}  // namespace

TEST_CASE("generate, chat and validate with --check-weights refuse a NaN weight", "[cli][errors][weights]") {
  ScratchCheckpoint c(kFixture);
  c.set_element("model.safetensors", "model.embed_tokens.weight", kBadIndex, std::numeric_limits<float>::quiet_NaN());
  // A second bad element further on: the first one is named.
  c.set_element("model.safetensors", "model.embed_tokens.weight", kBadIndex + 10, std::numeric_limits<float>::infinity());

  check_refused(run_flashcore(generate_args(c.dir(), "--check-weights")), c.dir());
  check_refused(run_flashcore("chat --model " + c.dir() + " --device cpu --check-weights", "hi\n"), c.dir());
  check_refused(run_flashcore("validate --model " + c.dir() + " --reference " + c.path("reference.safetensors") +
                              " --device cpu --check-weights"),
                c.dir());
  // --quiet does not hide the error.
  check_refused(run_flashcore(generate_args(c.dir(), "--check-weights --quiet")), c.dir());
}

TEST_CASE("without --check-weights a NaN weight is not looked for: the checkpoint loads", "[cli][weights]") {
  ScratchCheckpoint c(kFixture);
  c.set_element("model.safetensors", "model.embed_tokens.weight", kBadIndex, std::numeric_limits<float>::quiet_NaN());
  const std::string clean = data_path("models/" + kFixture);
  const CliResult expected = run_flashcore(generate_args(clean, "--quiet"));
  REQUIRE(expected.status == 0);
  REQUIRE(expected.out.size() > 1);

  const CliResult poisoned = run_flashcore(generate_args(c.dir(), "--quiet"));
  INFO(poisoned.err);
  CHECK(poisoned.status == 0);
  CHECK(poisoned.out == expected.out);
  const CliResult validated = run_flashcore("validate --model " + c.dir() + " --reference " +
                                            c.path("reference.safetensors") + " --device cpu");
  INFO(validated.out << validated.err);
  CHECK(validated.status == 0);
}

TEST_CASE("a clean checkpoint passes --check-weights, which changes nothing else", "[cli][weights]") {
  const std::string clean = data_path("models/" + kFixture);
  const CliResult plain = run_flashcore(generate_args(clean, "--quiet"));
  const CliResult checked = run_flashcore(generate_args(clean, "--check-weights"));
  INFO(checked.err);
  REQUIRE(checked.status == 0);
  CHECK(checked.out == plain.out);
  CHECK_THAT(checked.err, Contains("--check-weights: ") && Contains("hold no NaN or Inf"));
  const CliResult validated = run_flashcore("validate --model " + clean + " --reference " + clean +
                                            "/reference.safetensors --device cpu --check-weights");
  INFO(validated.out << validated.err);
  CHECK(validated.status == 0);
}
