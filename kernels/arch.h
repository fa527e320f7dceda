// Which kernel paths run on the current GPU is decided by what this binary carries for it, not by the
// GPU's compute capability alone: a build for sm_80 only (or PTX of compute_80 JIT-compiled on a Hopper
// GPU) loads on an H100/H200 too, but there every Hopper-only instruction (wgmma, bulk copies,
// griddepcontrol) was compiled out of the kernel bodies. Pure host code: the CPU tests check the rule.
#pragma once

namespace fc {

// What the runtime reports of the kernel image it loaded for this GPU (cudaFuncAttributes):
// ptx_version, the virtual architecture the code was compiled from (80 for compute_80 PTX, 90 for
// sm_90a); binary_version, the machine code's (the GPU's own after a JIT).
struct KernelImage {
  int ptx_version = 0;
  int binary_version = 0;
};

// Whether a kernel that needs sm_90 instructions (wgmma, cp.async.bulk, griddepcontrol) runs here with
// its Hopper body: a compute capability 9.x GPU and an image compiled from sm_90 source for it.
constexpr bool hopper_code_runs(int cc_major, const KernelImage& image) {
  return cc_major == 9 && image.ptx_version >= 90 && image.binary_version >= 90;
}

}  // namespace fc
