// Causal GQA prefill over the paged KV cache: FlashAttention-2 on mma.sync m16n8k16 (bf16 -> fp32).
//
// Work split. A CTA owns one kv head and a tile of kTileQ "packed rows" of one sequence; packed row
// p = qi * group + g is query qi of the sequence for query head kv_head * group + g. Packing the GQA
// group into the M dimension (as FlashInfer does) means every K/V tile read from the cache serves all
// group query heads, so L2 -> SM traffic is 1/group of a head-per-CTA kernel, and a short chunk (few
// queries) still fills the tile. Each of the 4 warps owns 32 packed rows (two m16 tiles): two rows of
// fragments per B fragment halves the shared-memory traffic per MMA compared with 16 rows per warp,
// which on Hopper is what bounds an mma.sync kernel (ldmatrix bytes per FLOP).
//
// Pipeline. K and V tiles of kTileKV keys are gathered row by row through the block table with 16-byte
// cp.async into a 2-stage buffer: tile j+1 is in flight while tile j is computed. The block-table
// entries for tile j+2 are read into a register during tile j and published to shared memory at its
// end, so no load ever waits on a dependent global read. Keys past the causal limit are zero-filled
// (never read), which keeps NaN-poisoned or stale cache slots out of P V.
//
// Scheduling. The grid is 1-D over (query tile, kv head) with kv heads fastest; each CTA finds its
// sequence by scanning cu_seqlens_q with one warp. Within a sequence tiles run last-first: the
// latest queries see the most keys, so the heavy CTAs start first and the tail is short.
#include <cfloat>

#include "kernels/attention_common.cuh"
#include "kernels/attention_prefill.cuh"
#include "kernels/attention_wgmma.cuh"

namespace fc {
namespace {

using namespace fc::attn;

struct PrefillParams {
  const bf16* q;
  const bf16* k_pool;
  const bf16* v_pool;
  bf16* out;
  const int32_t* cu_seqlens_q;  // (num_seqs + 1)
  const int32_t* seq_lens;      // (num_seqs)
  const int32_t* block_tables;  // (num_seqs, max_blocks_per_seq)
  int64_t q_row_stride;         // elements
  int64_t out_row_stride;       // elements
  int64_t kv_block_stride;      // elements between physical blocks
  int64_t kv_head_stride;       // elements between kv heads inside a block
  int num_seqs;
  int max_blocks_per_seq;
  int block_size;
  int kv_heads;
  int group;         // q_heads / kv_heads
  float scale_log2;  // softmax scale * log2(e): exp(x * scale) = exp2(x * scale_log2)
};

template <int kHeadDim_>
struct PrefillTraits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kMTiles = 2;                     // m16 tiles per warp
  static constexpr int kTileQ = kWarps * kMTiles * 16;  // packed rows per CTA
  static constexpr int kTileKV = 64;                    // keys per pipeline stage
  static constexpr int kStages = 2;
  static constexpr int kChunks = kHeadDim / 8;       // 16-byte chunks per row
  static constexpr int kKSteps = kHeadDim / 16;      // k steps of S = Q K^T
  static constexpr int kSubKV = 32;                  // keys per softmax step (S registers)
  static constexpr int kSubNTiles = kSubKV / 8;      // n8 tiles of S
  static constexpr int kDTiles = kHeadDim / 8;       // n8 tiles of O
  static constexpr int kRowsPerPass = kThreads / kChunks;  // rows one cp.async sweep of the CTA covers

  static constexpr int kQBytes = kTileQ * kHeadDim * 2;
  static constexpr int kKVTileBytes = kTileKV * kHeadDim * 2;
  static constexpr int kOffsetBytes = kStages * kTileKV * 8;
  static constexpr int kRowBytes = kHeadDim * 2;
  // + tile lookup result (8 bytes, padded) + up to 1 KB lost to aligning the base.
  static constexpr int kSmemBytes = kQBytes + 2 * kStages * kKVTileBytes + kOffsetBytes + 16 + 1024;

