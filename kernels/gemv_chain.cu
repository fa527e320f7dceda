// Dependent one-row GEMVs in one persistent kernel (kernels/gemv_chain.cuh).
//
// Work split. One CTA of 8 warps per SM. Phase p's tasks (2 weight rows each, as in gemv.cu) are dealt
// to the warps round-robin, continuing where phase p - 1's left off, so no warp gets the extra task of
// every phase. A warp's steps (2 KB pieces of its 2 rows, one 4 KB ring slot) form one sequence over all
// phases; lane 0 keeps `slots` of them in flight with cp.async.bulk and refills a slot as soon as the
// lanes have multiplied it, crossing phase boundaries, so a warp waiting at the barrier between phases
// has its next phase's first weights already arriving.
//
// Between phases: a grid barrier (an arrival counter and a generation word; the last CTA to arrive resets
// the counter and bumps the generation, with release/acquire at GPU scope), then the phase's x is staged
// into shared memory: RMSNorm of the fp32 residual (kRmsNorm) or a copy of the bf16 row. Everything a
// phase reads that an earlier phase of this grid wrote (x, the residual, the kAddF32 read-modify-write)
// is read from L2 (ld.global.cg), since L1 is not coherent across SMs.
//
// Co-residency. The barrier needs every CTA resident at once: the grid is one CTA per SM at an occupancy
// of at least one (the kernel uses most of the shared memory, so never more), on a GPU this process owns.
// A CTA that is not yet resident (the previous kernel still finishing under PDL) becomes resident when
// that kernel's CTAs exit, which never depends on this grid, and the next kernel is let in only when
// every CTA of this grid has started its last phase.
#include "kernels/gemv_chain.cuh"
#include "kernels/gemv_device.cuh"

#include <type_traits>

