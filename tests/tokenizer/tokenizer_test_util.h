// Shared by the tokenizer tests: the LLaMA 3.1 tokenizer (loaded once), golden files, printable text.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"

namespace fc::test {

// FC_SOURCE_DIR/.cache/llama3_1 (scripts/setup.sh), or nullptr after a WARN saying how to get it.
const Tokenizer* llama3_tokenizer();
std::string llama3_dir();

// A golden file of tests/data/tokenizer.
nlohmann::json load_golden(const std::string& name);

// `text` with control and non-ASCII bytes escaped, for failure messages.
std::string printable(const std::string& text);
std::string ids_to_string(const std::vector<TokenId>& ids);

}  // namespace fc::test
