// Causal GQA prefill over the paged KV cache on Hopper's wgmma (sm_90a): the mma.sync kernel's algorithm
// (work split, pipeline and scheduling: kernels/attention_prefill_common.cuh). Two warpgroups per CTA,
// each owning 64 of the CTA's 128 packed rows and sharing every K/V tile: S = Q K^T is one m64n64 wgmma
// chain per warpgroup with Q and K read straight from shared memory (no ldmatrix, no register copies of
// Q), P stays in registers as the A operand of O += P V (m64n{head_dim}, V read N-major from shared
// memory). The two warpgroups drift within a tile, so one's softmax overlaps the other's wgmma. 128 rows
// per K/V tile matter here: with 64 (one warpgroup per CTA, two CTAs per SM) the K/V stream from L2 ran
// at ~5.4 TB/s, near the L2 ceiling, and the kernel reached 340 TFLOP/s at S=8192 on an H200; with 128,
// 381 (mma.sync kernel: 310; cuDNN via torch SDPA: 608). K/V tiles are gathered through the block table
// like the mma.sync path, into 128B-swizzled operand tiles (attention_wgmma.cuh), 3 stages deep.
#include <cfloat>

#include "kernels/arch.h"
#include "kernels/attention_prefill_common.cuh"
#include "kernels/attention_wgmma.cuh"

namespace fc::attn {
namespace {

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
  static constexpr int kQBytes = QTile::kBytes;
  static constexpr int kKVTileBytes = KVTile::kBytes;
  static constexpr int kSmemBytes = prefill_smem_bytes(kQBytes, kKVTileBytes, kStages, kTileKV);
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
    attention_prefill_wgmma_kernel(const __grid_constant__ AttentionParams p) {
#if defined(FC_HAVE_WGMMA)
  constexpr int D = T::kHeadDim;
  using QTile = typename T::QTile;
  using KVTile = typename T::KVTile;
  extern __shared__ __align__(128) uint8_t smem_raw[];
  const PrefillSmem<T> smem(smem_raw);
  uint8_t* const smem_q = smem.q;
  uint8_t* const smem_k = smem.k;
  uint8_t* const smem_v = smem.v;
  int64_t* const smem_off = smem.off;

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int warp_group = warp / 4;  // rows 64 * warp_group .. +63; warp % 4 owns 16 of them
  const int kv_head = blockIdx.x % p.kv_heads;
  const int seq = prefill_find_seq(p, smem);
  if (seq < 0) return;
  const PrefillTile<T> tile(p, seq, *smem.tile, kv_head);
  const int group = p.group;
  const int row0 = tile.row0, rows_valid = tile.rows_valid, prefix = tile.prefix, n_kv_tiles = tile.n_kv_tiles;
  // Earliest query of this warpgroup's rows: tiles entirely at or before it need no mask.
  const int min_qpos = prefix + (row0 + min(64 * warp_group, rows_valid - 1)) / group;

  // ---- prologue: Q tile, row offsets of KV tiles 0 .. kStages-1, KV tiles 0 .. kStages-2 ----
  const uint32_t q_base = smem_addr(smem_q);
  const int copy_row = tid / T::kChunks, copy_chunk = tid % T::kChunks;
  // This thread's cp.async slots: + i * kRowsPerPass * 128 bytes per sweep (kRowsPerPass % 8 == 0).
  const uint32_t copy_offset = QTile::offset(copy_row, copy_chunk);
  const uint32_t kv_copy_offset = KVTile::offset(copy_row, copy_chunk);
  constexpr uint32_t kPassBytes = T::kRowsPerPass * 128;
  tile.load_q(q_base, copy_row, copy_chunk, copy_offset, kPassBytes);
  tile.init_offsets(smem_off, tid);
  __syncthreads();
  auto load_kv_tile = [&](int stage) {
    tile.load_kv(smem_addr(smem_k + stage * KVTile::kBytes), smem_addr(smem_v + stage * KVTile::kBytes),
                 smem_off + stage * T::kTileKV, copy_row, copy_chunk, kv_copy_offset, kPassBytes);
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
    if (tid < T::kTileKV) next_block = tile.load_block_id(next_key);
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

    if (tid < T::kTileKV) smem_off[stage * T::kTileKV + tid] = tile.key_offset(next_key, next_block);
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
      int row, head;
      tile.row_head(r, &row, &head);
      const uint4 v = *reinterpret_cast<const uint4*>(smem_q + Staging::offset(r, c));
      *reinterpret_cast<uint4*>(p.out + static_cast<int64_t>(row) * p.out_row_stride + head * D + c * 8) = v;
    }
  }
#else
  __trap();  // built without sm_90a: the launcher never selects this kernel (see prefill_wgmma_available)
#endif
}

}  // namespace

template <int kHeadDim>
bool prefill_wgmma_usable() {
  using T = PrefillWgmmaTraits<kHeadDim>;
  static const bool usable = [] {
    // Decided by what this binary carries for the GPU (kernels/arch.h), not its compute capability alone:
    // an sm_80 image (machine code, or compute_80 PTX JIT-compiled here) loads on a Hopper GPU too, and
    // there the kernel body is a trap.
    cudaFuncAttributes attributes{};
    if (cudaFuncGetAttributes(&attributes, attention_prefill_wgmma_kernel<T>) != cudaSuccess) {
      (void)cudaGetLastError();  // no image for this GPU
      return false;
    }
    if (!hopper_code_runs(current_device_limits().cc_major, {attributes.ptxVersion, attributes.binaryVersion})) {
      return false;
    }
    CUDA_CHECK(cudaFuncSetAttribute(attention_prefill_wgmma_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                    T::kSmemBytes));
    return true;
  }();
  return usable;
}

template <int kHeadDim>
void launch_prefill_wgmma(const AttentionParams& params, int total_q, cudaStream_t stream) {
  if (!prefill_wgmma_usable<kHeadDim>()) {
    fail("attention_prefill: the wgmma kernel needs an sm_90 GPU and a build for sm_90a (FC_CUDA_ARCHS=90a)");
  }
  using T = PrefillWgmmaTraits<kHeadDim>;
  launch_prefill_kernel<T>(attention_prefill_wgmma_kernel<T>, params, total_q, stream);
}

template bool prefill_wgmma_usable<64>();
template bool prefill_wgmma_usable<128>();
template void launch_prefill_wgmma<64>(const AttentionParams&, int, cudaStream_t);
template void launch_prefill_wgmma<128>(const AttentionParams&, int, cudaStream_t);

}  // namespace fc::attn
