// Internals of fc::gemv (kernels/gemv.cuh) shared by its translation units: gemv.cu (the register and
// per-warp bulk-copy kernels, the entry point) and gemv_coop.cu (the CTA-cooperative bulk-copy kernel).
// Device helpers: the 16-byte loads and bf16 unpacking, the task -> weight row maps, the epilogues,
// the kRmsNorm staging, and the mbarrier / cp.async.bulk wrappers (sm_90; no-ops compiled for older).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/error.h"
#include "kernels/gemv.cuh"

namespace fc {
namespace gemv_detail {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxSmemBytes = 96 * 1024;

struct GemvParams {
  const bf16* w;
  const bf16* x;
  const float* residual;
  const bf16* norm_weight;
  void* out;
  int in_dim;
  int out_dim;
  int tasks;
  float eps;
  GemvRope rope;
  const uint8_t* prefetch;  // GemvArgs::prefetch
  size_t prefetch_bytes;
  uint64_t* trace;          // GemvArgs::trace
};

// GemvArgs::trace: thread 0 of each CTA stamps point 0 (entry; word 3: gridDim.x | %smid << 32), 1 (past the
// wait), 2 (exit: after every thread of the CTA is done).
__device__ __forceinline__ void trace_stamp(const GemvParams& p, int point) {
  if (p.trace == nullptr) return;
  if (point == 2) __syncthreads();
  if (threadIdx.x != 0) return;
  uint64_t ns;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(ns));
  p.trace[blockIdx.x * 4 + point] = ns;
  if (point == 0) {
    uint32_t sm;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
    p.trace[blockIdx.x * 4 + 3] = gridDim.x | static_cast<uint64_t>(sm) << 32;
  }
}

__device__ __forceinline__ uint4 load_stream(const uint4* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ void griddep_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void griddep_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// GemvArgs::prefetch: once this warp's tasks are done, its share of the next kernel's first bytes into
// L2 (cp.async.bulk.prefetch: no registers, no completion to wait for), in pieces of at most 64 KB.
__device__ __forceinline__ void prefetch_next(const GemvParams& p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (p.prefetch_bytes == 0 || threadIdx.x % 32 != 0) return;
  const size_t warps = static_cast<size_t>(gridDim.x) * (blockDim.x / 32);
  const size_t share = (p.prefetch_bytes / warps + 15) / 16 * 16;
  const size_t begin = (blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32) * share;
  const size_t end = begin + share < p.prefetch_bytes ? begin + share : p.prefetch_bytes;
  for (size_t at = begin; at < end; at += 65536) {
    const uint32_t bytes = static_cast<uint32_t>(end - at < 65536 ? end - at : 65536) & ~15u;
    if (bytes > 0) asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(p.prefetch + at), "r"(bytes) : "memory");
  }
#endif
}

__device__ __forceinline__ float bf_lo(uint32_t v) { return __uint_as_float(v << 16); }
__device__ __forceinline__ float bf_hi(uint32_t v) { return __uint_as_float(v & 0xffff0000u); }

__device__ __forceinline__ void unpack8(const uint4& v, float* f) {
  f[0] = bf_lo(v.x); f[1] = bf_hi(v.x); f[2] = bf_lo(v.y); f[3] = bf_hi(v.y);
  f[4] = bf_lo(v.z); f[5] = bf_hi(v.z); f[6] = bf_lo(v.w); f[7] = bf_hi(v.w);
}

__device__ __forceinline__ float dot8(const float* w, const uint4& x, float acc) {
  float xf[8];
  unpack8(x, xf);
#pragma unroll
  for (int j = 0; j < 8; ++j) acc = fmaf(w[j], xf[j], acc);
  return acc;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__device__ __forceinline__ float silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// Row r (< R) of task t, and whether it is a real row (a task may run past out_dim; its loads are
// clamped to row 0 and its results dropped). kSwiglu: the first R/2 rows are gate rows t*R/2 + r, the
// last R/2 the matching up rows, out_dim/2 further on.
template <GemvOutput kOut, int R>
__device__ __forceinline__ int task_row(const GemvParams& p, int t, int r, bool* real) {
  if constexpr (kOut == GemvOutput::kRopeKV) {
    // Q and K heads: the rotate-half pair (i, i + head_dim/2) of one head; V: two adjacent rows.
    const int half = p.rope.head_dim / 2;
    const int rotated = (p.rope.q_heads + p.rope.kv_heads) * half;
    *real = true;
    if (t < rotated) return (t / half) * p.rope.head_dim + t % half + r * half;
    return rotated * 2 + 2 * (t - rotated) + r;
  } else if constexpr (kOut == GemvOutput::kSwiglu) {
    const int cols = p.out_dim / 2;
    const int pair = t * (R / 2) + r % (R / 2);
    *real = pair < cols;
    return *real ? pair + (r < R / 2 ? 0 : cols) : 0;
  } else {
    const int row = t * R + r;
    *real = row < p.out_dim;
    return *real ? row : 0;
  }
}

// kRopeKV epilogue for task t of token m: both products rounded to bf16 (the QKV row rope_kv_append
// would read), rotated in fp32 when they are a Q/K pair, stored to the row and, for K and V, the pools.
__device__ __forceinline__ void store_rope_kv(const GemvParams& p, int t, int m, float a0, float a1) {
  const GemvRope& g = p.rope;
  const int D = g.head_dim, half = D / 2;
  const int rotated = (g.q_heads + g.kv_heads) * half;
  float y0 = __bfloat162float(__float2bfloat16_rn(a0)), y1 = __bfloat162float(__float2bfloat16_rn(a1));
  int row0, row1, pool_head, d0, d1;
  bf16* pool;
  if (t < rotated) {
    const int head = t / half, i = t % half;
    float sin_v, cos_v;
    sincosf(static_cast<float>(g.positions[m]) * g.inv_freq[i], &sin_v, &cos_v);
    const float x1 = y0, x2 = y1;
    y0 = x1 * cos_v - x2 * sin_v;
    y1 = x2 * cos_v + x1 * sin_v;
    row0 = head * D + i;
    row1 = row0 + half;
    pool = head >= g.q_heads ? g.k_pool : nullptr;
    pool_head = head - g.q_heads;
    d0 = i;
    d1 = i + half;
  } else {
    row0 = 2 * rotated + 2 * (t - rotated);
    row1 = row0 + 1;
    pool = g.v_pool;
    pool_head = (row0 - 2 * rotated) / D;
    d0 = (row0 - 2 * rotated) % D;
    d1 = d0 + 1;
  }
  const bf16 b0 = __float2bfloat16_rn(y0), b1 = __float2bfloat16_rn(y1);
  bf16* out = static_cast<bf16*>(p.out) + static_cast<int64_t>(m) * p.out_dim;
  out[row0] = b0;
  out[row1] = b1;
  const int slot = g.slot_mapping != nullptr ? g.slot_mapping[m] : -1;
  if (pool != nullptr && slot >= 0) {
    const int64_t base = g.layout.offset(slot, pool_head);
    pool[base + d0] = b0;
    pool[base + d1] = b1;
  }
}

// Task t's results (every lane holds the full sums after the butterfly): lane m writes row m's.
template <int M, GemvOutput kOut, int R>
__device__ __forceinline__ void store_task(const GemvParams& p, int t, int lane, const float (&acc)[R][M]) {
#pragma unroll
  for (int m = 0; m < M; ++m) {
    if (lane != m) continue;
    if constexpr (kOut == GemvOutput::kRopeKV) {
      store_rope_kv(p, t, m, acc[0][m], acc[1][m]);
    } else if constexpr (kOut == GemvOutput::kSwiglu) {
      const int cols = p.out_dim / 2;
#pragma unroll
      for (int r = 0; r < R / 2; ++r) {
        bool real;
        const int row = task_row<kOut, R>(p, t, r, &real);
        if (real) {
          static_cast<bf16*>(p.out)[static_cast<int64_t>(m) * cols + row] =
              __float2bfloat16_rn(silu_mul(acc[r][m], acc[r + R / 2][m]));
        }
      }
    } else {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        bool real;
        const int row = task_row<kOut, R>(p, t, r, &real);
        if (!real) continue;
        const int64_t i = static_cast<int64_t>(m) * p.out_dim + row;
        if constexpr (kOut == GemvOutput::kBf16) {
          static_cast<bf16*>(p.out)[i] = __float2bfloat16_rn(acc[r][m]);
        } else if constexpr (kOut == GemvOutput::kF32) {
          static_cast<float*>(p.out)[i] = acc[r][m];
        } else {
          static_cast<float*>(p.out)[i] += acc[r][m];
        }
      }
    }
  }
}

// A float4 of fp32 data: through L1 (kCoherent false), or from L2 only (kCoherent true) for data another
// CTA of the same grid wrote, which L1 is not kept coherent with (the chained GEMV, gemv_chain.cu).
template <bool kCoherent>
__device__ __forceinline__ float4 load_f4(const float4* p) {
  if constexpr (kCoherent) {
    return __ldcg(p);
  } else {
    return *p;
  }
}

// x rows for kRmsNorm: normalized into shared memory as bf16, (M, in_dim).
template <int M, bool kCoherent = false>
__device__ void stage_rmsnorm(const GemvParams& p, uint4* smem_x) {
  __shared__ float partial[kWarps][M];
  __shared__ float inv_rms[M];
  const int chunks = p.in_dim / 8;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int m = 0; m < M; ++m) {
    const float4* row = reinterpret_cast<const float4*>(p.residual + static_cast<int64_t>(m) * p.in_dim);
    float s = 0.f;
    for (int c = threadIdx.x; c < chunks; c += kThreads) {
      const float4 a = load_f4<kCoherent>(row + 2 * c), b = load_f4<kCoherent>(row + 2 * c + 1);
      s += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w + b.x * b.x + b.y * b.y + b.z * b.z + b.w * b.w;
    }
    s = warp_sum(s);
    if (lane == 0) partial[warp][m] = s;
  }
  __syncthreads();
  if (threadIdx.x < M) {
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) total += partial[w][threadIdx.x];
    inv_rms[threadIdx.x] = rsqrtf(total / p.in_dim + p.eps);
  }
  __syncthreads();
  const uint4* weight = reinterpret_cast<const uint4*>(p.norm_weight);
  for (int c = threadIdx.x; c < chunks; c += kThreads) {
    float w[8];
    unpack8(__ldg(weight + c), w);
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float4* row = reinterpret_cast<const float4*>(p.residual + static_cast<int64_t>(m) * p.in_dim);
      const float4 a = load_f4<kCoherent>(row + 2 * c), b = load_f4<kCoherent>(row + 2 * c + 1);
      const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
      uint4 packed;
      __nv_bfloat162* h2 = reinterpret_cast<__nv_bfloat162*>(&packed);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        h2[j] = __floats2bfloat162_rn(w[2 * j] * (v[2 * j] * inv_rms[m]), w[2 * j + 1] * (v[2 * j + 1] * inv_rms[m]));
      }
      smem_x[m * chunks + c] = packed;
    }
  }
  __syncthreads();
}


