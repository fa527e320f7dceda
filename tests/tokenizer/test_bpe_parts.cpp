// The parts of the byte-level BPE tokenizer on their own: Oniguruma -> PCRE2 pattern rewriting, the
// match walk, the two merge loops, huge inputs, the byte-level alphabet, and loader refusals.
#include <random>

#include <catch2/catch.hpp>

#include "core/error.h"
#include "tests/test_util.h"
#include "tests/tokenizer/tokenizer_test_util.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"

using namespace fc;

namespace {

std::vector<std::pair<size_t, size_t>> matches(const Regex& re, std::string_view text) {
  std::vector<std::pair<size_t, size_t>> out;
  re.for_each_match(text, [&](size_t b, size_t e) { out.emplace_back(b, e); });
  return out;
}

}  // namespace

TEST_CASE("tokenizer: Oniguruma escapes are rewritten for PCRE2", "[tokenizer][regex]") {
  CHECK(translate_onig_pattern(R"(\s+(?!\S))") == R"(\p{White_Space}+(?!\P{White_Space}))");
  CHECK(translate_onig_pattern(R"([^\s\p{L}\p{N}]+)") == R"([^\p{White_Space}\p{L}\p{N}]+)");
  CHECK(translate_onig_pattern(R"(\\s)") == R"(\\s)");  // an escaped backslash, then a plain 's'
  CHECK(translate_onig_pattern(R"([]\s])") == R"([]\p{White_Space}])");
  CHECK(translate_onig_pattern(R"(\w+)") == R"([\p{L}\p{M}\p{N}\p{Pc}]+)");
  CHECK(translate_onig_pattern(R"([\w-])") == R"([\p{L}\p{M}\p{N}\p{Pc}-])");
  CHECK(translate_onig_pattern(R"(\h)") == "[0-9a-fA-F]");
  CHECK(translate_onig_pattern(R"((?i:'s|'t)\p{N}{1,3})") == R"((?i:'s|'t)\p{N}{1,3})");
  CHECK_THROWS_AS(translate_onig_pattern(R"([a-z&&[^aeiou]])"), Error);
  CHECK_THROWS_AS(Regex("(unclosed", Regex::Syntax::kOniguruma), Error);
}

TEST_CASE("tokenizer: spaces are White_Space as in Oniguruma: U+180E is not one and NEL is", "[tokenizer][regex]") {
  const Regex space(R"(\s+)", Regex::Syntax::kOniguruma);
  CHECK(matches(space, "a\xE1\xA0\x8E" "b").empty());  // U+180E MONGOLIAN VOWEL SEPARATOR
  CHECK(matches(space, "a\xC2\x85" "b") == std::vector<std::pair<size_t, size_t>>{{1, 3}});
  CHECK(matches(space, "a\xE3\x80\x80\tb") == std::vector<std::pair<size_t, size_t>>{{1, 5}});
}

TEST_CASE("tokenizer: match walk skips an empty match where the previous match ended", "[tokenizer][regex]") {
  const Regex lookahead("(?=Q)", Regex::Syntax::kOniguruma);
  CHECK(matches(lookahead, "aQbQQ") == std::vector<std::pair<size_t, size_t>>{{1, 1}, {3, 3}, {4, 4}});
  const Regex star("x*", Regex::Syntax::kOniguruma);
  CHECK(matches(star, "axxb") == std::vector<std::pair<size_t, size_t>>{{0, 0}, {1, 3}, {4, 4}});
  const Regex literal("a.b", Regex::Syntax::kLiteral);
  CHECK(matches(literal, "a.b axb a.b") == std::vector<std::pair<size_t, size_t>>{{0, 3}, {8, 11}});
}

