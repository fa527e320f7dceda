// SentencePiece (tokenizer.model) against the library's own tools: a LLaMA 2-style model (BPE, byte
// fallback, split digits, identity normalization, whitespace kept) is trained at test time with
// Debian's spm_train; encoding is compared with spm_encode's output and decoding with the library's
// DecodeIds, and streaming decode with one-shot decode.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

#include <catch2/catch.hpp>
#include <sentencepiece_processor.h>

#include "tests/test_util.h"
#include "tests/tokenizer/tokenizer_test_util.h"
#include "tokenizer/chat.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/tokenizer.h"

using namespace fc;
using fc::test::printable;

namespace {

const std::string kDir = std::string(FC_BINARY_DIR) + "/tokenizer_test_files/spm";

// The corpus strings that fit on one line (spm_encode reads lines).
std::vector<std::string> single_line_corpus() {
  std::vector<std::string> out;
  for (const auto& s : fc::test::load_golden("corpus.json")) {
    const std::string text = s.get<std::string>();
    if (text.find_first_of("\r\n") == std::string::npos) out.push_back(text);
  }
  return out;
}

// Trains the model once; "" (after a WARN) when spm_train is not installed.
std::string spm_model_dir() {
  static const std::string dir = []() -> std::string {
    if (std::system("command -v spm_train > /dev/null 2>&1") != 0) return "";
    if (std::system(("mkdir -p " + kDir).c_str()) != 0) return "";
    std::ofstream input(kDir + "/train.txt", std::ios::binary);
    std::mt19937 rng(3);
    const char* words[] = {"the", "model", "reads", "tokens", "and", "writes", "text", "quickly", "on", "a",
                           "GPU", "with", "llama", "weights", "in", "memory", "of", "8", "billion", "parameters"};
    for (int line = 0; line < 3000; ++line) {
      const int n = 4 + rng() % 12;
      for (int w = 0; w < n; ++w) input << (w ? " " : "") << words[rng() % 20];
      input << (line % 7 == 0 ? " 2024." : ".") << "\n";
    }
    for (const std::string& s : single_line_corpus()) input << s << "\n";
    input.close();
    const std::string cmd = "spm_train --input=" + kDir + "/train.txt --model_prefix=" + kDir +
                            "/tokenizer --vocab_size=600 --model_type=bpe --byte_fallback=true "
                            "--split_digits=true --normalization_rule_name=identity "
                            "--remove_extra_whitespaces=false --add_dummy_prefix=true "
                            "--allow_whitespace_only_pieces=true --hard_vocab_limit=false --num_threads=1 "
                            "--unk_id=0 --bos_id=1 --eos_id=2 --minloglevel=2 > " + kDir + "/train.log 2>&1";
    if (std::system(cmd.c_str()) != 0) return "";
    std::ofstream config(kDir + "/tokenizer_config.json");
    config << R"({"bos_token": "<s>", "eos_token": "</s>", "chat_template": "{% for message in messages %})"
              R"({{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}{% endfor %}"})";
    return kDir;
  }();
  if (dir.empty()) WARN("skipped: spm_train (Debian package sentencepiece) is not installed or failed; see " << kDir);
  return dir;
}

std::vector<std::vector<int>> spm_encode_lines(const std::vector<std::string>& lines) {
  std::ofstream in(kDir + "/encode_in.txt", std::ios::binary);
  for (const auto& l : lines) in << l << "\n";
  in.close();
  const std::string cmd = "spm_encode --model=" + kDir + "/tokenizer.model --output_format=id < " + kDir +
                          "/encode_in.txt > " + kDir + "/encode_out.txt 2>/dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream out(kDir + "/encode_out.txt");
  std::vector<std::vector<int>> result;
  std::string line;
  while (std::getline(out, line)) {
    std::istringstream fields(line);
    std::vector<int> ids;
    int id;
    while (fields >> id) ids.push_back(id);
    result.push_back(ids);
  }
  return result;
}

std::string stream_decode(const Tokenizer& t, const std::vector<TokenId>& ids) {
  StreamDecoder stream(t);
  std::string out;
  for (TokenId id : ids) out += stream.push(id);
  return out + stream.flush();
}

}  // namespace

