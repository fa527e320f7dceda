// Placeholder until the tokenizer lands (owned by the tokenizer work).
#include "apps/commands.h"
#include "core/error.h"

namespace fc::cli {
Runner add_tokenize_command(CLI::App& app) {
  return [] () -> int { fail("tokenize: not built yet"); };
}
}  // namespace fc::cli