// ---- mbarrier and bulk-copy (TMA) wrappers ----
constexpr int kBulkMaxSlots = 8;
constexpr int kBulkSlotBytes = 4096;
constexpr int kBulkBarBytes = kWarps * kBulkMaxSlots * 8;
constexpr int kBulkMaxSmemBytes = 226 * 1024;  // dynamic; the opt-in limit is 227 KB with the static part

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint64_t* bar, int count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(count));
#endif
}

__device__ __forceinline__ void mbar_init_fence() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
#endif
}

// A plain arrival (release at CTA scope: this thread's earlier shared-memory writes are visible to a
// thread whose mbar_wait sees the phase complete).
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
#endif
}

__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n"
      "}\n" ::"r"(smem_addr(bar)),
      "r"(parity)
      : "memory");
#endif
}

// Global -> shared bulk copy of `bytes` (multiple of 16, both addresses 16-byte aligned), completing
// `bytes` of the barrier's transaction count; evict-first in L2 (each weight byte is read once a step).
__device__ __forceinline__ void bulk_copy(void* dst, const void* src, uint32_t bytes, uint64_t* bar,
                                          uint64_t policy) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1], %2, [%3], %4;\n" ::
          "r"(smem_addr(dst)),
      "l"(src), "r"(bytes), "r"(smem_addr(bar)), "l"(policy)
      : "memory");