namespace fc {
namespace {

using namespace gemv_detail;

constexpr int kR = 2, kU = 4, kPiece = 32 * kU;  // a step: kPiece 16-byte chunks of each of 2 rows
static_assert(kR * kPiece * 16 == kBulkSlotBytes, "a step fills one ring slot");

enum class Phase : int { kAdd, kSwiglu, kRopeKV, kLogits };

struct ChainPhase {
  GemvParams p;
  Phase kind;
  int norm_input;  // kRmsNorm: x = rmsnorm(residual); else the bf16 row p.x
  int pieces;      // steps per task
  int shift;       // task t belongs to warp (t + shift) % warps
};

struct ChainParams {
  ChainPhase phase[kGemvChainMaxPhases];
  int count;
  int slots;
  uint32_t* barrier;  // [arrivals, generation]
  uint64_t* trace;
  int barrier_thread;
  int fences;
};

__device__ __forceinline__ void stamp(uint64_t* trace, int count, int phase, int point) {
  if (trace == nullptr || threadIdx.x != 0) return;
  uint64_t ns;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(ns));
  uint64_t* at = trace + ((static_cast<int64_t>(blockIdx.x) * count + phase) * 4 + point) * 2;
  at[0] = ns;
  at[1] = clock64();
}

__device__ __forceinline__ uint32_t ld_acquire_gpu(const uint32_t* p) {
  uint32_t v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// Every CTA's writes before the barrier are visible to every CTA after it.
__device__ void grid_barrier(const ChainParams& c, int phase) {
  uint32_t* bar = c.barrier;
  __syncthreads();
  stamp(c.trace, c.count, phase, 0);
  if (threadIdx.x == c.barrier_thread) {
    const uint32_t generation = ld_acquire_gpu(bar + 1);  // cannot move on before this CTA arrives
    if (c.fences) __threadfence();
    uint32_t arrived;
    asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;\n" : "=r"(arrived) : "l"(bar) : "memory");
    if (arrived == gridDim.x - 1) {
      asm volatile("st.relaxed.gpu.global.u32 [%0], 0;\n" ::"l"(bar) : "memory");
      asm volatile("st.release.gpu.global.u32 [%0], %1;\n" ::"l"(bar + 1), "r"(generation + 1) : "memory");
    } else {
      while (ld_acquire_gpu(bar + 1) == generation) {
      }
    }
    if (c.fences) __threadfence();
  }
  __syncthreads();
  stamp(c.trace, c.count, phase, 1);
}

__device__ __forceinline__ int chain_row(const ChainPhase& ph, int t, int r) {
  bool real;
  switch (ph.kind) {
    case Phase::kSwiglu: return task_row<GemvOutput::kSwiglu, kR>(ph.p, t, r, &real);
    case Phase::kRopeKV: return task_row<GemvOutput::kRopeKV, kR>(ph.p, t, r, &real);
    default: return task_row<GemvOutput::kBf16, kR>(ph.p, t, r, &real);
  }
}

__global__ void __launch_bounds__(kThreads, 1) gemv_chain_kernel(const __grid_constant__ ChainParams c) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) uint8_t smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int slots = c.slots;
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem) + warp * kBulkMaxSlots;
  uint4* ring = reinterpret_cast<uint4*>(smem + kBulkBarBytes) + warp * slots * kR * kPiece;
  uint4* smem_x = reinterpret_cast<uint4*>(smem + kBulkBarBytes + kWarps * slots * kBulkSlotBytes);
  const int warps = gridDim.x * kWarps;
  const int me = blockIdx.x * kWarps + warp;
  const uint64_t policy = evict_first_policy();

  auto first_task = [&](int ph) { return (me - c.phase[ph].shift + warps) % warps; };
  auto steps_of = [&](int ph) {
    const int first = first_task(ph), tasks = c.phase[ph].p.tasks;
    return first < tasks ? (tasks - first + warps - 1) / warps * c.phase[ph].pieces : 0;
  };

  if (lane == 0) {
    for (int i = 0; i < slots; ++i) mbar_init(&bars[i], 1);
    mbar_init_fence();
  }
  __syncwarp();

  // The producer (lane 0): the next step to request as (phase, step of it), and the steps requested so far.
  int issue_phase = 0, issue_step = 0, issue_steps = steps_of(0), issued = 0;
  auto issue_next = [&]() {
    while (issue_step >= issue_steps) {
      if (issue_phase + 1 >= c.count) return;
      ++issue_phase;
      issue_step = 0;
      issue_steps = steps_of(issue_phase);
    }
    const ChainPhase& ph = c.phase[issue_phase];
    const int chunks = ph.p.in_dim / 8;
    const int t = first_task(issue_phase) + (issue_step / ph.pieces) * warps;
    const int c0 = (issue_step % ph.pieces) * kPiece;
    const uint32_t bytes = static_cast<uint32_t>(min(kPiece, chunks - c0)) * 16;
    const int slot = issued % slots;
    mbar_expect_tx(&bars[slot], kR * bytes);
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      const bf16* row = ph.p.w + static_cast<int64_t>(chain_row(ph, t, r)) * ph.p.in_dim;
      bulk_copy(ring + (slot * kR + r) * kPiece, row + c0 * 8, bytes, &bars[slot], policy);
    }
    ++issue_step;
    ++issued;
  };
  // Weights never depend on the previous kernel: the whole ring is requested before waiting.
  if (lane == 0) {
    for (int s = 0; s < slots; ++s) issue_next();
  }
  griddep_wait();

  int consumed = 0;
  for (int ph = 0; ph < c.count; ++ph) {
    if (ph > 0) {
      grid_barrier(c, ph);
    } else {
      stamp(c.trace, c.count, 0, 0);
      stamp(c.trace, c.count, 0, 1);
    }
    const ChainPhase& P = c.phase[ph];
    if (ph == c.count - 1) griddep_launch_dependents();
    if (P.norm_input) {
      stage_rmsnorm<1, true>(P.p, smem_x);
    } else {
      const uint4* x = reinterpret_cast<const uint4*>(P.p.x);
      for (int i = threadIdx.x; i < P.p.in_dim / 8; i += kThreads) smem_x[i] = __ldcg(x + i);
      __syncthreads();
    }
    stamp(c.trace, c.count, ph, 2);
    auto run = [&](auto kind) {
      constexpr Phase kKind = decltype(kind)::value;
      const int chunks = P.p.in_dim / 8, pieces = P.pieces;
      const int steps = steps_of(ph), first = first_task(ph);
      float acc[kR][1];
      for (int s = 0; s < steps; ++s) {
        const int slot = consumed % slots;
        const int piece = s % pieces;
        if (piece == 0) {
#pragma unroll
          for (int r = 0; r < kR; ++r) acc[r][0] = 0.f;
        }
        mbar_wait(&bars[slot], (consumed / slots) & 1);
        const uint4* wv = ring + slot * kR * kPiece;
#pragma unroll
        for (int u = 0; u < kU; ++u) {
          const int ci = piece * kPiece + lane + 32 * u;
          if (ci < chunks) {
            float f[kR][8];
#pragma unroll
            for (int r = 0; r < kR; ++r) unpack8(wv[r * kPiece + lane + 32 * u], f[r]);
            const uint4 xv = smem_x[ci];
#pragma unroll
            for (int r = 0; r < kR; ++r) acc[r][0] = dot8(f[r], xv, acc[r][0]);
          }
        }
        __syncwarp();
        if (lane == 0) {
          fence_proxy_async();
          issue_next();
        }
        ++consumed;
        if (piece == pieces - 1) {
#pragma unroll
          for (int r = 0; r < kR; ++r) acc[r][0] = warp_sum(acc[r][0]);
          const int t = first + (s / pieces) * warps;
          if constexpr (kKind == Phase::kAdd) {
            if (lane == 0) {
              float* out = static_cast<float*>(P.p.out);
#pragma unroll
              for (int r = 0; r < kR; ++r) {
                const int row = t * kR + r;
                if (row < P.p.out_dim) __stcg(out + row, __ldcg(out + row) + acc[r][0]);
              }
            }
          } else if constexpr (kKind == Phase::kSwiglu) {
            store_task<1, GemvOutput::kSwiglu, kR>(P.p, t, lane, acc);
          } else if constexpr (kKind == Phase::kRopeKV) {
            store_task<1, GemvOutput::kRopeKV, kR>(P.p, t, lane, acc);
          } else {
            store_task<1, GemvOutput::kF32, kR>(P.p, t, lane, acc);
          }
        }
      }
    };
    switch (P.kind) {
      case Phase::kAdd: run(std::integral_constant<Phase, Phase::kAdd>{}); break;
      case Phase::kSwiglu: run(std::integral_constant<Phase, Phase::kSwiglu>{}); break;
      case Phase::kRopeKV: run(std::integral_constant<Phase, Phase::kRopeKV>{}); break;
      case Phase::kLogits: run(std::integral_constant<Phase, Phase::kLogits>{}); break;
    }
    if (c.trace != nullptr) {
      __syncthreads();
      stamp(c.trace, c.count, ph, 3);
    }
  }
