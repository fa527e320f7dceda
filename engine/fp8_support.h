// Which backends run FP8 weights today, and where the CUDA backend's FP8 path stands (issue 16): its
// kernels (kernels/gemv.cuh kE4m3, kernels/fp8_quant.cuh, Gemm::matmul_fp8) and its weights / layout /
// step code are written and compiled but have not yet run on a GPU, so the CUDA backend refuses FP8
// weights unless FC_GPU_PENDING=1 (engine/gpu_pending.h: their verification on the GPU machine) until
// kFp8CudaVerified (engine/fp8_support.cpp) is flipped. This is the one place that says so.
#pragma once
#include "engine/backend.h"

namespace fc {

// Whether the CUDA backend takes FP8 weights (kFp8CudaVerified, or FC_GPU_PENDING=1). GPU tests of the
// backend integration skip, with a message, while it is false.
bool cuda_fp8_enabled();

// Throws fc::Error (one line) when `checkpoint` (null: a synthetic model) has FP8 projections or `options`
// asks for WeightFormat::kFp8 while the CUDA backend's FP8 path is not enabled in this build (above). The
// backend itself refuses GPUs without FP8 arithmetic (below sm_89) and checkpoints that mix FP8 and
// unquantized projections without --quantize fp8.
void require_cuda_fp8_support(const Checkpoint* checkpoint, const BackendOptions& options);

// Whether the backend holds the projections as FP8 for this model and options: --quantize fp8, or a
// checkpoint whose config.json carries an FP8 quantization_config. Pure host code (the layout uses it).
bool fp8_projections(const Config& config, const BackendOptions& options);

}  // namespace fc
