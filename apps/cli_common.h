// Small pieces shared by the subcommands.
#pragma once
#include <string>

#include "engine/backend.h"

namespace fc::cli {

DeviceKind parse_device(const std::string& name);  // "cpu" | "cuda"

}  // namespace fc::cli
