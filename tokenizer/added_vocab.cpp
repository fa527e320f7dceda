#include "tokenizer/added_vocab.h"

#include <algorithm>
#include <cstring>
#include <unordered_set>

#include "tokenizer/utf8.h"

namespace fc {

void AddedVocab::Trie::insert(std::string_view content, int32_t token) {
  int32_t node = 0;
  for (unsigned char c : content) {
    auto& children = nodes[node].children;
    auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(c, int32_t{-1}));
    if (it == children.end() || it->first != c) {
      const int32_t child = static_cast<int32_t>(nodes.size());
      it = children.insert(it, {c, child});
      nodes.emplace_back();  // invalidates `children`; `it` is not used again
      node = child;
    } else {
      node = it->second;
    }
  }
  if (nodes[node].token < 0) nodes[node].token = token;  // a duplicate content keeps the first
  first_byte[static_cast<unsigned char>(content[0])] = true;
}

int32_t AddedVocab::Trie::longest_at(std::string_view text, size_t pos, size_t* end) const {
  int32_t node = 0;
  int32_t best = -1;
  for (size_t k = pos; k < text.size(); ++k) {
    const auto& children = nodes[node].children;
    const unsigned char c = static_cast<unsigned char>(text[k]);
    auto it = std::lower_bound(children.begin(), children.end(), std::make_pair(c, int32_t{-1}));
    if (it == children.end() || it->first != c) break;
    node = it->second;
    if (nodes[node].token >= 0) {
      best = nodes[node].token;
      *end = k + 1;
    }
  }
  return best;
}

AddedVocab::AddedVocab()
    : word_char_(R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}])", Regex::Syntax::kPcre2),
      space_char_(R"(\p{White_Space})", Regex::Syntax::kPcre2) {}

void AddedVocab::build(std::vector<AddedToken> tokens) {
  tokens_.clear();
  raw_trie_ = Trie{};
  normalized_trie_ = Trie{};
  // `tokenizers` builds its matchers from the special tokens first, then the others, each in file
  // order; with leftmost-longest matching only identical contents could care about that order.
  std::unordered_set<std::string> seen;
  for (int pass = 0; pass < 2; ++pass) {
    for (const AddedToken& t : tokens) {
      if (t.content.empty() || t.special != (pass == 0) || !seen.insert(t.content).second) continue;
      const auto index = static_cast<int32_t>(tokens_.size());
      tokens_.push_back(t);
      (t.normalized ? normalized_trie_ : raw_trie_).insert(t.content, index);
    }
  }
}

void AddedVocab::split(std::string_view text, bool parse_special, std::vector<Piece>& out) const {
  out.clear();
  if (text.empty()) return;
  if (normalized_trie_.empty()) {
    find_matches(text, 0, raw_trie_, parse_special, out);
    return;
  }
  std::vector<Piece> first;
  find_matches(text, 0, raw_trie_, parse_special, first);
  for (const Piece& p : first) {
    if (p.id != kNoToken) {
      out.push_back(p);
    } else {
      find_matches(text.substr(p.begin, p.end - p.begin), p.begin, normalized_trie_, parse_special, out);
    }
  }
}

void AddedVocab::find_matches(std::string_view s, size_t base, const Trie& trie, bool parse_special,
                              std::vector<Piece>& out) const {
  if (s.empty()) return;
  if (trie.empty()) {
    out.push_back({base, base + s.size(), kNoToken});
    return;
  }
  size_t start_offset = 0;
  size_t pos = 0;
  while (pos < s.size()) {
    if (!trie.first_byte[static_cast<unsigned char>(s[pos])]) {
      ++pos;
      continue;
    }
    size_t stop = 0;
    const int32_t index = trie.longest_at(s, pos, &stop);
    if (index < 0) {
      ++pos;
      continue;
    }
    size_t start = pos;
    pos = stop;  // the matcher moves past every match, used or not
    const AddedToken& token = tokens_[index];
    if (!parse_special && token.special) continue;
    if (token.single_word) {
      const bool start_space = start == 0 || !ends_with_word(s.substr(0, start));
      const bool stop_space = stop == s.size() || !starts_with_word(s.substr(stop));
      if (!start_space || !stop_space) continue;
    }
    if (token.lstrip) start = std::max(trailing_space_start(s.substr(0, start)), start_offset);
    if (token.rstrip) stop += leading_space_end(s.substr(stop));
    if (start_offset < start) out.push_back({base + start_offset, base + start, kNoToken});
    out.push_back({base + start, base + stop, token.id});
    start_offset = stop;
  }
  if (start_offset != s.size()) out.push_back({base + start_offset, base + s.size(), kNoToken});
}

bool AddedVocab::ends_with_word(std::string_view text) const {
  if (text.empty()) return false;
  size_t last = text.size() - 1;
  while (last > 0 && (static_cast<unsigned char>(text[last]) & 0xC0) == 0x80) --last;
  return word_char_.matches_at(text, last);
}

bool AddedVocab::starts_with_word(std::string_view text) const {
  return !text.empty() && word_char_.matches_at(text, 0);
}

size_t AddedVocab::trailing_space_start(std::string_view text) const {
  size_t start = text.size();
  while (start > 0) {
    size_t prev = start - 1;
    while (prev > 0 && (static_cast<unsigned char>(text[prev]) & 0xC0) == 0x80) --prev;
    if (!space_char_.matches_at(text, prev)) break;
    start = prev;
  }
  return start;
}

size_t AddedVocab::leading_space_end(std::string_view text) const {
  size_t end = 0;
  while (end < text.size() && space_char_.matches_at(text, end)) {
    size_t subpart;
    bool incomplete;
    end += utf8_sequence_length(text.substr(end), &subpart, &incomplete);
  }
  return end;
}

}  // namespace fc
