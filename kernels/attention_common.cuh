// Device building blocks shared by the prefill and decode attention kernels: cp.async copies, ldmatrix,
// the bf16 tensor-core MMA (m16n8k16, fp32 accumulate), exp2, and the XOR-swizzled shared-memory tile.
//
// Fragment layouts (PTX ISA, "mma.m16n8k16" for .bf16), lane = 4*g + t (g = lane/4, t = lane%4):
//   A (16x16, row-major)  a0:(g, 2t..2t+1)  a1:(g+8, 2t..)  a2:(g, 2t+8..)  a3:(g+8, 2t+8..)
//   B (16x8,  k x n)      b0:(k=2t..2t+1, n=g)  b1:(k=2t+8.., n=g)
//   C (16x8,  fp32)       c0,c1:(g, 2t..2t+1)   c2,c3:(g+8, 2t..2t+1)
// Two adjacent C tiles (n 0-7 and 8-15) of S = Q K^T are exactly one A fragment of P for P V, so P
// never leaves registers (the FlashAttention-2 trick).
//
// Everything here is plain sm_80 PTX (also what runs on sm_90a): cp.async, ldmatrix, mma.sync.
// Host side, below: the argument checks and the kernel parameters all the paged attention launchers share.
#pragma once
#include <cstdint>

#include <cuda_bf16.h>

#include "kernels/op_math.cuh"  // pack_bf16x2

namespace fc::attn {

constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ uint32_t smem_addr(const void* ptr) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(ptr));
}

// 16-byte global -> shared copy through L2 only (.cg: K/V are streamed once per CTA, keep L1 for the
// block table). src_bytes = 0 writes 16 zero bytes and reads nothing (tails, masked rows).
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                            uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t addr, uint32_t& r0, uint32_t& r1, uint32_t& r2,
                                                  uint32_t& r3) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
               : "r"(addr));
}

// c += a * b, m16n8k16, bf16 inputs, fp32 accumulators.
__device__ __forceinline__ void mma_bf16_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 2^x with the SFU (ex2.approx: ~2 ulp, exp2(-inf) = +0).
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// A [rows][kHeadDim] bf16 tile in shared memory, rows of kHeadDim/8 16-byte chunks. Chunk c of row r is
// stored at chunk position c ^ (r % 8): the 8 row addresses of one ldmatrix 8x8 matrix (same logical
// chunk, 8 consecutive rows) then fall in 8 different 16-byte bank groups instead of one (a row is 128
// or 256 bytes, a multiple of the 128-byte bank period), and so do 8 consecutive rows' cp.async writes.
template <int kHeadDim>
struct SwizzledTile {
  static_assert(kHeadDim % 64 == 0, "the XOR swizzle needs at least 8 chunks per row");
  static constexpr int kChunks = kHeadDim / 8;
  static constexpr int kRowBytes = kHeadDim * 2;
  // Byte offset of (row, chunk) from the tile base.
  __device__ __forceinline__ static uint32_t offset(int row, int chunk) {
    return static_cast<uint32_t>((row * kChunks + (chunk ^ (row & 7))) * 16);
  }
  // Fragment loads walk chunks 2*step + c_lane (c_lane in {0,1}) of rows row_base + r_lane, with
  // row_base a multiple of 8. Since 2*step has bit 0 clear, (2*step + c_lane) ^ (r_lane & 7) =
  // 2*step ^ (c_lane ^ (r_lane & 7)), so for a tile base aligned to a row the address is
  //     ((base + lane_offset(r_lane, c_lane)) ^ (32 * step)) + row_base * kRowBytes:
  // one XOR with an immediate per ldmatrix and the row part folded into its immediate offset, instead
  // of a register per (step, row) that the compiler would otherwise hoist out of the key loop.
  __device__ __forceinline__ static uint32_t lane_offset(int r_lane, int c_lane) {
    return static_cast<uint32_t>(r_lane * kRowBytes + ((c_lane ^ (r_lane & 7)) * 16));
  }
  __device__ __forceinline__ static uint32_t step_xor(int step) { return static_cast<uint32_t>(32 * step); }
};

// Hides a value's provenance from the optimizer so that addresses derived from it are recomputed
// where used (one XOR) rather than hoisted into dozens of live registers.
__device__ __forceinline__ uint32_t opaque(uint32_t x) {
  asm volatile("" : "+r"(x));
  return x;
}

}  // namespace fc::attn

// ---- host side: argument checks shared by the prefill and decode launchers ----
#include "core/error.h"
#include "kernels/attention.h"

namespace fc::attn {

inline bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15u) == 0; }

