// flashcore chat: a multi-turn conversation with the model's chat template. Each line on stdin is one
// user turn; in a terminal, a line ending in a backslash continues the turn on the next line (the
// backslash becomes a newline), so pasted or typed multi-line text is one turn; from a pipe every line
// is a turn as it stands. /reset starts over, /exit (or end of input) leaves.
//
// The KV cache is reused across turns: the whole conversation is formatted again each turn, compared
// token by token with what the cache already holds (the previous prompt plus the generated reply), and
// only the part after the common prefix is prefilled. Normally that is the new user turn (plus the
// <|eot_id|> the template adds when a reply ended at the token limit); when re-tokenizing a reply
// differs from the generated ids, the cache is truncated to the common prefix instead of being wrong.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include <spdlog/spdlog.h>

#include "apps/cli_common.h"
#include "apps/commands.h"
#include "core/error.h"
#include "engine/generator.h"
#include "tokenizer/chat.h"

namespace fc::cli {

namespace {

struct ChatCommandOptions {
  ModelOptions model;
};

void write_out(const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

int run_chat(ChatCommandOptions& o) {
  LoadedModel m = load_model(o.model);
  const Tokenizer& tok = *m.tokenizer;
  const ChatFormat format = detect_chat_format(tok);
  // Refuse a tokenizer that cannot express the format before waiting for the first turn.
  const int typical_turn = static_cast<int>(format_chat(tok, format, {{"user", "?"}}, m.config_eos).ids.size()) + 16;
  warm_up_and_report(m, typical_turn);
  KVCacheManager& kv = m.backend->kv_cache();
  const int seq = kv.create_sequence();
  const bool interactive = isatty(STDIN_FILENO) != 0;
  const bool quiet = global_options().quiet;

  std::vector<ChatMessage> messages;
  std::vector<int32_t> cached;  // ids whose K/V are in the cache, in order
  auto reset = [&] {
    messages.clear();
    if (!o.model.system.empty()) messages.push_back({"system", o.model.system});
    kv.truncate(seq, 0);
    cached.clear();
  };
  reset();
  if (quiet && m.random_seed) std::fprintf(stderr, "%s\n", seed_note(m).c_str());  // the only way to replay
  if (interactive && !quiet) {
    const std::string seed = seed_note(m);
    std::fprintf(stderr, "chat (%s format%s%s); a line ending in \\ continues the turn; /reset starts over, /exit "
                 "or Ctrl-D leaves\n", chat_format_name(format), seed.empty() ? "" : ", ", seed.c_str());
  }
  install_interrupt_handler();
  std::string line;
  for (;;) {
    if (interactive) write_out("> ");
    clear_interrupt();
    if (!std::getline(std::cin, line)) {
      if (interrupted() && interactive) {  // Ctrl-C at the prompt: a fresh line, keep going
        std::cin.clear();
        write_out("\n");
        continue;
      }
      break;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    // A terminal's continuation lines: "text \" + Enter goes on with the next line.
    std::string more;
    while (interactive && !line.empty() && line.back() == '\\') {
      line.back() = '\n';
      write_out(". ");
      if (!std::getline(std::cin, more)) break;
      if (!more.empty() && more.back() == '\r') more.pop_back();
      line += more;
    }
    const std::string command = strip_python_whitespace(line);
    if (command.empty()) continue;
    if (command == "/exit" || command == "/quit") break;
    if (command == "/reset") {
      reset();
      if (!quiet) std::fprintf(stderr, "(conversation reset)\n");
      continue;
    }
    messages.push_back({"user", line});
    const std::vector<int32_t> full = format_chat(tok, format, messages, m.config_eos).ids;
    size_t common = 0;
    while (common < cached.size() && common < full.size() && cached[common] == full[common]) ++common;
    // At least one new token must be prefilled to get logits for the reply.
    if (common == full.size()) --common;
    const int context = kv.max_tokens_per_seq();
    if (static_cast<int>(full.size()) >= context) {
      messages.pop_back();
      std::fprintf(stderr, "error: the conversation (%zu tokens) no longer fits the context of %d tokens; /reset to "
                   "start over or raise --max-context\n", full.size(), context);
      continue;
    }
    kv.truncate(seq, static_cast<int>(common));
    cached.resize(common);
    const std::vector<int32_t> fresh(full.begin() + common, full.end());

    StreamDecoder stream(tok, /*skip_special=*/true);
    std::string reply;
    GenerationStats stats = generate(*m.backend, seq, fresh, m.params, [&](int32_t id) {
      if (std::find(m.params.stop_ids.begin(), m.params.stop_ids.end(), id) != m.params.stop_ids.end()) return true;
      const std::string piece = stream.push(id);
      reply += piece;
      write_out(piece);
      return !interrupted();
    }, cached);
    const std::string rest = stream.flush();
    reply += rest;
    write_out(rest + "\n");
    cached.insert(cached.end(), fresh.begin(), fresh.end());
    // The cache holds K/V of every generated id but the last (it was sampled, never fed back).
    cached.insert(cached.end(), stats.ids.begin(), stats.ids.end() - (stats.ids.empty() ? 0 : 1));
    if (static_cast<int>(cached.size()) != kv.length(seq)) {
      fail("chat: internal bookkeeping mismatch ({} ids vs {} cached tokens)", cached.size(), kv.length(seq));
    }
    messages.push_back({"assistant", reply});
    if (!quiet || stats.stop == StopReason::Cancelled) {
      const double steps = std::max(1, stats.generated_tokens - 1);
      const std::string seed = seed_note(m);
      std::fprintf(stderr, "[prefilled %d new tokens (%zu reused), first token %.1f ms, %d tokens at %.2f ms/token, stop: %s%s%s]\n",
                   stats.prompt_tokens, common, stats.prefill_ms, stats.generated_tokens,
                   stats.generated_tokens > 1 ? stats.decode_ms / steps : 0.0, stop_reason_name(stats.stop),
                   seed.empty() ? "" : ", ", seed.c_str());
    }
  }
  return 0;
}

}  // namespace

Runner add_chat_command(CLI::App& app) {
  auto o = std::make_shared<ChatCommandOptions>();
  app.footer(
      "Examples:\n"
      "  flashcore chat --model ~/models/Llama-3.1-8B-Instruct --system \"You are terse.\"\n"
      "  printf 'Hi!\\nAnd in French?\\n' | flashcore chat --model DIR --temperature 0 --quiet");
  add_model_options(app, o->model);
  return [o]() { return run_chat(*o); };
}

}  // namespace fc::cli
