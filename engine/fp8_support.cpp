#include "engine/fp8_support.h"

#include "core/error.h"

namespace fc {

namespace {

// The CUDA backend's FP8 path is written but has not run on a GPU. Before flipping this to true, run on
// an sm_89/sm_90 GPU (commands in docs/PERFORMANCE.md, "FP8 (issue 16)"):
//   build/tests/gpu/fc_gpu_tests "[fp8]"        the kernels (always run) and, once flipped, the backend
//   build/tests/gpu/fc_gpu_tests "[gemv]" "[gemm]"  the bf16 kernels the FP8 change templated
//   compute-sanitizer over the "[fp8]" tests
//   flashcore validate on the FP8 fixtures and with --quantize fp8, flashcore bench --quantize fp8
// then set it to true (the backend tests tagged [fp8][backend] stop skipping) and delete this comment.
constexpr bool kFp8CudaVerified = false;

}  // namespace

bool cuda_fp8_enabled() { return kFp8CudaVerified; }

bool fp8_projections(const Config& config, const BackendOptions& options) {
  return options.weights == WeightFormat::kFp8 || config.quantization.has_value();
}

void require_cuda_fp8_support(const Checkpoint* checkpoint, const BackendOptions& options) {
  const bool from_checkpoint = checkpoint != nullptr && checkpoint->tensors.fp8;
  if (!from_checkpoint && options.weights != WeightFormat::kFp8) return;
  if (!kFp8CudaVerified) {
    if (from_checkpoint) {
      fail("{}: FP8 (F8_E4M3) weights run on the CPU backend only for now (--device cpu); the CUDA backend's FP8 "
           "kernels have not been verified on a GPU yet", checkpoint->dir);
    }
    fail("--quantize fp8 runs on the CPU backend only for now (--device cpu); the CUDA backend's FP8 kernels have "
         "not been verified on a GPU yet");
  }
}

}  // namespace fc
