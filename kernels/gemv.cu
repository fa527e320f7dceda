// Bandwidth-bound one-row products (kernels/gemv.cuh).
//
// Work split. A warp owns a task: R weight rows (1 or 2; for kSwiglu the pair gate j, up j), so each x
// chunk read serves R rows. Lanes stride the in_dim in 16-byte chunks (lane + 32 u), which makes every
// warp-wide load 512 contiguous bytes of one row. A warp's tasks are one flat stream of steps (U chunks
// of each row), so loads stay in flight across row and task boundaries. Tasks are handed out grid-stride
// over a grid of at most kCtasPerSm CTAs per SM, so every CTA computes the kRmsNorm statistics once, not
// per task. Measured on an H200 (fc_bench_gemv): 2 CTAs per SM (16 warps, the whole register file) beat
// 1 CTA per SM with room for the next kernel's early-launched CTAs: 4.04 vs 4.79 ms for one step's weights.
//
// Weight types (GemvWeight) share everything but the unpack: a chunk is one 16-byte load of weights
// (8 bf16 or 16 e4m3 codes) and the 1 or 2 16-byte chunks of x it multiplies; kE4m3 multiplies each row's
// sum by its scale in store_task. So an e4m3 step moves the same 4 KB per warp as a bf16 step and covers
// twice the columns.
//
// Numerics. Products and sums in fp32 (bf16 -> fp32 and e4m3 -> fp32 are exact, and so is a product of
// an e4m3 and a bf16 value: 4 x 8 significant bits); the per-lane partial sums are reduced by
// a fixed xor butterfly, so results are deterministic. x for kRmsNorm is the bf16 row fc::rmsnorm would
// write (same formula, w * (x * rsqrt(mean(x^2) + eps)), one rounding).
#include "kernels/arch.h"
#include "kernels/gemv_device.cuh"

namespace fc {
namespace {

using namespace gemv_detail;

constexpr int kCtasPerSm = 2;  // resident CTAs per SM (the register kernel fills the register file with 2)

// acc[r] += row r's chunks base + lane + 32 u (u < U; weight(r, u) gives them, from registers or a ring
// slot) times the matching chunks of x (kRmsNorm: staged in shared memory; else from global through L1).
// Per row the fp32 FMAs run in element order, the same sequence for both weight types.
template <GemvWeight kW, GemvInput kIn, int R, int U, typename Weights>
__device__ __forceinline__ void dot_chunks(const GemvParams& p, const uint4* smem_x, int base, int chunks, int lane,
                                           float (&acc)[R], Weights weight) {
  constexpr int kXChunks = kPerLoad<kW> / 8;  // x chunks per weight chunk
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int c = base + lane + 32 * u;
    if (c < chunks) {
      uint4 wv[R];
#pragma unroll
      for (int r = 0; r < R; ++r) wv[r] = weight(r, u);
#pragma unroll
      for (int h = 0; h < kXChunks; ++h) {
        uint4 xv;
        if constexpr (kIn == GemvInput::kRmsNorm) {
          xv = smem_x[c * kXChunks + h];
        } else {
          xv = __ldg(reinterpret_cast<const uint4*>(p.x) + c * kXChunks + h);
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
          float f[8];
          unpack_weights8<kW>(wv[r], h, f);
          acc[r] = dot8(f, xv, acc[r]);
        }
      }
    }
  }
}

// ---- The register kernel: weights double-buffered in registers ----
template <GemvWeight kW, GemvInput kIn, GemvOutput kOut, int R, int U>
__global__ void __launch_bounds__(kThreads, 2) gemv_kernel(const __grid_constant__ GemvParams p) {
  static_assert(kOut != GemvOutput::kSwiglu || R % 2 == 0, "a SwiGLU task holds whole (gate, up) pairs");
  static_assert(kOut != GemvOutput::kRopeKV || R == 2, "a RoPE task is one rotate-half pair");
  extern __shared__ uint4 smem_x[];  // kRmsNorm: (in_dim) bf16
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int chunks = p.in_dim / kPerLoad<kW>;
  const int stride = gridDim.x * kWarps;
  const int task0 = blockIdx.x * kWarps + warp;
  // A warp's work is a flat stream of steps (task, batch of U chunks per row), double-buffered in
  // registers: step s + 1 is in flight while step s is multiplied, across task boundaries too.
  const int batches = (chunks + 32 * U - 1) / (32 * U);
  const int my_tasks = task0 < p.tasks ? (p.tasks - task0 + stride - 1) / stride : 0;
  const int steps = my_tasks * batches;

  uint4 buf_a[R][U], buf_b[R][U];
  float acc[R];
  auto load = [&](uint4 (&wv)[R][U], int step) {
    const int t = task0 + (step / batches) * stride;
    const int base = (step % batches) * 32 * U;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      bool real;
      const uint4* w = weight_row<kW>(p, task_row<kOut, R>(p, t, r, &real));
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = base + lane + 32 * u;
        wv[r][u] = c < chunks ? load_stream(w + c) : make_uint4(0, 0, 0, 0);
      }
    }
  };
  auto compute = [&](const uint4 (&wv)[R][U], int step) {
    const int batch = step % batches;
    if (batch == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r) acc[r] = 0.f;
    }
    dot_chunks<kW, kIn, R, U>(p, smem_x, batch * 32 * U, chunks, lane, acc,
                              [&](int r, int u) { return wv[r][u]; });
    if (batch == batches - 1) {
#pragma unroll
      for (int r = 0; r < R; ++r) acc[r] = warp_sum(acc[r]);
      store_task<kW, kOut, R>(p, task0 + (step / batches) * stride, lane, acc);
    }
  };

  // Weights never depend on the previous kernel: the first two steps are requested before waiting.
  if (steps > 0) load(buf_a, 0);
  if (steps > 1) load(buf_b, 1);
  griddep_wait();
  if constexpr (kIn == GemvInput::kRmsNorm) stage_rmsnorm(p, smem_x);
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

