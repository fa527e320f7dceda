// Paged GQA decode attention (flash decoding) on mma.sync m16n8k16, and the split-KV merge.
//
// Work split. A CTA owns (split, kv head, row tile, sequence). Its 16 rows are the packed (query, group
// head) rows of one kv head (row = qi * group + g), so the group's query heads are the M dimension of
// one m16 MMA tile: every K/V byte is read from HBM once per kv head, whatever the group size. The
// tensor cores are nearly idle (16 rows, mostly padding for n_q = 1); what matters is bytes in flight.
//
// Pipeline. The 4 warps split the CTA's key range: warp w takes keys [64 i + 16 w, 64 i + 16 w + 16) of
// each 64-key step i, with its own kStages-deep cp.async ring in shared memory. A warp only ever reads
// what it loaded itself, so the main loop has no CTA barrier (cp.async.wait_group + __syncwarp), and
// each SM keeps 2 CTAs x 4 warps x (kStages - 1) x 8 KB (head_dim 128) of K/V in flight. Each lane
// loads one key's row (lane % 16) in 16-byte pieces: 16 consecutive keys of a block are one contiguous
// run (head-major pool), so every 32-byte sector fetched is fully used. The block-table entry of the
// next stage is read one iteration ahead so a load is never issued behind a dependent global read.
// At the end the 4 warps' (max, sum, O) are merged through shared memory.
//
// Split-KV. With num_splits > 1 CTA `split` of a sequence takes 64-key chunks
// [split * per_split, (split + 1) * per_split) of its causal range, per_split = ceil(chunks / num_splits),
// computed on the device from seq_lens (graph-friendly). Each writes its normalized output (fp32) and
// log2-sum-exp2 per row; empty splits write lse = -inf and nothing else, and the merge gives -inf
// partials weight 0 through a select (never a multiply), so their uninitialized outputs cannot leak NaN.
#include <algorithm>
#include <cfloat>

#include "kernels/attention_common.cuh"
#include "kernels/attention_decode.cuh"

namespace fc {
namespace {

using namespace fc::attn;

struct DecodeParams : AttentionParams {
  float* partial_o;    // (total_q * q_heads, num_splits, head_dim), only when num_splits > 1
  float* partial_lse;  // (total_q * q_heads, num_splits), log2 domain
  int row_tiles;       // 16-row tiles per (sequence, kv head): ceil(max_q_per_seq * group / 16)
  int num_splits;
};

// kStages_: the per-warp ring depth. 3 where the GPU's per-block shared memory allows it (A100, Hopper);
// 2 on GPUs with at most 99 KB a block (sm_86 / sm_89: RTX 30xx / 40xx, L4, L40S), where 3 stages at
// head_dim 128 need 101 KB.
template <int kHeadDim_, int kStages_ = 3>
struct DecodeTraits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRows = 16;                    // packed rows per CTA: one m16 tile
  static constexpr int kWarpKeys = 16;                // keys per warp per step: one k16 step of P V
  static constexpr int kStepKeys = kWarps * kWarpKeys;  // keys per CTA step (the split granularity)
  static constexpr int kStages = kStages_;            // per-warp cp.async ring depth
  static constexpr int kChunks = kHeadDim / 8;
  static constexpr int kKeysPerCopy = 32 / kChunks;  // key rows one warp-wide cp.async covers
  static constexpr int kKSteps = kHeadDim / 16;
  static constexpr int kDTiles = kHeadDim / 8;
  static constexpr int kQBytes = kRows * kHeadDim * 2;
  static constexpr int kWarpTileBytes = kWarpKeys * kHeadDim * 2;  // K (or V) of one warp stage
  static constexpr int kWarpStageBytes = 2 * kWarpTileBytes;
  static constexpr int kRingBytes = kWarps * kStages * kWarpStageBytes;
  static constexpr int kMergeStride = kHeadDim + 8;  // fp32 row pitch; +8 makes float2 stores conflict-free
  static constexpr int kMergeBytes = kWarps * kRows * kMergeStride * 4;
  static constexpr int kSmemBytes = kQBytes + kRingBytes + 1024;  // + alignment slack

