// UTF-8 validation and repair, and the errors encode/decode give for bad input.
#include <catch2/catch.hpp>

#include "core/error.h"
#include "tests/test_util.h"
#include "tests/tokenizer/tokenizer_test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

using namespace fc;

namespace {

std::string repaired(std::string_view bytes, Utf8Repair policy) {
  std::string out;
  append_repaired_utf8(bytes, policy, /*at_end=*/true, out);
  return out;
}

const std::string kFFFD = "\xEF\xBF\xBD";

}  // namespace

TEST_CASE("tokenizer: find_invalid_utf8 points at the first ill-formed byte", "[tokenizer][utf8]") {
  CHECK(find_invalid_utf8("") == std::string_view::npos);
  CHECK(find_invalid_utf8("plain ascii text, long enough for the 8-byte path") == std::string_view::npos);
  CHECK(find_invalid_utf8("caf\xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80") == std::string_view::npos);
  CHECK(find_invalid_utf8("\xF4\x8F\xBF\xBF") == std::string_view::npos);  // U+10FFFF
  CHECK(find_invalid_utf8("ab\xFF") == 2);
  CHECK(find_invalid_utf8("a\x80") == 1);                    // lone continuation
  CHECK(find_invalid_utf8("abc\xC0\x80") == 3);              // overlong NUL
  CHECK(find_invalid_utf8("\xE0\x80\xAF") == 0);             // overlong '/'
  CHECK(find_invalid_utf8("x\xED\xA0\x80") == 1);            // surrogate U+D800
  CHECK(find_invalid_utf8("\xF4\x90\x80\x80") == 0);         // above U+10FFFF
  CHECK(find_invalid_utf8("12345678\xE4\xB8") == 8);         // cut at the end
  CHECK(find_invalid_utf8("\xC3\xA9\xC3") == 2);
}

TEST_CASE("tokenizer: repair follows Unicode's maximal-subpart rule, or one U+FFFD per byte", "[tokenizer][utf8]") {
  // Unicode 15, table 3-8: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64.
  const std::string bytes = "\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64";
  CHECK(repaired(bytes, Utf8Repair::kMaximalSubpart) ==
        "a" + kFFFD + kFFFD + kFFFD + "b" + kFFFD + "c" + kFFFD + kFFFD + "d");
  CHECK(repaired(bytes, Utf8Repair::kPerByte) ==
        "a" + kFFFD + kFFFD + kFFFD + kFFFD + kFFFD + kFFFD + "b" + kFFFD + "c" + kFFFD + kFFFD + "d");
  CHECK(repaired("\xE4\xB8", Utf8Repair::kMaximalSubpart) == kFFFD);
  CHECK(repaired("\xE4\xB8", Utf8Repair::kPerByte) == kFFFD + kFFFD);
  CHECK(repaired("ok \xE4\xB8\xAD", Utf8Repair::kMaximalSubpart) == "ok \xE4\xB8\xAD");

  // Not at the end: an incomplete character is held back, not replaced.
  std::string out;
  CHECK(append_repaired_utf8("ab\xE4\xB8", Utf8Repair::kMaximalSubpart, /*at_end=*/false, out) == 2);
  CHECK(out == "ab");
  out.clear();
  CHECK(append_repaired_utf8("ab\xE4\x41", Utf8Repair::kMaximalSubpart, /*at_end=*/false, out) == 4);
  CHECK(out == "ab" + kFFFD + "A");
}

TEST_CASE("tokenizer: encode refuses invalid UTF-8 with the byte offset and decode refuses bad ids", "[tokenizer][utf8]") {
  const auto mini = load_tokenizer(fc::test::data_path("tokenizer/mini_b.tokenizer.json"));
  std::vector<const Tokenizer*> tokenizers = {mini.get()};
  if (const Tokenizer* llama = fc::test::llama3_tokenizer()) tokenizers.push_back(llama);
  for (const Tokenizer* t : tokenizers) {
    CHECK_THROWS_WITH(t->encode("hello\xC3(world", false), "invalid UTF-8 at byte 5 of the input");
    CHECK_THROWS_WITH(t->encode(std::string("1234567890123456\xFF", 17), true),
                      "invalid UTF-8 at byte 16 of the input");
    CHECK_THROWS_WITH(t->encode("\xED\xA0\x80", true), "invalid UTF-8 at byte 0 of the input");
    CHECK_THROWS_WITH(t->encode(std::string("a\0b\xC0", 4), false), "invalid UTF-8 at byte 3 of the input");
    const int v = t->vocab_size();
    CHECK_THROWS_WITH(t->decode({1, v}), "token id " + std::to_string(v) + " out of range (vocab size " +
                                             std::to_string(v) + ")");
    CHECK_THROWS_WITH(t->decode({-1}), "token id -1 out of range (vocab size " + std::to_string(v) + ")");
    StreamDecoder stream(*t);
    CHECK_THROWS_AS(stream.push(v + 5), Error);
    CHECK(t->encode(std::string("a\0b", 3), false).size() >= 1);  // NUL is valid UTF-8
  }
  if (const Tokenizer* llama = fc::test::llama3_tokenizer()) {
    CHECK(llama->vocab_size() == 128256);
    CHECK_THROWS_WITH(llama->decode({128000, 130000}), "token id 130000 out of range (vocab size 128256)");
  }
}

TEST_CASE("tokenizer: streaming holds back a character split across tokens", "[tokenizer][stream]") {
  const auto mini = load_tokenizer(fc::test::data_path("tokenizer/mini_b.tokenizer.json"));
  const Tokenizer* t = mini.get();
  // The single-byte tokens ("\xE4" etc.), found by decoding the low ids.
  std::vector<TokenId> byte_token(256, kNoToken);
  for (TokenId id = 0; id < t->vocab_size() && id < 512; ++id) {
    DecodeState state;
    std::string out;
    t->append_token_bytes(id, state, out);
    if (out.size() == 1) byte_token[static_cast<unsigned char>(out[0])] = id;
  }
  REQUIRE(byte_token[0xE4] != kNoToken);
  StreamDecoder stream(*t);
  CHECK(stream.push(byte_token['a']) == "a");
  CHECK(stream.push(byte_token[0xE4]) == "");
  CHECK(stream.push(byte_token[0xB8]) == "");
  CHECK(stream.push(byte_token[0xAD]) == "\xE4\xB8\xAD");
  CHECK(stream.push(byte_token[0xF0]) == "");
  CHECK(stream.push(byte_token['b']) == "\xEF\xBF\xBD" "b");  // F0 then 'b': the F0 was not a character
  CHECK(stream.push(byte_token[0xE4]) == "");
  CHECK(stream.flush() == "\xEF\xBF\xBD");  // cut at the end
  CHECK(stream.push(byte_token['c']) == "c");  // flush started over
}
