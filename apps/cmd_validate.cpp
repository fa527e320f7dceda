#include "apps/commands.h"
#include "core/error.h"
namespace fc::cli {
Runner add_validate_command(CLI::App& app) { return []() -> int { fail("validate: not built yet"); }; }
}  // namespace fc::cli
