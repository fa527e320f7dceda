// The parts of tokenizer_config.json (transformers' file beside tokenizer.json) the tokenizer uses.
#pragma once
#include <string>

namespace fc {

struct TokenizerConfig {
  bool found = false;          // the file exists
  std::string bos_token;       // "" when absent or null
  std::string eos_token;
  std::string chat_template;   // the default template ("" when absent)
};

// Reads `path`; a missing file gives found == false, a malformed one throws fc::Error naming it.
TokenizerConfig read_tokenizer_config(const std::string& path);

}  // namespace fc