  static_assert(kHeadDim == 64 || kHeadDim == 128, "head_dim 64 or 128");
  static_assert(kThreads % kChunks == 0 && kTileKV % kRowsPerPass == 0 && kTileQ % kRowsPerPass == 0,
                "cp.async sweeps must tile the Q and KV tiles exactly");
  static_assert(kTileKV <= kThreads, "one thread per key publishes the next tile's row offsets");
  static_assert(kRowsPerPass % 8 == 0, "a copy sweep keeps each thread's swizzle phase (row % 8)");
  static_assert(kTileKV % kSubKV == 0 && kSubKV % 16 == 0, "P V consumes keys 16 at a time");
  static_assert(kSmemBytes <= 113 * 1024, "two CTAs per SM must fit in Hopper's 227 KB");
};

// Which (sequence, query tile) blockIdx's tile_linear is: warp 0 scans cu_seqlens_q 32 sequences at a
// time. Writes seq = -1 for the padding CTAs past the last tile.
__device__ __forceinline__ void find_tile(const PrefillParams& p, int tile_q, int tile_linear, int lane,
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

template <class T>
__global__ void __launch_bounds__(T::kThreads, 2) attention_prefill_kernel(const __grid_constant__ PrefillParams p) {
  constexpr int D = T::kHeadDim;
  using Tile = SwizzledTile<D>;
  extern __shared__ __align__(128) uint8_t smem_raw[];
  // 1024-byte aligned base: the ldmatrix addresses below XOR the chunk index into the address bits.
  uint8_t* const smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
  uint8_t* const smem_q = smem;
  uint8_t* const smem_k = smem + T::kQBytes;
  uint8_t* const smem_v = smem_k + T::kStages * T::kKVTileBytes;
  int64_t* const smem_off = reinterpret_cast<int64_t*>(smem_v + T::kStages * T::kKVTileBytes);  // [stage][key]
  int* const s_seq = reinterpret_cast<int*>(smem_off + T::kStages * T::kTileKV);
  int* const s_tile = s_seq + 1;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int kv_head = blockIdx.x % p.kv_heads;
  if (warp == 0) find_tile(p, T::kTileQ, blockIdx.x / p.kv_heads, lane, s_seq, s_tile);
  __syncthreads();
  const int seq = *s_seq;
  if (seq < 0) return;

  const int group = p.group;
  const int q_begin = p.cu_seqlens_q[seq];
  const int n_q = p.cu_seqlens_q[seq + 1] - q_begin;
  const int seq_len = p.seq_lens[seq];
  const int packed_rows = n_q * group;
  const int tile = (packed_rows + T::kTileQ - 1) / T::kTileQ - 1 - *s_tile;  // last tile first
  const int row0 = tile * T::kTileQ;
  const int rows_valid = min(T::kTileQ, packed_rows - row0);
  const int prefix = seq_len - n_q;  // keys before the first query of the sequence
  const int min_qpos = prefix + row0 / group;
  const int max_qpos = prefix + (row0 + rows_valid - 1) / group;
  const int n_kv = max_qpos + 1;  // keys this tile needs: [0, max_qpos]
  const int n_kv_tiles = (n_kv + T::kTileKV - 1) / T::kTileKV;
  const int32_t* const block_table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
  const int64_t head_offset = static_cast<int64_t>(kv_head) * p.kv_head_stride;

  // Element offset of `key` in the pools, -1 past the causal limit (zero-filled, never read).
  auto key_offset = [&](int key, int physical_block) -> int64_t {
    if (key >= n_kv) return -1;
    const int in_block = key - (key / p.block_size) * p.block_size;
    return static_cast<int64_t>(physical_block) * p.kv_block_stride + head_offset +
           static_cast<int64_t>(in_block) * D;
  };
  auto load_block_id = [&](int key) -> int { return key < n_kv ? __ldg(block_table + key / p.block_size) : 0; };

  // ---- prologue: Q tile, row offsets of KV tiles 0 and 1, KV tile 0 ----
  const uint32_t q_base = smem_addr(smem_q);
  // This thread's cp.async slot: chunk tid % kChunks of rows tid / kChunks + i * kRowsPerPass.
  const uint32_t copy_offset = Tile::offset(tid / T::kChunks, tid % T::kChunks);
#pragma unroll
  for (int i = 0; i < T::kTileQ / T::kRowsPerPass; ++i) {
    const int r = tid / T::kChunks + i * T::kRowsPerPass, c = tid % T::kChunks;
    const bool valid = r < rows_valid;
    const bf16* src = p.q;
    if (valid) {
      const int qi = (row0 + r) / group;
      const int head = kv_head * group + (row0 + r - qi * group);
      src = p.q + static_cast<int64_t>(q_begin + qi) * p.q_row_stride + head * D + c * 8;
    }
    cp_async_16(q_base + copy_offset + i * T::kRowsPerPass * T::kRowBytes, src, valid);
  }
  if (tid < T::kTileKV) {
    smem_off[tid] = key_offset(tid, load_block_id(tid));
    smem_off[T::kTileKV + tid] = key_offset(T::kTileKV + tid, load_block_id(T::kTileKV + tid));
  }
  __syncthreads();

  auto load_kv_tile = [&](int stage) {
    const uint32_t k_base = smem_addr(smem_k + stage * T::kKVTileBytes);
    const uint32_t v_base = smem_addr(smem_v + stage * T::kKVTileBytes);
    const int64_t* offsets = smem_off + stage * T::kTileKV;
#pragma unroll
    for (int i = 0; i < T::kTileKV / T::kRowsPerPass; ++i) {
      const int r = tid / T::kChunks + i * T::kRowsPerPass, c = tid % T::kChunks;
      const int64_t off = offsets[r];
      const bool valid = off >= 0;
      const int64_t src = valid ? off + c * 8 : 0;
      const uint32_t dst = copy_offset + i * T::kRowsPerPass * T::kRowBytes;
      cp_async_16(k_base + dst, p.k_pool + src, valid);
      cp_async_16(v_base + dst, p.v_pool + src, valid);
    }
  };
  load_kv_tile(0);
  cp_async_commit();

  // ---- per-thread row state: rows warp*32 + mt*16 + lane/4 + 8h ----
  int qpos[T::kMTiles][2];
#pragma unroll
  for (int mt = 0; mt < T::kMTiles; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      // Rows past the end compute like the last valid row (finite, never written).
      const int r = min(warp * 32 + mt * 16 + lane / 4 + 8 * h, rows_valid - 1);
      qpos[mt][h] = prefix + (row0 + r) / group;
    }
  }
  float o[T::kMTiles][T::kDTiles][4];
  float row_max[T::kMTiles][2], row_sum[T::kMTiles][2];
#pragma unroll
  for (int mt = 0; mt < T::kMTiles; ++mt) {
#pragma unroll
    for (int dt = 0; dt < T::kDTiles; ++dt) o[mt][dt][0] = o[mt][dt][1] = o[mt][dt][2] = o[mt][dt][3] = 0.f;
    row_max[mt][0] = row_max[mt][1] = -INFINITY;
    row_sum[mt][0] = row_sum[mt][1] = 0.f;
  }
  const float scale_log2 = p.scale_log2;

  for (int j = 0; j < n_kv_tiles; ++j) {
    const int stage = j & 1;
    cp_async_wait<0>();
    __syncthreads();  // tile j is visible to all; everybody is done with the other stage
    if (j + 1 < n_kv_tiles) load_kv_tile(stage ^ 1);
    cp_async_commit();
    // Block ids of tile j+2, published at the end of this iteration into this stage's offset slots.
    const int next_key = (j + 2) * T::kTileKV + tid;
    int next_block = 0;
    if (tid < T::kTileKV) next_block = load_block_id(next_key);

    const int kv0 = j * T::kTileKV;
    // ldmatrix lane addresses (see SwizzledTile::lane_offset): Q rows warp*32 + lane%16, chunk bit lane/16;
    // K rows lane%8 + 8*(lane/16), chunk bit (lane/8)%2; V rows lane%8 + 8*((lane/8)%2), chunk bit lane/16.
    const uint32_t q_lane = opaque(q_base) + Tile::lane_offset(warp * 32 + lane % 16, lane / 16);
    const uint32_t k_lane =
        smem_addr(smem_k + stage * T::kKVTileBytes) + Tile::lane_offset(lane % 8 + (lane / 16) * 8, (lane / 8) % 2);
    const uint32_t v_lane =
        smem_addr(smem_v + stage * T::kKVTileBytes) + Tile::lane_offset(lane % 8 + ((lane / 8) % 2) * 8, lane / 16);

    // The 64-key tile is computed in two 32-key steps: S for 32 keys is 32 fp32 registers instead of
    // 64, which keeps the kernel under 255 registers without spills (O alone is 128).
#pragma unroll 1
    for (int sub = 0; sub < T::kTileKV / T::kSubKV; ++sub) {
      // S = Q K^T  (32 rows x kSubKV keys per warp)
      float s[T::kMTiles][T::kSubNTiles][4];
#pragma unroll
      for (int mt = 0; mt < T::kMTiles; ++mt)
#pragma unroll
        for (int nt = 0; nt < T::kSubNTiles; ++nt) s[mt][nt][0] = s[mt][nt][1] = s[mt][nt][2] = s[mt][nt][3] = 0.f;
#pragma unroll
      for (int kk = 0; kk < T::kKSteps; ++kk) {
        uint32_t a[T::kMTiles][4];
#pragma unroll
        for (int mt = 0; mt < T::kMTiles; ++mt) {
          ldmatrix_x4((q_lane ^ Tile::step_xor(kk)) + mt * 16 * T::kRowBytes, a[mt][0], a[mt][1], a[mt][2], a[mt][3]);
        }
#pragma unroll
        for (int np = 0; np < T::kSubNTiles / 2; ++np) {
          uint32_t b0, b1, b2, b3;
          ldmatrix_x4((k_lane ^ Tile::step_xor(kk)) + (sub * T::kSubKV + np * 16) * T::kRowBytes, b0, b1, b2, b3);
#pragma unroll
          for (int mt = 0; mt < T::kMTiles; ++mt) {
            mma_bf16_16816(s[mt][2 * np], a[mt], b0, b1);
            mma_bf16_16816(s[mt][2 * np + 1], a[mt], b2, b3);
          }
        }
      }

      // Causal mask, only on tiles that reach past the earliest query of the CTA.
      if (kv0 + (sub + 1) * T::kSubKV - 1 > min_qpos) {
#pragma unroll
        for (int mt = 0; mt < T::kMTiles; ++mt)
#pragma unroll
          for (int nt = 0; nt < T::kSubNTiles; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int key = kv0 + sub * T::kSubKV + nt * 8 + 2 * (lane % 4) + (e & 1);
              if (key > qpos[mt][e >> 1]) s[mt][nt][e] = -INFINITY;
            }
      }

      // Online softmax (base 2). A row whose keys are all masked so far keeps max -inf; it then uses 0
      // as its reference so that exp2(-inf - ref) = 0 rather than NaN.
#pragma unroll
      for (int mt = 0; mt < T::kMTiles; ++mt) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          float mx = -INFINITY;
#pragma unroll
          for (int nt = 0; nt < T::kSubNTiles; ++nt) mx = fmaxf(mx, fmaxf(s[mt][nt][2 * h], s[mt][nt][2 * h + 1]));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
          const float m_new = fmaxf(row_max[mt][h], mx * scale_log2);
          const float m_ref = m_new == -INFINITY ? 0.f : m_new;
          const float alpha = exp2_approx(row_max[mt][h] - m_ref);
          row_max[mt][h] = m_new;
          float sum = 0.f;
#pragma unroll
          for (int nt = 0; nt < T::kSubNTiles; ++nt) {
#pragma unroll
            for (int e = 0; e < 2; ++e) {
              const float pv = exp2_approx(fmaf(s[mt][nt][2 * h + e], scale_log2, -m_ref));
              s[mt][nt][2 * h + e] = pv;
              sum += pv;
            }
          }
          row_sum[mt][h] = row_sum[mt][h] * alpha + sum;  // per-thread partial; quad-reduced at the end
#pragma unroll
          for (int dt = 0; dt < T::kDTiles; ++dt) {
            o[mt][dt][2 * h] *= alpha;
            o[mt][dt][2 * h + 1] *= alpha;
          }
        }
      }

      // O += P V, P straight from the S registers (bf16), V via ldmatrix.trans.
#pragma unroll
      for (int kk = 0; kk < T::kSubKV / 16; ++kk) {
        uint32_t a[T::kMTiles][4];
#pragma unroll
        for (int mt = 0; mt < T::kMTiles; ++mt) {
          a[mt][0] = pack_bf16x2(s[mt][2 * kk][0], s[mt][2 * kk][1]);
          a[mt][1] = pack_bf16x2(s[mt][2 * kk][2], s[mt][2 * kk][3]);
          a[mt][2] = pack_bf16x2(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
          a[mt][3] = pack_bf16x2(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int dp = 0; dp < T::kDTiles / 2; ++dp) {
          uint32_t b0, b1, b2, b3;
          ldmatrix_x4_trans((v_lane ^ Tile::step_xor(dp)) + (sub * T::kSubKV + kk * 16) * T::kRowBytes, b0, b1, b2, b3);
#pragma unroll
          for (int mt = 0; mt < T::kMTiles; ++mt) {
            mma_bf16_16816(o[mt][2 * dp], a[mt], b0, b1);
            mma_bf16_16816(o[mt][2 * dp + 1], a[mt], b2, b3);
          }
        }
      }
    }

    if (tid < T::kTileKV) smem_off[stage * T::kTileKV + tid] = key_offset(next_key, next_block);
  }

  // ---- epilogue: normalize, stage this warp's 32 rows in its own (now unused) Q rows, 16-byte stores ----
  __syncwarp();  // every lane's last ldmatrix of these Q rows is done before any lane overwrites them
#pragma unroll
  for (int mt = 0; mt < T::kMTiles; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float l = row_sum[mt][h];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      const float inv = 1.f / l;  // l >= 1: the row's max element contributes exp2(0)
      const int r = warp * 32 + mt * 16 + lane / 4 + 8 * h;
#pragma unroll
      for (int dt = 0; dt < T::kDTiles; ++dt) {
        const uint32_t v = pack_bf16x2(o[mt][dt][2 * h] * inv, o[mt][dt][2 * h + 1] * inv);
        *reinterpret_cast<uint32_t*>(smem_q + Tile::offset(r, dt) + 4 * (lane % 4)) = v;
      }
    }
  }
  __syncwarp();
  // Re-derive the tile's placement instead of keeping it in registers across the key loop (where it
  // would be spilled: the loop needs all 255).
  const int e_seq = *static_cast<volatile int*>(s_seq);
  const int e_q_begin = p.cu_seqlens_q[e_seq];
  const int e_packed_rows = (p.cu_seqlens_q[e_seq + 1] - e_q_begin) * p.group;
  const int e_row0 = ((e_packed_rows + T::kTileQ - 1) / T::kTileQ - 1 - *static_cast<volatile int*>(s_tile)) * T::kTileQ;
  const int e_rows_valid = min(T::kTileQ, e_packed_rows - e_row0);
  const int e_head0 = static_cast<int>(blockIdx.x % p.kv_heads) * p.group;
#pragma unroll
  for (int i = 0; i < 32 * T::kChunks / 32; ++i) {
    const int idx = lane + 32 * i;
    const int r = warp * 32 + idx / T::kChunks, c = idx % T::kChunks;
    if (r < e_rows_valid) {
      const int qi = (e_row0 + r) / p.group;
      const int head = e_head0 + (e_row0 + r - qi * p.group);
      const uint4 v = *reinterpret_cast<const uint4*>(smem_q + Tile::offset(r, c));
      *reinterpret_cast<uint4*>(p.out + static_cast<int64_t>(e_q_begin + qi) * p.out_row_stride + head * D + c * 8) = v;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Hopper path: the same algorithm on wgmma (sm_90a). Two warpgroups per CTA, each owning 64 of the
// CTA's 128 packed rows and sharing every K/V tile: S = Q K^T is one m64n64 wgmma chain per warpgroup
// with Q and K read straight from shared memory (no ldmatrix, no register copies of Q), P stays in
// registers as the A operand of O += P V (m64n{head_dim}, V read N-major from shared memory). The two
// warpgroups drift within a tile, so one's softmax overlaps the other's wgmma. 128 rows per K/V tile
// matter here: with 64 (one warpgroup per CTA, two CTAs per SM) the K/V stream from L2 ran at
// ~5.4 TB/s, near the L2 ceiling, and the kernel reached 340 TFLOP/s at S=8192 on an H200; with 128,
// 381 (mma.sync kernel: 310; cuDNN via torch SDPA: 608). K/V tiles are gathered through the block
// table like the mma.sync path, into 128B-swizzled operand tiles (attention_wgmma.cuh), 3 stages deep.
template <int kHeadDim_>
struct PrefillWgmmaTraits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kWarpGroups = 2;
  static constexpr int kThreads = kWarpGroups * 128;
  static constexpr int kTileQ = kWarpGroups * 64;  // wgmma M = 64 rows per warpgroup
  static constexpr int kTileKV = 64;               // wgmma N of S, K of P V (4 k16 steps)
  static constexpr int kStages = 3;
  static constexpr int kMinBlocksPerSM = 1;  // 168 registers x 256 threads (head_dim 128)
  static constexpr int kChunks = kHeadDim / 8;
  static constexpr int kKSteps = kHeadDim / 16;
  static constexpr int kRowsPerPass = kThreads / kChunks;
  using QTile = GmmaTile<kTileQ, kHeadDim>;
  using KVTile = GmmaTile<kTileKV, kHeadDim>;
  static constexpr int kOffsetBytes = kStages * kTileKV * 8;
  static constexpr int kSmemBytes = QTile::kBytes + 2 * kStages * KVTile::kBytes + kOffsetBytes + 16 + 1024;
  static_assert(kThreads % kChunks == 0 && kTileKV % kRowsPerPass == 0 && kTileQ % kRowsPerPass == 0,
                "cp.async sweeps must tile the Q and KV tiles exactly");
  static_assert(kRowsPerPass % 8 == 0, "a copy sweep keeps each thread's swizzle phase (row % 8)");
  static_assert(kTileKV <= kThreads, "one thread per key publishes the next tile's row offsets");
  static_assert(kKSteps % 4 == 0 || kKSteps < 4, "k steps walk 4 per 64-column block");
  static_assert(kTileQ * kHeadDim * 2 == QTile::kBytes, "the output staging tile reuses the Q tile");
  static_assert(kSmemBytes * kMinBlocksPerSM <= 227 * 1024, "Hopper's shared memory per SM");
};

template <class T>
__global__ void __launch_bounds__(T::kThreads, T::kMinBlocksPerSM)
    attention_prefill_wgmma_kernel(const __grid_constant__ PrefillParams p) {
#if defined(FC_HAVE_WGMMA)
  constexpr int D = T::kHeadDim;
  using QTile = typename T::QTile;
  using KVTile = typename T::KVTile;
  extern __shared__ __align__(128) uint8_t smem_raw[];
  // Swizzle atoms must be 1024-byte aligned in the shared window.
  uint8_t* const smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
  uint8_t* const smem_q = smem;
  uint8_t* const smem_k = smem + QTile::kBytes;
  uint8_t* const smem_v = smem_k + T::kStages * KVTile::kBytes;
  int64_t* const smem_off = reinterpret_cast<int64_t*>(smem_v + T::kStages * KVTile::kBytes);  // [stage][key]
  int* const s_seq = reinterpret_cast<int*>(smem_off + T::kStages * T::kTileKV);
  int* const s_tile = s_seq + 1;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int warp_group = warp / 4;  // rows 64 * warp_group .. +63; warp % 4 owns 16 of them
  const int kv_head = blockIdx.x % p.kv_heads;
  if (warp == 0) find_tile(p, T::kTileQ, blockIdx.x / p.kv_heads, lane, s_seq, s_tile);
  __syncthreads();
  const int seq = *s_seq;
  if (seq < 0) return;

  const int group = p.group;
  const int q_begin = p.cu_seqlens_q[seq];
  const int n_q = p.cu_seqlens_q[seq + 1] - q_begin;
  const int seq_len = p.seq_lens[seq];
  const int packed_rows = n_q * group;
  const int tile = (packed_rows + T::kTileQ - 1) / T::kTileQ - 1 - *s_tile;  // last tile first
  const int row0 = tile * T::kTileQ;
  const int rows_valid = min(T::kTileQ, packed_rows - row0);
  const int prefix = seq_len - n_q;
  const int n_kv = prefix + (row0 + rows_valid - 1) / group + 1;
  const int n_kv_tiles = (n_kv + T::kTileKV - 1) / T::kTileKV;
  // Earliest query of this warpgroup's rows: tiles entirely at or before it need no mask.
  const int min_qpos = prefix + (row0 + min(64 * warp_group, rows_valid - 1)) / group;
  const int32_t* const block_table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
  const int64_t head_offset = static_cast<int64_t>(kv_head) * p.kv_head_stride;

  auto key_offset = [&](int key, int physical_block) -> int64_t {
    if (key >= n_kv) return -1;
    const int in_block = key - (key / p.block_size) * p.block_size;
    return static_cast<int64_t>(physical_block) * p.kv_block_stride + head_offset + static_cast<int64_t>(in_block) * D;
  };
  auto load_block_id = [&](int key) -> int { return key < n_kv ? __ldg(block_table + key / p.block_size) : 0; };

  // ---- prologue: Q tile, row offsets of KV tiles 0 .. kStages-1, KV tiles 0 .. kStages-2 ----
  const uint32_t q_base = smem_addr(smem_q);
  const int copy_row = tid / T::kChunks, copy_chunk = tid % T::kChunks;
  // This thread's cp.async slots: + i * kRowsPerPass * 128 bytes per sweep (kRowsPerPass % 8 == 0).
  const uint32_t copy_offset = QTile::offset(copy_row, copy_chunk);
  const uint32_t kv_copy_offset = KVTile::offset(copy_row, copy_chunk);
#pragma unroll
  for (int i = 0; i < T::kTileQ / T::kRowsPerPass; ++i) {
    const int r = copy_row + i * T::kRowsPerPass;
    const bool valid = r < rows_valid;
    const bf16* src = p.q;
    if (valid) {
      const int qi = (row0 + r) / group;
      const int head = kv_head * group + (row0 + r - qi * group);
      src = p.q + static_cast<int64_t>(q_begin + qi) * p.q_row_stride + head * D + copy_chunk * 8;
    }
    cp_async_16(q_base + copy_offset + i * T::kRowsPerPass * 128, src, valid);
  }
  if (tid < T::kTileKV) {
#pragma unroll
    for (int t = 0; t < T::kStages; ++t) {
      smem_off[t * T::kTileKV + tid] = key_offset(t * T::kTileKV + tid, load_block_id(t * T::kTileKV + tid));
    }
  }
  __syncthreads();
  auto load_kv_tile = [&](int stage) {
    const uint32_t k_base = smem_addr(smem_k + stage * KVTile::kBytes);
    const uint32_t v_base = smem_addr(smem_v + stage * KVTile::kBytes);
    const int64_t* offsets = smem_off + stage * T::kTileKV;
#pragma unroll
    for (int i = 0; i < T::kTileKV / T::kRowsPerPass; ++i) {
      const int64_t off = offsets[copy_row + i * T::kRowsPerPass];
      const bool valid = off >= 0;
      const int64_t src = valid ? off + copy_chunk * 8 : 0;
      const uint32_t dst = kv_copy_offset + i * T::kRowsPerPass * 128;
      cp_async_16(k_base + dst, p.k_pool + src, valid);
      cp_async_16(v_base + dst, p.v_pool + src, valid);
    }
  };
#pragma unroll
  for (int t = 0; t < T::kStages - 1; ++t) {
    if (t < n_kv_tiles) load_kv_tile(t);
    cp_async_commit();
  }

  // ---- row state: this thread's rows are warp*16 + lane/4 + 8h (wgmma accumulator layout) ----
  int qpos[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) qpos[h] = prefix + (row0 + min(warp * 16 + lane / 4 + 8 * h, rows_valid - 1)) / group;
  float o[D / 2];  // m64n{D} accumulator: n8 tile j -> o[4j .. 4j+3]
#pragma unroll
  for (int i = 0; i < D / 2; ++i) o[i] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
  const float scale_log2 = p.scale_log2;
  // K-major Q and K: SBO = 8 rows of 128 bytes; V N-major: LBO = next 64 head dims, SBO = next 8 keys.
  // This warpgroup's 64 rows of Q: 8 whole 8-row atoms into each column block.
  const uint64_t q_desc = gmma_desc(q_base + warp_group * 64 * 128, 16, 1024);

  int stage = 0;  // = j % kStages
  for (int j = 0; j < n_kv_tiles; ++j) {
    cp_async_wait<T::kStages - 2>();  // tile j has landed (tile j+1 may still be in flight)
    fence_proxy_async_smem();         // this thread's cp.async data (Q, K, V) -> visible to wgmma
    __syncthreads();                  // ... to all; and every wgmma of tile j-1 is done (its stage is free)
    const int ahead_stage = stage == 0 ? T::kStages - 1 : stage - 1;  // (j + kStages - 1) % kStages
    if (j + T::kStages - 1 < n_kv_tiles) load_kv_tile(ahead_stage);
    cp_async_commit();
    // Block ids of tile j+kStages, published at the end of this iteration into this stage's slots.
    const int next_key = (j + T::kStages) * T::kTileKV + tid;
    int next_block = 0;
    if (tid < T::kTileKV) next_block = load_block_id(next_key);
    const int kv0 = j * T::kTileKV;
    const uint64_t k_desc = gmma_desc(smem_addr(smem_k + stage * KVTile::kBytes), 16, 1024);
    const uint64_t v_desc = gmma_desc(smem_addr(smem_v + stage * KVTile::kBytes), KVTile::kBlockBytes, 1024);

    // S = Q K^T
    float s[T::kTileKV / 2];
#pragma unroll
    for (int i = 0; i < T::kTileKV / 2; ++i) s[i] = 0.f;
    fence_operands(s);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < T::kKSteps; ++kk) {
      const uint32_t step = (kk / 4) * QTile::kBlockBytes + (kk % 4) * 32;
      const uint32_t kstep = (kk / 4) * KVTile::kBlockBytes + (kk % 4) * 32;
      wgmma_m64n64k16_ss(s, gmma_desc_advance(q_desc, step), gmma_desc_advance(k_desc, kstep));
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_operands(s);

    if (kv0 + T::kTileKV - 1 > min_qpos) {
#pragma unroll
      for (int i = 0; i < T::kTileKV / 2; ++i) {
        const int key = kv0 + (i / 4) * 8 + 2 * (lane % 4) + (i & 1);
        if (key > qpos[(i >> 1) & 1]) s[i] = -INFINITY;
      }
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < T::kTileKV / 8; ++nt) mx = fmaxf(mx, fmaxf(s[4 * nt + 2 * h], s[4 * nt + 2 * h + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(row_max[h], mx * scale_log2);
      const float m_ref = m_new == -INFINITY ? 0.f : m_new;
      const float alpha = exp2_approx(row_max[h] - m_ref);
      row_max[h] = m_new;
      float sum = 0.f;
#pragma unroll
      for (int nt = 0; nt < T::kTileKV / 8; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float pv = exp2_approx(fmaf(s[4 * nt + 2 * h + e], scale_log2, -m_ref));
          s[4 * nt + 2 * h + e] = pv;
          sum += pv;
        }
      }
      row_sum[h] = row_sum[h] * alpha + sum;
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        o[4 * dt + 2 * h] *= alpha;
        o[4 * dt + 2 * h + 1] *= alpha;
      }
    }

    // O += P V
    uint32_t pa[T::kTileKV / 16][4];
#pragma unroll
    for (int kk = 0; kk < T::kTileKV / 16; ++kk) {
      pa[kk][0] = pack_bf16x2(s[8 * kk + 0], s[8 * kk + 1]);
      pa[kk][1] = pack_bf16x2(s[8 * kk + 2], s[8 * kk + 3]);
      pa[kk][2] = pack_bf16x2(s[8 * kk + 4], s[8 * kk + 5]);
      pa[kk][3] = pack_bf16x2(s[8 * kk + 6], s[8 * kk + 7]);
    }
    fence_operands(o);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < T::kTileKV / 16; ++kk) {
      wgmma_m64nNk16_rs_tb<D>(o, pa[kk], gmma_desc_advance(v_desc, kk * 16 * 128));
    }
    wgmma_commit();
    wgmma_wait<0>();
    fence_operands(o);

    if (tid < T::kTileKV) smem_off[stage * T::kTileKV + tid] = key_offset(next_key, next_block);
    stage = stage + 1 == T::kStages ? 0 : stage + 1;
  }

  // ---- epilogue: normalize; each warp stages its 16 rows in the (finished) Q tile, 16-byte stores ----
  using Staging = SwizzledTile<D>;
  __syncthreads();  // both warpgroups' last wgmma reads of the Q tile are done
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float l = row_sum[h];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = 1.f / l;
    const int r = warp * 16 + lane / 4 + 8 * h;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      const uint32_t v = pack_bf16x2(o[4 * dt + 2 * h] * inv, o[4 * dt + 2 * h + 1] * inv);
      *reinterpret_cast<uint32_t*>(smem_q + Staging::offset(r, dt) + 4 * (lane % 4)) = v;
    }
  }
  __syncwarp();
