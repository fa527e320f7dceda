// Entry point of the GPU tests: skip (exit 77, shown as skipped by CTest) with a message when there is
// no CUDA device, so CI on a GPU-less machine says plainly what did not run.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>

#include "kernels/cuda_utils.cuh"

int main(int argc, char** argv) {
  if (fc::cuda_device_count() == 0) {
    std::printf("SKIPPED: GPU tests need an NVIDIA GPU and driver; none found on this machine.\n");
    return 77;
  }
  return Catch::Session().run(argc, argv);
}
