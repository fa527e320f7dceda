#include "tokenizer/tokenizer.h"

#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mapped_file.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/spm_tokenizer.h"
#include "tokenizer/tokenizer_config.h"

namespace fc {
namespace {

bool is_directory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string parent_dir(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

nlohmann::json parse_json_file(const std::string& path) {
  try {
    return nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
}

}  // namespace

void Tokenizer::check_id(TokenId id) const {
  if (id < 0 || id >= vocab_size()) fail("token id {} out of range (vocab size {})", id, vocab_size());
}

void Tokenizer::append_decoded(TokenId id, bool skip_special, DecodeState& state, std::string& out) const {
  if (skip_special && is_special(id)) {
    std::string hidden;
    append_token_bytes(id, state, hidden);
    return;
  }
  append_token_bytes(id, state, out);
}

std::string Tokenizer::decode(const std::vector<TokenId>& ids, bool skip_special) const {
  std::string bytes;
  bytes.reserve(ids.size() * 4);
  DecodeState state;
  for (TokenId id : ids) append_decoded(id, skip_special, state, bytes);
  std::string out;
  out.reserve(bytes.size());
  append_repaired_utf8(bytes, utf8_repair(), /*at_end=*/true, out);
  return out;
}

std::string StreamDecoder::push(TokenId id) {
  tokenizer_->append_decoded(id, skip_special_, state_, pending_);
  std::string out;
  const size_t used = append_repaired_utf8(pending_, tokenizer_->utf8_repair(), /*at_end=*/false, out);
  pending_.erase(0, used);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  append_repaired_utf8(pending_, tokenizer_->utf8_repair(), /*at_end=*/true, out);
  reset();
  return out;
}

void StreamDecoder::reset() {
  pending_.clear();
  state_ = DecodeState{};
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir_or_file) {
  std::string dir, json_path, model_path;
  if (is_directory(model_dir_or_file)) {
    dir = model_dir_or_file;
    json_path = join_path(dir, "tokenizer.json");
    model_path = join_path(dir, "tokenizer.model");
    if (!file_exists(json_path)) json_path.clear();
    if (!file_exists(model_path)) model_path.clear();
    if (json_path.empty() && model_path.empty()) {
      fail("{} has neither tokenizer.json nor tokenizer.model", model_dir_or_file);
    }
  } else if (file_exists(model_dir_or_file)) {
    dir = parent_dir(model_dir_or_file);
    (ends_with(model_dir_or_file, ".json") ? json_path : model_path) = model_dir_or_file;
  } else {
    fail("tokenizer path {} does not exist", model_dir_or_file);
  }
  const TokenizerConfig config = read_tokenizer_config(join_path(dir, "tokenizer_config.json"));

  if (!json_path.empty()) {
    const nlohmann::json j = parse_json_file(json_path);
    std::string reason;
    try {
      reason = bpe_unsupported_reason(j);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not a tokenizers file: {}", json_path, e.what());
    }
    if (reason.empty()) return std::make_unique<BpeTokenizer>(j, config, json_path);
    // LLaMA 2-style tokenizer.json files (Metaspace + byte fallback) describe the SentencePiece model
    // that tokenizer.model holds; use that when it is there.
    if (model_path.empty()) fail("{}: {} and there is no tokenizer.model beside it", json_path, reason);
  }
  return std::make_unique<SpmTokenizer>(model_path, config);
}

}  // namespace fc