// ---- The bulk-copy kernel (sm_90): weights through a shared-memory ring filled by cp.async.bulk ----
//
// Each warp owns a ring of `slots` slots; a slot holds one step (R row pieces of 32 U chunks, 4 KB).
// Lane 0 issues a step as R bulk copies (one contiguous piece of a row each; the TMA engine moves it,
// no per-lane load instructions) completing on the slot's mbarrier, so `slots` steps per warp are in
// flight with no registers holding them. The lanes wait on the slot's barrier, multiply from shared
// memory, and lane 0 refills the slot with the step `slots` further on. Tasks, steps, the kRmsNorm
// staging and the epilogues are the register kernel's.
template <GemvWeight kW, GemvInput kIn, GemvOutput kOut, int R, int U>
__global__ void __launch_bounds__(kThreads, 1) gemv_bulk_kernel(const __grid_constant__ GemvParams p, int slots) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  static_assert(R * U * 32 * 16 == kBulkSlotBytes, "a step fills one slot");
  static_assert(kOut != GemvOutput::kSwiglu || R % 2 == 0, "a SwiGLU task holds whole (gate, up) pairs");
  static_assert(kOut != GemvOutput::kRopeKV || R == 2, "a RoPE task is one rotate-half pair");
  constexpr int kPiece = 32 * U;  // chunks of one row per step
  extern __shared__ __align__(128) uint8_t smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem) + warp * kBulkMaxSlots;
  uint4* ring = reinterpret_cast<uint4*>(smem + kBulkBarBytes) + warp * slots * R * kPiece;
  uint4* smem_x = reinterpret_cast<uint4*>(smem + kBulkBarBytes + kWarps * slots * kBulkSlotBytes);
  const int chunks = p.in_dim / kPerLoad<kW>;
  const int stride = gridDim.x * kWarps;
  const int task0 = blockIdx.x * kWarps + warp;
  const int pieces = (chunks + kPiece - 1) / kPiece;
  const int my_tasks = task0 < p.tasks ? (p.tasks - task0 + stride - 1) / stride : 0;
  const int steps = my_tasks * pieces;
  const uint64_t policy = evict_first_policy();

  if (lane == 0) {
    for (int i = 0; i < slots; ++i) mbar_init(&bars[i], 1);
    mbar_init_fence();
  }
  __syncwarp();
  auto issue = [&](int step) {  // lane 0
    const int slot = step % slots;
    const int t = task0 + (step / pieces) * stride;
    const int c0 = (step % pieces) * kPiece;
    const uint32_t bytes = static_cast<uint32_t>(min(kPiece, chunks - c0)) * 16;
    mbar_expect_tx(&bars[slot], R * bytes);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      bool real;
      const uint4* row = weight_row<kW>(p, task_row<kOut, R>(p, t, r, &real));
      bulk_copy(ring + (slot * R + r) * kPiece, row + c0, bytes, &bars[slot], policy);
    }
  };
  // Weights never depend on the previous kernel: the whole ring is requested before waiting.
  if (lane == 0) {
    for (int s = 0; s < min(slots, steps); ++s) issue(s);
  }
  griddep_wait();
  if constexpr (kIn == GemvInput::kRmsNorm) stage_rmsnorm(p, smem_x);
  griddep_launch_dependents();

  float acc[R];
  for (int step = 0; step < steps; ++step) {
    const int slot = step % slots;
    const int piece = step % pieces;
    const int t = task0 + (step / pieces) * stride;
    if (piece == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r) acc[r] = 0.f;
    }
    mbar_wait(&bars[slot], (step / slots) & 1);
    const uint4* wv = ring + slot * R * kPiece;
    dot_chunks<kW, kIn, R, U>(p, smem_x, piece * kPiece, chunks, lane, acc,
                              [&](int r, int u) { return wv[r * kPiece + lane + 32 * u]; });
    __syncwarp();
    if (lane == 0 && step + slots < steps) {
      fence_proxy_async();
      issue(step + slots);
    }
    if (piece == pieces - 1) {
#pragma unroll
      for (int r = 0; r < R; ++r) acc[r] = warp_sum(acc[r]);
      store_task<kW, kOut, R>(p, t, lane, acc);
    }
  }