  static_assert(kHeadDim == 64 || kHeadDim == 128, "head_dim 64 or 128");
  static_assert(kWarpKeys == 16 && 32 % kWarpKeys == 0, "a lane loads one key row; P V takes 16 keys");
  static_assert(32 % kChunks == 0 && kWarpKeys % kKeysPerCopy == 0, "whole key rows per warp copy");
  static_assert(kRows * kChunks % kThreads == 0, "Q tile cp.async sweep");
  static_assert(kMergeBytes <= kRingBytes, "the merge buffer reuses the K/V ring");
  static_assert(kThreads == kRows * 8 && kHeadDim % 32 == 0, "merge: 8 threads per row, float4 columns");
  static_assert(kSmemBytes <= 113 * 1024, "two CTAs per SM");
  static constexpr int kOnePerSmBytes = 120 * 1024;  // AttentionDecodePlan::one_per_sm: at most one CTA per SM
};

template <class T>
__global__ void __launch_bounds__(T::kThreads, 2) attention_decode_kernel(const __grid_constant__ DecodeParams p) {
  constexpr int D = T::kHeadDim;
  using Tile = SwizzledTile<D>;
  extern __shared__ __align__(128) uint8_t smem_raw[];
  // 1024-byte aligned base: the ldmatrix addresses below XOR the chunk index into the address bits.
  uint8_t* const smem = smem_raw + ((1024 - (smem_addr(smem_raw) & 1023)) & 1023);
  uint8_t* const smem_q = smem;
  uint8_t* const smem_ring = smem + T::kQBytes;
  __shared__ float s_max[T::kWarps][T::kRows], s_sum[T::kWarps][T::kRows];

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  // With plan.pdl this grid may start before the previous kernel (the QKV projection) has finished:
  // wait for it before reading q, the pools or the metadata (a no-op for a plain launch). Then let the
  // merge kernel (launched with programmatic stream serialization) be scheduled as soon as every CTA of
  // this grid runs; it waits for this grid's completion before reading any partial.
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  // Only the merge is let in early: with one split the next kernel is the o_proj GEMV, whose CTAs
  // fill the SMs while they wait (measured 0.29 ms/token slower at batch 1 on an H200).
  if (p.num_splits > 1) asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int seq = blockIdx.z, split = blockIdx.x;
  const int kv_head = blockIdx.y / p.row_tiles, row_tile = blockIdx.y % p.row_tiles;
  const int group = p.group;
  const int q_begin = p.cu_seqlens_q[seq];
  const int n_q = p.cu_seqlens_q[seq + 1] - q_begin;
  const int packed_rows = n_q * group;
  const int row0 = row_tile * T::kRows;
  if (row0 >= packed_rows) return;
  const int rows_valid = min(T::kRows, packed_rows - row0);
  const int prefix = p.seq_lens[seq] - n_q;
  const int min_qpos = prefix + row0 / group;
  const int n_kv = prefix + (row0 + rows_valid - 1) / group + 1;  // causal range of the last row
  const int n_steps = (n_kv + T::kStepKeys - 1) / T::kStepKeys;
  const int steps_per_split = (n_steps + p.num_splits - 1) / p.num_splits;
  const int kv_begin = split * steps_per_split * T::kStepKeys;
  const int kv_end = min(kv_begin + steps_per_split * T::kStepKeys, n_kv);

  // Global (row, head) item of packed row r: partials are indexed by it.
  auto row_item = [&](int r, int* qi_out, int* head_out) {
    const int qi = (row0 + r) / group;
    *qi_out = qi;
    *head_out = kv_head * group + (row0 + r - qi * group);
  };

  if (kv_begin >= n_kv) {  // empty split (only when num_splits > 1): mark it for the merge
    if (tid < rows_valid) {
      int qi, head;
      row_item(tid, &qi, &head);
      p.partial_lse[(static_cast<int64_t>(q_begin + qi) * p.q_heads + head) * p.num_splits + split] = -INFINITY;
    }
    return;
  }

  // ---- Q tile (group heads x queries) -> shared, zero rows past the end ----
  const uint32_t q_base = smem_addr(smem_q);
#pragma unroll
  for (int i = 0; i < T::kRows * T::kChunks / T::kThreads; ++i) {
    const int idx = tid + i * T::kThreads;
    const int r = idx / T::kChunks, c = idx % T::kChunks;
    const bool valid = r < rows_valid;
    const bf16* src = p.q;
    if (valid) {
      int qi, head;
      row_item(r, &qi, &head);
      src = p.q + static_cast<int64_t>(q_begin + qi) * p.q_row_stride + head * D + c * 8;
    }
    cp_async_16(q_base + Tile::offset(r, c), src, valid);
  }
  cp_async_commit();

  // ---- this warp's K/V ring ----
  const int32_t* const block_table = p.block_tables + static_cast<int64_t>(seq) * p.max_blocks_per_seq;
  const int64_t head_offset = static_cast<int64_t>(kv_head) * p.kv_head_stride;
  const int warp_key0 = kv_begin + warp * T::kWarpKeys;
  const int n_sub = warp_key0 < kv_end ? (kv_end - warp_key0 + T::kStepKeys - 1) / T::kStepKeys : 0;
  uint8_t* const warp_ring = smem_ring + warp * T::kStages * T::kWarpStageBytes;
  const int my_key = lane % T::kWarpKeys;  // the key whose pool offset this lane looks up

  // Copies: each warp instruction moves kKeysPerCopy whole key rows (lane -> chunk lane % kChunks of
  // key lane / kChunks), i.e. full 128-byte lines, the granularity L2 and HBM serve best. Lane k < 16
  // looks up key k's pool offset (lanes 16-31 duplicate it) and the copying lanes fetch it by shuffle.
  auto block_of = [&](int sub) -> int {
    const int key = warp_key0 + sub * T::kStepKeys + my_key;
    return (sub < n_sub && key < kv_end) ? __ldg(block_table + key / p.block_size) : 0;
  };
  auto issue = [&](int sub, int stage, int block) {
    const int key = warp_key0 + sub * T::kStepKeys + my_key;
    const int64_t my_off = key < kv_end ? static_cast<int64_t>(block) * p.kv_block_stride + head_offset +
                                              static_cast<int64_t>(key - (key / p.block_size) * p.block_size) * D
                                        : -1;
    const uint32_t k_base = smem_addr(warp_ring + stage * T::kWarpStageBytes);
    const uint32_t v_base = k_base + T::kWarpTileBytes;
    const int c = lane % T::kChunks;
#pragma unroll
    for (int i = 0; i < T::kWarpKeys / T::kKeysPerCopy; ++i) {
      const int row = i * T::kKeysPerCopy + lane / T::kChunks;
      const int64_t off = __shfl_sync(0xffffffffu, my_off, row);
      const bool valid = off >= 0;
      const int64_t src = valid ? off + c * 8 : 0;
      cp_async_16(k_base + Tile::offset(row, c), p.k_pool + src, valid);
      cp_async_16(v_base + Tile::offset(row, c), p.v_pool + src, valid);
    }
  };

#pragma unroll
  for (int s = 0; s < T::kStages - 1; ++s) {
    if (s < n_sub) issue(s, s, block_of(s));
    cp_async_commit();
  }
  int next_block = block_of(T::kStages - 1);

  // Q fragments stay in registers for the whole key range.
  cp_async_wait<T::kStages - 1>();  // the Q group (committed first) has landed
  __syncthreads();
  uint32_t qa[T::kKSteps][4];
#pragma unroll
  for (int kk = 0; kk < T::kKSteps; ++kk) {
    ldmatrix_x4((q_base + Tile::lane_offset(lane % 16, lane / 16)) ^ Tile::step_xor(kk), qa[kk][0], qa[kk][1],
                qa[kk][2], qa[kk][3]);
  }
  int qpos[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) qpos[h] = prefix + (row0 + min(lane / 4 + 8 * h, rows_valid - 1)) / group;

  float o[T::kDTiles][4];
#pragma unroll
  for (int dt = 0; dt < T::kDTiles; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
  const float scale_log2 = p.scale_log2;

  int stage = 0;
  for (int sub = 0; sub < n_sub; ++sub) {
    cp_async_wait<T::kStages - 2>();
    __syncwarp();  // all lanes' copies of `sub` visible; all lanes done reading the stage refilled next
    const int ahead = sub + T::kStages - 1;
    const int ahead_stage = stage == 0 ? T::kStages - 1 : stage - 1;
    if (ahead < n_sub) issue(ahead, ahead_stage, next_block);
    cp_async_commit();
    next_block = block_of(ahead + 1);

    const int key0 = warp_key0 + sub * T::kStepKeys;
    // ldmatrix lane addresses (SwizzledTile::lane_offset): K rows lane%8 + 8*(lane/16), chunk bit
    // (lane/8)%2; V rows lane%8 + 8*((lane/8)%2), chunk bit lane/16.
    const uint32_t k_lane =
        smem_addr(warp_ring + stage * T::kWarpStageBytes) + Tile::lane_offset(lane % 8 + (lane / 16) * 8, (lane / 8) % 2);
    const uint32_t v_lane = smem_addr(warp_ring + stage * T::kWarpStageBytes + T::kWarpTileBytes) +
                            Tile::lane_offset(lane % 8 + ((lane / 8) % 2) * 8, lane / 16);

    float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
    for (int kk = 0; kk < T::kKSteps; ++kk) {
      uint32_t b0, b1, b2, b3;
      ldmatrix_x4(k_lane ^ Tile::step_xor(kk), b0, b1, b2, b3);
      mma_bf16_16816(s[0], qa[kk], b0, b1);
      mma_bf16_16816(s[1], qa[kk], b2, b3);
    }
    if (key0 + T::kWarpKeys > kv_end || key0 + T::kWarpKeys - 1 > min_qpos) {
#pragma unroll
      for (int nt = 0; nt < 2; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int key = key0 + nt * 8 + 2 * (lane % 4) + (e & 1);
          if (key >= kv_end || key > qpos[e >> 1]) s[nt][e] = -INFINITY;
        }
    }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = fmaxf(fmaxf(s[0][2 * h], s[0][2 * h + 1]), fmaxf(s[1][2 * h], s[1][2 * h + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(row_max[h], mx * scale_log2);
      const float m_ref = m_new == -INFINITY ? 0.f : m_new;  // fully masked so far: keep exp2 at 0, not NaN
      const float alpha = exp2_approx(row_max[h] - m_ref);
      row_max[h] = m_new;
      float sum = 0.f;
#pragma unroll
      for (int nt = 0; nt < 2; ++nt) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float pv = exp2_approx(fmaf(s[nt][2 * h + e], scale_log2, -m_ref));
          s[nt][2 * h + e] = pv;
          sum += pv;
        }
      }
      row_sum[h] = row_sum[h] * alpha + sum;
#pragma unroll
      for (int dt = 0; dt < T::kDTiles; ++dt) {
        o[dt][2 * h] *= alpha;
        o[dt][2 * h + 1] *= alpha;
      }
    }
    const uint32_t pa[4] = {pack_bf16x2(s[0][0], s[0][1]), pack_bf16x2(s[0][2], s[0][3]),
                            pack_bf16x2(s[1][0], s[1][1]), pack_bf16x2(s[1][2], s[1][3])};
#pragma unroll
    for (int dp = 0; dp < T::kDTiles / 2; ++dp) {
      uint32_t b0, b1, b2, b3;
      ldmatrix_x4_trans(v_lane ^ Tile::step_xor(dp), b0, b1, b2, b3);
      mma_bf16_16816(o[2 * dp], pa, b0, b1);
      mma_bf16_16816(o[2 * dp + 1], pa, b2, b3);
    }
    stage = stage + 1 == T::kStages ? 0 : stage + 1;
  }

  // ---- merge the 4 warps' states through shared memory (the ring is free now) ----
  cp_async_wait<0>();
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    row_sum[h] += __shfl_xor_sync(0xffffffffu, row_sum[h], 1);
    row_sum[h] += __shfl_xor_sync(0xffffffffu, row_sum[h], 2);
  }
  __syncthreads();
  float* const s_o = reinterpret_cast<float*>(smem_ring);  // [warp][row][kMergeStride]
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = lane / 4 + 8 * h;
    if (lane % 4 == 0) {
      s_max[warp][r] = row_max[h];
      s_sum[warp][r] = row_sum[h];
    }
    float* dst = s_o + (warp * T::kRows + r) * T::kMergeStride + 2 * (lane % 4);
#pragma unroll
    for (int dt = 0; dt < T::kDTiles; ++dt) {
      *reinterpret_cast<float2*>(dst + dt * 8) = make_float2(o[dt][2 * h], o[dt][2 * h + 1]);
    }
  }
  __syncthreads();

