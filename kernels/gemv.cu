// Bandwidth-bound products for 1..8 rows (kernels/gemv.cuh).
//
// Work split. A warp owns a task: R weight rows (1 or 2; for kSwiglu the pair gate j, up j), so each x
// chunk read serves R rows. Lanes stride the in_dim in 16-byte chunks (lane + 32 u), which makes every
// warp-wide load 512 contiguous bytes of one row. A warp's tasks are one flat stream of steps (U chunks
// of each row), double-buffered in registers, so 2 x R x U 16-byte loads per lane stay in flight across
// row and task boundaries. Tasks are handed out grid-stride over a grid of ctas_per_sm CTAs per SM, so
// every CTA computes the kRmsNorm statistics once, not per task. Measured on an H200 (fc_bench_gemv):
// 2 CTAs per SM (16 warps, the whole register file) beat 1 CTA per SM with room for the next kernel's
// early-launched CTAs: 4.04 vs 4.79 ms for one step's weights.
//
// Numerics. Products and sums in fp32 (bf16 -> fp32 is exact); the per-lane partial sums are reduced by
// a fixed xor butterfly, so results are deterministic. x for kRmsNorm is the bf16 row fc::rmsnorm would
// write (same formula, w * (x * rsqrt(mean(x^2) + eps)), one rounding).
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/gemv.cuh"

namespace fc {
namespace {

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

// x rows for kRmsNorm: normalized into shared memory as bf16, (M, in_dim).
template <int M>
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
      const float4 a = row[2 * c], b = row[2 * c + 1];
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
      const float4 a = row[2 * c], b = row[2 * c + 1];
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

template <int M, GemvInput kIn, GemvOutput kOut, int R, int U>
__global__ void __launch_bounds__(kThreads, 2) gemv_kernel(const __grid_constant__ GemvParams p) {
  static_assert(kOut != GemvOutput::kSwiglu || R % 2 == 0, "a SwiGLU task holds whole (gate, up) pairs");
  static_assert(kOut != GemvOutput::kRopeKV || R == 2, "a RoPE task is one rotate-half pair");
  extern __shared__ uint4 smem_x[];  // kRmsNorm: (M, in_dim) bf16
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int chunks = p.in_dim / 8;
  const int stride = gridDim.x * kWarps;
  const int task0 = blockIdx.x * kWarps + warp;
  // A warp's work is a flat stream of steps (task, batch of U chunks per row), double-buffered in
  // registers: step s + 1 is in flight while step s is multiplied, across task boundaries too.
  const int batches = (chunks + 32 * U - 1) / (32 * U);
  const int my_tasks = task0 < p.tasks ? (p.tasks - task0 + stride - 1) / stride : 0;
  const int steps = my_tasks * batches;

  uint4 buf_a[R][U], buf_b[R][U];
  float acc[R][M];
  auto load = [&](uint4 (&wv)[R][U], int step) {
    const int t = task0 + (step / batches) * stride;
    const int base = (step % batches) * 32 * U;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      bool real;
      const uint4* w =
          reinterpret_cast<const uint4*>(p.w + static_cast<int64_t>(task_row<kOut, R>(p, t, r, &real)) * p.in_dim);
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = base + lane + 32 * u;
        wv[r][u] = c < chunks ? load_stream(w + c) : make_uint4(0, 0, 0, 0);
      }
    }
  };
  auto store = [&](int t) {
    // Lane m writes row m's results (all lanes hold the full sums after the butterfly).
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
  };
  auto compute = [&](const uint4 (&wv)[R][U], int step) {
    const int batch = step % batches;
    const int base = batch * 32 * U;
    if (batch == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) acc[r][m] = 0.f;
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = base + lane + 32 * u;
      if (c < chunks) {
        float f[R][8];
#pragma unroll
        for (int r = 0; r < R; ++r) unpack8(wv[r][u], f[r]);
#pragma unroll
        for (int m = 0; m < M; ++m) {
          uint4 xv;
          if constexpr (kIn == GemvInput::kRmsNorm) {
            xv = smem_x[m * chunks + c];
          } else {
            xv = __ldg(reinterpret_cast<const uint4*>(p.x + static_cast<int64_t>(m) * p.in_dim) + c);
          }
#pragma unroll
          for (int r = 0; r < R; ++r) acc[r][m] = dot8(f[r], xv, acc[r][m]);
        }
      }
    }
    if (batch == batches - 1) {
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) acc[r][m] = warp_sum(acc[r][m]);
      store(task0 + (step / batches) * stride);
    }
  };

  // Weights never depend on the previous kernel: the first two steps are requested before waiting.
  if (steps > 0) load(buf_a, 0);
  if (steps > 1) load(buf_b, 1);
  griddep_wait();
  if constexpr (kIn == GemvInput::kRmsNorm) stage_rmsnorm<M>(p, smem_x);
  griddep_launch_dependents();
  for (int step = 0; step < steps; step += 2) {
    compute(buf_a, step);
    if (step + 2 < steps) load(buf_a, step + 2);
    if (step + 1 < steps) {
      compute(buf_b, step + 1);
      if (step + 3 < steps) load(buf_b, step + 3);
    }
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

size_t smem_bytes(const GemvArgs& a) {
  return a.input == GemvInput::kRmsNorm ? static_cast<size_t>(a.rows) * a.in_dim * 2 : 0;
}

// Resident CTAs per SM of `kernel` at `smem` bytes; the caller keeps the cache (one per instantiation).
template <typename Kernel>
int resident_ctas(Kernel kernel, int smem, int* cached_smem, int* cached_blocks) {
  if (*cached_smem != smem) {
    if (smem > 48 * 1024) {
      CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kMaxSmemBytes));
    }
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(cached_blocks, kernel, kThreads, smem));
    *cached_smem = smem;
    *cached_blocks = std::max(*cached_blocks, 1);
  }
  return *cached_blocks;
}

