// NVTX ranges around the steps, layers and op families of the CUDA backend, so that `nsys profile` (or
// `ncu --nvtx`) shows a step's structure. Off unless the environment sets FC_NVTX=1: then a range costs a
// push and a pop on the host (nothing on the GPU), and decode steps launch eagerly instead of replaying a
// CUDA graph, whose replays carry no host ranges (engine/cuda_backend.cpp). Off, a range is one test of a
// cached bool. NVTX 3 is header-only (CUDA toolkit's nvtx3/): no library to link.
#pragma once
#include <cstdlib>
#include <cstring>

#include <nvtx3/nvToolsExt.h>

namespace fc::cuda {

inline bool nvtx_enabled() {
  static const bool on = [] {
    const char* v = std::getenv("FC_NVTX");
    return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
  }();
  return on;
}

// A scoped range (the name must outlive the scope: a literal or a stable string).
class NvtxRange {
 public:
  explicit NvtxRange(const char* name) : on_(nvtx_enabled()) {
    if (on_) nvtxRangePushA(name);
  }
  ~NvtxRange() {
    if (on_) nvtxRangePop();
  }
  NvtxRange(const NvtxRange&) = delete;
  NvtxRange& operator=(const NvtxRange&) = delete;

 private:
  bool on_;
};

// "layer 0" .. "layer N-1", made once.
const char* nvtx_layer_name(size_t layer);

}  // namespace fc::cuda