  const int r = tid / 8, part = tid % 8;  // 8 threads per row, float4 columns part*4 + 32 i
  if (r >= rows_valid) return;
  float m_all = -INFINITY;
#pragma unroll
  for (int w = 0; w < T::kWarps; ++w) m_all = fmaxf(m_all, s_max[w][r]);
  float weight[T::kWarps];
  float l_all = 0.f;
#pragma unroll
  for (int w = 0; w < T::kWarps; ++w) {
    weight[w] = s_max[w][r] == -INFINITY ? 0.f : exp2_approx(s_max[w][r] - m_all);
    l_all += weight[w] * s_sum[w][r];
  }
  const float inv = l_all > 0.f ? 1.f / l_all : 0.f;
  int qi, head;
  row_item(r, &qi, &head);
  const int64_t item = static_cast<int64_t>(q_begin + qi) * p.q_heads + head;
#pragma unroll
  for (int i = 0; i < D / 32; ++i) {
    const int d = part * 4 + 32 * i;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
    for (int w = 0; w < T::kWarps; ++w) {
      const float4 x = *reinterpret_cast<const float4*>(s_o + (w * T::kRows + r) * T::kMergeStride + d);
      acc.x += weight[w] * x.x;
      acc.y += weight[w] * x.y;
      acc.z += weight[w] * x.z;
      acc.w += weight[w] * x.w;
    }
    acc.x *= inv;
    acc.y *= inv;
    acc.z *= inv;
    acc.w *= inv;
    if (p.num_splits == 1) {
      const uint2 v = make_uint2(pack_bf16x2(acc.x, acc.y), pack_bf16x2(acc.z, acc.w));
      *reinterpret_cast<uint2*>(p.out + static_cast<int64_t>(q_begin + qi) * p.out_row_stride + head * D + d) = v;
    } else {
      *reinterpret_cast<float4*>(p.partial_o + (item * p.num_splits + split) * D + d) = acc;
    }
  }
  if (p.num_splits > 1 && part == 0) {
    p.partial_lse[item * p.num_splits + split] = l_all > 0.f ? m_all + __log2f(l_all) : -INFINITY;
  }
}

