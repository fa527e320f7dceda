// The CTA-cooperative bulk-copy GEMV (GemvKernel::kBulkCta; kernels/gemv.cuh), sm_90.
//
// Work split. A CTA owns a task: R weight rows (kSwiglu: R/2 (gate, up) pairs; kRopeKV: one rotate-half
// pair). Its 8 warps split every row into 8 equal shares of in_dim; warp w streams share w of each of
// its CTA's tasks through its own ring of shared-memory slots, lane 0 filling a slot with R bulk copies
// (cp.async.bulk, one contiguous piece of a row each) that complete on the slot's mbarrier. So a task
// is 8 x 4 KB at the 8B shapes and drains in about 2 us at one CTA per SM, where the warp-owned tasks of
// the other two kernels are whole rows (a 28 KB down row at 1/2112 of the bandwidth takes ~14 us): the
// kernel's end is no longer held up by the warps that got less bandwidth, and a short kernel (o_proj:
// 32 MB) has 8 tasks per CTA to balance over instead of 1 or 2 per warp.
//
// Numerics. Each warp's per-lane sums go through the xor butterfly, then one warp adds the 8 warps'
// partial sums in warp order: deterministic, and the same fp32 products as the other kernels (the
// summation order differs).
#include "kernels/gemv_device.cuh"

namespace fc {
namespace gemv_detail {
namespace {

constexpr int kSlotChunks = kBulkSlotBytes / 16;
constexpr int kFull = 1, kEmpty = 3;  // named barrier ids (0 is __syncthreads), one per task parity

// Named barriers over the whole CTA (kThreads): bar.arrive does not wait; bar.sync waits until all
// kThreads threads have arrived or synced, and makes their earlier shared-memory writes visible.
__device__ __forceinline__ void named_sync(int id) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "n"(kThreads) : "memory");
}
__device__ __forceinline__ void named_arrive(int id) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "n"(kThreads) : "memory");
}

template <int M, GemvInput kIn, GemvOutput kOut, int R>
__global__ void __launch_bounds__(kThreads, 1)
    gemv_coop_kernel(const __grid_constant__ GemvParams p, int slots, int piece, int late_trigger) {
  static_assert(kOut != GemvOutput::kSwiglu || R % 2 == 0, "a SwiGLU task holds whole (gate, up) pairs");
  static_assert(kOut != GemvOutput::kRopeKV || R == 2, "a RoPE task is one rotate-half pair");
  constexpr int kMaxU = kSlotChunks / (32 * R);  // 16-byte chunks a lane takes of one row piece, at most
  extern __shared__ __align__(128) uint8_t smem[];
  __shared__ float partial[2][kWarps][R][M];  // per task parity: each warp's sums
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem) + warp * kBulkMaxSlots;
  uint4* ring = reinterpret_cast<uint4*>(smem + kBulkBarBytes) + warp * slots * kSlotChunks;
  uint4* smem_x = reinterpret_cast<uint4*>(smem + kBulkBarBytes + kWarps * slots * kBulkSlotBytes);
  const int chunks = p.in_dim / 8;
  const int share = chunks / kWarps;  // chunks of each row this warp streams
  const int share0 = warp * share;
  const int pieces = (share + piece - 1) / piece;
  const int my_tasks =
      static_cast<int>(blockIdx.x) < p.tasks ? (p.tasks - static_cast<int>(blockIdx.x) + gridDim.x - 1) / gridDim.x : 0;
  const int steps = my_tasks * pieces;  // the same for every warp of the CTA
  const uint64_t policy = evict_first_policy();

  if (lane == 0) {
    for (int i = 0; i < slots; ++i) mbar_init(&bars[i], 1);
    mbar_init_fence();
  }
  __syncwarp();
  auto issue = [&](int step) {  // lane 0
    const int slot = step % slots;
    const int t = blockIdx.x + (step / pieces) * gridDim.x;
    const int c0 = share0 + (step % pieces) * piece;
    const uint32_t bytes = static_cast<uint32_t>(min(piece, share0 + share - c0)) * 16;
    mbar_expect_tx(&bars[slot], R * bytes);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      bool real;
      const bf16* row = p.w + static_cast<int64_t>(task_row<kOut, R>(p, t, r, &real)) * p.in_dim;
      bulk_copy(ring + slot * kSlotChunks + r * piece, row + static_cast<int64_t>(c0) * 8, bytes, &bars[slot], policy);
    }
  };
  // Weights never depend on the previous kernel: the whole ring is requested before waiting.
  trace_stamp(p, 0);
  if (lane == 0) {
    for (int s = 0; s < min(slots, steps); ++s) issue(s);
  }
  griddep_wait();
  if constexpr (kIn == GemvInput::kRmsNorm) stage_rmsnorm<M>(p, smem_x);
  trace_stamp(p, 1);
  if (!late_trigger) griddep_launch_dependents();

  float acc[R][M];
  const int trigger_step = max(steps - slots, 0);  // the step whose refill is this warp's last copy
  for (int step = 0; step < steps; ++step) {
    if (late_trigger && step == trigger_step) griddep_launch_dependents();
    const int slot = step % slots;
    const int piece_index = step % pieces;
    const int task_index = step / pieces;
    if (piece_index == 0) {
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) acc[r][m] = 0.f;
    }
    const int c0 = share0 + piece_index * piece;
    const int n = min(piece, share0 + share - c0);
    mbar_wait(&bars[slot], (step / slots) & 1);
    const uint4* wv = ring + slot * kSlotChunks;