#endif
}

__device__ __forceinline__ uint64_t evict_first_policy() {
  uint64_t policy = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
#endif
  return policy;
}

// Orders this warp's generic-proxy reads of a slot before the async-proxy writes that refill it.
__device__ __forceinline__ void fence_proxy_async() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

inline size_t smem_bytes(const GemvArgs& a) {
  return a.input == GemvInput::kRmsNorm ? static_cast<size_t>(a.rows) * a.in_dim * 2 : 0;
}

// Resident CTAs per SM of `kernel` at `smem` bytes; the caller keeps the cache (one per instantiation).
template <typename Kernel>
int resident_ctas(Kernel kernel, int smem, int* cached_smem, int* cached_blocks) {
  if (*cached_smem != smem) {
    if (smem > 48 * 1024) {
      // Opt in to all the device allows beside the kernel's static shared memory (same limit for both).
      int device = 0, optin = 0;
      CUDA_CHECK(cudaGetDevice(&device));
      CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
      cudaFuncAttributes attributes{};
      CUDA_CHECK(cudaFuncGetAttributes(&attributes, kernel));
      const int allowed = optin - static_cast<int>(attributes.sharedSizeBytes);
      if (smem > allowed) fail("gemv: {} bytes of shared memory requested, the device allows {}", smem, allowed);
      CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, allowed));
    }
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(cached_blocks, kernel, kThreads, smem));
    *cached_smem = smem;
    *cached_blocks = std::max(*cached_blocks, 1);
  }
  return *cached_blocks;
}

// GemvTuning::carveout for `kernel` when it differs from the last one set (-1 = cudaSharedmemCarveoutDefault).
template <typename Kernel>
void set_carveout(Kernel kernel, int carveout, int* cached) {
  if (*cached == carveout) return;
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout, carveout));
  *cached = carveout;
}

// Ring slots a bulk-copy kernel gets for these arguments (the tuning's, fewer when the kRmsNorm rows take
// the room), or 0 when it cannot run: no sm_90, or fewer than 2 slots fit.
inline int bulk_slots(const GemvArgs& a, const GemvTuning& t) {
  if (current_device_limits().cc_major < 9) return 0;
  const int room = kBulkMaxSmemBytes - kBulkBarBytes - static_cast<int>(smem_bytes(a));
  const int slots = std::min({t.slots, kBulkMaxSlots, room / (kWarps * kBulkSlotBytes)});
  return slots >= 2 ? slots : 0;
}

// CTA-cooperative bulk-copy kernel (gemv_coop.cu): launches when it can take these arguments, else
// returns false (the caller falls back).
bool gemv_coop(const GemvArgs& a, const GemvParams& p, const GemvTuning& t, cudaStream_t stream);

}  // namespace gemv_detail
}  // namespace fc