struct MergeParams {
  const float* partial_o;
  const float* partial_lse;
  bf16* out;
  int64_t out_row_stride;
  int64_t items;  // total_q * q_heads
  int q_heads;
  int num_splits;
};

// One warp per (query row, head): out = sum_k 2^(lse_k - M) o_k / sum_k 2^(lse_k - M), M = max_k lse_k.
// Splits with lse = -inf (empty) contribute nothing, whatever their (never written) outputs hold.
template <int kHeadDim>
__global__ void __launch_bounds__(128) attention_merge_kernel(const __grid_constant__ MergeParams p) {
  constexpr int kPerLane = kHeadDim / 32;
  static_assert(kPerLane == 2 || kPerLane == 4, "float2 / float4 per lane");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");  // the split kernel's partials are complete and visible
#endif
  const int lane = threadIdx.x % 32;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * 4 + threadIdx.x / 32;
  if (item >= p.items) return;
  const float* lse = p.partial_lse + item * p.num_splits;
  float m_all = -INFINITY;
  for (int k = lane; k < p.num_splits; k += 32) m_all = fmaxf(m_all, lse[k]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m_all = fmaxf(m_all, __shfl_xor_sync(0xffffffffu, m_all, o));
  // The loop has no data-dependent branch, so the unrolled loads of several splits are in flight
  // together (a skip-if-empty branch would serialize one L2 round trip per split). Empty splits get
  // weight 0 through a select, never a multiply, so their uninitialized partials cannot leak NaN.
  float acc[kPerLane] = {};
  float l_all = 0.f;
  if (m_all != -INFINITY) {
#pragma unroll 4
    for (int k = 0; k < p.num_splits; ++k) {
      const float l = lse[k];
      const bool live = l != -INFINITY;
      const float w = live ? exp2_approx(l - m_all) : 0.f;
      l_all += w;
      const float* src = p.partial_o + (item * p.num_splits + k) * kHeadDim + lane * kPerLane;
      if constexpr (kPerLane == 4) {
        const float4 x = *reinterpret_cast<const float4*>(src);
        acc[0] += live ? w * x.x : 0.f;
        acc[1] += live ? w * x.y : 0.f;
        acc[2] += live ? w * x.z : 0.f;
        acc[3] += live ? w * x.w : 0.f;
      } else {
        const float2 x = *reinterpret_cast<const float2*>(src);
        acc[0] += live ? w * x.x : 0.f;
        acc[1] += live ? w * x.y : 0.f;
      }
    }
  }
  const float inv = l_all > 0.f ? 1.f / l_all : 0.f;
  const int64_t row = item / p.q_heads;
  const int head = static_cast<int>(item - row * p.q_heads);
  bf16* dst = p.out + row * p.out_row_stride + head * kHeadDim + lane * kPerLane;
  if constexpr (kPerLane == 4) {
    *reinterpret_cast<uint2*>(dst) = make_uint2(pack_bf16x2(acc[0] * inv, acc[1] * inv), pack_bf16x2(acc[2] * inv, acc[3] * inv));
  } else {
    *reinterpret_cast<uint32_t*>(dst) = pack_bf16x2(acc[0] * inv, acc[1] * inv);
  }
}

// The device's opt-in limit of dynamic shared memory per block (every GPU a process uses is taken to be of
// one kind).
int smem_optin_bytes() {
  static const int bytes = [] {
    int device = 0, optin = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    return optin;
  }();
  return bytes;
}

// The shared memory of a one-per-SM launch: enough that no SM takes two CTAs, within the device's limit.
template <class T>
int one_per_sm_bytes() {
  return std::max(T::kSmemBytes, std::min(T::kOnePerSmBytes, smem_optin_bytes()));
}

template <int kHeadDim, int kStages>
auto configured_decode_kernel() {
  using T = DecodeTraits<kHeadDim, kStages>;
  auto kernel = attention_decode_kernel<T>;
  static const bool configured = [&] {
    if (T::kSmemBytes > smem_optin_bytes()) {
      fail("attention_decode: {} stages at head_dim {} need {} bytes of shared memory, the GPU allows {}", kStages,
           kHeadDim, T::kSmemBytes, smem_optin_bytes());
    }
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, one_per_sm_bytes<T>()));
    return true;
  }();
  (void)configured;
  return kernel;
}

