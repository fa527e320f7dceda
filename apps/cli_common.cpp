#include "apps/cli_common.h"

#include "core/error.h"

namespace fc::cli {

DeviceKind parse_device(const std::string& name) {
  if (name == "cpu") return DeviceKind::Cpu;
  if (name == "cuda") return DeviceKind::Cuda;
  fail("unknown device '{}' (expected cpu or cuda)", name);
}

}  // namespace fc::cli
