// Internals of fc::attention_prefill (kernels/attention_prefill.cuh) shared by its translation units:
// attention_prefill.cu (the host dispatch), attention_prefill_mma.cu (the mma.sync kernel, sm_80+) and
// attention_prefill_wgmma.cu (the wgmma kernel, sm_90a). Both kernels run the same algorithm and start
// the same way; what they share is here.
//
// Work split. A CTA owns one kv head and a tile of kTileQ "packed rows" of one sequence; packed row
// p = qi * group + g is query qi of the sequence for query head kv_head * group + g. Packing the GQA
// group into the M dimension (as FlashInfer does) means every K/V tile read from the cache serves all
// group query heads, so L2 -> SM traffic is 1/group of a head-per-CTA kernel, and a short chunk (few
// queries) still fills the tile.
//
// Pipeline. K and V tiles of kTileKV keys are gathered row by row through the block table with 16-byte
// cp.async into a kStages-deep buffer: later tiles are in flight while tile j is computed. The
// block-table entries for tile j+kStages are read into a register during tile j and published to shared
// memory at its end, so no load ever waits on a dependent global read. Keys past the causal limit are
// zero-filled (never read), which keeps NaN-poisoned or stale cache slots out of P V.
//
// Scheduling. The grid is 1-D over (query tile, kv head) with kv heads fastest; each CTA finds its
// sequence by scanning cu_seqlens_q with one warp. Within a sequence tiles run last-first: the
// latest queries see the most keys, so the heavy CTAs start first and the tail is short.
#pragma once
#include <cstdint>

#include <cuda_runtime.h>

#include "kernels/attention_common.cuh"
#include "kernels/attention_prefill.cuh"

namespace fc::attn {

// Shared memory bytes of a prefill CTA: the Q tile, K and V stages, the stages' key offsets, the tile
// lookup result (8 bytes, padded to 16) and up to 1 KB lost to aligning the base to 1024 bytes.
constexpr int prefill_smem_bytes(int q_bytes, int kv_tile_bytes, int stages, int tile_kv) {
  return q_bytes + 2 * stages * kv_tile_bytes + stages * tile_kv * 8 + 16 + 1024;
}

// The CTA's shared memory, carved as prefill_smem_bytes counts it. T: the kernel's traits (kQBytes,
// kKVTileBytes, kStages, kTileKV).
template <class T>
struct PrefillSmem {
  uint8_t* q;
  uint8_t* k;    // [stage] K tiles
  uint8_t* v;    // [stage] V tiles
  int64_t* off;  // [stage][key] pool offsets of the stage's keys, -1 past the causal limit
  int* seq;      // find_tile's result
  int* tile;

  __device__ __forceinline__ explicit PrefillSmem(uint8_t* raw) {
    // 1024-byte aligned base: the mma.sync kernel's ldmatrix addresses XOR the chunk index into the
    // address bits, and the wgmma kernel's 128B-swizzle atoms must be 1024-byte aligned.
    q = raw + ((1024 - (smem_addr(raw) & 1023)) & 1023);
    k = q + T::kQBytes;
    v = k + T::kStages * T::kKVTileBytes;
    off = reinterpret_cast<int64_t*>(v + T::kStages * T::kKVTileBytes);
    seq = reinterpret_cast<int*>(off + T::kStages * T::kTileKV);
    tile = seq + 1;
  }
};

// Which (sequence, query tile) blockIdx's tile_linear is: warp 0 scans cu_seqlens_q 32 sequences at a
// time. Writes seq = -1 for the padding CTAs past the last tile.
__device__ __forceinline__ void find_tile(const AttentionParams& p, int tile_q, int tile_linear, int lane,
                                          int* seq_out, int* tile_out) {
  int remaining = tile_linear;
  int seq = -1, tile = 0;
  for (int base = 0; base < p.num_seqs; base += 32) {
    const int s = base + lane;
    int tiles = 0;
    if (s < p.num_seqs) tiles = (((p.cu_seqlens_q[s + 1] - p.cu_seqlens_q[s]) * p.group) + tile_q - 1) / tile_q;
    int inclusive = tiles;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int v = __shfl_up_sync(0xffffffffu, inclusive, o);
      if (lane >= o) inclusive += v;
    }
    const int total = __shfl_sync(0xffffffffu, inclusive, 31);
    if (remaining < total) {
      const unsigned hit = __ballot_sync(0xffffffffu, inclusive > remaining);
      const int src = __ffs(hit) - 1;
      const int exclusive = __shfl_sync(0xffffffffu, inclusive - tiles, src);
      seq = base + src;
      tile = remaining - exclusive;
      break;
    }
    remaining -= total;
  }
  if (lane == 0) {
    *seq_out = seq;
    *tile_out = tile;
  }
}

// The CTA's sequence (warp 0 looks it up, every thread reads it), -1 for a padding CTA.
template <class T>
__device__ __forceinline__ int prefill_find_seq(const AttentionParams& p, const PrefillSmem<T>& smem) {
  if (threadIdx.x / 32 == 0) find_tile(p, T::kTileQ, blockIdx.x / p.kv_heads, threadIdx.x % 32, smem.seq, smem.tile);
  __syncthreads();
  return *smem.seq;
}

// The prologue both kernels share: where the CTA's tile sits (its packed rows, their queries, the
// causal key range) and the cp.async gathers of its Q tile and K/V tiles through the block table.
// The kernels differ in their tile layouts, so the copies take this thread's first destination offset
// and the bytes between two sweeps of the CTA (kRowsPerPass rows further on).
template <class T>
struct PrefillTile {
  const AttentionParams& p;
  int kv_head;
  int q_begin;     // the sequence's first row in q / out
  int row0;        // the tile's first packed row
  int rows_valid;  // packed rows of the tile that exist (the sequence's last tile may be partial)
  int prefix;      // keys before the sequence's first query
  int n_kv;        // keys the tile needs: [0, n_kv), the causal range of its last row
  int n_kv_tiles;
  const int32_t* block_table;
  int64_t head_offset;  // the kv head's offset inside a block

