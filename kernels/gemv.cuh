// Decode-shaped products, y = x @ W^T for one row of x, streaming W (row-major [out_dim, in_dim], as
// Hugging Face stores it) once at memory bandwidth, with the LLaMA block's neighbours fused so that a
// one-sequence decode step is 4 products per layer and no separate norm / activation / residual kernels:
//   input  kBf16     x (in_dim) bf16
//          kRmsNorm  x = rmsnorm(residual (in_dim) fp32, norm_weight, eps), rounded to bf16 exactly as
//                    fc::rmsnorm writes it (each CTA recomputes the row statistics from L2)
//   output kBf16     out (out_dim) bf16
//          kF32      out (out_dim) fp32 (logits)
//          kAddF32   out (out_dim) fp32 += x @ W^T (the residual add, exact up to fp32 rounding)
//          kSwiglu   W is the fused [gate; up] (2 cols, in_dim): out (cols) bf16 =
//                    silu(x @ gate^T) * (x @ up^T), both products in fp32 (no bf16 rounding in between)
//          kRopeKV   W is the fused [wq; wk; wv]: out (out_dim) bf16 = the projection rounded to bf16,
//                    then RoPE on Q and K and the K/V append to the paged pools, exactly as fc::rope_kv_append
//                    does it to a bf16 QKV row (same formula, sincosf of float(pos) * inv_freq, one rounding)
// Weights (GemvWeight):
//   kBf16     bf16 (out_dim, in_dim)
//   kE4m3     e4m3fn codes (out_dim, in_dim), one byte each, and one fp32 scale per output row (w_scales):
//             row r's product is scale[r] * sum_c code[r][c] * x[c], the scale applied once to the fp32
//             dot product before the epilogue (RoPE, SwiGLU, residual add see the scaled value). A
//             16-byte load carries 16 codes, converted in registers (cvt.rn.f16x2.e4m3x2 on sm_89+, exact);
//             products and sums in fp32 as for bf16. Dequantizing is exactly model/quantization.h's
//             code x scale up to where the one rounding of that product happens (per element there, once
//             per row here).
// CPU references: matmul_ref, rmsnorm_ref, swiglu_ref in kernels/elementwise.h. Steps of two or more rows
// use cuBLASLt (kernels/gemm.cuh): measured faster from 2 rows on an H200.
//
// Two kernels stream the weights (kernels/gemv.cu); the caller names one, and gemv() never switches:
//   kRegisters  a warp owns whole rows; 16-byte loads double-buffered in registers (any GPU)
//   kBulkCopy   a warp owns whole rows; cp.async.bulk (TMA) copies into a per-warp shared-memory ring
//               (needs sm_90 code in this binary and an sm_90 GPU: gemv_bulk_copy_available())
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

enum class GemvInput { kBf16, kRmsNorm };
enum class GemvOutput { kBf16, kF32, kAddF32, kSwiglu, kRopeKV };
enum class GemvKernel { kRegisters, kBulkCopy };
enum class GemvWeight { kBf16, kE4m3 };

// kRopeKV: what rope_kv_append (kernels/rope.cuh) takes besides the QKV row. Device pointers.
struct GemvRope {
  int q_heads = 0, kv_heads = 0, head_dim = 0;  // out_dim == (q_heads + 2 kv_heads) * head_dim; head_dim even
  const int32_t* positions = nullptr;     // (1)
  const float* inv_freq = nullptr;        // (head_dim / 2)
  const int32_t* slot_mapping = nullptr;  // (1); a negative slot appends nothing
  bf16* k_pool = nullptr;
  bf16* v_pool = nullptr;
  PagedKVLayout layout;
};

struct GemvArgs {
  const void* w = nullptr;  // (out_dim, in_dim) row-major, bf16 or e4m3 codes per `weight`; 16-byte aligned
  GemvWeight weight = GemvWeight::kBf16;
  const float* w_scales = nullptr;  // kE4m3: (out_dim) fp32, one per output row (fused rows keep their own)
  int in_dim = 0;           // multiple of 8 (kE4m3: of 16)
  int out_dim = 0;          // kSwiglu: even (2 cols)
  GemvInput input = GemvInput::kBf16;
  const bf16* x = nullptr;            // kBf16: (in_dim), 16-byte aligned
  const float* residual = nullptr;    // kRmsNorm: (in_dim) fp32, 16-byte aligned
  const bf16* norm_weight = nullptr;  // kRmsNorm: (in_dim), 16-byte aligned
  float eps = 1e-5f;
  GemvOutput output = GemvOutput::kBf16;
  void* out = nullptr;  // bf16 or fp32 per `output`
  GemvRope rope;        // kRopeKV only
  GemvKernel kernel = GemvKernel::kRegisters;
  bool pdl = false;
};

// Whether this binary carries the bulk-copy kernel's sm_90 code and the current GPU runs it (checked once
// per device: the kernel's PTX and machine code versions, not only the compute capability, so a binary
// built for sm_80 alone never launches a kernel whose body was compiled out).
bool gemv_bulk_copy_available();
// Whether gemv() takes these arguments (alignment, in_dim % 8 (kE4m3: % 16, scales given), the kRmsNorm row and, for kBulkCopy, its
// ring in shared memory; kBulkCopy also needs gemv_bulk_copy_available()).
bool gemv_supported(const GemvArgs& args);
// Throws fc::Error naming the cause when !gemv_supported(args). Asynchronous on `stream`; allocates
// nothing (graph-safe).
void gemv(const GemvArgs& args, cudaStream_t stream);

}  // namespace fc
