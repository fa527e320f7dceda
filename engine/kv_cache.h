// KV cache bookkeeping shared by every backend: a pool of fixed-size blocks and one block table per
// sequence (the storage itself belongs to the backend; layout in kernels/attention.h).
#pragma once
#include <cstdint>
#include <vector>

namespace fc {

class KVCacheManager {
 public:
  // `max_blocks_per_seq` bounds one sequence (its context limit / block_size, rounded up).
  KVCacheManager(int num_blocks, int block_size, int max_blocks_per_seq);

  int create_sequence();             // a new empty sequence; returns its id
  void release_sequence(int seq_id);  // frees its blocks; the id may be reused
  // Makes room for `new_length` tokens. Throws fc::Error (nothing changed) when the pool or the
  // sequence's context limit cannot hold them.
  void reserve(int seq_id, int new_length);
  void set_length(int seq_id, int length);  // tokens whose K/V are in the cache (<= reserved)
  void truncate(int seq_id, int length);    // forget tokens from `length` on, freeing whole blocks

  int length(int seq_id) const;
  const std::vector<int32_t>& block_table(int seq_id) const;
  int64_t slot(int seq_id, int position) const;  // physical_block * block_size + offset

  int block_size() const { return block_size_; }
  int num_blocks() const { return num_blocks_; }
  int free_blocks() const { return static_cast<int>(free_.size()); }
  int max_blocks_per_seq() const { return max_blocks_per_seq_; }
  int max_tokens_per_seq() const { return max_blocks_per_seq_ * block_size_; }

 private:
  struct Sequence {
    bool live = false;
    int length = 0;
    std::vector<int32_t> block_table;
  };
  const Sequence& seq(int seq_id) const;
  Sequence& seq(int seq_id);

  int num_blocks_;
  int block_size_;
  int max_blocks_per_seq_;
  std::vector<int32_t> free_;  // a stack: the most recently freed block is reused first
  std::vector<Sequence> sequences_;
};

}  // namespace fc