#pragma unroll
    for (int u = 0; u < kMaxU; ++u) {
      const int i = lane + 32 * u;
      if (i < n) {
        float f[R][8];
#pragma unroll
        for (int r = 0; r < R; ++r) unpack8(wv[r * piece + i], f[r]);
#pragma unroll
        for (int m = 0; m < M; ++m) {
          uint4 xv;
          if constexpr (kIn == GemvInput::kRmsNorm) {
            xv = smem_x[m * chunks + c0 + i];
          } else {
            xv = __ldg(reinterpret_cast<const uint4*>(p.x + static_cast<int64_t>(m) * p.in_dim) + c0 + i);
          }
#pragma unroll
          for (int r = 0; r < R; ++r) acc[r][m] = dot8(f[r], xv, acc[r][m]);
        }
      }
    }
    __syncwarp();
    if (lane == 0 && step + slots < steps) {
      fence_proxy_async();
      issue(step + slots);
    }
    if (piece_index == pieces - 1) {
      // The task's sums: every warp adds its share's through the butterfly and posts them; the epilogue
      // warp (task_index % 8, so no one warp takes every epilogue's load latency, e.g. kAddF32's read
      // of `out`) adds the 8 in warp order and stores, while the other warps go on streaming. Named
      // barriers hand the buffer of this task's parity over: kFull (the 7 other warps arrive after
      // writing, the epilogue warp syncs before reading) and kEmpty (the epilogue warp arrives after
      // reading when the buffer has a later use; the 7 others sync before writing that use).
      const int parity = task_index & 1;
      const int epilogue_warp = task_index % kWarps;
      float sums[R][M];
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) sums[r][m] = warp_sum(acc[r][m]);
      if (task_index >= 2 && warp != (task_index - 2) % kWarps) named_sync(kEmpty + parity);
      if (lane == 0) {
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
          for (int m = 0; m < M; ++m) partial[parity][warp][r][m] = sums[r][m];
      }
      if (warp != epilogue_warp) {
        named_arrive(kFull + parity);
      } else {
        named_sync(kFull + parity);
        float total[R][M];
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
          for (int m = 0; m < M; ++m) {
            float v = 0.f;
#pragma unroll
            for (int w = 0; w < kWarps; ++w) v += partial[parity][w][r][m];
            total[r][m] = v;
          }
        if (task_index + 2 < my_tasks) named_arrive(kEmpty + parity);
        store_task<M, kOut, R>(p, blockIdx.x + task_index * gridDim.x, lane, total);
      }
    }
  }
  trace_stamp(p, 2);
}

template <int M, GemvInput kIn, GemvOutput kOut, int R>
void launch(const GemvArgs& a, GemvParams p, const GemvTuning& t, int slots, cudaStream_t stream) {
  auto kernel = gemv_coop_kernel<M, kIn, kOut, R>;
  const int share = a.in_dim / 8 / kWarps;
  const int piece = std::min(share, kSlotChunks / R);
  const int smem = static_cast<int>(smem_bytes(a)) + kBulkBarBytes + kWarps * slots * kBulkSlotBytes;
  p.tasks = kOut == GemvOutput::kSwiglu   ? (a.out_dim / 2 + R / 2 - 1) / (R / 2)
            : kOut == GemvOutput::kRopeKV ? a.out_dim / 2
                                          : (a.out_dim + R - 1) / R;
  static thread_local int cached_smem = -1, cached_blocks = 0;
  const int per_sm = std::min(t.ctas_per_sm, resident_ctas(kernel, smem, &cached_smem, &cached_blocks));
  // Tasks are small (a few us each) and the kernel is memory-bound: a CTA that runs out of tasks leaves
  // its bandwidth to the others, so every resident CTA takes part.
  const int grid = std::max(1, std::min(p.tasks, current_device_limits().sms * per_sm));
  const LaunchConfig config(dim3(grid), dim3(kThreads), smem, stream, a.pdl);
  CUDA_CHECK(cudaLaunchKernelEx(&config.config, kernel, p, slots, piece, t.late_trigger ? 1 : 0));
  CUDA_CHECK_LAUNCH();
}