#pragma unroll
  for (int i = 0; i < 16 * T::kChunks / 32; ++i) {
    const int idx = lane + 32 * i;
    const int r = warp * 16 + idx / T::kChunks, c = idx % T::kChunks;
    if (r < rows_valid) {
      const int qi = (row0 + r) / group;
      const int head = kv_head * group + (row0 + r - qi * group);
      const uint4 v = *reinterpret_cast<const uint4*>(smem_q + Staging::offset(r, c));
      *reinterpret_cast<uint4*>(p.out + static_cast<int64_t>(q_begin + qi) * p.out_row_stride + head * D + c * 8) = v;
    }
  }
#else
  __trap();  // built without sm_90a: the launcher never selects this kernel (see prefill_wgmma_available)
#endif
}

template <class T, class Kernel>
void launch_prefill_kernel(Kernel kernel, const PrefillParams& params, int total_q, cudaStream_t stream) {
  // Upper bound on the number of query tiles: each sequence adds at most one partial tile.
  const int64_t tiles = (static_cast<int64_t>(total_q) * params.group + T::kTileQ - 1) / T::kTileQ + params.num_seqs;
  const int64_t blocks = tiles * params.kv_heads;
  if (blocks > 0x7fffffff) fail("attention_prefill: {} CTAs exceed the grid limit", blocks);
  kernel<<<static_cast<unsigned>(blocks), T::kThreads, T::kSmemBytes, stream>>>(params);
  CUDA_CHECK_LAUNCH();
}

