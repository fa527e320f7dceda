// Builds without CUDA get a clear refusal instead of a CUDA backend.
#include "core/error.h"
#include "engine/backend.h"

namespace fc {

std::unique_ptr<Backend> make_cuda_backend(const Checkpoint&, const BackendOptions&) {
  fail("--device cuda: this flashcore was built without CUDA (nvcc was not found at configure time)");
}

std::unique_ptr<Backend> make_synthetic_cuda_backend(const Config&, uint64_t, const BackendOptions&) {
  fail("--synthetic needs the CUDA backend: this flashcore was built without CUDA");
}

std::string cuda_build_info() { return "no CUDA backend (nvcc was not found at configure time)"; }

std::string cuda_kernel_paths() { return ""; }

}  // namespace fc
