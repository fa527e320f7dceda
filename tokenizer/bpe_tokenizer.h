// Byte-level BPE loaded from a Hugging Face tokenizer.json (LLaMA 3.x, and GPT-2-style files): added
// tokens, then the pre-tokenizer (PCRE2), then the BPE model, then the post-processor's special tokens;
// decoding is the ByteLevel decoder. Built from the file's contents: nothing about LLaMA 3 is assumed.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/added_vocab.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_config.h"

namespace fc {

// Why this tokenizer.json is not a byte-level BPE we can load ("" when it is).
std::string bpe_unsupported_reason(const nlohmann::json& tokenizer_json);

class BpeTokenizer final : public Tokenizer {
 public:
  // `tokenizer_json` is the parsed file, `path` its name for messages. Throws fc::Error on anything
  // unsupported or inconsistent (a merge naming a token that is not in the vocabulary, ...).
  BpeTokenizer(const nlohmann::json& tokenizer_json, const TokenizerConfig& config, const std::string& path);

  std::vector<TokenId> encode(std::string_view text, bool add_bos, bool parse_special = true) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  TokenId token_id(std::string_view token) const override;
  std::string token_text(TokenId id) const override;
  bool is_special(TokenId id) const override;
  const char* kind() const override { return "bpe"; }
  void append_token_bytes(TokenId id, DecodeState& state, std::string& out) const override;
  Utf8Repair utf8_repair() const override { return Utf8Repair::kMaximalSubpart; }

  // The tokens the post-processor puts before / after one sequence when add_bos is set.
  const std::vector<TokenId>& prefix_ids() const { return prefix_; }
  const std::vector<TokenId>& suffix_ids() const { return suffix_; }

 private:
  void load_vocab(const nlohmann::json& model);
  void load_merges(const nlohmann::json& model);
  void load_added_tokens(const nlohmann::json& added_tokens);
  void load_post_processor(const nlohmann::json& post_processor);
  void set_special_ids(const TokenizerConfig& config);
  // Stores the spelling (and decoded bytes) of `id`.
  void set_token(TokenId id, std::string_view text);
  std::string_view bytes_of(TokenId id) const {
    return std::string_view(bytes_arena_).substr(bytes_offset_[id], bytes_offset_[id + 1] - bytes_offset_[id]);
  }

  std::string path_;
  BpeModel model_;
  PreTokenizer pre_tokenizer_;
  AddedVocab added_;
  std::vector<TokenId> prefix_, suffix_;
  int32_t vocab_size_ = 0;
  int32_t model_vocab_count_ = 0;            // entries in model.vocab
  StringIdMap text_to_id_;                   // spelling -> id: model vocabulary, then added tokens
  std::vector<std::string> text_;            // spelling of each id ("" for a hole in the id range)
  std::vector<uint8_t> present_, special_flag_;
  // Decoded bytes of every id, in one arena (filled after loading).
  std::string bytes_arena_;
  std::vector<uint32_t> bytes_offset_;
};

}  // namespace fc