#else
  // Compiled for an older target: gemv_bulk_copy_available() keeps the host from launching this; if a
  // launch gets here anyway, fail loudly rather than return garbage.
  __trap();
#endif
}

template <GemvWeight kW, GemvInput kIn, GemvOutput kOut, int R, int U>
void launch(const GemvArgs& a, GemvParams p, cudaStream_t stream) {
  const bool bulk = a.kernel == GemvKernel::kBulkCopy;
  const int slots = bulk ? bulk_slots(a) : 0;
  int smem = static_cast<int>(smem_bytes(a));
  if (bulk) smem += kBulkBarBytes + kWarps * slots * kBulkSlotBytes;
  p.tasks = kOut == GemvOutput::kSwiglu   ? (a.out_dim / 2 + R / 2 - 1) / (R / 2)
            : kOut == GemvOutput::kRopeKV ? a.out_dim / 2
                                          : (a.out_dim + R - 1) / R;
  const int needed = (p.tasks + kWarps - 1) / kWarps;
  // One occupancy cache per kernel (the two kernels of an instantiation have different limits).
  static thread_local int cached_smem[2] = {-1, -1}, cached_blocks[2] = {0, 0};
  const int per_sm = std::min(
      kCtasPerSm, bulk ? resident_ctas(gemv_bulk_kernel<kW, kIn, kOut, R, U>, smem, &cached_smem[1], &cached_blocks[1])
                       : resident_ctas(gemv_kernel<kW, kIn, kOut, R, U>, smem, &cached_smem[0], &cached_blocks[0]));
  // Every task costs the same, so the kernel lasts as long as the warp with the most tasks: take the
  // fewest rounds the resident warps allow, then the fewest warps that still need only that many rounds
  // (3072 tasks on 2112 warps: 1536 warps x 2, not 1056 x 2 + 1056 x 1 idling half the time).
  const int max_warps = current_device_limits().sms * per_sm * kWarps;
  const int rounds = (p.tasks + max_warps - 1) / max_warps;
  const int warps = (p.tasks + rounds - 1) / rounds;
  const int grid = std::max(std::min(needed, (warps + kWarps - 1) / kWarps), 1);
  const LaunchConfig launch(dim3(grid), dim3(kThreads), smem, stream, a.pdl);
  if (bulk) {
    CUDA_CHECK(cudaLaunchKernelEx(&launch.config, gemv_bulk_kernel<kW, kIn, kOut, R, U>, p, slots));
  } else {
    CUDA_CHECK(cudaLaunchKernelEx(&launch.config, gemv_kernel<kW, kIn, kOut, R, U>, p));
  }
  CUDA_CHECK_LAUNCH();
}

// Rows per task: 1 (U = 8 chunks of one row per step) or 2 (4 of each of two rows, each x chunk read
// serving both). Whichever leaves less of the last round of tasks idle: every task is the same size,
// so tasks / warps = 1.45 costs as much as 2.
template <GemvWeight kW, GemvInput kIn, GemvOutput kOut>
void launch_tuned(const GemvArgs& a, const GemvParams& p, cudaStream_t s) {
  if constexpr (kOut != GemvOutput::kSwiglu && kOut != GemvOutput::kRopeKV) {
    const double warps = double(current_device_limits().sms) * kCtasPerSm * kWarps;
    auto efficiency = [&](int r) {
      const double rounds = std::ceil(double(a.out_dim) / r) / warps;
      return rounds / std::ceil(rounds);
    };
    if (efficiency(2) < efficiency(1) - 0.02) return launch<kW, kIn, kOut, 1, 8>(a, p, s);
  }
  launch<kW, kIn, kOut, 2, 4>(a, p, s);
}

