// Several dependent one-row GEMVs (kernels/gemv.cuh) in one persistent kernel: the decode step's
// o_proj -> gate/up -> down -> next layer's qkv (or lm_head) without a kernel boundary between them.
//
// Why. Between two GEMV kernels the GPU drains the first grid, flushes, and ramps the second one up; on
// an H200 that costs 3-5 us a boundary even with programmatic dependent launch, ~0.4 ms of a 4.1 ms
// decode step (docs/PERFORMANCE.md). Here one grid (one CTA per SM) runs every phase. Each warp streams
// the weights of all phases through its own shared-memory ring of cp.async.bulk copies in one sequence,
// so while it waits for the previous phase to finish everywhere (a grid barrier: phase p + 1 reads the
// whole output of phase p), its ring is already filling with phase p + 1's weights: weights never depend
// on the activations; a warp's tasks come from a per-phase counter, so phases end balanced.
//
// Each phase is what gemv() computes for the same GemvArgs (rows == 1, same numerics: the per-warp bulk
// kernel with 2 weight rows a task, so results are bitwise those of gemv() with GemvKernel::kBulkWarp and
// rows_per_task 2). Supported phases (input -> output): kBf16 -> kAddF32, kRmsNorm -> kSwiglu,
// kRmsNorm -> kRopeKV, kRmsNorm -> kF32. A phase may read what an earlier phase wrote (x, residual) and
// kAddF32 phases may update the same residual.
#pragma once
#include <cstdint>

#include "kernels/gemv.cuh"

namespace fc {

constexpr int kGemvChainMaxPhases = 4;

struct GemvChainArgs {
  GemvArgs phases[kGemvChainMaxPhases];  // rows == 1; pdl taken from phases[0]
  int count = 0;                         // 1..kGemvChainMaxPhases
  // The grid barrier's state and the phases' task counters: kGemvChainBarrierBytes of device memory,
  // zeroed once before first use, then reused by every chain launched on one stream (each launch leaves
  // it as it found it). Two chains must not run concurrently on one barrier.
  uint32_t* barrier = nullptr;
  int slots = 3;  // 4 KB ring slots per warp of 16 (2..8; fewer when the staged x needs the room)
  // Measurement knobs (fc_bench_gemv chaintrace). trace: when set, (grid, count, 4) pairs of u64 per CTA
  // and phase: %globaltimer (ns) and clock64 at [CTA done with the previous phase, barrier released,
  // x staged, CTA done with this phase]. barrier_thread: which thread of the CTA arrives and polls (0 is
  // also warp 0's copy issuer). fences: __threadfence() around the arrival besides its acq_rel ordering.
  uint64_t* trace = nullptr;
  int barrier_thread = 1;
  bool fences = true;
};

constexpr size_t kGemvChainBarrierBytes = (4 + kGemvChainMaxPhases) * sizeof(uint32_t);

// Whether gemv_chain() takes these arguments: sm_90, every phase gemv_supported() with rows == 1 and one of
// the supported (input, output) pairs, a barrier, and the largest staged x beside >= 2 ring slots.
bool gemv_chain_supported(const GemvChainArgs& args);
// Throws fc::Error when !gemv_chain_supported(args). Asynchronous on `stream`; allocates nothing.
void gemv_chain(const GemvChainArgs& args, cudaStream_t stream);

}  // namespace fc
