// libFuzzer target: the tokenizer.json loader (tokenizer/bpe_tokenizer.cpp and the parts it builds:
// vocabulary, merges, added tokens, pre-tokenizer regexes, post-processor), as load_tokenizer() drives
// it. Anything but a working tokenizer or an fc::Error is a finding; a loaded one must encode text.
#include <cstddef>
#include <cstdint>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/tokenizer_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;  // load_tokenizer reports unparsable JSON first
  try {
    std::string reason;
    try {
      reason = fc::bpe_unsupported_reason(j);  // load_tokenizer turns json errors here into fc::Error
    } catch (const nlohmann::json::exception&) {
      return 0;
    }
    if (!reason.empty()) return 0;
    const fc::BpeTokenizer tokenizer(j, fc::TokenizerConfig{}, "tokenizer.json");
    const auto ids = tokenizer.encode("Hello world! 123 <|x|> \xc3\xa9t\xc3\xa9  \n\n", true);
    (void)tokenizer.decode(ids);
  } catch (const fc::Error&) {
  }
  return 0;
}
