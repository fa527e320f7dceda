// Text <-> token ids. Two implementations behind one interface, picked by load_tokenizer() from what a
// model directory holds: byte-level BPE from tokenizer.json (LLaMA 3.x; ids identical to Hugging Face
// `tokenizers`) and SentencePiece from tokenizer.model (LLaMA 2, TinyLlama, Mistral; libsentencepiece).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/utf8.h"

namespace fc {

using TokenId = int32_t;
constexpr TokenId kNoToken = -1;

// Ids of the tokens that frame text, as the tokenizer files name them (kNoToken: none).
struct SpecialTokens {
  TokenId bos = kNoToken;     // begin of sequence: <|begin_of_text|>, <s>
  std::vector<TokenId> eos;   // end of sequence as tokenizer_config.json / the model file names it
  TokenId eot = kNoToken;     // end of turn: <|eot_id|>
};

// Where decoding stands between two tokens. SentencePiece drops the space of the first visible piece
// (the "dummy prefix" its encoder added); this remembers whether that moment has passed.
struct DecodeState {
  bool output_started = false;      // some bytes were produced
  bool leading_space_open = true;   // the next visible piece may still lose its leading space
  bool leading_space_seen = false;  // the previous visible piece lost one
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // UTF-8 text -> ids. Throws fc::Error "invalid UTF-8 at byte N of the input" on ill-formed text.
  // add_bos: add the tokens the tokenizer puts around one sequence (Hugging Face's
  // add_special_tokens=True: for LLaMA, BOS in front). parse_special: the text of a special token
  // ("<|eot_id|>") becomes its id, as in `tokenizers`; false encodes such text as plain characters.
  virtual std::vector<TokenId> encode(std::string_view text, bool add_bos, bool parse_special = true) const = 0;

  // ids -> text. Throws fc::Error for an id outside [0, vocab_size()). Bytes that do not form UTF-8
  // (a sequence cut inside a character) become U+FFFD, as the reference decoder does. skip_special
  // leaves out special tokens (BOS, <|eot_id|>, ...), like `tokenizers`' skip_special_tokens.
  std::string decode(const std::vector<TokenId>& ids, bool skip_special = false) const;

  // Number of ids (largest id + 1), added tokens included: 128256 for LLaMA 3.
  virtual int32_t vocab_size() const = 0;
  const SpecialTokens& special() const { return special_; }
  TokenId bos_id() const { return special_.bos; }
  const std::vector<TokenId>& eos_ids() const { return special_.eos; }
  TokenId eot_id() const { return special_.eot; }

  // Id of a token given as the vocabulary spells it ("<|eot_id|>", "Ġthe", "▁the"), or kNoToken.
  virtual TokenId token_id(std::string_view token) const = 0;
  // The vocabulary's spelling of a token (diagnostics); throws for an id out of range.
  virtual std::string token_text(TokenId id) const = 0;
  // True for control tokens (BOS, EOS, headers, reserved): never produced from plain text.
  virtual bool is_special(TokenId id) const = 0;
  // "bpe" (tokenizer.json) or "sentencepiece" (tokenizer.model).
  virtual const char* kind() const = 0;

  // The Jinja chat_template of tokenizer_config.json, "" when there is none.
  const std::string& chat_template() const { return chat_template_; }

  // Decoding one token at a time (decode() and StreamDecoder both use it): appends the raw bytes of
  // `id`, which need not be whole characters. Throws for an id out of range.
  virtual void append_token_bytes(TokenId id, DecodeState& state, std::string& out) const = 0;
  // append_token_bytes, or nothing for a special token when skip_special (the state still advances:
  // SentencePiece's leading-space rule counts control pieces).
  void append_decoded(TokenId id, bool skip_special, DecodeState& state, std::string& out) const;
  // How ill-formed bytes in the decoded output are replaced.
  virtual Utf8Repair utf8_repair() const = 0;

  // Throws fc::Error "token id N out of range (vocab size V)" unless 0 <= id < vocab_size().
  void check_id(TokenId id) const;

 protected:
  SpecialTokens special_;
  std::string chat_template_;
};

// Loads a tokenizer from a model directory or from a tokenizer.json / tokenizer.model file. A directory
// is searched for tokenizer.json (used when it is a byte-level BPE) and then tokenizer.model.
// tokenizer_config.json beside it, when present, gives bos/eos and the chat template.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& model_dir_or_file);

// Detokenizer for generation: feed ids one at a time, get back only complete UTF-8. A character whose
// bytes are split across tokens is held back until its last byte arrives; the concatenation of every
// push() and the final flush() equals decode() of all the ids.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = false)
      : tokenizer_(&tokenizer), skip_special_(skip_special) {}
  // Adds one id; returns the text it completed (often empty while a character is unfinished).
  std::string push(TokenId id);
  // Returns what is held back (an unfinished character becomes U+FFFD) and starts over.
  std::string flush();
  void reset();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  DecodeState state_;
  std::string pending_;  // bytes not emitted yet: the start of an unfinished character
};

}  // namespace fc
