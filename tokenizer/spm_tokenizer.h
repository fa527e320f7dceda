// SentencePiece (tokenizer.model: LLaMA 2, TinyLlama, Mistral) through libsentencepiece. Encoding is
// the library's; decoding is done here piece by piece, following the library's rules (control pieces
// vanish, byte pieces join into characters, the first piece loses its dummy-prefix space), so that the
// streaming detokenizer and decode() share one implementation. The tests hold it to the library's
// own DecodeIds.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/added_vocab.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_config.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace fc {

class SpmTokenizer final : public Tokenizer {
 public:
  SpmTokenizer(const std::string& model_path, const TokenizerConfig& config);
  ~SpmTokenizer() override;

  // parse_special: the text of control pieces ("<s>", "</s>") becomes their id, and the text between
  // them is encoded as separate sentences (each with its dummy prefix), like transformers' legacy
  // LlamaTokenizer. SentencePiece itself never produces control pieces from text.
  std::vector<TokenId> encode(std::string_view text, bool add_bos, bool parse_special = true) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  TokenId token_id(std::string_view token) const override;
  std::string token_text(TokenId id) const override;
  bool is_special(TokenId id) const override;
  const char* kind() const override { return "sentencepiece"; }
  void append_token_bytes(TokenId id, DecodeState& state, std::string& out) const override;
  Utf8Repair utf8_repair() const override { return Utf8Repair::kPerByte; }

  // The library itself, for checks against it.
  const sentencepiece::SentencePieceProcessor& processor() const { return *processor_; }

 private:
  enum class PieceKind : uint8_t { kNormal, kControl, kUnknown, kByte };
  void encode_plain(std::string_view text, std::vector<TokenId>& out) const;

  std::string path_;
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
  int32_t vocab_size_ = 0;
  std::vector<PieceKind> kinds_;
  std::vector<std::string> surface_;  // normal: piece with U+2581 as ' '; byte: the byte; unknown: unk_surface
  std::vector<uint8_t> leading_space_;  // the piece starts with U+2581 (droppable at the start)
  bool strip_leading_space_ = true;   // add_dummy_prefix || remove_extra_whitespaces
  bool remove_extra_whitespaces_ = true;
  AddedVocab controls_;               // control pieces, matched in text when parse_special
};

}  // namespace fc
