// Added tokens of tokenizer.json (special tokens such as <|eot_id|> and user-added words), found in the
// raw text before pre-tokenization the way `tokenizers`' AddedVocabulary does: leftmost-longest,
// non-overlapping, with the single_word / lstrip / rstrip flags; tokens with normalized=false are
// matched on the whole text first, those with normalized=true on what is left (there is no normalizer
// in the files we load, so "normalized" text is the text itself).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/regex.h"
#include "tokenizer/tokenizer.h"

namespace fc {

struct AddedToken {
  std::string content;
  TokenId id = kNoToken;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

class AddedVocab {
 public:
  // A run of the input: an added token (id set) or plain text to pre-tokenize (id == kNoToken).
  struct Piece {
    size_t begin, end;  // byte offsets into the text
    TokenId id;
  };

  AddedVocab();
  // Registers the tokens in the order tokenizer.json lists them; empty contents are ignored.
  void build(std::vector<AddedToken> tokens);

  // Cuts `text` into added tokens and plain runs, in order. parse_special == false leaves special
  // tokens in the text (tokenizers' encode_special_tokens = true); plain added tokens still match.
  void split(std::string_view text, bool parse_special, std::vector<Piece>& out) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  bool empty() const { return tokens_.empty(); }

 private:
  // A byte trie of token contents. Small (a few hundred tokens), so children are kept in sorted
  // vectors; first_byte_ lets the scan skip text that cannot start a token.
  struct Trie {
    struct Node {
      std::vector<std::pair<unsigned char, int32_t>> children;
      int32_t token = -1;  // index into tokens_ when a token ends here
    };
    std::vector<Node> nodes{1};
    std::array<bool, 256> first_byte{};
    bool empty() const { return nodes.size() == 1; }
    void insert(std::string_view content, int32_t token);
    // Longest token starting at text[pos]: its index, *end set; -1 when none.
    int32_t longest_at(std::string_view text, size_t pos, size_t* end) const;
  };

  // AddedVocabulary::find_matches on one sentence; appends pieces offset by `base`.
  void find_matches(std::string_view sentence, size_t base, const Trie& trie, bool parse_special,
                    std::vector<Piece>& out) const;
  bool ends_with_word(std::string_view text) const;
  bool starts_with_word(std::string_view text) const;
  size_t trailing_space_start(std::string_view text) const;
  size_t leading_space_end(std::string_view text) const;

  std::vector<AddedToken> tokens_;
  Trie raw_trie_;         // normalized == false
  Trie normalized_trie_;  // normalized == true
  // Rust regex's \w (Alphabetic, marks, decimal numbers, connector punctuation, joiners) and \s
  // (White_Space), which `tokenizers` uses for single_word and lstrip/rstrip.
  Regex word_char_;
  Regex space_char_;
};

}  // namespace fc
