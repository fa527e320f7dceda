// Decode-shaped products, y = x @ W^T for 1..8 rows of x, streaming W (row-major [out_dim, in_dim], as
// Hugging Face stores it) once at memory bandwidth, with the LLaMA block's neighbours fused so that a
// decode step is 4 products per layer and no separate norm / activation / residual kernels:
//   input  kBf16     x (rows, in_dim) bf16
//          kRmsNorm  x = rmsnorm(residual (rows, in_dim) fp32, norm_weight, eps), rounded to bf16 exactly
//                    as fc::rmsnorm writes it (each CTA recomputes the row statistics from L2)
//   output kBf16     out (rows, out_dim) bf16
//          kF32      out (rows, out_dim) fp32 (logits)
//          kAddF32   out (rows, out_dim) fp32 += x @ W^T (the residual add, exact up to fp32 rounding)
//          kSwiglu   W is the fused [gate; up] (2 cols, in_dim): out (rows, cols) bf16 =
//                    silu(x @ gate^T) * (x @ up^T), both products in fp32 (no bf16 rounding in between)
//          kRopeKV   W is the fused [wq; wk; wv]: out (rows, out_dim) bf16 = the projection rounded to bf16,
//                    then RoPE on Q and K and the K/V append to the paged pools, exactly as fc::rope_kv_append
//                    does it to a bf16 QKV row (same formula, sincosf of float(pos) * inv_freq, one rounding)
// CPU references: matmul_ref, rmsnorm_ref, swiglu_ref in kernels/elementwise.h.
//
// Programmatic dependent launch (sm_90): with `pdl` the kernel is launched with programmatic stream
// serialization; each CTA issues its first weight loads (weights never depend on the previous kernel),
// then waits (griddepcontrol.wait) for the previous kernel's results before it reads x or writes out,
// and lets the next kernel start early. Correct with any predecessor; without `pdl` a plain launch.
#pragma once
#include <cstdint>

#include "kernels/attention.h"
#include "kernels/cuda_utils.cuh"

namespace fc {

constexpr int kGemvMaxRows = 8;

enum class GemvInput { kBf16, kRmsNorm };
enum class GemvOutput { kBf16, kF32, kAddF32, kSwiglu, kRopeKV };

// kRopeKV: what rope_kv_append (kernels/rope.cuh) takes besides the QKV row. Device pointers.
struct GemvRope {
  int q_heads = 0, kv_heads = 0, head_dim = 0;  // out_dim == (q_heads + 2 kv_heads) * head_dim; head_dim even
  const int32_t* positions = nullptr;     // (rows)
  const float* inv_freq = nullptr;        // (head_dim / 2)
  const int32_t* slot_mapping = nullptr;  // (rows); a negative slot appends nothing
  bf16* k_pool = nullptr;
  bf16* v_pool = nullptr;
  PagedKVLayout layout;
};

struct GemvArgs {
  const bf16* w = nullptr;  // (out_dim, in_dim) row-major; 16-byte aligned
  int rows = 1;             // 1..kGemvMaxRows
  int in_dim = 0;           // multiple of 8
  int out_dim = 0;          // kSwiglu: even (2 cols)
  GemvInput input = GemvInput::kBf16;
  const bf16* x = nullptr;            // kBf16: (rows, in_dim), 16-byte aligned
  const float* residual = nullptr;    // kRmsNorm: (rows, in_dim) fp32, 16-byte aligned
  const bf16* norm_weight = nullptr;  // kRmsNorm: (in_dim), 16-byte aligned
  float eps = 1e-5f;
  GemvOutput output = GemvOutput::kBf16;
  void* out = nullptr;  // bf16 or fp32 per `output`; rows contiguous
  GemvRope rope;        // kRopeKV only
  bool pdl = false;
  // Optional: the first prefetch_bytes of what the next kernel will read (the next projection's weights),
  // pulled into L2 by each warp of this one once its own tasks are done, so the DRAM stays busy through this
  // kernel's tail and the launch gap (sm_90 register and per-warp bulk kernels; 16-byte aligned).
  const void* prefetch = nullptr;
  size_t prefetch_bytes = 0;
  // Optional: per-CTA %globaltimer stamps for timelines, 4 u64 a CTA: entry, past griddepcontrol.wait (and
  // the kRmsNorm staging), exit (after the CTA's last store), gridDim.x | %smid << 32. Every kernel.
  uint64_t* trace = nullptr;
};

// Which kernel streams the weights (kernels/gemv.cu, gemv_coop.cu):
//   kRegisters  a warp owns whole rows; 16-byte loads double-buffered in registers (any GPU)
//   kBulkWarp   a warp owns whole rows; cp.async.bulk (TMA) copies into a per-warp shared-memory ring (sm_90)
//   kBulkCta    a CTA owns R rows and its 8 warps split each row, each through its own bulk-copy ring;
//               short tasks, so the kernel's end is balanced (sm_90, in_dim % 64 == 0)
// A kernel that cannot take the arguments falls back to the next one down the list. kBulkCta passes every
// result check, but compute-sanitizer racecheck reports hazards on its partial-sum hand-over (not
// understood yet; docs/PERFORMANCE.md), so the decode step does not use it by default.
enum class GemvKernel { kRegisters, kBulkWarp, kBulkCta };

// Launch shape, for benchmarks; the defaults are what gemv(args, stream) uses.
struct GemvTuning {
  int rows_per_task = 0;   // warp-owned kernels: rows per warp task, 1 or 2 (kSwiglu: 2); 0 = by wave quantization
  bool persistent = true;  // warp-owned kernels: grid capped at ctas_per_sm per SM (tasks grid-strided) vs one
                           // CTA per 8 tasks
  int ctas_per_sm = 2;     // register kernel: 2 fill the register file (measured best on an H200); 1 leaves
                           // room for the next kernel's CTAs to prefetch beside this one (PDL), measured slower
  GemvKernel kernel = GemvKernel::kRegisters;  // the decode step picks one per projection (engine/backend.h)
  int slots = 3;           // bulk kernels: 4 KB ring slots per warp (2..8; fewer when the kRmsNorm rows need room)
  bool late_trigger = false;  // bulk kernels, PDL: let the next kernel launch once each warp has issued its last
                              // copy, not as soon as the CTA has started (its CTAs then wait on SMs meanwhile)
  int carveout = -1;       // register and per-warp kernels: cudaFuncAttributePreferredSharedMemoryCarveout (% of
                           // the unified L1 / shared memory given to shared memory); -1 = the driver's choice
  int prewait_slots = 0;   // per-warp bulk kernel: ring slots filled before griddepcontrol.wait (0 = all); the
                           // rest once x is staged
};

// Whether gemv() takes these arguments (rows, alignment, in_dim % 8, the kRmsNorm row in shared memory).
bool gemv_supported(const GemvArgs& args);
// Throws fc::Error when !gemv_supported(args). Asynchronous on `stream`; allocates nothing (graph-safe).
void gemv(const GemvArgs& args, cudaStream_t stream);
void gemv(const GemvArgs& args, const GemvTuning& tuning, cudaStream_t stream);

}  // namespace fc