  // tile_rank: the seq's tile counted from its last (find_tile's result; the last tile runs first).
  __device__ __forceinline__ PrefillTile(const AttentionParams& params, int seq, int tile_rank, int kv_head_)
      : p(params), kv_head(kv_head_) {
    const int group = p.group;
    q_begin = p.cu_seqlens_q[seq];
    const int n_q = p.cu_seqlens_q[seq + 1] - q_begin;
    const int packed_rows = n_q * group;
    row0 = ((packed_rows + T::kTileQ - 1) / T::kTileQ - 1 - tile_rank) * T::kTileQ;
    rows_valid = min(T::kTileQ, packed_rows - row0);
    prefix = p.seq_lens[seq] - n_q;
    n_kv = prefix + (row0 + rows_valid - 1) / group + 1;
    n_kv_tiles = (n_kv + T::kTileKV - 1) / T::kTileKV;
    block_table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
    head_offset = static_cast<int64_t>(kv_head) * p.kv_head_stride;
  }

  // Packed row r of the tile: query row (of q / out) and query head.
  __device__ __forceinline__ void row_head(int r, int* row, int* head) const {
    const int qi = (row0 + r) / p.group;
    *row = q_begin + qi;
    *head = kv_head * p.group + (row0 + r - qi * p.group);
  }

  // Element offset of `key` in the pools, -1 past the causal limit (zero-filled, never read).
  __device__ __forceinline__ int64_t key_offset(int key, int physical_block) const {
    if (key >= n_kv) return -1;
    const int in_block = key - (key / p.block_size) * p.block_size;
    return static_cast<int64_t>(physical_block) * p.kv_block_stride + head_offset +
           static_cast<int64_t>(in_block) * T::kHeadDim;
  }
  __device__ __forceinline__ int load_block_id(int key) const {
    return key < n_kv ? __ldg(block_table + key / p.block_size) : 0;
  }

  // Q rows copy_row + i * kRowsPerPass (chunk copy_chunk) -> q_base + dst + i * pass_bytes; rows past
  // the end are zero-filled.
  __device__ __forceinline__ void load_q(uint32_t q_base, int copy_row, int copy_chunk, uint32_t dst,
                                         uint32_t pass_bytes) const {
#pragma unroll
    for (int i = 0; i < T::kTileQ / T::kRowsPerPass; ++i) {
      const int r = copy_row + i * T::kRowsPerPass;
      const bool valid = r < rows_valid;
      const bf16* src = p.q;
      if (valid) {
        int row, head;
        row_head(r, &row, &head);
        src = p.q + static_cast<int64_t>(row) * p.q_row_stride + head * T::kHeadDim + copy_chunk * 8;
      }
      cp_async_16(q_base + dst + i * pass_bytes, src, valid);
    }
  }

  // Pool offsets of the keys of KV tiles 0 .. kStages-1 (one thread per key).
  __device__ __forceinline__ void init_offsets(int64_t* smem_off, int tid) const {
    if (tid < T::kTileKV) {
#pragma unroll
      for (int t = 0; t < T::kStages; ++t) {
        smem_off[t * T::kTileKV + tid] = key_offset(t * T::kTileKV + tid, load_block_id(t * T::kTileKV + tid));
      }
    }
  }

  // K and V of the keys whose offsets `offsets` holds -> k_base / v_base, laid out like load_q's.
  __device__ __forceinline__ void load_kv(uint32_t k_base, uint32_t v_base, const int64_t* offsets, int copy_row,
                                          int copy_chunk, uint32_t dst, uint32_t pass_bytes) const {
#pragma unroll
    for (int i = 0; i < T::kTileKV / T::kRowsPerPass; ++i) {
      const int64_t off = offsets[copy_row + i * T::kRowsPerPass];
      const bool valid = off >= 0;
      const int64_t src = valid ? off + copy_chunk * 8 : 0;
      cp_async_16(k_base + dst + i * pass_bytes, p.k_pool + src, valid);
      cp_async_16(v_base + dst + i * pass_bytes, p.v_pool + src, valid);
    }
  }
};

// Grid and launch of either kernel: one CTA per (query tile, kv head).
template <class T, class Kernel>
void launch_prefill_kernel(Kernel kernel, const AttentionParams& params, int total_q, cudaStream_t stream) {
  // Upper bound on the number of query tiles: each sequence adds at most one partial tile.
  const int64_t tiles = (static_cast<int64_t>(total_q) * params.group + T::kTileQ - 1) / T::kTileQ + params.num_seqs;
  const int64_t blocks = tiles * params.kv_heads;
  if (blocks > 0x7fffffff) fail("attention_prefill: {} CTAs exceed the grid limit", blocks);
  kernel<<<static_cast<unsigned>(blocks), T::kThreads, T::kSmemBytes, stream>>>(params);
  CUDA_CHECK_LAUNCH();
}

// Per kernel (explicitly instantiated for head_dim 64 and 128 in its .cu).
template <int kHeadDim>
void launch_prefill_mma_sync(const AttentionParams& params, int total_q, cudaStream_t stream);
template <int kHeadDim>
void launch_prefill_wgmma(const AttentionParams& params, int total_q, cudaStream_t stream);
// Whether the wgmma kernel can run on the current GPU with this binary (asked once per process).
template <int kHeadDim>
bool prefill_wgmma_usable();

}  // namespace fc::attn