template <GemvWeight kW, GemvInput kIn>
void dispatch_output(const GemvArgs& a, const GemvParams& p, cudaStream_t s) {
  switch (a.output) {
    case GemvOutput::kBf16: return launch_tuned<kW, kIn, GemvOutput::kBf16>(a, p, s);
    case GemvOutput::kF32: return launch_tuned<kW, kIn, GemvOutput::kF32>(a, p, s);
    case GemvOutput::kAddF32: return launch_tuned<kW, kIn, GemvOutput::kAddF32>(a, p, s);
    case GemvOutput::kSwiglu: return launch_tuned<kW, kIn, GemvOutput::kSwiglu>(a, p, s);
    case GemvOutput::kRopeKV: return launch_tuned<kW, kIn, GemvOutput::kRopeKV>(a, p, s);
  }
}

// The one place the runtime weight type and input mode become template parameters.
template <GemvWeight kW>
void dispatch_input(const GemvArgs& a, const GemvParams& p, cudaStream_t s) {
  if (a.input == GemvInput::kRmsNorm) return dispatch_output<kW, GemvInput::kRmsNorm>(a, p, s);
  dispatch_output<kW, GemvInput::kBf16>(a, p, s);
}

// Whether the bulk-copy kernel runs here with its sm_90 body (kernels/arch.h): PTX of an older target
// JIT-compiles for a Hopper GPU too, but with the body compiled out.
bool bulk_kernel_runs_here() {
  cudaFuncAttributes attributes{};
  const cudaError_t status =
      cudaFuncGetAttributes(&attributes, gemv_bulk_kernel<GemvWeight::kBf16, GemvInput::kRmsNorm, GemvOutput::kRopeKV, 2, 4>);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();  // no image for this device: not an error of ours, just unavailable
    return false;
  }
  return hopper_code_runs(current_device_limits().cc_major, {attributes.ptxVersion, attributes.binaryVersion});
}

}  // namespace

bool gemv_bulk_copy_available() {
  static thread_local int device = -1;
  static thread_local bool available = false;
  int current = 0;
  CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) {
    available = bulk_kernel_runs_here();
    device = current;
  }
  return available;
}

bool gemv_supported(const GemvArgs& a) {
  const int per_load = a.weight == GemvWeight::kE4m3 ? kPerLoad<GemvWeight::kE4m3> : kPerLoad<GemvWeight::kBf16>;
  if (a.in_dim <= 0 || a.in_dim % per_load != 0 || a.out_dim <= 0) return false;
  if (a.weight == GemvWeight::kE4m3 && (a.w_scales == nullptr || reinterpret_cast<uintptr_t>(a.w_scales) % 4 != 0)) {
    return false;
  }
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
  if (a.kernel == GemvKernel::kBulkCopy && (!gemv_bulk_copy_available() || bulk_slots(a) == 0)) return false;
  if (a.input == GemvInput::kBf16) return a.x != nullptr && aligned16(a.x);
  return a.residual != nullptr && aligned16(a.residual) && a.norm_weight != nullptr && aligned16(a.norm_weight) &&
         smem_bytes(a) <= static_cast<size_t>(kMaxSmemBytes);
}

void gemv(const GemvArgs& a, cudaStream_t stream) {
  if (!gemv_supported(a)) {
    if (a.kernel == GemvKernel::kBulkCopy && !gemv_bulk_copy_available()) {
      fail("gemv: the bulk-copy kernel needs an sm_90 GPU and sm_90 code in this build");
    }
    fail("gemv: unsupported arguments ({} weights, in_dim {}, out_dim {}; need in_dim % 8 == 0 (e4m3: % 16 and "
         "row scales), 16-byte aligned pointers, an rmsnorm row of at most {} bytes and, for the bulk-copy kernel, "
         "room for its ring)",
         a.weight == GemvWeight::kE4m3 ? "e4m3" : "bf16", a.in_dim, a.out_dim, kMaxSmemBytes);
  }
  GemvParams p{};
  p.w = a.w;
  p.w_scales = a.w_scales;
  p.x = a.x;
  p.residual = a.residual;
  p.norm_weight = a.norm_weight;
  p.out = a.out;
  p.in_dim = a.in_dim;
  p.out_dim = a.out_dim;
  p.eps = a.eps;
  p.rope = a.rope;
  if (a.weight == GemvWeight::kE4m3) return dispatch_input<GemvWeight::kE4m3>(a, p, stream);
  dispatch_input<GemvWeight::kBf16>(a, p, stream);
}

}  // namespace fc
