// flashcore generate: prompt -> tokens -> text streamed to stdout (UTF-8 safe), stopping at a stop id,
// a stop string (not printed), the token limit, the context, or Ctrl-C; then one statistics line on
// stderr, or with --json one JSON object on stdout instead of the streamed text.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <iterator>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "engine/generator.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

namespace fc::cli {

namespace {

struct GenerateOptions {
  ModelOptions model;
  std::string prompt, prompt_file;
  std::vector<std::string> stops;
  bool chat = false, no_bos = false, json = false, truncate = false;
};

void write_out(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

int run_generate(GenerateOptions& o) {
  std::string prompt = o.prompt;
  if (!o.prompt_file.empty()) prompt = read_text_file(o.prompt_file);
  if (o.prompt.empty() && o.prompt_file.empty()) prompt.assign(std::istreambuf_iterator<char>(std::cin), {});
  if (prompt.empty() && !o.chat) fail("the prompt is empty (give --prompt, --prompt-file or text on stdin)");
  // Parse options that cannot fail on the model before loading gigabytes of weights.
  parse_device(o.model.device);
  LoadedModel m = load_model(o.model);
  const Tokenizer& tok = *m.tokenizer;
  std::vector<int32_t> ids;
  if (o.chat) {
    std::vector<ChatMessage> messages;
    if (!o.model.system.empty()) messages.push_back({"system", o.model.system});
    messages.push_back({"user", prompt});
    ids = format_chat(tok, detect_chat_format(tok), messages, m.config_eos).ids;
  } else {
    ids = tok.encode(prompt, !o.no_bos);
  }
  if (ids.empty()) fail("the prompt encodes to no tokens");
  const int context = m.backend->kv_cache().max_tokens_per_seq();
  if (static_cast<int>(ids.size()) >= context) {
    if (!o.truncate) {
      fail("prompt of {} tokens does not fit the context of {} tokens (raise --max-context, up to {}, or pass "
           "--truncate to keep its last {} tokens)",
           ids.size(), context, m.checkpoint->config.max_position_embeddings, context - 1);
    }
    // Keep the end of the prompt (what the model continues from), leaving room for one new token.
    spdlog::warn("prompt truncated from {} to its last {} tokens", ids.size(), context - 1);
    ids.erase(ids.begin(), ids.end() - (context - 1));
  }

  warm_up_and_report(m, static_cast<int>(ids.size()));
  const int seq = m.backend->kv_cache().create_sequence();
  std::vector<std::string> stop_strings;
  for (const std::string& s : o.stops) stop_strings.push_back(unescape_stop_string(s));
  GenerationText shown(tok, m.params.stop_ids, stop_strings);
  std::string text;  // what the user sees (also --json's "text")
  auto emit = [&](const std::string& piece) {
    text += piece;
    if (!o.json) write_out(piece);
  };
  install_interrupt_handler();
  GenerationStats stats = generate(*m.backend, seq, ids, m.params, [&](int32_t id) {
    emit(shown.push(id));
    return !shown.stopped() && !interrupted();
  });
  if (shown.stopped()) stats.stop = StopReason::StopString;
  emit(shown.finish());
  const double decode_steps = std::max(1, stats.generated_tokens - 1);
  const double decode_ms_per_token = stats.generated_tokens > 1 ? stats.decode_ms / decode_steps : 0;
  if (o.json) {
    nlohmann::json j = {{"text", text},
                        {"prompt_ids", ids},
                        {"ids", stats.ids},
                        {"prompt_tokens", stats.prompt_tokens},
                        {"generated_tokens", stats.generated_tokens},
                        {"time_to_first_token_ms", stats.prefill_ms},
                        {"prefill_tok_s", stats.prompt_tokens / (stats.prefill_ms / 1e3)},
                        {"decode_ms_per_token", decode_ms_per_token},
                        {"decode_tok_s", decode_ms_per_token > 0 ? 1e3 / decode_ms_per_token : 0.0},
                        {"stop_reason", stop_reason_name(stats.stop)}};
    if (shown.stopped()) j["stop_string"] = shown.matched();
    if (m.params.sampling.temperature > 0) {
      j["seed"] = m.params.sampling.seed;  // replays the run: --seed N
      j["seed_random"] = m.random_seed;
    }
    // A stop string or a cut may leave bytes that are not UTF-8; JSON cannot carry them: U+FFFD.
    write_out(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    return 0;
  }
  write_out("\n");
  if (!global_options().quiet || stats.stop == StopReason::Cancelled || m.random_seed) {
    // A random seed is printed even with --quiet: it is the only way to replay the run.
    const std::string seed = seed_note(m);
    std::fprintf(stderr,
                 "prompt %d tokens, time to first token %.1f ms (%.0f tok/s prefill), decode %d tokens at %.2f "
                 "ms/token (%.1f tok/s), stop: %s%s%s\n",
                 stats.prompt_tokens, stats.prefill_ms, stats.prompt_tokens / (stats.prefill_ms / 1e3),
                 stats.generated_tokens, decode_ms_per_token, decode_ms_per_token > 0 ? 1e3 / decode_ms_per_token : 0.0,
                 stop_reason_name(stats.stop), seed.empty() ? "" : ", ", seed.c_str());
  }
  return 0;
}

}  // namespace

Runner add_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  app.footer(
      "Examples:\n"
      "  flashcore generate --model ~/models/Llama-3.1-8B-Instruct --chat --prompt \"Why is the sky blue?\"\n"
      "  echo \"Once upon a time\" | flashcore generate --model DIR --temperature 0.8 --seed 7 --stop \"\\n\\n\" --json");
  add_model_options(app, o->model);
  app.add_option("--prompt", o->prompt, "prompt text (else --prompt-file, else stdin)");
  app.add_option("--prompt-file", o->prompt_file, "read the prompt from this file")->check(CLI::ExistingFile);
  app.add_flag("--chat", o->chat, "wrap the prompt in the model's chat template (with --system)");
  app.add_flag("--no-bos", o->no_bos, "do not add BOS to a plain prompt");
  app.add_option("--stop", o->stops,
                 "stop when the text contains this string (not printed); repeatable; \\n, \\t and \\\\ are a "
                 "newline, a tab and a backslash");
  app.add_flag("--json", o->json, "print one JSON object (text, ids, timings, stop reason) instead of streaming");
  app.add_flag("--truncate", o->truncate, "keep the end of a prompt longer than the context instead of failing");
  return [o]() { return run_generate(*o); };
}

}  // namespace fc::cli
