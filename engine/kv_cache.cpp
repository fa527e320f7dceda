#include "engine/kv_cache.h"

#include "core/error.h"

namespace fc {

KVCacheManager::KVCacheManager(int num_blocks, int block_size, int max_blocks_per_seq)
    : num_blocks_(num_blocks), block_size_(block_size), max_blocks_per_seq_(max_blocks_per_seq) {
  if (num_blocks <= 0 || block_size <= 0 || max_blocks_per_seq <= 0) {
    fail("KV cache: invalid geometry ({} blocks of {} tokens, {} blocks per sequence)", num_blocks, block_size,
         max_blocks_per_seq);
  }
  free_.reserve(num_blocks);
  for (int b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

const KVCacheManager::Sequence& KVCacheManager::seq(int seq_id) const {
  if (seq_id < 0 || seq_id >= static_cast<int>(sequences_.size()) || !sequences_[seq_id].live) {
    fail("KV cache: no sequence {}", seq_id);
  }
  return sequences_[seq_id];
}

KVCacheManager::Sequence& KVCacheManager::seq(int seq_id) {
  return const_cast<Sequence&>(static_cast<const KVCacheManager*>(this)->seq(seq_id));
}

int KVCacheManager::create_sequence() {
  for (size_t i = 0; i < sequences_.size(); ++i) {
    if (!sequences_[i].live) {
      sequences_[i] = Sequence{true, 0, {}};
      return static_cast<int>(i);
    }
  }
  sequences_.push_back(Sequence{true, 0, {}});
  return static_cast<int>(sequences_.size() - 1);
}

void KVCacheManager::release_sequence(int seq_id) {
  Sequence& s = seq(seq_id);
  for (auto it = s.block_table.rbegin(); it != s.block_table.rend(); ++it) free_.push_back(*it);
  s = Sequence{};
}

void KVCacheManager::reserve(int seq_id, int new_length) {
  Sequence& s = seq(seq_id);
  const int needed = (new_length + block_size_ - 1) / block_size_;
  if (needed > max_blocks_per_seq_) {
    fail("sequence of {} tokens exceeds the context limit of {} tokens", new_length, max_tokens_per_seq());
  }
  const int more = needed - static_cast<int>(s.block_table.size());
  if (more <= 0) return;
  if (more > free_blocks()) {
    fail("KV cache exhausted: {} more blocks of {} tokens needed, {} free of {}; use a shorter prompt, fewer "
         "sequences or a larger KV pool",
         more, block_size_, free_blocks(), num_blocks_);
  }
  for (int i = 0; i < more; ++i) {
    s.block_table.push_back(free_.back());
    free_.pop_back();
  }
}

void KVCacheManager::set_length(int seq_id, int length) {
  Sequence& s = seq(seq_id);
  if (length < 0 || length > static_cast<int>(s.block_table.size()) * block_size_) {
    fail("KV cache: length {} of sequence {} exceeds its {} reserved blocks", length, seq_id, s.block_table.size());
  }
  s.length = length;
}

void KVCacheManager::truncate(int seq_id, int length) {
  Sequence& s = seq(seq_id);
  if (length < 0 || length > s.length) fail("KV cache: cannot truncate sequence {} to {} tokens", seq_id, length);
  s.length = length;
  const size_t keep = static_cast<size_t>((length + block_size_ - 1) / block_size_);
  while (s.block_table.size() > keep) {
    free_.push_back(s.block_table.back());
    s.block_table.pop_back();
  }
}

int KVCacheManager::length(int seq_id) const { return seq(seq_id).length; }

const std::vector<int32_t>& KVCacheManager::block_table(int seq_id) const { return seq(seq_id).block_table; }

int64_t KVCacheManager::slot(int seq_id, int position) const {
  const Sequence& s = seq(seq_id);
  return static_cast<int64_t>(s.block_table.at(position / block_size_)) * block_size_ + position % block_size_;
}

}  // namespace fc