TEST_CASE("tokenizer: the rescan and heap merge loops agree", "[tokenizer][bpe]") {
  // Alphabet a, b, c (ids 0-2) and merges that chain and compete, with equal-looking pairs.
  BpeModel model;
  model.reserve(16, 16);
  const char* tokens[] = {"a", "b", "c", "ab", "bc", "ca", "abc", "aa", "aab", "bcab", "cc", "ccc"};
  for (int i = 0; i < 12; ++i) model.add_token(tokens[i], i);
  model.add_merge(0, 1, 3);   // a b
  model.add_merge(1, 2, 4);   // b c
  model.add_merge(0, 0, 7);   // a a
  model.add_merge(3, 2, 6);   // ab c
  model.add_merge(2, 0, 5);   // c a
  model.add_merge(7, 1, 8);   // aa b
  model.add_merge(4, 3, 9);   // bc ab
  model.add_merge(2, 2, 10);  // c c
  model.add_merge(10, 2, 11); // cc c
  model.finish({});
  std::mt19937 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    const size_t n = 1 + rng() % 90;
    std::vector<TokenId> symbols(n);
    for (auto& s : symbols) s = static_cast<TokenId>(rng() % 3);
    std::vector<TokenId> small = symbols, large = symbols;
    model.merge_small(small);
    model.merge_large(large);
    INFO("trial " << trial << " n " << n);
    REQUIRE(small == large);
  }
  std::vector<TokenId> aaaa = {0, 0, 0, 0};
  model.merge_small(aaaa);
  CHECK(aaaa == std::vector<TokenId>{7, 7});  // leftmost first: (aa)(aa), not a(aa)a
  std::vector<TokenId> out;
  model.encode_word("aab", out);
  CHECK(out == (std::vector<TokenId>{0, 3}));  // (a b) ranks before (a a): a + ab
}

TEST_CASE("tokenizer: byte-level alphabet round-trips every byte", "[tokenizer][bpe]") {
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  const std::string spelled = bytes_to_byte_level(all);
  std::string back;
  REQUIRE(byte_level_to_bytes(spelled, back));
  CHECK(back == all);
  CHECK(bytes_to_byte_level(" ") == "\xC4\xA0");  // "Ġ"
  CHECK(bytes_to_byte_level("\n") == "\xC4\x8A");  // "Ċ"
  CHECK_FALSE(byte_level_to_bytes("\xE4\xB8\xAD", back));  // not in the alphabet
}

TEST_CASE("tokenizer: huge inputs encode without a crash and round-trip", "[tokenizer][bpe]") {
  const Tokenizer* llama = fc::test::llama3_tokenizer();
  const auto mini = load_tokenizer(fc::test::data_path("tokenizer/mini_b.tokenizer.json"));
  std::vector<const Tokenizer*> tokenizers = {mini.get()};
  if (llama) tokenizers.push_back(llama);
  const std::vector<std::string> texts = {
      std::string(1 << 20, ' '),                    // \s+(?!\S) backtracks over the whole run
      std::string(1 << 20, 'a'),                    // one 1 MiB word: the heap merge loop
      std::string(200000, '\n') + "x",
      std::string(300000, '7'),
      [] { std::string s; for (int i = 0; i < 100000; ++i) s += "\xE4\xB8\xAD"; return s; }(),
      [] { std::string s; for (int i = 0; i < 50000; ++i) s += " \t\r\n"; return s + "end"; }(),
  };
  for (const Tokenizer* t : tokenizers) {
    for (const std::string& text : texts) {
      const auto ids = t->encode(text, true);
      CHECK(ids.size() > 0);
      if (t == llama) CHECK(t->decode(ids) == "<|begin_of_text|>" + text);
    }
  }
}

TEST_CASE("tokenizer: tokenizer.json loader refuses what it cannot honour, naming the file", "[tokenizer][bpe]") {
  const std::string dir = std::string(FC_BINARY_DIR) + "/tokenizer_test_files";
  REQUIRE(std::system(("mkdir -p " + dir).c_str()) == 0);
  auto write = [&](const std::string& name, const std::string& content) {
    const std::string path = dir + "/" + name;
    FILE* f = std::fopen(path.c_str(), "wb");
    REQUIRE(f != nullptr);
    std::fwrite(content.data(), 1, content.size(), f);
    std::fclose(f);
    return path;
  };
  const std::string wordpiece = write("wordpiece.json", R"({"model": {"type": "WordPiece", "vocab": {}}})");
  CHECK_THROWS_WITH(load_tokenizer(wordpiece),
                    Catch::Contains("wordpiece.json") && Catch::Contains("model type is 'WordPiece'"));
  const std::string bad_merge = write("bad_merge.json", R"({
    "added_tokens": [], "normalizer": null, "post_processor": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}})");
  CHECK_THROWS_WITH(load_tokenizer(bad_merge), Catch::Contains("merge 0: token 'ab' is not in the vocabulary"));
  const std::string not_json = write("broken.json", "{\"model\": ");
  CHECK_THROWS_WITH(load_tokenizer(not_json), Catch::Contains("broken.json: not valid JSON"));
  CHECK_THROWS_WITH(load_tokenizer(dir + "/missing.json"), Catch::Contains("does not exist"));
  CHECK_THROWS_WITH(load_tokenizer(dir), Catch::Contains("neither tokenizer.json nor tokenizer.model"));
}
