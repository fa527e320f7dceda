#include "engine/fp8_support.h"

#include "core/error.h"
#include "engine/gpu_pending.h"

namespace fc {

namespace {

// The CUDA backend's FP8 path is written but has not run on a GPU: it runs only with FC_GPU_PENDING=1
// (engine/gpu_pending.h) until these have passed on an sm_89/sm_90 GPU (commands in docs/PERFORMANCE.md,
// "FP8 (issue 16)"): fc_gpu_tests "[fp8]" (kernels and, with the switch, the backend), "[gemv]" "[gemm]"
// (the bf16 kernels the FP8 change templated), compute-sanitizer over "[fp8]", flashcore validate on the
// FP8 fixtures and with --quantize fp8, flashcore bench --quantize fp8. Then this becomes true.
constexpr bool kFp8CudaVerified = false;

}  // namespace

bool cuda_fp8_enabled() { return kFp8CudaVerified || gpu_pending_paths_enabled(); }

bool fp8_projections(const Config& config, const BackendOptions& options) {
  return options.weights == WeightFormat::kFp8 || config.quantization.has_value();
}

void require_cuda_fp8_support(const Checkpoint* checkpoint, const BackendOptions& options) {
  const bool from_checkpoint = checkpoint != nullptr && checkpoint->tensors.fp8;
  if (!from_checkpoint && options.weights != WeightFormat::kFp8) return;
  if (!cuda_fp8_enabled()) {
    if (from_checkpoint) {
      fail("{}: FP8 (F8_E4M3) weights run on the CPU backend only for now (--device cpu); the CUDA backend's FP8 "
           "kernels have not been verified on a GPU yet", checkpoint->dir);
    }
    fail("--quantize fp8 runs on the CPU backend only for now (--device cpu); the CUDA backend's FP8 kernels have "
         "not been verified on a GPU yet");
  }
}

}  // namespace fc
