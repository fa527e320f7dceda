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
#include "kernels/gemv_device.cuh"

namespace fc {
namespace {

using namespace gemv_detail;

// acc[r][m] += row r's chunks base + lane + 32 u (u < U; weight(r, u) gives them, from registers or a ring
// slot) times the same chunks of x row m (kRmsNorm: staged in shared memory; else from global through L1).
template <int M, GemvInput kIn, int R, int U, typename Weights>
__device__ __forceinline__ void dot_chunks(const GemvParams& p, const uint4* smem_x, int base, int chunks, int lane,
                                           float (&acc)[R][M], Weights weight) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int c = base + lane + 32 * u;
    if (c < chunks) {
      float f[R][8];
#pragma unroll
      for (int r = 0; r < R; ++r) unpack8(weight(r, u), f[r]);
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
  auto compute = [&](const uint4 (&wv)[R][U], int step) {
    const int batch = step % batches;
    const int base = batch * 32 * U;
    if (batch == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) acc[r][m] = 0.f;
    }
    dot_chunks<M, kIn, R, U>(p, smem_x, base, chunks, lane, acc, [&](int r, int u) { return wv[r][u]; });
    if (batch == batches - 1) {
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) acc[r][m] = warp_sum(acc[r][m]);
      store_task<M, kOut, R>(p, task0 + (step / batches) * stride, lane, acc);
    }
  };

  // Weights never depend on the previous kernel: the first two steps are requested before waiting.
  trace_stamp(p, 0);
  if (steps > 0) load(buf_a, 0);
  if (steps > 1) load(buf_b, 1);
  griddep_wait();
  if constexpr (kIn == GemvInput::kRmsNorm) stage_rmsnorm<M>(p, smem_x);
  trace_stamp(p, 1);
  griddep_launch_dependents();
  for (int step = 0; step < steps; step += 2) {
    compute(buf_a, step);
    if (step + 2 < steps) load(buf_a, step + 2);
    if (step + 1 < steps) {
      compute(buf_b, step + 1);
      if (step + 3 < steps) load(buf_b, step + 3);
    }
  }
  prefetch_next(p);
  trace_stamp(p, 2);
}

// The lanes' part of one ring slot: R row pieces of 32 U chunks (the pieces starting at chunk c0 of their
// rows) times the matching chunks of x, into acc.
template <int M, GemvInput kIn, int R, int U>
__device__ __forceinline__ void slot_dot(const GemvParams& p, const uint4* wv, const uint4* smem_x, int c0,
                                         int chunks, int lane, float (&acc)[R][M]) {
  constexpr int kPiece = 32 * U;
  dot_chunks<M, kIn, R, U>(p, smem_x, c0, chunks, lane, acc,
                           [&](int r, int u) { return wv[r * kPiece + lane + 32 * u]; });
}

// ---- The bulk-copy kernel (sm_90): weights through a shared-memory ring filled by cp.async.bulk ----
//
// Each warp owns a ring of `slots` slots; a slot holds one step (R row pieces of 32 U chunks, 4 KB).
// Lane 0 issues a step as R bulk copies (one contiguous piece of a row each; the TMA engine moves it,
// no per-lane load instructions) completing on the slot's mbarrier, so `slots` steps (16 KB at 4 slots)
// per warp are in flight with no registers holding them. The lanes wait on the slot's barrier, multiply
// from shared memory, and lane 0 refills the slot with the step `slots` further on. Tasks, steps, the
// kRmsNorm staging and the epilogues are the register kernel's.