// What every paged attention kernel is given (prefill's whole parameter block; decode and generic add
// their own fields in a derived struct). Filled in one place, attention_params, so the launchers cannot
// disagree on a stride or the scale.
struct AttentionParams {
  const bf16* q;                // (total_q, q_row_stride)
  const bf16* k_pool;           // PagedKVLayout
  const bf16* v_pool;
  bf16* out;                    // (total_q, out_row_stride)
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
  float scale_log2;  // scale * log2(e): exp(x * scale) = exp2(x * scale_log2)
  int q_heads;
  int head_dim;
  float scale;       // softmax scale
};

// After the launcher's own argument checks (kv_heads > 0).
inline AttentionParams attention_params(const AttentionBatch& batch, const AttentionShape& shape, const bf16* q,
                                        int64_t q_row_stride, const bf16* k_pool, const bf16* v_pool,
                                        const PagedKVLayout& layout, bf16* out, int64_t out_row_stride) {
  AttentionParams p{};
  p.q = q;
  p.k_pool = k_pool;
  p.v_pool = v_pool;
  p.out = out;
  p.cu_seqlens_q = batch.cu_seqlens_q;
  p.seq_lens = batch.seq_lens;
  p.block_tables = batch.block_tables;
  p.q_row_stride = q_row_stride;
  p.out_row_stride = out_row_stride;
  p.kv_block_stride = layout.block_stride();
  p.kv_head_stride = layout.head_stride();
  p.num_seqs = batch.num_seqs;
  p.max_blocks_per_seq = batch.max_blocks_per_seq;
  p.block_size = layout.block_size;
  p.q_heads = shape.q_heads;
  p.kv_heads = shape.kv_heads;
  p.group = shape.q_heads / shape.kv_heads;
  p.head_dim = shape.head_dim;
  p.scale = shape.scale;
  p.scale_log2 = shape.scale * kLog2e;
  return p;
}

inline void check_attention_args(const char* op, const AttentionBatch& batch, const AttentionShape& shape,
                                 const void* q, int64_t q_row_stride, const void* k_pool, const void* v_pool,
                                 const PagedKVLayout& layout, const void* out, int64_t out_row_stride) {
  if (shape.head_dim != 64 && shape.head_dim != 128) {
    fail("{}: head_dim {} is not supported (64 or 128)", op, shape.head_dim);
  }
  if (shape.kv_heads <= 0 || shape.q_heads <= 0 || shape.q_heads % shape.kv_heads != 0) {
    fail("{}: {} query heads are not a positive multiple of {} kv heads", op, shape.q_heads, shape.kv_heads);
  }
  if (!(shape.scale > 0.f)) fail("{}: softmax scale must be > 0, got {}", op, shape.scale);
  if (layout.head_dim != shape.head_dim || layout.kv_heads != shape.kv_heads) {
    fail("{}: KV layout ({} kv heads, head_dim {}) does not match the shape ({} kv heads, head_dim {})", op,
         layout.kv_heads, layout.head_dim, shape.kv_heads, shape.head_dim);
  }
  if (layout.block_size < 1) fail("{}: block_size must be >= 1, got {}", op, layout.block_size);
  if (batch.num_seqs < 0 || batch.max_blocks_per_seq < 0) fail("{}: negative batch sizes", op);
  if (!aligned16(q) || !aligned16(out) || !aligned16(k_pool) || !aligned16(v_pool)) {
    fail("{}: q, out, k_pool and v_pool must be 16-byte aligned", op);
  }
  if (q_row_stride % 8 != 0 || out_row_stride % 8 != 0) {
    fail("{}: q_row_stride ({}) and out_row_stride ({}) must be multiples of 8 elements", op, q_row_stride,
         out_row_stride);
  }
  if (q_row_stride < static_cast<int64_t>(shape.q_heads) * shape.head_dim ||
      out_row_stride < static_cast<int64_t>(shape.q_heads) * shape.head_dim) {
    fail("{}: row strides ({}, {}) are shorter than q_heads * head_dim = {}", op, q_row_stride, out_row_stride,
         shape.q_heads * shape.head_dim);
  }
}

// Runtime head_dim -> template parameter, in one place (STYLE habit 2).
#define FC_DISPATCH_HEAD_DIM(head_dim, kHeadDim, ...) \
  [&] {                                               \
    if ((head_dim) == 64) {                           \
      constexpr int kHeadDim = 64;                    \
      return __VA_ARGS__();                           \
    }                                                 \
    constexpr int kHeadDim = 128;                     \
    return __VA_ARGS__();                             \
  }()

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

}  // namespace fc::attn