// The ring depth for this GPU: 3 where its shared memory per block allows, else 2.
template <int kHeadDim>
int device_decode_stages() {
  return DecodeTraits<kHeadDim, 3>::kSmemBytes <= smem_optin_bytes() ? 3 : 2;
}

// Resident decode CTAs per SM of the device's ring depth, asked once (attention_decode_plan runs on every
// decode step).
template <int kHeadDim>
int decode_ctas_per_sm() {
  static const int ctas = [] {
    int blocks = 0;
    if (device_decode_stages<kHeadDim>() == 3) {
      using T = DecodeTraits<kHeadDim, 3>;
      CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, configured_decode_kernel<kHeadDim, 3>(),
                                                               T::kThreads, T::kSmemBytes));
    } else {
      using T = DecodeTraits<kHeadDim, 2>;
      CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, configured_decode_kernel<kHeadDim, 2>(),
                                                               T::kThreads, T::kSmemBytes));
    }
    return blocks > 0 ? blocks : 1;
  }();
  return ctas;
}

template <int kHeadDim, int kStages>
void launch_decode(const DecodeParams& params, int num_seqs, int kv_heads, int64_t items, bool pdl, bool one_per_sm,
                   cudaStream_t stream) {
  using T = DecodeTraits<kHeadDim, kStages>;
  auto kernel = configured_decode_kernel<kHeadDim, kStages>();
  {
    const LaunchConfig launch(dim3(params.num_splits, kv_heads * params.row_tiles, num_seqs), dim3(T::kThreads),
                              one_per_sm ? one_per_sm_bytes<T>() : T::kSmemBytes, stream, pdl);
    CUDA_CHECK(cudaLaunchKernelEx(&launch.config, kernel, params));
    CUDA_CHECK_LAUNCH();
  }
  if (params.num_splits > 1) {
    MergeParams merge{};
    merge.partial_o = params.partial_o;
    merge.partial_lse = params.partial_lse;
    merge.out = params.out;
    merge.out_row_stride = params.out_row_stride;
    merge.items = items;
    merge.q_heads = params.q_heads;
    merge.num_splits = params.num_splits;
    // Programmatic dependent launch (sm_90+): the merge grid is set up while the split grid runs, which
    // hides most of a launch latency; griddepcontrol.wait in the merge keeps it correct.
    const LaunchConfig launch(dim3(static_cast<unsigned>((items + 3) / 4)), dim3(128), 0, stream, /*pdl=*/true);
    CUDA_CHECK(cudaLaunchKernelEx(&launch.config, attention_merge_kernel<kHeadDim>, merge));
    CUDA_CHECK_LAUNCH();
  }
}

