#include "tests/tokenizer/tokenizer_test_util.h"

#include <cstdio>

#include <catch2/catch.hpp>

#include "core/mapped_file.h"
#include "tests/test_util.h"

namespace fc::test {

std::string llama3_dir() { return std::string(FC_SOURCE_DIR) + "/.cache/llama3_1"; }

const Tokenizer* llama3_tokenizer() {
  static std::unique_ptr<Tokenizer> tokenizer = []() -> std::unique_ptr<Tokenizer> {
    if (!file_exists(join_path(llama3_dir(), "tokenizer.json"))) return nullptr;
    return load_tokenizer(llama3_dir());
  }();
  if (!tokenizer) WARN("skipped: " << llama3_dir() << "/tokenizer.json is absent (run scripts/setup.sh)");
  return tokenizer.get();
}

nlohmann::json load_golden(const std::string& name) {
  return nlohmann::json::parse(read_text_file(data_path("tokenizer/" + name)));
}

std::string printable(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02X", c);
      out += buf;
    }
  }
  return out.size() > 300 ? out.substr(0, 300) + "..." : out;
}

std::string ids_to_string(const std::vector<TokenId>& ids) {
  std::string out = "[";
  for (size_t i = 0; i < ids.size() && i < 64; ++i) out += (i ? ", " : "") + std::to_string(ids[i]);
  return out + (ids.size() > 64 ? ", ...]" : "]");
}

}  // namespace fc::test
