#include "engine/fp8_support.h"

#include "core/error.h"

namespace fc {

void require_cuda_fp8_support(const Checkpoint* checkpoint, const BackendOptions& options) {
  if (checkpoint != nullptr && checkpoint->tensors.fp8) {
    fail("{}: FP8 (F8_E4M3) weights run on the CPU backend only for now (--device cpu); the CUDA backend's FP8 "
         "kernels are not in this build", checkpoint->dir);
  }
  if (options.weights == WeightFormat::kFp8) {
    fail("--quantize fp8 runs on the CPU backend only for now (--device cpu); the CUDA backend's FP8 kernels are "
         "not in this build");
  }
}

}  // namespace fc
