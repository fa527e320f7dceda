// GPU paths that are written, compiled and covered by GPU tests but have not yet run on a GPU: the
// one-launch sampler (kernels/sampling.cuh) and FP8 weights on the CUDA backend. They stay off, and the
// verified paths run, unless the environment says FC_GPU_PENDING=1: the switch the GPU machine uses to run
// their tests and benchmarks (docs/PERFORMANCE.md, "Sampling" and "FP8") before they become the default and
// this switch goes. Not for users: a warning says so once per process.
#pragma once

namespace fc {

bool gpu_pending_paths_enabled();

}  // namespace fc
