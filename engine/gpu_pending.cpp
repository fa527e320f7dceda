#include "engine/gpu_pending.h"

#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

namespace fc {

bool gpu_pending_paths_enabled() {
  static const bool enabled = [] {
    const char* value = std::getenv("FC_GPU_PENDING");
    const bool on = value != nullptr && std::strcmp(value, "1") == 0;
    if (on) {
      spdlog::warn("FC_GPU_PENDING=1: running GPU paths that have not been verified on a GPU yet (the one-launch "
                   "sampler, FP8 weights on CUDA); for their verification only");
    }
    return on;
  }();
  return enabled;
}

}  // namespace fc
