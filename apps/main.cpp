// flashcore: one executable, one subcommand per job. Errors become one line on stderr and exit 1.
#include <cstdio>
#include <map>
#include <string>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/error.h"
#include "engine/backend.h"

int main(int argc, char** argv) {
  CLI::App app{"FlashCore: LLaMA-family inference on NVIDIA GPUs (and a CPU reference path)"};
  app.require_subcommand(1);
  // --help shows each option's default (the subcommands inherit this).
  app.option_defaults()->always_capture_default();
  // --version: the release, the commit it was configured at, the CUDA build and, with a GPU, the kernel
  // paths this binary takes on it (chosen by what it carries for that GPU: kernels/arch.h).
  app.add_flag_callback(
      "--version",
      [] {
        std::printf("flashcore %s (commit %s)\n%s\n", FC_VERSION, FC_GIT_COMMIT, fc::cuda_build_info().c_str());
        try {
          const std::string paths = fc::cuda_kernel_paths();
          std::printf("%s\n", paths.empty() ? "no CUDA GPU found" : ("GPU 0: " + paths).c_str());
        } catch (const fc::Error& e) {
          std::printf("GPU 0: %s\n", e.what());
        }
        throw CLI::Success();
      },
      "print the version, the CUDA build and the kernel paths taken on this GPU, then exit");
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.add_flag("--quiet,-q", fc::cli::global_options().quiet,
               "no progress bar, banners or statistics line; warnings and errors only");
  // --log-level and --quiet are accepted after the subcommand too (flashcore generate --quiet ...).
  app.fallthrough();

  std::map<CLI::App*, fc::cli::Runner> runners;
  auto add = [&](const char* name, const char* description, auto add_command) {
    CLI::App* sub = app.add_subcommand(name, description);
    runners[sub] = add_command(*sub);
  };
  add("validate", "Compare logits with a Hugging Face reference file", fc::cli::add_validate_command);
  add("generate", "Generate text from a prompt (streams to stdout)", fc::cli::add_generate_command);
  add("batch", "Run many prompts from a JSON Lines file with continuous batching (results as JSON Lines)",
      fc::cli::add_batch_command);
  add("chat", "Interactive multi-turn chat (reads turns line by line; /reset, /exit)", fc::cli::add_chat_command);
  add("bench", "Prefill and decode latency, bandwidth roofline (--synthetic: random weights on the GPU)",
      fc::cli::add_bench_command);
  add("tokenize", "Encode text to token ids, or decode ids to text", fc::cli::add_tokenize_command);

  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // One line and status 1 like every other error (CLI11 would print two lines and its own codes).
    std::fprintf(stderr, "error: %s (see --help)\n", e.what());
    return 1;
  }
  // stdout carries results (ids, text, tables); logs go to stderr.
  spdlog::set_default_logger(spdlog::stderr_color_mt("flashcore"));
  spdlog::set_level(spdlog::level::from_str(log_level));
  if (fc::cli::global_options().quiet && spdlog::get_level() < spdlog::level::warn) {
    spdlog::set_level(spdlog::level::warn);
  }
  spdlog::set_pattern("[%^%l%$] %v");
  try {
    for (auto& [sub, run] : runners) {
      if (sub->parsed()) return run();
    }
  } catch (const fc::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of host memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 1;
}
