// Dependent one-row GEMVs in one persistent kernel (kernels/gemv_chain.cuh).
//
// Work split. One CTA of 16 warps per SM. A task is 2 weight rows (as in gemv.cu). In each phase warp w
// takes task w first (known before the previous kernel ends, so its weights are requested before
// griddepcontrol.wait), then grabs more from the phase's atomic counter, one task ahead of need, so the
// phase ends balanced whatever tasks / warps is. A warp's steps (2 KB pieces of its 2 rows, one 4 KB ring
// slot each) form one sequence over all phases: lane 0 keeps `slots` of them in flight with
// cp.async.bulk, tags each slot with its (phase, piece, task) and refills a slot as soon as the lanes have
// multiplied it, crossing phase boundaries, so a warp waiting at the barrier between phases already has
// its next phase's first weights arriving.
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
constexpr int kChainWarps = 16, kChainThreads = kChainWarps * 32;
// The RMSNorm statistics are summed by kThreads (256) threads in stage_rmsnorm's order (gemv_device.cuh),
// so x is bitwise what gemv() stages; each keeps up to kCache chunks of the residual in registers.
constexpr int kCache = 4;
constexpr int kMetaBytes = kChainWarps * kBulkMaxSlots * 4;
constexpr int kChainBarBytes = kChainWarps * kBulkMaxSlots * 8;
// A slot's step: phase << 28 | piece << 20 | task.
constexpr int kMaxTasks = 1 << 20, kMaxPieces = 1 << 8;

enum class Phase : int { kAdd, kSwiglu, kRopeKV, kLogits };

struct ChainPhase {
  GemvParams p;
  Phase kind;
  int norm_input;  // kRmsNorm: x = rmsnorm(residual); else the bf16 row p.x
  int pieces;      // steps per task
};

