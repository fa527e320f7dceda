#include "tokenizer/bpe_model.h"

#include <atomic>
#include <climits>
#include <string>
#include <cstdio>
#include <queue>

namespace fc {
namespace {

// Words up to this many symbols use the rescan merge; the heap wins only on long words. Measured on
// LLaMA 3 text the crossover is far above typical word lengths, so the value matters little.
constexpr size_t kSmallWord = 48;

// Merge results of recent words, per thread (encode() is const and may run on several threads at
// once): rare words and identifiers repeat within a text, and their merge loop costs far more than a
// lookup. Direct-mapped and bounded, like the 10k-word cache of `tokenizers`' BPE.
struct WordCache {
  static constexpr size_t kEntries = 4096;
  static constexpr size_t kMaxWordBytes = 64;
  struct Entry {
    uint64_t hash = 0;
    uint64_t owner = 0;  // BpeModel::serial_ of the model that filled it; 0: empty
    std::string word;
    std::vector<TokenId> ids;
  };
  std::vector<Entry> entries{kEntries};
};

std::atomic<uint64_t> next_serial{1};

}  // namespace

BpeModel::BpeModel() : serial_(next_serial.fetch_add(1)) {}

void BpeModel::reserve(size_t tokens, size_t merges) {
  vocab_.reserve(tokens);
  merges_.reserve(merges);
}

bool BpeModel::add_token(std::string_view bytes, TokenId id) { return vocab_.insert(bytes, id); }

void BpeModel::add_merge(TokenId left, TokenId right, TokenId merged) {
  merges_.insert_or_assign(left, right, MergeMap::Merge{next_rank_++, merged});
}

void BpeModel::finish(const Options& options) {
  options_ = options;
  for (int b = 0; b < 256; ++b) {
    const char byte = static_cast<char>(b);
    byte_token_[b] = vocab_.find(std::string_view(&byte, 1));
    if (byte_token_[b] == kNoToken && options_.byte_fallback) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      byte_token_[b] = vocab_.find(name);
    }
  }
}

void BpeModel::initial_symbols(std::string_view word, std::vector<TokenId>& symbols) const {
  symbols.clear();
  bool previous_unk = false;
  for (unsigned char b : word) {
    const TokenId id = byte_token_[b];
    if (id != kNoToken) {
      symbols.push_back(id);
      previous_unk = false;
    } else if (options_.unk != kNoToken) {
      if (!(options_.fuse_unk && previous_unk)) symbols.push_back(options_.unk);
      previous_unk = true;
    }
    // else: `tokenizers` drops a character it has no token for when no unk_token is set; so do we.
  }
}

void BpeModel::merge_small(std::vector<TokenId>& symbols) const {
  // ranks[i] / merged[i]: the merge of symbols[i] and symbols[i + 1] (INT_MAX: none).
  const size_t n0 = symbols.size();
  if (n0 < 2) return;
  TokenId* ids = symbols.data();
  int32_t ranks[kSmallWord];
  TokenId merged[kSmallWord];
  std::vector<int32_t> ranks_heap;
  std::vector<TokenId> merged_heap;
  int32_t* rank = ranks;
  TokenId* into = merged;
  if (n0 > kSmallWord) {  // callers keep words short; stay correct if one does not
    ranks_heap.resize(n0);
    merged_heap.resize(n0);
    rank = ranks_heap.data();
    into = merged_heap.data();
  }
  auto lookup = [&](size_t i) {
    const MergeMap::Merge* m = merges_.find(ids[i], ids[i + 1]);
    rank[i] = m ? m->rank : INT_MAX;
    into[i] = m ? m->merged : kNoToken;
  };
  size_t n = n0;
  for (size_t i = 0; i + 1 < n; ++i) lookup(i);
  while (n > 1) {
    size_t best = 0;
    for (size_t i = 1; i + 1 < n; ++i) {
      if (rank[i] < rank[best]) best = i;  // strict: the leftmost of equal ranks wins
    }
    if (rank[best] == INT_MAX) break;
    ids[best] = into[best];
    for (size_t i = best + 1; i + 1 < n; ++i) {
      ids[i] = ids[i + 1];
      rank[i] = rank[i + 1];
      into[i] = into[i + 1];
    }
    --n;
    if (best > 0) lookup(best - 1);
    if (best + 1 < n) lookup(best);
  }
  symbols.resize(n);
}

void BpeModel::merge_large(std::vector<TokenId>& symbols) const {
  const int32_t n = static_cast<int32_t>(symbols.size());
  if (n < 2) return;
  struct Node {
    TokenId id;  // kNoToken once merged into its left neighbour
    int32_t prev, next;
  };
  std::vector<Node> nodes(n);
  for (int32_t i = 0; i < n; ++i) nodes[i] = Node{symbols[i], i - 1, i + 1 < n ? i + 1 : -1};
  // Candidate merges ordered by (rank, position): `tokenizers` pops the same order from its BinaryHeap.
  // Entries go stale when a neighbour changes; a popped entry is used only if its pair still has it.
  using Candidate = std::pair<int32_t, int32_t>;  // (rank, position of the left symbol)
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto push = [&](int32_t left) {
    const int32_t right = nodes[left].next;
    if (right < 0) return;
    const MergeMap::Merge* m = merges_.find(nodes[left].id, nodes[right].id);
    if (m) heap.emplace(m->rank, left);
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const auto [rank, left] = heap.top();
    heap.pop();
    if (nodes[left].id == kNoToken) continue;
    const int32_t right = nodes[left].next;
    if (right < 0) continue;
    const MergeMap::Merge* m = merges_.find(nodes[left].id, nodes[right].id);
    if (m == nullptr || m->rank != rank) continue;  // stale: ranks are unique per pair
    nodes[left].id = m->merged;
    nodes[left].next = nodes[right].next;
    if (nodes[right].next >= 0) nodes[nodes[right].next].prev = left;
    nodes[right].id = kNoToken;
    if (nodes[left].prev >= 0) push(nodes[left].prev);
    push(left);
  }
  symbols.clear();
  for (int32_t i = 0; i >= 0; i = nodes[i].next) symbols.push_back(nodes[i].id);
}

void BpeModel::encode_word(std::string_view word, std::vector<TokenId>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    const TokenId whole = vocab_.find(word);
    if (whole != kNoToken) {
      out.push_back(whole);
      return;
    }
  }
  WordCache::Entry* slot = nullptr;
  uint64_t hash = 0;
  if (word.size() <= WordCache::kMaxWordBytes) {
    thread_local WordCache cache;
    hash = hash_bytes(word.data(), word.size());
    slot = &cache.entries[hash & (WordCache::kEntries - 1)];
    if (slot->owner == serial_ && slot->hash == hash && slot->word == word) {
      out.insert(out.end(), slot->ids.begin(), slot->ids.end());
      return;
    }
  }
  thread_local std::vector<TokenId> symbols;
  initial_symbols(word, symbols);
  if (symbols.size() <= kSmallWord) {
    merge_small(symbols);
  } else {
    merge_large(symbols);
  }
  out.insert(out.end(), symbols.begin(), symbols.end());
  if (slot != nullptr) {
    slot->owner = serial_;
    slot->hash = hash;
    slot->word.assign(word);
    slot->ids.assign(symbols.begin(), symbols.end());
  }
}

}  // namespace fc