template <int M, GemvInput kIn, GemvOutput kOut, int R, int U>
void launch(const GemvArgs& a, GemvParams p, const GemvTuning& t, cudaStream_t stream) {
  auto kernel = gemv_kernel<M, kIn, kOut, R, U>;
  const int smem = static_cast<int>(smem_bytes(a));
  p.tasks = kOut == GemvOutput::kSwiglu   ? (a.out_dim / 2 + R / 2 - 1) / (R / 2)
            : kOut == GemvOutput::kRopeKV ? a.out_dim / 2
                                          : (a.out_dim + R - 1) / R;
  const int needed = (p.tasks + kWarps - 1) / kWarps;
  static thread_local int cached_smem = -1, cached_blocks = 0;
  const int per_sm = std::min(t.ctas_per_sm, resident_ctas(kernel, smem, &cached_smem, &cached_blocks));
  int grid = needed;
  if (t.persistent) {
    // Every task costs the same, so the kernel lasts as long as the warp with the most tasks: take the
    // fewest rounds the resident warps allow, then the fewest warps that still need only that many
    // rounds (3072 tasks on 2112 warps: 1536 warps x 2, not 1056 x 2 + 1056 x 1 idling half the time).
    const int max_warps = current_device_limits().sms * per_sm * kWarps;
    const int rounds = (p.tasks + max_warps - 1) / max_warps;
    const int warps = (p.tasks + rounds - 1) / rounds;
    grid = std::min(needed, (warps + kWarps - 1) / kWarps);
  }
  grid = std::max(grid, 1);
  const LaunchConfig launch(dim3(grid), dim3(kThreads), smem, stream, a.pdl);
  CUDA_CHECK(cudaLaunchKernelEx(&launch.config, kernel, p));
  CUDA_CHECK_LAUNCH();
}

// Rows per task: 1 (16 chunks of one row in flight per lane) or 2 (8 of each of two rows, each x chunk
// read serving both). Whichever leaves less of the last wave idle: with every task the same size, a
// GPU's worth of warps finishes a wave together, so tasks / warps = 1.45 costs as much as 2.
// Rows per task: 1 (U = 8 chunks of one row per step) or 2 (4 of each of two rows, each x chunk read
// serving both). Whichever leaves less of the last round of tasks idle: every task is the same size,
// so tasks / warps = 1.45 costs as much as 2.
template <int M, GemvInput kIn, GemvOutput kOut>
void launch_tuned(const GemvArgs& a, const GemvParams& p, GemvTuning t, cudaStream_t s) {
  if (t.rows_per_task == 0) {
    const double warps = double(current_device_limits().sms) * t.ctas_per_sm * kWarps;
    auto efficiency = [&](int r) {
      const double rounds = std::ceil(double(a.out_dim) / r) / warps;
      return rounds / std::ceil(rounds);
    };
    t.rows_per_task = kOut == GemvOutput::kSwiglu || efficiency(2) >= efficiency(1) - 0.02 ? 2 : 1;
  }
  if constexpr (kOut != GemvOutput::kSwiglu && kOut != GemvOutput::kRopeKV) {
    if (t.rows_per_task == 1) return launch<M, kIn, kOut, 1, 8>(a, p, t, s);
  }
  launch<M, kIn, kOut, 2, 4>(a, p, t, s);
}

