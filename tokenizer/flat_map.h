// Open-addressing hash tables for the BPE hot path: byte string -> token id, and (left id, right id) ->
// merge. Built once at load, read-only afterwards (safe to share between threads). std::unordered_map
// costs a pointer chase and an allocation per entry; these keep keys in one arena and probe linearly.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace fc {

// A fast 64-bit hash of a short byte string (8 bytes per multiply); not for untrusted DoS settings.
inline uint64_t hash_bytes(const char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xFF51AFD7ED558CCDull);
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    uint64_t v = 0;
    std::memcpy(&v, p, n);
    h = (h ^ v) * 0x94D049BB133111EBull;
    h ^= h >> 29;
  }
  h *= 0xD6E8FEB86659FD93ull;
  return h ^ (h >> 32);
}

class StringIdMap {
 public:
  // Reserves room for `count` keys; call before insert().
  void reserve(size_t count) {
    size_t capacity = 16;
    while (capacity < count * 2) capacity *= 2;
    slots_.assign(capacity, Slot{0, -1});
    mask_ = capacity - 1;
    entries_.reserve(count);
  }
  // Inserts key -> value; returns false (and keeps the old value) when the key is already there.
  bool insert(std::string_view key, int32_t value) {
    if (slots_.empty() || (entries_.size() + 1) * 2 > slots_.size()) grow();
    const uint64_t h = hash_bytes(key.data(), key.size());
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& slot = slots_[i];
      if (slot.entry < 0) {
        slot = Slot{static_cast<uint32_t>(h), static_cast<int32_t>(entries_.size())};
        entries_.push_back(Entry{static_cast<uint32_t>(arena_.size()), static_cast<uint32_t>(key.size()), value});
        arena_.append(key);
        return true;
      }
      if (slot.hash == static_cast<uint32_t>(h) && key_of(slot.entry) == key) return false;
    }
  }
  // The value of `key`, or -1.
  int32_t find(std::string_view key) const {
    if (slots_.empty()) return -1;
    const uint64_t h = hash_bytes(key.data(), key.size());
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.entry < 0) return -1;
      if (slot.hash == static_cast<uint32_t>(h) && key_of(slot.entry) == key) return entries_[slot.entry].value;
    }
  }
  size_t size() const { return entries_.size(); }

 private:
  struct Slot {
    uint32_t hash;  // low 32 bits of the key's hash: most mismatches are rejected without a memcmp
    int32_t entry;  // index into entries_, -1 when empty
  };
  struct Entry {
    uint32_t offset, length;
    int32_t value;
  };
  std::string_view key_of(int32_t entry) const {
    const Entry& e = entries_[entry];
    return std::string_view(arena_.data() + e.offset, e.length);
  }
  void grow() {
    const size_t capacity = slots_.empty() ? 16 : slots_.size() * 2;
    slots_.assign(capacity, Slot{0, -1});
    mask_ = capacity - 1;
    for (size_t e = 0; e < entries_.size(); ++e) {
      const std::string_view key = key_of(static_cast<int32_t>(e));
      const uint64_t h = hash_bytes(key.data(), key.size());
      size_t i = h & mask_;
      while (slots_[i].entry >= 0) i = (i + 1) & mask_;
      slots_[i] = Slot{static_cast<uint32_t>(h), static_cast<int32_t>(e)};
    }
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  std::vector<Entry> entries_;
  std::string arena_;
};

// (left id, right id) -> (rank, merged id) for BPE merges.
class MergeMap {
 public:
  struct Merge {
    int32_t rank;    // position in the merges list: lower merges first
    int32_t merged;  // id of the token left+right
  };
  void reserve(size_t count) {
    size_t capacity = 16;
    while (capacity < count * 2) capacity *= 2;
    slots_.assign(capacity, Slot{kEmpty, {-1, -1}});
    mask_ = capacity - 1;
  }
  // Inserts or replaces: a pair listed twice keeps its last rank, as `tokenizers` (a HashMap built
  // from the merges list) does.
  void insert_or_assign(int32_t left, int32_t right, Merge merge) {
    if ((size_ + 1) * 2 > slots_.size()) rehash(slots_.empty() ? 16 : slots_.size() * 2);
    const uint64_t key = pack(left, right);
    for (size_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == kEmpty) {
        slots_[i] = Slot{key, merge};
        ++size_;
        return;
      }
      if (slots_[i].key == key) {
        slots_[i].merge = merge;
        return;
      }
    }
  }
  // The merge of (left, right), or nullptr.
  const Merge* find(int32_t left, int32_t right) const {
    if (slots_.empty()) return nullptr;
    const uint64_t key = pack(left, right);
    for (size_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].key == key) return &slots_[i].merge;
      if (slots_[i].key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  struct Slot {
    uint64_t key;
    Merge merge;
  };
  static uint64_t pack(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }
  static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    return x;
  }
  void rehash(size_t capacity) {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(capacity, Slot{kEmpty, {-1, -1}});
    mask_ = capacity - 1;
    for (const Slot& s : old) {
      if (s.key == kEmpty) continue;
      size_t i = mix(s.key) & mask_;
      while (slots_[i].key != kEmpty) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace fc
