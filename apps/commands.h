// Subcommands of the flashcore CLI. Each add_*_command registers its options on `app` and returns a
// callback that runs it (after parsing) and returns the process exit status.
#pragma once
#include <functional>

#include <CLI/CLI.hpp>

namespace fc::cli {

using Runner = std::function<int()>;

Runner add_validate_command(CLI::App& app);
Runner add_tokenize_command(CLI::App& app);
Runner add_generate_command(CLI::App& app);
Runner add_chat_command(CLI::App& app);
Runner add_bench_command(CLI::App& app);
Runner add_batch_command(CLI::App& app);

}  // namespace fc::cli
