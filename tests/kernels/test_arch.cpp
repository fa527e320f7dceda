// The kernel-path rule of kernels/arch.h: Hopper-only kernel bodies run only where the GPU is sm_9x AND
// the image loaded for it was compiled from sm_90 source. The cases are what the runtime reports for the
// builds a user can make (cudaFuncAttributes ptxVersion / binaryVersion on each GPU).
#include <catch2/catch.hpp>

#include "kernels/arch.h"

using fc::hopper_code_runs;
using fc::KernelImage;

TEST_CASE("Hopper kernels run only from sm_90 code on an sm_90 GPU", "[arch]") {
  // -DFC_CUDA_ARCHS=90a (or 80;90a) on an H100 / H200: the sm_90a machine code is loaded.
  CHECK(hopper_code_runs(9, KernelImage{90, 90}));
  // PTX of compute_80 only, JIT-compiled on an H200: runs, but its Hopper bodies were compiled out.
  CHECK_FALSE(hopper_code_runs(9, KernelImage{80, 90}));
  // -DFC_CUDA_ARCHS=80 on an H200: the sm_80 machine code loads on sm_90 (same major-version rule does not
  // hold across majors, but the runtime reports what it loaded); never the Hopper path.
  CHECK_FALSE(hopper_code_runs(9, KernelImage{80, 80}));
  // An A100 / RTX 4090 with any build: no Hopper instructions there.
  CHECK_FALSE(hopper_code_runs(8, KernelImage{80, 80}));
  CHECK_FALSE(hopper_code_runs(8, KernelImage{80, 89}));
  // A Blackwell GPU (cc 10 / 12): sm_90a code is arch-specific and never runs there.
  CHECK_FALSE(hopper_code_runs(10, KernelImage{90, 90}));
  CHECK_FALSE(hopper_code_runs(12, KernelImage{80, 120}));
  // Nothing loaded (cudaFuncGetAttributes failed): zeros.
  CHECK_FALSE(hopper_code_runs(9, KernelImage{}));
}
