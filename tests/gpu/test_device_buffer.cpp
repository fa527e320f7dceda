// Device memory errors are user-facing messages, not CUDA error codes from deep inside.
#include <catch2/catch.hpp>

#include "core/error.h"
#include "kernels/cuda_utils.cuh"

using namespace fc;
using Catch::Matchers::Contains;

// Not tagged [sanitize]: compute-sanitizer reports the intended failed cudaMalloc as an API error.
TEST_CASE("an allocation larger than the GPU is an fc::Error naming what, how much and what is free",
          "[gpu][memory]") {
  const size_t huge = size_t{1} << 50;  // 1 PiB
  CHECK_THROWS_WITH(DeviceBuffer(huge, "the KV cache (test)"),
                    Contains("out of GPU memory: the KV cache (test) needs 1048576.00 GiB") && Contains("GiB free of"));
  // The failed allocation leaves no sticky error: the next one works.
  DeviceBuffer ok(1 << 20, "small");
  CHECK(ok.get() != nullptr);
  CHECK(cudaGetLastError() == cudaSuccess);
}
