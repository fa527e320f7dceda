// Bandwidth-bound products for 1..8 rows (kernels/gemv.cuh).
//
// Work split. A warp owns a task: two weight rows (n, n+1), or for kSwiglu the pair (gate j, up j), so
// each x chunk read serves two rows. Lanes stride the in_dim in 16-byte chunks (lane + 32 u), which makes
// every warp-wide load 512 contiguous bytes of one row. kUnroll chunks of both rows are loaded before any
// is used: 8 KB in flight per warp, ~16 warps per SM. Tasks are handed out grid-stride over a grid sized
// to the GPU's resident capacity, so every CTA computes the kRmsNorm statistics once, not per task.
//
// Numerics. Products and sums in fp32 (bf16 -> fp32 is exact); the per-lane partial sums are reduced by
// a fixed xor butterfly, so results are deterministic. x for kRmsNorm is the bf16 row fc::rmsnorm would
// write (same formula, w * (x * rsqrt(mean(x^2) + eps)), one rounding).
#include <algorithm>

#include "core/error.h"
#include "kernels/gemv.cuh"

namespace fc {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kUnroll = 8;
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

// Rows of task t: (first, second, whether the second is a real row).
template <GemvOutput kOut>
__device__ __forceinline__ void task_rows(const GemvParams& p, int t, int* r0, int* r1, bool* second) {
  if constexpr (kOut == GemvOutput::kSwiglu) {
    *r0 = t;
    *r1 = t + p.out_dim / 2;
    *second = true;
  } else {
    *r0 = 2 * t;
    *second = 2 * t + 1 < p.out_dim;
    *r1 = *second ? 2 * t + 1 : 2 * t;
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

template <int M, GemvInput kIn, GemvOutput kOut>
__global__ void __launch_bounds__(kThreads, 2) gemv_kernel(const __grid_constant__ GemvParams p) {
  extern __shared__ uint4 smem_x[];  // kRmsNorm: (M, in_dim) bf16
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int chunks = p.in_dim / 8;
  const int stride = gridDim.x * kWarps;
  int task = blockIdx.x * kWarps + warp;

  // The first batch of this warp's weights is requested before waiting for the previous kernel.
  uint4 wa[kUnroll], wb[kUnroll];
  auto load_batch = [&](int t, int base) {
    int r0, r1;
    bool second;
    task_rows<kOut>(p, t, &r0, &r1, &second);
    const uint4* w0 = reinterpret_cast<const uint4*>(p.w + static_cast<int64_t>(r0) * p.in_dim);
    const uint4* w1 = reinterpret_cast<const uint4*>(p.w + static_cast<int64_t>(r1) * p.in_dim);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int c = base + lane + 32 * u;
      if (c < chunks) {
        wa[u] = load_stream(w0 + c);
        wb[u] = load_stream(w1 + c);
      } else {
        wa[u] = wb[u] = make_uint4(0, 0, 0, 0);
      }
    }
  };
  if (task < p.tasks) load_batch(task, 0);
  griddep_wait();
  if constexpr (kIn == GemvInput::kRmsNorm) stage_rmsnorm<M>(p, smem_x);
  griddep_launch_dependents();

  bool preloaded = true;
  for (; task < p.tasks; task += stride) {
    float acc0[M], acc1[M];
#pragma unroll
    for (int m = 0; m < M; ++m) acc0[m] = acc1[m] = 0.f;
    for (int base = 0; base < chunks; base += 32 * kUnroll) {
      if (!preloaded) load_batch(task, base);
      preloaded = false;
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int c = base + lane + 32 * u;
        if (c < chunks) {
          float fa[8], fb[8];
          unpack8(wa[u], fa);
          unpack8(wb[u], fb);
#pragma unroll
          for (int m = 0; m < M; ++m) {
            uint4 xv;
            if constexpr (kIn == GemvInput::kRmsNorm) {
              xv = smem_x[m * chunks + c];
            } else {
              xv = __ldg(reinterpret_cast<const uint4*>(p.x + static_cast<int64_t>(m) * p.in_dim) + c);
            }
            acc0[m] = dot8(fa, xv, acc0[m]);
            acc1[m] = dot8(fb, xv, acc1[m]);
          }
        }
      }
    }
#pragma unroll
    for (int m = 0; m < M; ++m) {
      acc0[m] = warp_sum(acc0[m]);
      acc1[m] = warp_sum(acc1[m]);
    }
    int r0, r1;
    bool second;
    task_rows<kOut>(p, task, &r0, &r1, &second);
    // Lane m writes row m's results (all lanes hold the full sums after the butterfly).
#pragma unroll
    for (int m = 0; m < M; ++m) {
      if (lane != m) continue;
      if constexpr (kOut == GemvOutput::kSwiglu) {
        const int cols = p.out_dim / 2;
        static_cast<bf16*>(p.out)[static_cast<int64_t>(m) * cols + r0] = __float2bfloat16_rn(silu_mul(acc0[m], acc1[m]));
      } else if constexpr (kOut == GemvOutput::kBf16) {
        bf16* out = static_cast<bf16*>(p.out) + static_cast<int64_t>(m) * p.out_dim;
        out[r0] = __float2bfloat16_rn(acc0[m]);
        if (second) out[r1] = __float2bfloat16_rn(acc1[m]);
      } else if constexpr (kOut == GemvOutput::kF32) {
        float* out = static_cast<float*>(p.out) + static_cast<int64_t>(m) * p.out_dim;
        out[r0] = acc0[m];
        if (second) out[r1] = acc1[m];
      } else {
        float* out = static_cast<float*>(p.out) + static_cast<int64_t>(m) * p.out_dim;
        out[r0] += acc0[m];
        if (second) out[r1] += acc1[m];
      }
    }
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

size_t smem_bytes(const GemvArgs& a) {
  return a.input == GemvInput::kRmsNorm ? static_cast<size_t>(a.rows) * a.in_dim * 2 : 0;
}

struct DeviceLimits {
  int sms = 0;
  bool pdl = false;
};

const DeviceLimits& device_limits() {
  static const DeviceLimits limits = [] {
    DeviceLimits l;
    int device = 0, major = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&l.sms, cudaDevAttrMultiProcessorCount, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    l.pdl = major >= 9;
    return l;
  }();
  return limits;
}

template <int M, GemvInput kIn, GemvOutput kOut>
void launch(const GemvArgs& a, const GemvParams& p, cudaStream_t stream) {
  auto kernel = gemv_kernel<M, kIn, kOut>;
  const int smem = static_cast<int>(smem_bytes(a));
  // Resident CTAs per SM at this kernel's shared memory; computed once per (instantiation, size).
  static thread_local int cached_smem = -1, cached_blocks = 0;
  if (cached_smem != smem) {
    if (smem > 48 * 1024) {
      CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kMaxSmemBytes));
    }
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&cached_blocks, kernel, kThreads, smem));
    cached_smem = smem;
    if (cached_blocks < 1) cached_blocks = 1;
  }
  const int needed = (p.tasks + kWarps - 1) / kWarps;
  const int grid = std::max(1, std::min(needed, device_limits().sms * cached_blocks));
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(grid);
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attribute;
  config.numAttrs = a.pdl && device_limits().pdl ? 1 : 0;
  CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, p));
  CUDA_CHECK_LAUNCH();
}

