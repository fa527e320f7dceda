// Causal GQA prefill over the paged KV cache: FlashAttention-2 on mma.sync m16n8k16 (bf16 -> fp32), for
// sm_80 and up. Work split, pipeline and scheduling: kernels/attention_prefill_common.cuh.
//
// Each of the 4 warps owns 32 packed rows (two m16 tiles): two rows of fragments per B fragment halves
// the shared-memory traffic per MMA compared with 16 rows per warp, which on Hopper is what bounds an
// mma.sync kernel (ldmatrix bytes per FLOP). K/V tiles are double-buffered (tile j+1 in flight while
// tile j is computed).
#include <cfloat>

#include "kernels/attention_prefill_common.cuh"

namespace fc::attn {
namespace {

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
  static constexpr int kRowBytes = kHeadDim * 2;
  static constexpr int kSmemBytes = prefill_smem_bytes(kQBytes, kKVTileBytes, kStages, kTileKV);

  static_assert(kHeadDim == 64 || kHeadDim == 128, "head_dim 64 or 128");
  static_assert(kThreads % kChunks == 0 && kTileKV % kRowsPerPass == 0 && kTileQ % kRowsPerPass == 0,
                "cp.async sweeps must tile the Q and KV tiles exactly");
  static_assert(kTileKV <= kThreads, "one thread per key publishes the next tile's row offsets");
  static_assert(kRowsPerPass % 8 == 0, "a copy sweep keeps each thread's swizzle phase (row % 8)");
  static_assert(kTileKV % kSubKV == 0 && kSubKV % 16 == 0, "P V consumes keys 16 at a time");
  static_assert(kSmemBytes <= 113 * 1024, "two CTAs per SM must fit in Hopper's 227 KB");
};

template <class T>
__global__ void __launch_bounds__(T::kThreads, 2) attention_prefill_kernel(const __grid_constant__ AttentionParams p) {
  constexpr int D = T::kHeadDim;
  using Tile = SwizzledTile<D>;
  extern __shared__ __align__(128) uint8_t smem_raw[];
  const PrefillSmem<T> smem(smem_raw);
  uint8_t* const smem_q = smem.q;
  uint8_t* const smem_k = smem.k;
  uint8_t* const smem_v = smem.v;
  int64_t* const smem_off = smem.off;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int kv_head = blockIdx.x % p.kv_heads;
  const int seq = prefill_find_seq(p, smem);
  if (seq < 0) return;
  const PrefillTile<T> tile(p, seq, *smem.tile, kv_head);
  const int group = p.group;
  const int row0 = tile.row0, rows_valid = tile.rows_valid, prefix = tile.prefix, n_kv_tiles = tile.n_kv_tiles;
  const int min_qpos = prefix + row0 / group;  // the tile's earliest query: keys up to it need no mask

  // ---- prologue: Q tile, row offsets of KV tiles 0 and 1, KV tile 0 ----
  const uint32_t q_base = smem_addr(smem_q);
  // This thread's cp.async slot: chunk tid % kChunks of rows tid / kChunks + i * kRowsPerPass.
  const int copy_row = tid / T::kChunks, copy_chunk = tid % T::kChunks;
  const uint32_t copy_offset = Tile::offset(copy_row, copy_chunk);
  constexpr uint32_t kPassBytes = T::kRowsPerPass * T::kRowBytes;
  tile.load_q(q_base, copy_row, copy_chunk, copy_offset, kPassBytes);
  tile.init_offsets(smem_off, tid);
  __syncthreads();

  auto load_kv_tile = [&](int stage) {
    tile.load_kv(smem_addr(smem_k + stage * T::kKVTileBytes), smem_addr(smem_v + stage * T::kKVTileBytes),
                 smem_off + stage * T::kTileKV, copy_row, copy_chunk, copy_offset, kPassBytes);
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
    if (tid < T::kTileKV) next_block = tile.load_block_id(next_key);

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

    if (tid < T::kTileKV) smem_off[stage * T::kTileKV + tid] = tile.key_offset(next_key, next_block);
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
  const PrefillTile<T> e(p, *static_cast<volatile int*>(smem.seq), *static_cast<volatile int*>(smem.tile),
                         blockIdx.x % p.kv_heads);
#pragma unroll
  for (int i = 0; i < 32 * T::kChunks / 32; ++i) {
    const int idx = lane + 32 * i;
    const int r = warp * 32 + idx / T::kChunks, c = idx % T::kChunks;
    if (r < e.rows_valid) {
      int row, head;
      e.row_head(r, &row, &head);
      const uint4 v = *reinterpret_cast<const uint4*>(smem_q + Tile::offset(r, c));
      *reinterpret_cast<uint4*>(p.out + static_cast<int64_t>(row) * p.out_row_stride + head * D + c * 8) = v;
    }
  }
}

}  // namespace

template <int kHeadDim>
void launch_prefill_mma_sync(const AttentionParams& params, int total_q, cudaStream_t stream) {
  using T = PrefillTraits<kHeadDim>;
  static const bool configured = [] {
    CUDA_CHECK(cudaFuncSetAttribute(attention_prefill_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    T::kSmemBytes));
    return true;
  }();
  (void)configured;
  launch_prefill_kernel<T>(attention_prefill_kernel<T>, params, total_q, stream);
}

template void launch_prefill_mma_sync<64>(const AttentionParams&, int, cudaStream_t);
template void launch_prefill_mma_sync<128>(const AttentionParams&, int, cudaStream_t);

}  // namespace fc::attn