constexpr int kMinKeysPerSplit = 128;

}  // namespace

AttentionDecodePlan attention_decode_plan(const int32_t* host_seq_lens, int num_seqs, int max_q_per_seq,
                                          const AttentionShape& shape, int max_splits, int num_sms,
                                          int ctas_per_sm) {
  if (shape.head_dim != 64 && shape.head_dim != 128) {
    fail("attention_decode_plan: head_dim {} is not supported (64 or 128)", shape.head_dim);
  }
  if (shape.kv_heads <= 0 || shape.q_heads % shape.kv_heads != 0) {
    fail("attention_decode_plan: {} query heads are not a multiple of {} kv heads", shape.q_heads, shape.kv_heads);
  }
  if (max_q_per_seq < 1 || max_splits < 1) {
    fail("attention_decode_plan: max_q_per_seq ({}) and max_splits ({}) must be >= 1", max_q_per_seq, max_splits);
  }
  AttentionDecodePlan plan;
  plan.max_q_per_seq = max_q_per_seq;
  plan.num_splits = 1;
  if (num_seqs <= 0) return plan;
  if (num_sms <= 0) num_sms = current_device_limits().sms;
  if (ctas_per_sm <= 0) {
    ctas_per_sm = FC_DISPATCH_HEAD_DIM(shape.head_dim, kHeadDim, [&] { return decode_ctas_per_sm<kHeadDim>(); });
  }
  const int group = shape.q_heads / shape.kv_heads;
  const int64_t row_tiles = ceil_div(max_q_per_seq * group, 16);
  const int64_t base_ctas = static_cast<int64_t>(num_seqs) * shape.kv_heads * row_tiles;
  int max_len = 0;
  for (int s = 0; s < num_seqs; ++s) max_len = std::max(max_len, host_seq_lens[s]);
  const int64_t target = static_cast<int64_t>(num_sms) * ctas_per_sm;
  int64_t splits = target / base_ctas;  // whole splits only: one more would put a second CTA on some SMs
  splits = std::min<int64_t>(splits, ceil_div(max_len, kMinKeysPerSplit));
  splits = std::min<int64_t>(splits, max_splits);
  plan.num_splits = static_cast<int>(std::max<int64_t>(splits, 1));
  plan.one_per_sm = ctas_per_sm == 1 && plan.num_splits > 1;
  plan.stages = FC_DISPATCH_HEAD_DIM(shape.head_dim, kHeadDim, [&] { return device_decode_stages<kHeadDim>(); });
  return plan;
}

