#include "tokenizer/tokenizer_config.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"

namespace fc {
namespace {

// bos_token / eos_token are a string, null, or (older files) {"content": "...", ...}.
std::string token_field(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content")) return it->at("content").get<std::string>();
  fail("{} must be a string or an object with 'content'", key);
}

}  // namespace

TokenizerConfig read_tokenizer_config(const std::string& path) {
  TokenizerConfig out;
  if (!file_exists(path)) return out;
  out.found = true;
  try {
    const nlohmann::json config = nlohmann::json::parse(read_text_file(path));
    out.bos_token = token_field(config, "bos_token");
    out.eos_token = token_field(config, "eos_token");
    auto it = config.find("chat_template");
    if (it != config.end() && it->is_string()) {
      out.chat_template = it->get<std::string>();
    } else if (it != config.end() && it->is_array()) {
      // Newer files list named templates; "default" is the one for plain chat.
      for (const auto& entry : *it) {
        if (entry.value("name", "") == "default") out.chat_template = entry.value("template", "");
      }
    }
  } catch (const nlohmann::json::exception& e) {
    fail("{}: {}", path, e.what());
  } catch (const Error& e) {
    fail("{}: {}", path, e.what());
  }
  return out;
}

}  // namespace fc
