// Our ids against Hugging Face `tokenizers` 0.23 on tests/data/tokenizer/corpus.json (golden files
// made by scripts/make_tokenizer_golden.py on the GPU machine): with and without BOS, with special
// tokens parsed and as plain text; decode of the ids gives the text back; streaming decode equals
// one-shot decode; decoding arbitrary id lists matches `tokenizers`' U+FFFD placement.
#include <atomic>
#include <thread>

#include <catch2/catch.hpp>

#include "tests/test_util.h"
#include "tests/tokenizer/tokenizer_test_util.h"
#include "tokenizer/tokenizer.h"

using namespace fc;
using fc::test::ids_to_string;
using fc::test::printable;

namespace {

std::string stream_decode(const Tokenizer& tokenizer, const std::vector<TokenId>& ids, bool skip_special = false) {
  StreamDecoder stream(tokenizer, skip_special);
  std::string out;
  for (TokenId id : ids) {
    const std::string piece = stream.push(id);
    // Every chunk handed out is whole UTF-8: a character split across tokens is never printed broken.
    CHECK(find_invalid_utf8(piece) == std::string_view::npos);
    out += piece;
  }
  return out + stream.flush();
}

struct Expectations {
  bool round_trip;  // decode(encode(text)) == text (not for pre-tokenizers that add or remove text)
};

void check_golden(const Tokenizer& tokenizer, const std::string& golden_name, Expectations expect) {
  const nlohmann::json golden = fc::test::load_golden(golden_name);
  REQUIRE(golden.at("cases").size() > 200);
  CHECK(tokenizer.vocab_size() == golden.at("vocab_size").get<int>());
  size_t mismatches = 0;
  for (const auto& c : golden.at("cases")) {
    const std::string text = c.at("text").get<std::string>();
    INFO("text: \"" << printable(text) << "\"");
    const auto ids = c.at("ids").get<std::vector<TokenId>>();
    const auto ids_bos = c.at("ids_bos").get<std::vector<TokenId>>();
    const auto ids_plain = c.at("ids_plain").get<std::vector<TokenId>>();
    const auto got = tokenizer.encode(text, /*add_bos=*/false);
    const auto got_bos = tokenizer.encode(text, /*add_bos=*/true);
    const auto got_plain = tokenizer.encode(text, /*add_bos=*/false, /*parse_special=*/false);
    INFO("expected " << ids_to_string(ids) << "\n     got " << ids_to_string(got));
    CHECK(got == ids);
    CHECK(got_bos == ids_bos);
    CHECK(got_plain == ids_plain);
    mismatches += (got != ids) + (got_bos != ids_bos) + (got_plain != ids_plain);
    if (expect.round_trip) {
      CHECK(tokenizer.decode(ids) == text);
      CHECK(tokenizer.decode(ids_plain) == text);
      // Special tokens left out: BOS disappears, text spelled like a special token stays.
      std::vector<TokenId> bos_plain = {tokenizer.bos_id()};
      bos_plain.insert(bos_plain.end(), ids_plain.begin(), ids_plain.end());
      CHECK(tokenizer.decode(bos_plain, /*skip_special=*/true) == text);
      CHECK(stream_decode(tokenizer, bos_plain, /*skip_special=*/true) == text);
    }
    CHECK(stream_decode(tokenizer, ids_bos) == tokenizer.decode(ids_bos));
  }
  CHECK(mismatches == 0);
  for (const auto& c : golden.at("decode_cases")) {
    const auto ids = c.at("ids").get<std::vector<TokenId>>();
    const std::string expected = c.at("text").get<std::string>();
    INFO("ids " << ids_to_string(ids) << " expected \"" << printable(expected) << "\"");
    const std::string got = tokenizer.decode(ids);
    CHECK(printable(got) == printable(expected));
    CHECK(stream_decode(tokenizer, ids) == got);
  }
}

}  // namespace

TEST_CASE("tokenizer: LLaMA 3.1 tokenizer matches HF tokenizers on the golden corpus", "[tokenizer][golden]") {
  const Tokenizer* tokenizer = fc::test::llama3_tokenizer();
  if (!tokenizer) return;
  CHECK(std::string(tokenizer->kind()) == "bpe");
  check_golden(*tokenizer, "llama3_1.golden.json", {/*round_trip=*/true});
}

TEST_CASE("tokenizer: mini_a (GPT-2 ByteLevel, added-token flags, template suffix) matches HF", "[tokenizer][golden]") {
  const auto tokenizer = load_tokenizer(fc::test::data_path("tokenizer/mini_a.tokenizer.json"));
  // add_prefix_space puts a space in front of every piece: the text does not come back unchanged,
  // in `tokenizers` either.
  check_golden(*tokenizer, "mini_a.golden.json", {/*round_trip=*/false});
}

TEST_CASE("tokenizer: mini_b (Split behaviours, invert, literal and lookahead patterns) matches HF", "[tokenizer][golden]") {
  const auto tokenizer = load_tokenizer(fc::test::data_path("tokenizer/mini_b.tokenizer.json"));
  // "--" is a Removed delimiter: it does not come back.
  check_golden(*tokenizer, "mini_b.golden.json", {/*round_trip=*/false});
}

TEST_CASE("tokenizer: encode is safe to call from several threads at once", "[tokenizer][golden]") {
  // encode() is const; its scratch (PCRE2 match data, merge buffers, the word cache) is per thread.
  const auto mini = load_tokenizer(fc::test::data_path("tokenizer/mini_a.tokenizer.json"));
  const Tokenizer* llama = fc::test::llama3_tokenizer();
  const Tokenizer& t = llama ? *llama : *mini;
  const nlohmann::json golden = fc::test::load_golden(llama ? "llama3_1.golden.json" : "mini_a.golden.json");
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      for (int round = 0; round < 5; ++round) {
        for (size_t i = w; i < golden["cases"].size(); i += 2) {
          const auto& c = golden["cases"][i];
          if (t.encode(c["text"].get<std::string>(), true) != c["ids_bos"].get<std::vector<TokenId>>()) ++mismatches;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(mismatches.load() == 0);
}