// Rows per task: as many as fill a 4 KB slot with one piece of each (4 at in_dim 4096: 8 x 4 KB a
// task), else 1 (kSwiglu 2, kRopeKV always 2) with the row's share in pieces of a slot.
template <int M, GemvInput kIn, GemvOutput kOut>
void launch_rows(const GemvArgs& a, const GemvParams& p, const GemvTuning& t, int slots, cudaStream_t s) {
  const int share = a.in_dim / 8 / kWarps;
  const bool four = share * 4 <= 2 * kSlotChunks;  // 4 rows whose pieces are at least half their share
  if constexpr (kOut == GemvOutput::kRopeKV) {
    launch<M, kIn, kOut, 2>(a, p, t, slots, s);
  } else if constexpr (kOut == GemvOutput::kSwiglu) {
    if (four) return launch<M, kIn, kOut, 4>(a, p, t, slots, s);
    launch<M, kIn, kOut, 2>(a, p, t, slots, s);
  } else {
    if (four) return launch<M, kIn, kOut, 4>(a, p, t, slots, s);
    launch<M, kIn, kOut, 1>(a, p, t, slots, s);
  }
}

template <GemvInput kIn, GemvOutput kOut>
void dispatch_rows(const GemvArgs& a, const GemvParams& p, const GemvTuning& t, int slots, cudaStream_t s) {
  switch (a.rows) {
    case 1: return launch_rows<1, kIn, kOut>(a, p, t, slots, s);
    case 2: return launch_rows<2, kIn, kOut>(a, p, t, slots, s);
    case 3: return launch_rows<3, kIn, kOut>(a, p, t, slots, s);
    case 4: return launch_rows<4, kIn, kOut>(a, p, t, slots, s);
    case 5: return launch_rows<5, kIn, kOut>(a, p, t, slots, s);
    case 6: return launch_rows<6, kIn, kOut>(a, p, t, slots, s);
    case 7: return launch_rows<7, kIn, kOut>(a, p, t, slots, s);
    case 8: return launch_rows<8, kIn, kOut>(a, p, t, slots, s);
    default: fail("gemv: {} rows (1..{})", a.rows, kGemvMaxRows);
  }
}

template <GemvInput kIn>
void dispatch_output(const GemvArgs& a, const GemvParams& p, const GemvTuning& t, int slots, cudaStream_t s) {
  using Out = GemvOutput;
  switch (a.output) {
    case Out::kBf16: return dispatch_rows<kIn, Out::kBf16>(a, p, t, slots, s);
    case Out::kF32: return dispatch_rows<kIn, Out::kF32>(a, p, t, slots, s);
    case Out::kAddF32: return dispatch_rows<kIn, Out::kAddF32>(a, p, t, slots, s);
    case Out::kSwiglu: return dispatch_rows<kIn, Out::kSwiglu>(a, p, t, slots, s);
    case Out::kRopeKV: return dispatch_rows<kIn, Out::kRopeKV>(a, p, t, slots, s);
  }
}

}  // namespace

bool gemv_coop(const GemvArgs& a, const GemvParams& p, const GemvTuning& t, cudaStream_t stream) {
  // Whole 16-byte chunks in each of the 8 shares of a row.
  if (a.in_dim % (8 * kWarps) != 0) return false;
  const int slots = bulk_slots(a, t);
  if (slots == 0) return false;
  if (a.input == GemvInput::kRmsNorm) {
    dispatch_output<GemvInput::kRmsNorm>(a, p, t, slots, stream);
  } else {
    dispatch_output<GemvInput::kBf16>(a, p, t, slots, stream);
  }
  return true;
}

}  // namespace gemv_detail
}  // namespace fc