#endif
}

bool phase_kind(const GemvArgs& a, Phase* kind) {
  if (a.input == GemvInput::kBf16 && a.output == GemvOutput::kAddF32) {
    *kind = Phase::kAdd;
  } else if (a.input == GemvInput::kRmsNorm && a.output == GemvOutput::kSwiglu) {
    *kind = Phase::kSwiglu;
  } else if (a.input == GemvInput::kRmsNorm && a.output == GemvOutput::kRopeKV) {
    *kind = Phase::kRopeKV;
  } else if (a.input == GemvInput::kRmsNorm && a.output == GemvOutput::kF32) {
    *kind = Phase::kLogits;
  } else {
    return false;
  }
  return true;
}

int x_bytes(const GemvChainArgs& a) {
  int in_dim = 0;
  for (int i = 0; i < a.count; ++i) in_dim = std::max(in_dim, a.phases[i].in_dim);
  return (in_dim * 2 + 127) / 128 * 128;
}

int chain_slots(const GemvChainArgs& a) {
  const int room = kBulkMaxSmemBytes - kBulkBarBytes - x_bytes(a);
  const int slots = std::min({a.slots, kBulkMaxSlots, room / (kWarps * kBulkSlotBytes)});
  return slots >= 2 ? slots : 0;
}

}  // namespace

bool gemv_chain_supported(const GemvChainArgs& a) {
  if (a.count < 1 || a.count > kGemvChainMaxPhases || a.barrier == nullptr) return false;
  if (current_device_limits().cc_major < 9) return false;
  for (int i = 0; i < a.count; ++i) {
    Phase kind;
    if (a.phases[i].rows != 1 || !phase_kind(a.phases[i], &kind) || !gemv_supported(a.phases[i])) return false;
  }
  return chain_slots(a) > 0;
}

void gemv_chain(const GemvChainArgs& a, cudaStream_t stream) {
  if (!gemv_chain_supported(a)) {
    fail("gemv_chain: unsupported arguments ({} phases; need 1..{} one-row phases of a supported kind, sm_90, "
         "a barrier, and room for 2 ring slots beside the staged x)",
         a.count, kGemvChainMaxPhases);
  }
  ChainParams c{};
  c.count = a.count;
  c.slots = chain_slots(a);
  c.barrier = a.barrier;
  c.trace = a.trace;
  c.barrier_thread = std::clamp(a.barrier_thread, 0, kThreads - 1);
  c.fences = a.fences ? 1 : 0;
  const int smem = kBulkBarBytes + kWarps * c.slots * kBulkSlotBytes + x_bytes(a);
  static thread_local int cached_smem = -1, cached_blocks = 0;
  resident_ctas(gemv_chain_kernel, smem, &cached_smem, &cached_blocks);  // opts in to the shared memory
  const int grid = current_device_limits().sms;
  const int warps = grid * kWarps;
  int64_t dealt = 0;  // tasks of the earlier phases
  for (int i = 0; i < a.count; ++i) {
    const GemvArgs& g = a.phases[i];
    ChainPhase& ph = c.phase[i];
    phase_kind(g, &ph.kind);
    ph.norm_input = g.input == GemvInput::kRmsNorm ? 1 : 0;
    ph.p.w = g.w;
    ph.p.x = g.x;
    ph.p.residual = g.residual;
    ph.p.norm_weight = g.norm_weight;
    ph.p.out = g.out;
    ph.p.in_dim = g.in_dim;
    ph.p.out_dim = g.out_dim;
    ph.p.eps = g.eps;
    ph.p.rope = g.rope;
    ph.p.tasks = ph.kind == Phase::kSwiglu || ph.kind == Phase::kRopeKV ? g.out_dim / 2 : (g.out_dim + kR - 1) / kR;
    ph.pieces = (g.in_dim / 8 + kPiece - 1) / kPiece;
    ph.shift = static_cast<int>(dealt % warps);
    dealt += ph.p.tasks;
  }
  const LaunchConfig launch(dim3(grid), dim3(kThreads), smem, stream, a.phases[0].pdl);
  CUDA_CHECK(cudaLaunchKernelEx(&launch.config, gemv_chain_kernel, c));
  CUDA_CHECK_LAUNCH();
}

}  // namespace fc
