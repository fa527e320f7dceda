// The BPE model of `tokenizers` (models::bpe::BPE) over raw bytes: a pre-token's bytes start as one
// symbol per byte and the lowest-ranked adjacent pair is merged until no pair has a merge; with
// ignore_merges (LLaMA 3) a pre-token that is itself in the vocabulary is emitted whole first.
#pragma once
#include <array>
#include <string_view>
#include <vector>

#include "tokenizer/flat_map.h"
#include "tokenizer/tokenizer.h"

namespace fc {

class BpeModel {
 public:
  struct Options {
    bool ignore_merges = false;
    TokenId unk = kNoToken;  // unk_token's id; a byte with no token becomes it (or is dropped, as in
                             // `tokenizers`, when there is none)
    bool fuse_unk = false;   // consecutive unknown bytes become one unk
    bool byte_fallback = false;  // a byte with no token becomes "<0xAB>"
  };

  BpeModel();
  void reserve(size_t tokens, size_t merges);
  // A vocabulary entry as raw bytes; returns false when those bytes were already taken.
  bool add_token(std::string_view bytes, TokenId id);
  // The next merge in rank order; left+right must be in the vocabulary as `merged`.
  void add_merge(TokenId left, TokenId right, TokenId merged);
  void finish(const Options& options);

  // Id of a vocabulary entry given as raw bytes, or kNoToken.
  TokenId find(std::string_view bytes) const { return vocab_.find(bytes); }
  size_t merge_count() const { return merges_.size(); }

  // Appends the ids of one pre-token (raw bytes).
  void encode_word(std::string_view word, std::vector<TokenId>& out) const;

  // The merge loop alone, by two algorithms that must agree (exposed for the tests): a rescan of a
  // small array (fast for the short words that make up text) and a heap over a linked list (for long
  // words, n log n).
  void merge_small(std::vector<TokenId>& symbols) const;
  void merge_large(std::vector<TokenId>& symbols) const;

 private:
  // Initial symbols of a word: one per byte, after unk/byte-fallback handling.
  void initial_symbols(std::string_view word, std::vector<TokenId>& symbols) const;

  uint64_t serial_;  // tells this model's entries in the per-thread word cache from another model's
  StringIdMap vocab_;
  MergeMap merges_;
  int32_t next_rank_ = 0;
  std::array<TokenId, 256> byte_token_{};  // id of each single byte, kNoToken when none
  Options options_;
};

}  // namespace fc