template <GemvInput kIn, GemvOutput kOut>
void dispatch_rows(const GemvArgs& a, const GemvParams& p, cudaStream_t s) {
  switch (a.rows) {
    case 1: return launch<1, kIn, kOut>(a, p, s);
    case 2: return launch<2, kIn, kOut>(a, p, s);
    case 3: return launch<3, kIn, kOut>(a, p, s);
    case 4: return launch<4, kIn, kOut>(a, p, s);
    case 5: return launch<5, kIn, kOut>(a, p, s);
    case 6: return launch<6, kIn, kOut>(a, p, s);
    case 7: return launch<7, kIn, kOut>(a, p, s);
    case 8: return launch<8, kIn, kOut>(a, p, s);
    default: fail("gemv: {} rows (1..{})", a.rows, kGemvMaxRows);
  }
}

}  // namespace

bool gemv_supported(const GemvArgs& a) {
  if (a.rows < 1 || a.rows > kGemvMaxRows || a.in_dim <= 0 || a.in_dim % 8 != 0 || a.out_dim <= 0) return false;
  if (a.output == GemvOutput::kSwiglu && a.out_dim % 2 != 0) return false;
  if (a.w == nullptr || !aligned16(a.w) || a.out == nullptr) return false;
  if (a.input == GemvInput::kBf16) return a.x != nullptr && aligned16(a.x);
  return a.residual != nullptr && aligned16(a.residual) && a.norm_weight != nullptr && aligned16(a.norm_weight) &&
         smem_bytes(a) <= static_cast<size_t>(kMaxSmemBytes);
}

void gemv(const GemvArgs& a, cudaStream_t stream) {
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
  p.tasks = a.output == GemvOutput::kSwiglu ? a.out_dim / 2 : (a.out_dim + 1) / 2;
  p.eps = a.eps;
  using In = GemvInput;
  using Out = GemvOutput;
  if (a.input == In::kRmsNorm) {
    switch (a.output) {
      case Out::kBf16: return dispatch_rows<In::kRmsNorm, Out::kBf16>(a, p, stream);
      case Out::kF32: return dispatch_rows<In::kRmsNorm, Out::kF32>(a, p, stream);
      case Out::kAddF32: return dispatch_rows<In::kRmsNorm, Out::kAddF32>(a, p, stream);
      case Out::kSwiglu: return dispatch_rows<In::kRmsNorm, Out::kSwiglu>(a, p, stream);
    }
  } else {
    switch (a.output) {
      case Out::kBf16: return dispatch_rows<In::kBf16, Out::kBf16>(a, p, stream);
      case Out::kF32: return dispatch_rows<In::kBf16, Out::kF32>(a, p, stream);
      case Out::kAddF32: return dispatch_rows<In::kBf16, Out::kAddF32>(a, p, stream);
      case Out::kSwiglu: return dispatch_rows<In::kBf16, Out::kSwiglu>(a, p, stream);
    }
  }
}

}  // namespace fc