template <int kHeadDim>
bool wgmma_kernel_usable() {
  using T = PrefillWgmmaTraits<kHeadDim>;
  static const bool usable = [] {
    int device = 0, major = 0, minor = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    if (major != 9 || minor != 0) return false;
    // The device runs sm_90 machine code only if this build compiled the kernel for sm_90a (the sm_80
    // fallback machine code would also load on a Hopper GPU, and there the kernel body is a trap).
    cudaFuncAttributes attributes{};
    CUDA_CHECK(cudaFuncGetAttributes(&attributes, attention_prefill_wgmma_kernel<T>));
    if (attributes.binaryVersion != 90) return false;
    CUDA_CHECK(cudaFuncSetAttribute(attention_prefill_wgmma_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    T::kSmemBytes));
    return true;
  }();
  return usable;
}

template <int kHeadDim>
void launch_prefill(const PrefillParams& params, int total_q, AttentionPrefillKernel choice, cudaStream_t stream) {
  // Auto picks the fastest kernel this GPU and build can run.
  if (choice == AttentionPrefillKernel::Auto) {
    choice = wgmma_kernel_usable<kHeadDim>() ? AttentionPrefillKernel::Wgmma : AttentionPrefillKernel::MmaSync;
  }
  if (choice == AttentionPrefillKernel::Wgmma) {
    if (!wgmma_kernel_usable<kHeadDim>()) {
      fail("attention_prefill: the wgmma kernel needs an sm_90 GPU and a build for sm_90a (FC_CUDA_ARCHS=90a)");
    }
    using T = PrefillWgmmaTraits<kHeadDim>;
    launch_prefill_kernel<T>(attention_prefill_wgmma_kernel<T>, params, total_q, stream);
    return;
  }
  using T = PrefillTraits<kHeadDim>;
  static const bool configured = [] {
    CUDA_CHECK(cudaFuncSetAttribute(attention_prefill_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    T::kSmemBytes));
    return true;
  }();
  (void)configured;
  launch_prefill_kernel<T>(attention_prefill_kernel<T>, params, total_q, stream);
}

}  // namespace

