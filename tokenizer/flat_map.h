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
  // Reserves room for `count` keys; call before the first insert().
  void reserve(size_t count) {
    size_t capacity = 16;
    while (capacity < count * 2) capacity *= 2;
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
  }
  // Inserts key -> value (value >= 0); returns false (and keeps the old value) when the key is
  // already there.
  bool insert(std::string_view key, int32_t value) {
    if ((size_ + 1) * 2 > slots_.size()) rehash(slots_.empty() ? 16 : slots_.size() * 2);
    const uint64_t h = hash_bytes(key.data(), key.size());
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& slot = slots_[i];
      if (slot.value < 0) {
        slot = Slot{static_cast<uint32_t>(h >> 32), value, static_cast<uint32_t>(arena_.size()),
                    static_cast<uint32_t>(key.size())};
        arena_.append(key);
        ++size_;
        return true;
      }
      if (matches(slot, h, key)) return false;
    }
  }
  // The value of `key`, or -1.
  int32_t find(std::string_view key) const {
    if (slots_.empty()) return -1;
    const uint64_t h = hash_bytes(key.data(), key.size());
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.value < 0) return -1;
      if (matches(slot, h, key)) return slot.value;
    }
  }
  size_t size() const { return size_; }

 private:
  // Everything a probe needs is in the slot except the key bytes: one cache miss for the slot, one
  // for the bytes (which most mismatches never reach: the high hash bits and the length differ).
  struct Slot {
    uint32_t hash_high = 0;  // bits 32..63 of the hash (the low bits picked the slot)
    int32_t value = -1;      // -1: empty
    uint32_t offset = 0;     // key bytes in arena_
    uint32_t length = 0;
  };
  bool matches(const Slot& slot, uint64_t h, std::string_view key) const {
    return slot.hash_high == static_cast<uint32_t>(h >> 32) && slot.length == key.size() &&
           std::memcmp(arena_.data() + slot.offset, key.data(), key.size()) == 0;
  }
  void rehash(size_t capacity) {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
    for (const Slot& s : old) {
      if (s.value < 0) continue;
      const uint64_t h = hash_bytes(arena_.data() + s.offset, s.length);
      size_t i = h & mask_;
      while (slots_[i].value >= 0) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }

  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
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
    // Load factor up to 3/4: LLaMA 3's 280k merges fit 512k slots (8 MiB) rather than 16 MiB.
    size_t capacity = 16;
    while (capacity * 3 < count * 4) capacity *= 2;
    slots_.assign(capacity, Slot{kEmpty, {-1, -1}});
    mask_ = capacity - 1;
  }
  // Inserts or replaces: a pair listed twice keeps its last rank, as `tokenizers` (a HashMap built
  // from the merges list) does.
  void insert_or_assign(int32_t left, int32_t right, Merge merge) {
    if ((size_ + 1) * 4 > slots_.size() * 3) rehash(slots_.empty() ? 16 : slots_.size() * 2);
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
