#include <catch2/catch.hpp>

#include <set>

#include "core/error.h"
#include "engine/kv_cache.h"

using namespace fc;
using Catch::Matchers::Contains;

TEST_CASE("KV cache: blocks are reserved as sequences grow and freed on release", "[kv]") {
  KVCacheManager kv(/*num_blocks=*/8, /*block_size=*/4, /*max_blocks_per_seq=*/5);
  const int a = kv.create_sequence();
  kv.reserve(a, 4);  // exactly one block
  CHECK(kv.block_table(a).size() == 1);
  kv.reserve(a, 5);  // one past the boundary: a second block
  CHECK(kv.block_table(a).size() == 2);
  kv.set_length(a, 5);
  CHECK(kv.free_blocks() == 6);
  const int b = kv.create_sequence();
  kv.reserve(b, 12);
  CHECK(kv.free_blocks() == 3);
  // Slots map positions through the block table.
  CHECK(kv.slot(a, 4) == int64_t(kv.block_table(a)[1]) * 4);
  CHECK(kv.slot(b, 7) == int64_t(kv.block_table(b)[1]) * 4 + 3);
  std::set<int32_t> used(kv.block_table(a).begin(), kv.block_table(a).end());
  for (int32_t blk : kv.block_table(b)) CHECK(used.insert(blk).second);  // no block shared
  kv.release_sequence(a);
  CHECK(kv.free_blocks() == 5);
  CHECK_THROWS_WITH(kv.length(a), Contains("no sequence"));
}

TEST_CASE("KV cache: exhaustion and context limit are clear errors that change nothing", "[kv]") {
  KVCacheManager kv(4, 16, 3);
  const int a = kv.create_sequence();
  CHECK_THROWS_WITH(kv.reserve(a, 49), Contains("exceeds the context limit of 48 tokens"));
  kv.reserve(a, 48);
  const int b = kv.create_sequence();
  CHECK_THROWS_WITH(kv.reserve(b, 17), Contains("KV cache exhausted: 2 more blocks of 16 tokens needed, 1 free of 4"));
  CHECK(kv.block_table(b).empty());
  CHECK(kv.free_blocks() == 1);
}

TEST_CASE("KV cache: truncate frees whole blocks past the new length", "[kv]") {
  KVCacheManager kv(6, 4, 6);
  const int a = kv.create_sequence();
  kv.reserve(a, 17);
  kv.set_length(a, 17);
  CHECK(kv.block_table(a).size() == 5);
  kv.truncate(a, 8);
  CHECK(kv.block_table(a).size() == 2);
  CHECK(kv.length(a) == 8);
  CHECK(kv.free_blocks() == 4);
  CHECK_THROWS(kv.truncate(a, 9));
}
