// Which backends run FP8 weights today. The CUDA backend refuses them (an FP8 checkpoint, or
// --quantize fp8) until its FP8 GEMV and GEMM kernels land (issue 16); this is the one place that says so.
#pragma once
#include "engine/backend.h"

namespace fc {

// Throws fc::Error (one line) when `checkpoint` (null: a synthetic model) has FP8 projections or `options`
// asks for WeightFormat::kFp8.
void require_cuda_fp8_support(const Checkpoint* checkpoint, const BackendOptions& options);

}  // namespace fc