template <int M, GemvInput kIn, GemvOutput kOut, int R, int U>
__global__ void __launch_bounds__(kThreads, 1) gemv_bulk_kernel(const __grid_constant__ GemvParams p, int slots, int late_trigger,
                                                                int prewait) {
  static_assert(R * U * 32 * 16 == kBulkSlotBytes, "a step fills one slot");
  static_assert(kOut != GemvOutput::kSwiglu || R % 2 == 0, "a SwiGLU task holds whole (gate, up) pairs");
  static_assert(kOut != GemvOutput::kRopeKV || R == 2, "a RoPE task is one rotate-half pair");
  constexpr int kPiece = 32 * U;  // chunks of one row per step
  extern __shared__ __align__(128) uint8_t smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem) + warp * kBulkMaxSlots;
  uint4* ring = reinterpret_cast<uint4*>(smem + kBulkBarBytes) + warp * slots * R * kPiece;
  uint4* smem_x = reinterpret_cast<uint4*>(smem + kBulkBarBytes + kWarps * slots * kBulkSlotBytes);
  const int chunks = p.in_dim / 8;
  const int stride = gridDim.x * kWarps;
  const int task0 = blockIdx.x * kWarps + warp;
  const int pieces = (chunks + kPiece - 1) / kPiece;
  trace_stamp(p, 0);
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
      const bf16* row = p.w + static_cast<int64_t>(task_row<kOut, R>(p, t, r, &real)) * p.in_dim;
      bulk_copy(ring + (slot * R + r) * kPiece, row + c0 * 8, bytes, &bars[slot], policy);
    }
  };
  // Weights never depend on the previous kernel: the ring (its first `prewait` slots) is requested before
  // waiting, the rest once x is staged.
  const int pre = prewait > 0 ? min(prewait, slots) : slots;
  if (lane == 0) {
    for (int s = 0; s < min(pre, steps); ++s) issue(s);
  }
  griddep_wait();
  if constexpr (kIn == GemvInput::kRmsNorm) stage_rmsnorm<M>(p, smem_x);
  trace_stamp(p, 1);
  if (lane == 0) {
    for (int s = pre; s < min(slots, steps); ++s) issue(s);
  }
  if (!late_trigger) griddep_launch_dependents();

  float acc[R][M];
  const int trigger_step = max(steps - slots, 0);  // the step whose refill is this warp's last copy
  for (int step = 0; step < steps; ++step) {
    if (late_trigger && step == trigger_step) griddep_launch_dependents();
    const int slot = step % slots;
    const int piece = step % pieces;
    const int t = task0 + (step / pieces) * stride;
    if (piece == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) acc[r][m] = 0.f;
    }
    mbar_wait(&bars[slot], (step / slots) & 1);
    slot_dot<M, kIn, R, U>(p, ring + slot * R * kPiece, smem_x, piece * kPiece, chunks, lane, acc);
    __syncwarp();
    if (lane == 0 && step + slots < steps) {
      fence_proxy_async();
      issue(step + slots);
    }
    if (piece == pieces - 1) {
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) acc[r][m] = warp_sum(acc[r][m]);
      store_task<M, kOut, R>(p, t, lane, acc);
    }
  }
  prefetch_next(p);
  trace_stamp(p, 2);
}

template <int M, GemvInput kIn, GemvOutput kOut, int R, int U>
void launch(const GemvArgs& a, GemvParams p, const GemvTuning& t, cudaStream_t stream) {
  const int slots = t.kernel == GemvKernel::kRegisters ? 0 : bulk_slots(a, t);
  int smem = static_cast<int>(smem_bytes(a));
  if (slots > 0) smem += kBulkBarBytes + kWarps * slots * kBulkSlotBytes;
  p.tasks = kOut == GemvOutput::kSwiglu   ? (a.out_dim / 2 + R / 2 - 1) / (R / 2)
            : kOut == GemvOutput::kRopeKV ? a.out_dim / 2
                                          : (a.out_dim + R - 1) / R;
  const int needed = (p.tasks + kWarps - 1) / kWarps;
  // One occupancy cache per kernel (the two kernels of an instantiation have different limits).
  static thread_local int cached_smem[2] = {-1, -1}, cached_blocks[2] = {0, 0};
  const int per_sm =
      std::min(t.ctas_per_sm,
               slots > 0 ? resident_ctas(gemv_bulk_kernel<M, kIn, kOut, R, U>, smem, &cached_smem[1],
                                         &cached_blocks[1])
                         : resident_ctas(gemv_kernel<M, kIn, kOut, R, U>, smem, &cached_smem[0],
                                         &cached_blocks[0]));
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
  static thread_local int cached_carveout[2] = {-1, -1};
  const int carveout = std::clamp(t.carveout, -1, 100);
  if (slots > 0) {
    set_carveout(gemv_bulk_kernel<M, kIn, kOut, R, U>, carveout, &cached_carveout[1]);
  } else {
    set_carveout(gemv_kernel<M, kIn, kOut, R, U>, carveout, &cached_carveout[0]);
  }
  const LaunchConfig launch(dim3(grid), dim3(kThreads), smem, stream, a.pdl);
  if (slots > 0) {
    CUDA_CHECK(cudaLaunchKernelEx(&launch.config, gemv_bulk_kernel<M, kIn, kOut, R, U>, p, slots, t.late_trigger ? 1 : 0,
                                  t.prewait_slots));
  } else {
    CUDA_CHECK(cudaLaunchKernelEx(&launch.config, gemv_kernel<M, kIn, kOut, R, U>, p));
  }
  CUDA_CHECK_LAUNCH();
}

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
  if (a.prefetch != nullptr && !aligned16(a.prefetch)) return false;
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
  p.prefetch = static_cast<const uint8_t*>(a.prefetch);
  p.prefetch_bytes = a.prefetch != nullptr ? a.prefetch_bytes : 0;
  p.trace = a.trace;
  if (tuning.kernel == GemvKernel::kBulkCta && gemv_coop(a, p, tuning, stream)) return;
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