template <GemvInput kIn, GemvOutput kOut>
void dispatch_rows(const GemvArgs& a, const GemvParams& p, const GemvTuning& t, cudaStream_t s) {
  switch (a.rows) {
    case 1: return launch_tuned<1, kIn, kOut>(a, p, t, s);
    case 2: return launch_tuned<2, kIn, kOut>(a, p, t, s);
    case 3: return launch_tuned<3, kIn, kOut>(a, p, t, s);
    case 4: return launch_tuned<4, kIn, kOut>(a, p, t, s);
    case 5: return launch_tuned<5, kIn, kOut>(a, p, t, s);
    case 6: return launch_tuned<6, kIn, kOut>(a, p, t, s);
    case 7: return launch_tuned<7, kIn, kOut>(a, p, t, s);
    case 8: return launch_tuned<8, kIn, kOut>(a, p, t, s);
    default: fail("gemv: {} rows (1..{})", a.rows, kGemvMaxRows);
  }
}

}  // namespace

bool gemv_supported(const GemvArgs& a) {
  if (a.rows < 1 || a.rows > kGemvMaxRows || a.in_dim <= 0 || a.in_dim % 8 != 0 || a.out_dim <= 0) return false;
  if (a.output == GemvOutput::kSwiglu && a.out_dim % 2 != 0) return false;
  if (a.output == GemvOutput::kRopeKV) {
    const GemvRope& g = a.rope;
    if (g.head_dim <= 0 || g.head_dim % 2 != 0 || g.q_heads <= 0 || g.kv_heads <= 0 ||
        a.out_dim != (g.q_heads + 2 * g.kv_heads) * g.head_dim || g.positions == nullptr || g.inv_freq == nullptr ||
        g.k_pool == nullptr || g.v_pool == nullptr || g.layout.kv_heads != g.kv_heads ||
        g.layout.head_dim != g.head_dim || g.layout.block_size <= 0) {
      return false;
    }
  }
  if (a.w == nullptr || !aligned16(a.w) || a.out == nullptr) return false;
  if (a.input == GemvInput::kBf16) return a.x != nullptr && aligned16(a.x);
  return a.residual != nullptr && aligned16(a.residual) && a.norm_weight != nullptr && aligned16(a.norm_weight) &&
         smem_bytes(a) <= static_cast<size_t>(kMaxSmemBytes);
}

void gemv(const GemvArgs& a, cudaStream_t stream) { gemv(a, GemvTuning{}, stream); }

void gemv(const GemvArgs& a, const GemvTuning& tuning, cudaStream_t stream) {
  if (!gemv_supported(a)) {
    fail("gemv: unsupported arguments (rows {}, in_dim {}, out_dim {}; need 1..{} rows, in_dim % 8 == 0, "
         "16-byte aligned pointers, rmsnorm rows x in_dim x 2 <= {} bytes)",
         a.rows, a.in_dim, a.out_dim, kGemvMaxRows, kMaxSmemBytes);
  }
  GemvParams p{};
  p.w = a.w;
  p.x = a.x;
  p.residual = a.residual;
  p.norm_weight = a.norm_weight;
  p.out = a.out;
  p.in_dim = a.in_dim;
  p.out_dim = a.out_dim;
  p.eps = a.eps;
  p.rope = a.rope;
  using In = GemvInput;
  using Out = GemvOutput;
  if (a.input == In::kRmsNorm) {
    switch (a.output) {
      case Out::kBf16: return dispatch_rows<In::kRmsNorm, Out::kBf16>(a, p, tuning, stream);
      case Out::kF32: return dispatch_rows<In::kRmsNorm, Out::kF32>(a, p, tuning, stream);
      case Out::kAddF32: return dispatch_rows<In::kRmsNorm, Out::kAddF32>(a, p, tuning, stream);
      case Out::kSwiglu: return dispatch_rows<In::kRmsNorm, Out::kSwiglu>(a, p, tuning, stream);
      case Out::kRopeKV: return dispatch_rows<In::kRmsNorm, Out::kRopeKV>(a, p, tuning, stream);
    }
  } else {
    switch (a.output) {
      case Out::kBf16: return dispatch_rows<In::kBf16, Out::kBf16>(a, p, tuning, stream);
      case Out::kF32: return dispatch_rows<In::kBf16, Out::kF32>(a, p, tuning, stream);
      case Out::kAddF32: return dispatch_rows<In::kBf16, Out::kAddF32>(a, p, tuning, stream);
      case Out::kSwiglu: return dispatch_rows<In::kBf16, Out::kSwiglu>(a, p, tuning, stream);
      case Out::kRopeKV: return dispatch_rows<In::kBf16, Out::kRopeKV>(a, p, tuning, stream);
    }
  }
}

}  // namespace fc