struct ChainParams {
  ChainPhase phase[kGemvChainMaxPhases];
  int count;
  int slots;
  uint32_t* barrier;  // [arrivals, generation, exits, -, task counter of each phase]
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

__device__ __forceinline__ void st_relaxed_gpu(uint32_t* p, uint32_t v) {
  asm volatile("st.relaxed.gpu.global.u32 [%0], %1;\n" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ uint32_t atom_add_acq_rel_gpu(uint32_t* p) {
  uint32_t old;
  asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;\n" : "=r"(old) : "l"(p) : "memory");
  return old;
}

// Between phase - 1 and phase: every CTA's writes before it are visible to every CTA after it. The last
// CTA to arrive resets the arrivals and phase - 1's task counter (every grab on it has returned: a warp
// arrives only after its producer left that phase on a grab's result) and bumps the generation.
__device__ void grid_barrier(const ChainParams& c, int phase) {
  uint32_t* bar = c.barrier;
  __syncthreads();
  stamp(c.trace, c.count, phase - 1, 3);
  stamp(c.trace, c.count, phase, 0);
  if (threadIdx.x == c.barrier_thread) {
    const uint32_t generation = ld_acquire_gpu(bar + 1);  // cannot move on before this CTA arrives
    if (c.fences) __threadfence();
    if (atom_add_acq_rel_gpu(bar) == gridDim.x - 1) {
      st_relaxed_gpu(bar, 0);
      st_relaxed_gpu(bar + 4 + phase - 1, 0);
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

// The norm weights a reducer thread will need for phase P (constant: loaded before the barrier).
__device__ __forceinline__ void prefetch_norm(const ChainPhase& P, uint4 (&nw)[kCache]) {
  if (!P.norm_input || threadIdx.x >= kThreads) return;
  const uint4* weight = reinterpret_cast<const uint4*>(P.p.norm_weight);
#pragma unroll
  for (int k = 0; k < kCache; ++k) {
    const int ci = threadIdx.x + k * kThreads;
    if (ci < P.p.in_dim / 8) nw[k] = __ldg(weight + ci);
  }
}

// Phase P's x into shared memory: stage_rmsnorm's arithmetic (same threads, same order), one pass over the
// residual for in_dim <= kCache * 2048; or the bf16 row. Residual and x are read from L2 (another CTA of
// this grid may have written them).
__device__ void stage_x(const ChainPhase& P, uint4* smem_x, const uint4 (&nw)[kCache]) {
  const int chunks = P.p.in_dim / 8;
  if (!P.norm_input) {
    const uint4* x = reinterpret_cast<const uint4*>(P.p.x);
    for (int i = threadIdx.x; i < chunks; i += kChainThreads) smem_x[i] = __ldcg(x + i);
    __syncthreads();
    return;
  }
  __shared__ float partial[kWarps];
  __shared__ float inv_rms;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const float4* row = reinterpret_cast<const float4*>(P.p.residual);
  float4 a[kCache], b[kCache];
  if (tid < kThreads) {
#pragma unroll
    for (int k = 0; k < kCache; ++k) {
      const int ci = tid + k * kThreads;
      if (ci < chunks) {
        a[k] = __ldcg(row + 2 * ci);
        b[k] = __ldcg(row + 2 * ci + 1);
      }
    }
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < kCache; ++k) {
      if (tid + k * kThreads < chunks) {
        const float4 A = a[k], B = b[k];
        s += A.x * A.x + A.y * A.y + A.z * A.z + A.w * A.w + B.x * B.x + B.y * B.y + B.z * B.z + B.w * B.w;
      }
    }
    for (int ci = tid + kCache * kThreads; ci < chunks; ci += kThreads) {
      const float4 A = __ldcg(row + 2 * ci), B = __ldcg(row + 2 * ci + 1);
      s += A.x * A.x + A.y * A.y + A.z * A.z + A.w * A.w + B.x * B.x + B.y * B.y + B.z * B.z + B.w * B.w;
    }
    s = warp_sum(s);
    if (lane == 0) partial[warp] = s;
  }
  __syncthreads();
  if (tid == 0) {
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) total += partial[w];
    inv_rms = rsqrtf(total / P.p.in_dim + P.p.eps);
  }
  __syncthreads();
  if (tid < kThreads) {
    const float inv = inv_rms;
    auto normalize = [&](int ci, const uint4& wq, const float4& A, const float4& B) {
      float w[8];
      unpack8(wq, w);
      const float v[8] = {A.x, A.y, A.z, A.w, B.x, B.y, B.z, B.w};
      uint4 packed;
      __nv_bfloat162* h2 = reinterpret_cast<__nv_bfloat162*>(&packed);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        h2[j] = __floats2bfloat162_rn(w[2 * j] * (v[2 * j] * inv), w[2 * j + 1] * (v[2 * j + 1] * inv));
      }
      smem_x[ci] = packed;
    };
#pragma unroll
    for (int k = 0; k < kCache; ++k) {
      const int ci = tid + k * kThreads;
      if (ci < chunks) normalize(ci, nw[k], a[k], b[k]);
    }
    const uint4* weight = reinterpret_cast<const uint4*>(P.p.norm_weight);
    for (int ci = tid + kCache * kThreads; ci < chunks; ci += kThreads) {
      normalize(ci, __ldg(weight + ci), __ldcg(row + 2 * ci), __ldcg(row + 2 * ci + 1));
    }
  }
  __syncthreads();
}

__device__ __forceinline__ void store_chain_task(const ChainPhase& P, int t, int lane, const float (&acc)[kR][1]) {
  switch (P.kind) {
    case Phase::kAdd:
      if (lane == 0) {
        float* out = static_cast<float*>(P.p.out);
#pragma unroll
        for (int r = 0; r < kR; ++r) {
          const int row = t * kR + r;
          if (row < P.p.out_dim) __stcg(out + row, __ldcg(out + row) + acc[r][0]);
        }
      }
      break;
    case Phase::kSwiglu: store_task<1, GemvOutput::kSwiglu, kR>(P.p, t, lane, acc); break;
    case Phase::kRopeKV: store_task<1, GemvOutput::kRopeKV, kR>(P.p, t, lane, acc); break;
    case Phase::kLogits: store_task<1, GemvOutput::kF32, kR>(P.p, t, lane, acc); break;
  }
}

// Compiled for every target (the bulk-copy and mbarrier wrappers are no-ops before sm_90, where
// gemv_chain_supported() never lets it launch).
__global__ void __launch_bounds__(kChainThreads, 1) gemv_chain_kernel(const __grid_constant__ ChainParams c) {
  extern __shared__ __align__(128) uint8_t smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int slots = c.slots;
  uint64_t* bars = reinterpret_cast<uint64_t*>(smem) + warp * kBulkMaxSlots;
  uint32_t* meta = reinterpret_cast<uint32_t*>(smem + kChainBarBytes) + warp * kBulkMaxSlots;
  uint4* ring = reinterpret_cast<uint4*>(smem + kChainBarBytes + kMetaBytes) + warp * slots * kR * kPiece;
  uint4* smem_x = reinterpret_cast<uint4*>(smem + kChainBarBytes + kMetaBytes + kChainWarps * slots * kBulkSlotBytes);
  const int warps = gridDim.x * kChainWarps;
  const int me = blockIdx.x * kChainWarps + warp;
  uint32_t* counters = c.barrier + 4;
  const uint64_t policy = evict_first_policy();

  if (lane == 0) {
    for (int i = 0; i < slots; ++i) mbar_init(&bars[i], 1);
    mbar_init_fence();
  }
  __syncwarp();

  // The producer (lane 0). Each phase's tasks: warp `me` takes task `me` first, then grabs more from the
  // phase's counter (tasks warps, warps + 1, ...), one task ahead, so the grab's latency is hidden.
  int pph = 0, ptask = me, ppiece = 0, pnext = -1, issued = 0, pslot = 0;
  bool pdone = false;
  auto issue_step = [&](int ph, int t, int piece) {
    const ChainPhase& P = c.phase[ph];
    const int chunks = P.p.in_dim / 8;
    const int c0 = piece * kPiece;
    const uint32_t bytes = static_cast<uint32_t>(min(kPiece, chunks - c0)) * 16;
    meta[pslot] = static_cast<uint32_t>(ph) << 28 | static_cast<uint32_t>(piece) << 20 | static_cast<uint32_t>(t);
    mbar_expect_tx(&bars[pslot], kR * bytes);
#pragma unroll
    for (int r = 0; r < kR; ++r) {
      const bf16* row = P.p.w + static_cast<int64_t>(chain_row(P, t, r)) * P.p.in_dim;
      bulk_copy(ring + (pslot * kR + r) * kPiece, row + c0 * 8, bytes, &bars[pslot], policy);
    }
    ++issued;
    if (++pslot == slots) pslot = 0;
  };
  auto issue_next = [&]() {  // after griddep_wait (grabs touch the counters)
    if (pdone) return;
    while (ptask >= c.phase[pph].p.tasks) {
      if (pph + 1 >= c.count) {
        pdone = true;
        return;
      }
      ++pph;
      ptask = me;
      ppiece = 0;
      pnext = -1;
    }
    if (pnext < 0) pnext = warps + static_cast<int>(atomicAdd(counters + pph, 1u));
    issue_step(pph, ptask, ppiece);
    if (++ppiece == c.phase[pph].pieces) {
      ppiece = 0;
      ptask = pnext;
      pnext = -1;
    }
  };
  // Weights never depend on the previous kernel: the first task's first steps are requested before waiting.
  stamp(c.trace, c.count, 0, 0);
  if (lane == 0 && me < c.phase[0].p.tasks) {
    const int n = min(slots, c.phase[0].pieces);
    for (int i = 0; i < n; ++i) issue_step(0, me, i);
    ppiece = n;
  }
  uint4 nw[kCache];
  prefetch_norm(c.phase[0], nw);
  griddep_wait();
  stamp(c.trace, c.count, 0, 1);
  if (lane == 0) {
    if (ppiece == c.phase[0].pieces) {  // the first task is all requested: grab the next
      ppiece = 0;
      ptask = warps + static_cast<int>(atomicAdd(counters, 1u));
    }
    while (issued < slots && !pdone) issue_next();
  }
  stage_x(c.phase[0], smem_x, nw);
  stamp(c.trace, c.count, 0, 2);
  if (c.count == 1) griddep_launch_dependents();

  int consumed = 0, cslot = 0, cph = 0;
  uint32_t parity = 0;
  float acc[kR][1] = {};
  for (;;) {
    __syncwarp();
    const bool have = consumed < __shfl_sync(0xffffffffu, issued, 0);
    const uint32_t m = have ? meta[cslot] : 0;
    const int mph = have ? static_cast<int>(m >> 28) : c.count;
    while (cph < mph && cph + 1 < c.count) {  // this warp is done with phase cph: the CTA moves on together
      ++cph;
      prefetch_norm(c.phase[cph], nw);
      grid_barrier(c, cph);
      stage_x(c.phase[cph], smem_x, nw);
      stamp(c.trace, c.count, cph, 2);
      if (cph == c.count - 1) griddep_launch_dependents();
    }
    if (!have) break;
    const ChainPhase& P = c.phase[cph];
    const int task = static_cast<int>(m & (kMaxTasks - 1)), piece = static_cast<int>((m >> 20) & (kMaxPieces - 1));
    const int chunks = P.p.in_dim / 8;
    if (piece == 0) {
#pragma unroll
      for (int r = 0; r < kR; ++r) acc[r][0] = 0.f;
    }
    mbar_wait(&bars[cslot], parity);
    const uint4* wv = ring + cslot * kR * kPiece;
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
    if (++cslot == slots) {
      cslot = 0;
      parity ^= 1;
    }
    if (piece == P.pieces - 1) {
#pragma unroll
      for (int r = 0; r < kR; ++r) acc[r][0] = warp_sum(acc[r][0]);
      store_chain_task(P, task, lane, acc);
    }
  }
  // The last CTA out resets the last phase's task counter and the exit count for the next launch.
  __syncthreads();
  stamp(c.trace, c.count, c.count - 1, 3);
  if (threadIdx.x == c.barrier_thread) {
    uint32_t* bar = c.barrier;
    if (atom_add_acq_rel_gpu(bar + 2) == gridDim.x - 1) {
      st_relaxed_gpu(counters + c.count - 1, 0);
      st_relaxed_gpu(bar + 2, 0);
    }
  }
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
  const int room = kBulkMaxSmemBytes - kChainBarBytes - kMetaBytes - x_bytes(a);
  const int slots = std::min({a.slots, kBulkMaxSlots, room / (kChainWarps * kBulkSlotBytes)});
  return slots >= 2 ? slots : 0;
}

}  // namespace

bool gemv_chain_supported(const GemvChainArgs& a) {
  if (a.count < 1 || a.count > kGemvChainMaxPhases || a.barrier == nullptr) return false;
  if (current_device_limits().cc_major < 9) return false;
  for (int i = 0; i < a.count; ++i) {
    Phase kind;
    const GemvArgs& g = a.phases[i];
    if (g.rows != 1 || !phase_kind(g, &kind) || !gemv_supported(g)) return false;
    if (g.out_dim / 2 + 1 >= kMaxTasks || (g.in_dim / 8 + kPiece - 1) / kPiece >= kMaxPieces) return false;
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
  c.barrier_thread = std::clamp(a.barrier_thread, 0, kChainThreads - 1);
  c.fences = a.fences ? 1 : 0;
  const int smem = kChainBarBytes + kMetaBytes + kChainWarps * c.slots * kBulkSlotBytes + x_bytes(a);
  static thread_local int cached_smem = -1;
  if (cached_smem != smem) {  // opt in to the shared memory; the barrier needs a CTA resident on every SM
    int device = 0, optin = 0, blocks = 0;
    CUDA_CHECK(cudaGetDevice(&device));
    CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    cudaFuncAttributes attributes{};
    CUDA_CHECK(cudaFuncGetAttributes(&attributes, gemv_chain_kernel));
    const int allowed = optin - static_cast<int>(attributes.sharedSizeBytes);
    if (smem > allowed) fail("gemv_chain: {} bytes of shared memory requested, the device allows {}", smem, allowed);
    CUDA_CHECK(cudaFuncSetAttribute(gemv_chain_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, allowed));
    CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, gemv_chain_kernel, kChainThreads, smem));
    if (blocks < 1) fail("gemv_chain: the kernel cannot be resident ({} bytes of shared memory)", smem);
    cached_smem = smem;
  }
  const int grid = current_device_limits().sms;
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
  }
  const LaunchConfig launch(dim3(grid), dim3(kChainThreads), smem, stream, a.phases[0].pdl);
  CUDA_CHECK(cudaLaunchKernelEx(&launch.config, gemv_chain_kernel, c));
  CUDA_CHECK_LAUNCH();
}

}  // namespace fc