TEST_CASE("tokenizer: SentencePiece encode matches spm_encode and decode matches DecodeIds", "[tokenizer][spm]") {
  const std::string dir = spm_model_dir();
  if (dir.empty()) return;
  const auto tokenizer = load_tokenizer(dir);
  CHECK(std::string(tokenizer->kind()) == "sentencepiece");
  const auto& spm = dynamic_cast<const SpmTokenizer&>(*tokenizer).processor();
  CHECK(tokenizer->bos_id() == 1);
  CHECK(tokenizer->eos_ids() == std::vector<TokenId>{2});
  CHECK(tokenizer->eot_id() == kNoToken);

  const std::vector<std::string> corpus = single_line_corpus();
  const auto reference = spm_encode_lines(corpus);
  REQUIRE(reference.size() == corpus.size());
  for (size_t i = 0; i < corpus.size(); ++i) {
    INFO("text: \"" << printable(corpus[i]) << "\"");
    const auto ids = tokenizer->encode(corpus[i], /*add_bos=*/false, /*parse_special=*/false);
    CHECK(std::vector<int>(ids.begin(), ids.end()) == reference[i]);
    const auto ids_bos = tokenizer->encode(corpus[i], /*add_bos=*/true, /*parse_special=*/false);
    REQUIRE(!ids_bos.empty());
    CHECK(ids_bos[0] == 1);
    const std::string decoded = tokenizer->decode(ids_bos);
    CHECK(decoded == spm.DecodeIds(std::vector<int>(ids_bos.begin(), ids_bos.end())));
    CHECK(decoded == corpus[i]);  // identity normalization + byte fallback: lossless
    CHECK(stream_decode(*tokenizer, ids_bos) == decoded);
  }

  // Arbitrary id lists: control, unknown and byte pieces, cut characters, leading spaces.
  std::mt19937 rng(11);
  const int vocab = tokenizer->vocab_size();
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<int> ids(1 + rng() % 8);
    for (int& id : ids) id = trial % 2 ? static_cast<int>(rng() % vocab) : static_cast<int>(rng() % 300);
    const std::vector<TokenId> tids(ids.begin(), ids.end());
    INFO("ids " << fc::test::ids_to_string(tids));
    const std::string expected = spm.DecodeIds(ids);
    CHECK(printable(tokenizer->decode(tids)) == printable(expected));
    CHECK(stream_decode(*tokenizer, tids) == expected);
  }
}

TEST_CASE("tokenizer: SentencePiece parse_special splits on control pieces", "[tokenizer][spm]") {
  const std::string dir = spm_model_dir();
  if (dir.empty()) return;
  const auto t = load_tokenizer(dir + "/tokenizer.model");
  const auto hi = t->encode("hi there", false);
  std::vector<TokenId> expected = {1};
  expected.insert(expected.end(), hi.begin(), hi.end());
  expected.push_back(2);
  CHECK(t->encode("<s>hi there</s>", false, true) == expected);
  CHECK(t->encode("<s>hi there</s>", false, false) != expected);
  CHECK(t->token_id("<s>") == 1);
  CHECK(t->token_id("no such piece") == kNoToken);
  CHECK(t->is_special(2));
  CHECK_FALSE(t->is_special(hi[0]));
}

TEST_CASE("tokenizer: LLaMA 2 INST chat on a SentencePiece model", "[tokenizer][spm][chat]") {
  const std::string dir = spm_model_dir();
  if (dir.empty()) return;
  const auto t = load_tokenizer(dir);
  REQUIRE(detect_chat_format(*t) == ChatFormat::kLlama2);
  const std::vector<ChatMessage> messages = {
      {"system", "Be brief."}, {"user", " What is 2+2? "}, {"assistant", "4"}, {"user", "And 3+3?"}};
  const ChatPrompt p = format_chat(*t, ChatFormat::kLlama2, messages, {2});
  // Meta's reference strips the system block + user text as a whole: the user's leading space stays.
  CHECK(p.text == "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n What is 2+2? [/INST] 4 </s><s>[INST] And 3+3? [/INST]");
  // Meta's reference: each turn encoded on its own, BOS/EOS as ids.
  std::vector<TokenId> expected = {1};
  for (TokenId id : t->encode("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n What is 2+2? [/INST] 4 ", false, false)) {
    expected.push_back(id);
  }
  expected.push_back(2);
  expected.push_back(1);
  for (TokenId id : t->encode("[INST] And 3+3? [/INST]", false, false)) expected.push_back(id);
  CHECK(p.ids == expected);
  CHECK(p.stop_ids == std::vector<TokenId>{2});
  CHECK_THROWS_WITH(format_chat(*t, ChatFormat::kLlama2, {{"assistant", "hi"}}, {}),
                    Catch::Contains("alternating from user"));
  CHECK_THROWS_WITH(format_chat(*t, ChatFormat::kLlama2, {{"user", "a"}, {"assistant", "b"}}, {}),
                    Catch::Contains("last LLaMA 2 message must be the user's"));
}

TEST_CASE("tokenizer: a Metaspace tokenizer.json beside tokenizer.model falls back to SentencePiece", "[tokenizer][spm]") {
  const std::string dir = spm_model_dir();
  if (dir.empty()) return;
  const std::string both = kDir + "/with_json";
  REQUIRE(std::system(("mkdir -p " + both + " && cp " + dir + "/tokenizer.model " + both + "/").c_str()) == 0);
  // The shape of LLaMA 2's tokenizer.json: BPE with a Metaspace-style normalizer and byte fallback.
  std::ofstream(both + "/tokenizer.json") << R"({"normalizer": {"type": "Sequence", "normalizers": []},
    "pre_tokenizer": null, "decoder": {"type": "Sequence", "decoders": []},
    "model": {"type": "BPE", "vocab": {}, "merges": [], "byte_fallback": true}})";
  const auto t = load_tokenizer(both);
  CHECK(std::string(t->kind()) == "sentencepiece");
  // Without tokenizer.model the same file is refused with the reason.
  CHECK_THROWS_WITH(load_tokenizer(both + "/tokenizer.json"),
                    Catch::Contains("pre-tokenizer is not byte-level") && Catch::Contains("no tokenizer.model"));
  std::ofstream(both + "/broken.model") << "not a protobuf";
  CHECK_THROWS_WITH(load_tokenizer(both + "/broken.model"), Catch::Contains("cannot load SentencePiece model"));
}