void attention_decode(const AttentionBatch& batch, int total_q, const AttentionShape& shape, const bf16* q,
                      int64_t q_row_stride, const bf16* k_pool, const bf16* v_pool, const PagedKVLayout& layout,
                      bf16* out, int64_t out_row_stride, const AttentionDecodePlan& plan, void* workspace,
                      size_t workspace_bytes, cudaStream_t stream) {
  check_attention_args("attention_decode", batch, shape, q, q_row_stride, k_pool, v_pool, layout, out,
                       out_row_stride);
  if (plan.num_splits < 1 || plan.max_q_per_seq < 1) {
    fail("attention_decode: bad plan (num_splits {}, max_q_per_seq {})", plan.num_splits, plan.max_q_per_seq);
  }
  if (total_q < 0) fail("attention_decode: total_q {} < 0", total_q);
  if (total_q == 0 || batch.num_seqs == 0) return;
  DecodeParams params{attention_params(batch, shape, q, q_row_stride, k_pool, v_pool, layout, out, out_row_stride)};
  params.row_tiles = ceil_div(plan.max_q_per_seq * params.group, 16);
  params.num_splits = plan.num_splits;
  if (static_cast<int64_t>(shape.kv_heads) * params.row_tiles > 65535 || batch.num_seqs > 65535 ||
      plan.num_splits > 65535) {
    fail("attention_decode: grid too large ({} splits, {} kv heads x {} row tiles, {} sequences)", plan.num_splits,
         shape.kv_heads, params.row_tiles, batch.num_seqs);
  }
  const int64_t items = static_cast<int64_t>(total_q) * shape.q_heads;
  if (plan.num_splits > 1) {
    const size_t need = attention_decode_workspace_bytes(total_q, shape.q_heads, shape.head_dim, plan.num_splits);
    if (workspace == nullptr || workspace_bytes < need || !aligned16(workspace)) {
      fail("attention_decode: {} splits need a 16-byte aligned workspace of {} bytes, got {} bytes", plan.num_splits,
           need, workspace == nullptr ? 0 : workspace_bytes);
    }
    params.partial_o = static_cast<float*>(workspace);
    params.partial_lse = params.partial_o + items * plan.num_splits * shape.head_dim;
  }
  if (plan.stages != 2 && plan.stages != 3) fail("attention_decode: bad plan ({} ring stages; 2 or 3)", plan.stages);
  FC_DISPATCH_HEAD_DIM(shape.head_dim, kHeadDim, [&] {
    if (plan.stages == 3) {
      launch_decode<kHeadDim, 3>(params, batch.num_seqs, shape.kv_heads, items, plan.pdl, plan.one_per_sm, stream);
    } else {
      launch_decode<kHeadDim, 2>(params, batch.num_seqs, shape.kv_heads, items, plan.pdl, plan.one_per_sm, stream);
    }
  });
}

}  // namespace fc