void attention_prefill(const AttentionBatch& batch, int total_q, const AttentionShape& shape, const bf16* q,
                       int64_t q_row_stride, const bf16* k_pool, const bf16* v_pool, const PagedKVLayout& layout,
                       bf16* out, int64_t out_row_stride, cudaStream_t stream, AttentionPrefillKernel kernel) {
  check_attention_args("attention_prefill", batch, shape, q, q_row_stride, k_pool, v_pool, layout, out,
                       out_row_stride);
  if (total_q < 0) fail("attention_prefill: total_q {} < 0", total_q);
  if (total_q == 0 || batch.num_seqs == 0) return;
  PrefillParams params{};
  params.q = q;
  params.k_pool = k_pool;
  params.v_pool = v_pool;
  params.out = out;
  params.cu_seqlens_q = batch.cu_seqlens_q;
  params.seq_lens = batch.seq_lens;
  params.block_tables = batch.block_tables;
  params.q_row_stride = q_row_stride;
  params.out_row_stride = out_row_stride;
  params.kv_block_stride = layout.block_stride();
  params.kv_head_stride = layout.head_stride();
  params.num_seqs = batch.num_seqs;
  params.max_blocks_per_seq = batch.max_blocks_per_seq;
  params.block_size = layout.block_size;
  params.kv_heads = shape.kv_heads;
  params.group = shape.q_heads / shape.kv_heads;
  params.scale_log2 = shape.scale * kLog2e;
  FC_DISPATCH_HEAD_DIM(shape.head_dim, kHeadDim, [&] { launch_prefill<kHeadDim>(params, total_q, kernel, stream); });
}

bool attention_prefill_wgmma_available(int head_dim) {
  if (head_dim != 64 && head_dim != 128) return false;
  return FC_DISPATCH_HEAD_DIM(head_dim, kHeadDim, [&] { return wgmma_kernel_usable<kHeadDim>(); });
}

}  // namespace fc
