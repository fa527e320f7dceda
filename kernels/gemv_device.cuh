// Internals of fc::gemv (kernels/gemv.cuh, kernels/gemv.cu). Device helpers: the 16-byte loads, the
// task -> weight row maps, the epilogues, the kRmsNorm staging (the shared math of kernels/op_math.cuh),
// and the mbarrier / cp.async.bulk wrappers (sm_90; no-ops compiled for older targets).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "core/error.h"
#include "kernels/gemv.cuh"
#include "kernels/op_math.cuh"

namespace fc {
namespace gemv_detail {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxSmemBytes = 96 * 1024;

struct GemvParams {
  const void* w;            // bf16 or e4m3 codes (GemvWeight)
  const float* w_scales;    // kE4m3: one per output row
  const bf16* x;
  const float* residual;
  const bf16* norm_weight;
  void* out;
  int in_dim;
  int out_dim;
  int tasks;
  float eps;
  GemvRope rope;
};

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

// ---- The weight type: one 16-byte load holds kPerLoad<kW> elements, paired with kPerLoad / 8 16-byte
// chunks of the bf16 x. Everything else (tasks, steps, rings, epilogues) is the same for both types.
template <GemvWeight kW>
constexpr int kPerLoad = kW == GemvWeight::kBf16 ? 8 : 16;
template <GemvWeight kW>
constexpr int kWeightBytes = kW == GemvWeight::kBf16 ? 2 : 1;

// Elements 8h .. 8h + 7 of a 16-byte weight load as fp32 (exact for both types; the shared unpacks of
// kernels/op_math.cuh).
template <GemvWeight kW>
__device__ __forceinline__ void unpack_weights8(const uint4& v, int h, float* f) {
  if constexpr (kW == GemvWeight::kBf16) {
    unpack_bf16x8(v, f);
  } else if (h == 0) {
    unpack_e4m3x8(v.x, v.y, f);
  } else {
    unpack_e4m3x8(v.z, v.w, f);
  }
}

// Row `row` of the weights, as 16-byte loads.
template <GemvWeight kW>
__device__ __forceinline__ const uint4* weight_row(const GemvParams& p, int row) {
  return reinterpret_cast<const uint4*>(static_cast<const uint8_t*>(p.w) +
                                        static_cast<int64_t>(row) * p.in_dim * kWeightBytes<kW>);
}

__device__ __forceinline__ float dot8(const float* w, const uint4& x, float acc) {
  float xf[8];
  unpack_bf16x8(x, xf);
#pragma unroll
  for (int j = 0; j < 8; ++j) acc = fmaf(w[j], xf[j], acc);
  return acc;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

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

// kRopeKV epilogue for task t: both products rounded to bf16 (the QKV row rope_kv_append would read),
// rotated in fp32 when they are a Q/K pair, stored to the row and, for K and V, the pools.
__device__ __forceinline__ void store_rope_kv(const GemvParams& p, int t, float a0, float a1) {
  const GemvRope& g = p.rope;
  const int D = g.head_dim, half = D / 2;
  const int rotated = (g.q_heads + g.kv_heads) * half;
  float y0 = round_bf16(a0), y1 = round_bf16(a1);
  int row0, row1, pool_head, d0, d1;
  bf16* pool;
  if (t < rotated) {
    const int head = t / half, i = t % half;
    float cos_v, sin_v;
    rope_cos_sin(g.positions[0], g.inv_freq[i], cos_v, sin_v);
    const float x1 = y0, x2 = y1;
    rope_rotate(x1, x2, cos_v, sin_v, y0, y1);
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
  bf16* out = static_cast<bf16*>(p.out);
  out[row0] = b0;
  out[row1] = b1;
  const int64_t slot = kv_slot(g.slot_mapping, 0);
  if (pool != nullptr && slot >= 0) {
    bf16* dst = kv_pool_row(pool, g.layout, slot, pool_head);
    dst[d0] = b0;
    dst[d1] = b1;
  }
}

// Task t's results (every lane holds the full sums after the butterfly): lane 0 writes them. kE4m3: each
// row's sum is first multiplied by its row's scale (once per row, before any epilogue math).
template <GemvWeight kW, GemvOutput kOut, int R>
__device__ __forceinline__ void store_task(const GemvParams& p, int t, int lane, const float (&sums)[R]) {
  if (lane != 0) return;
  float acc[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    acc[r] = sums[r];
    if constexpr (kW == GemvWeight::kE4m3) {
      bool real;
      acc[r] *= __ldg(p.w_scales + task_row<kOut, R>(p, t, r, &real));  // unreal rows: row 0, dropped below
    }
  }
  if constexpr (kOut == GemvOutput::kRopeKV) {
    store_rope_kv(p, t, acc[0], acc[1]);
  } else if constexpr (kOut == GemvOutput::kSwiglu) {
#pragma unroll
    for (int r = 0; r < R / 2; ++r) {
      bool real;
      const int row = task_row<kOut, R>(p, t, r, &real);
      if (real) static_cast<bf16*>(p.out)[row] = __float2bfloat16_rn(silu_mul(acc[r], acc[r + R / 2]));
    }
  } else {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      bool real;
      const int row = task_row<kOut, R>(p, t, r, &real);
      if (!real) continue;
      if constexpr (kOut == GemvOutput::kBf16) {
        static_cast<bf16*>(p.out)[row] = __float2bfloat16_rn(acc[r]);
      } else if constexpr (kOut == GemvOutput::kF32) {
        static_cast<float*>(p.out)[row] = acc[r];
      } else {
        static_cast<float*>(p.out)[row] += acc[r];
      }
    }
  }
}

// x for kRmsNorm: the residual row normalized into shared memory as bf16, (in_dim).
__device__ void stage_rmsnorm(const GemvParams& p, uint4* smem_x) {
  __shared__ float partial[kWarps];
  __shared__ float inv_rms;
  const int chunks = p.in_dim / 8;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const float4* row = reinterpret_cast<const float4*>(p.residual);
  float s = 0.f;
  for (int c = threadIdx.x; c < chunks; c += kThreads) {
    const float4 a = row[2 * c], b = row[2 * c + 1];
    s += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w + b.x * b.x + b.y * b.y + b.z * b.z + b.w * b.w;
  }
  s = warp_sum(s);
  if (lane == 0) partial[warp] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) total += partial[w];
    inv_rms = rms_inv(total, p.in_dim, p.eps);
  }
  __syncthreads();
  const uint4* weight = reinterpret_cast<const uint4*>(p.norm_weight);
  for (int c = threadIdx.x; c < chunks; c += kThreads) {
    float w[8];
    unpack_bf16x8(__ldg(weight + c), w);
    const float4 a = row[2 * c], b = row[2 * c + 1];
    const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
    smem_x[c] = rms_scale_bf16x8(v, inv_rms, w);
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
  return a.input == GemvInput::kRmsNorm ? static_cast<size_t>(a.in_dim) * 2 : 0;
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

// The bulk-copy kernel's ring: 3 slots of 4 KB per warp (measured best on an H200: fc_bench_gemv), fewer
// when the kRmsNorm row takes the room; 0 when not even 2 fit (gemv_supported refuses then).
constexpr int kBulkSlots = 3;
inline int bulk_slots(const GemvArgs& a) {
  const int room = kBulkMaxSmemBytes - kBulkBarBytes - static_cast<int>(smem_bytes(a));
  const int slots = std::min(kBulkSlots, room / (kWarps * kBulkSlotBytes));
  return slots >= 2 ? slots : 0;
}

}  // namespace gemv_detail
}  // namespace fc
