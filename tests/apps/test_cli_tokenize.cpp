// flashcore tokenize end to end: raw stdin bytes in, ids out, and back (LLaMA 3.1 tokenizer from the
// setup script's cache; skipped with a warning when it is absent).
#include <catch2/catch.hpp>

#include <filesystem>

#include "tests/apps/cli_runner.h"

using fc::test::run_flashcore;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;

namespace {
const std::string kTokenizer = std::string(FC_SOURCE_DIR) + "/.cache/llama3_1/tokenizer.json";
}

TEST_CASE("tokenize: text -> ids -> text through the CLI", "[cli][tokenize]") {
  if (!std::filesystem::exists(kTokenizer)) {
    WARN("skipped: " << kTokenizer << " missing (run scripts/setup.sh)");
    return;
  }
  const std::string text = "Hello, world! 123 héllo\n\tend<|eot_id|>";
  const auto enc = run_flashcore("tokenize --tokenizer " + kTokenizer + " --json --bos", text);
  INFO(enc.err);
  REQUIRE(enc.status == 0);
  CHECK_THAT(enc.out, StartsWith("[128000,"));
  CHECK_THAT(enc.out, Contains("128009"));  // <|eot_id|> parsed as a special token
  const auto dec = run_flashcore("tokenize --tokenizer " + kTokenizer + " --decode", enc.out);
  REQUIRE(dec.status == 0);
  CHECK(dec.out == "<|begin_of_text|>" + text);
}

TEST_CASE("tokenize: invalid UTF-8 and out-of-range ids are one-line errors", "[cli][tokenize]") {
  if (!std::filesystem::exists(kTokenizer)) {
    WARN("skipped: " << kTokenizer << " missing (run scripts/setup.sh)");
    return;
  }
  const auto bad_utf8 = run_flashcore("tokenize --tokenizer " + kTokenizer, std::string("ab\xff\xfe", 4));
  CHECK(bad_utf8.status == 1);
  CHECK(bad_utf8.err_lines() == 1);
  CHECK_THAT(bad_utf8.err, Contains("invalid UTF-8 at byte 2"));
  const auto bad_id = run_flashcore("tokenize --tokenizer " + kTokenizer + " --decode", "[1, 130000]");
  CHECK(bad_id.status == 1);
  CHECK(bad_id.err_lines() == 1);
  CHECK_THAT(bad_id.err, Contains("token id 130000 out of range (vocab size 128256)"));
  const auto missing = run_flashcore("tokenize --tokenizer /nonexistent/tokenizer.json", "x");
  CHECK(missing.status == 1);
  CHECK(missing.err_lines() == 1);
}
