// flashcore generate: prompt -> tokens -> streamed text. (Stop strings, --json and Ctrl-C handling
// come with the CLI work; this is the plain end-to-end path.)
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <iterator>

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
  std::string model_dir, tokenizer_path, prompt, prompt_file, system, device = "cuda";
  bool chat = false, no_bos = false;
  int max_new_tokens = 128, max_context = 4096, top_k = 0;
  float temperature = -1, top_p = 1.0f, min_p = 0.0f, repetition_penalty = 1.0f;
  uint64_t seed = 0;
};

int run_generate(GenerateOptions o) {
  const DeviceKind device = parse_device(o.device);
  std::string prompt = o.prompt;
  if (!o.prompt_file.empty()) prompt = read_text_file(o.prompt_file);
  if (o.prompt.empty() && o.prompt_file.empty()) {
    prompt.assign(std::istreambuf_iterator<char>(std::cin), {});
  }
  const Checkpoint ckpt = open_checkpoint(o.model_dir);
  const auto tokenizer = load_tokenizer(o.tokenizer_path.empty() ? o.model_dir : o.tokenizer_path);
  if (tokenizer->vocab_size() > ckpt.config.vocab_size) {
    fail("tokenizer has {} tokens but the model's vocab_size is {}", tokenizer->vocab_size(), ckpt.config.vocab_size);
  }
  std::vector<int32_t> config_eos = ckpt.config.eos_token_ids;
  config_eos.insert(config_eos.end(), ckpt.generation.eos_token_ids.begin(), ckpt.generation.eos_token_ids.end());
  std::vector<int32_t> ids;
  if (o.chat) {
    std::vector<ChatMessage> messages;
    if (!o.system.empty()) messages.push_back({"system", o.system});
    messages.push_back({"user", prompt});
    ids = format_chat(*tokenizer, detect_chat_format(*tokenizer), messages, config_eos).ids;
  } else {
    ids = tokenizer->encode(prompt, !o.no_bos);
  }
  GenerationParams params;
  params.max_new_tokens = o.max_new_tokens;
  params.stop_ids = chat_stop_ids(*tokenizer, config_eos);
  params.sampling.temperature = o.temperature >= 0 ? o.temperature : ckpt.generation.temperature.value_or(0.f);
  if (ckpt.generation.do_sample.has_value() && !*ckpt.generation.do_sample && o.temperature < 0) {
    params.sampling.temperature = 0;
  }
  params.sampling.top_k = o.top_k;
  params.sampling.top_p = o.top_p;
  params.sampling.min_p = o.min_p;
  params.sampling.seed = o.seed;
  params.repetition_penalty = o.repetition_penalty;

  BackendOptions bo;
  bo.max_context = std::min(o.max_context, ckpt.config.max_position_embeddings);
  if (static_cast<int>(ids.size()) >= bo.max_context) {
    fail("prompt of {} tokens does not fit the context of {} tokens (raise --max-context, up to {})", ids.size(),
         bo.max_context, ckpt.config.max_position_embeddings);
  }
  auto backend = make_backend(device, ckpt, bo);
  const int seq = backend->kv_cache().create_sequence();
  StreamDecoder stream(*tokenizer);
  const auto stats = generate(*backend, seq, ids, params, [&](int32_t id) {
    if (std::find(params.stop_ids.begin(), params.stop_ids.end(), id) != params.stop_ids.end()) return true;
    const std::string text = stream.push(id);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return true;
  });
  const std::string rest = stream.flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  const double decode_steps = std::max(1, stats.generated_tokens - 1);
  std::fprintf(stderr,
               "prompt %d tokens, time to first token %.1f ms (%.0f tok/s prefill), decode %d tokens at %.2f ms/token "
               "(%.1f tok/s), stop: %s\n",
               stats.prompt_tokens, stats.prefill_ms, stats.prompt_tokens / (stats.prefill_ms / 1e3),
               stats.generated_tokens, stats.decode_ms / decode_steps, decode_steps / (stats.decode_ms / 1e3),
               stop_reason_name(stats.stop));
  return 0;
}

}  // namespace

Runner add_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  app.footer("Example:\n  flashcore generate --model ~/models/Llama-3.1-8B-Instruct --chat --prompt \"Why is the sky blue?\"");
  app.add_option("--model", o->model_dir, "Hugging Face model directory")->required();
  app.add_option("--tokenizer", o->tokenizer_path, "tokenizer.json / tokenizer.model (default: the model's)");
  app.add_option("--prompt", o->prompt, "prompt text (else --prompt-file, else stdin)");
  app.add_option("--prompt-file", o->prompt_file, "read the prompt from this file");
  app.add_flag("--chat", o->chat, "wrap the prompt in the model's chat template");
  app.add_option("--system", o->system, "system message (with --chat)");
  app.add_flag("--no-bos", o->no_bos, "do not add BOS to a plain prompt");
  app.add_option("--max-new-tokens", o->max_new_tokens, "most tokens to generate")->check(CLI::PositiveNumber);
  app.add_option("--temperature", o->temperature, "0 = greedy (default: generation_config.json, else 0)");
  app.add_option("--top-k", o->top_k, "keep the k most likely tokens (0 = off)");
  app.add_option("--top-p", o->top_p, "nucleus sampling mass (1 = off)")->check(CLI::Range(0.0, 1.0));
  app.add_option("--min-p", o->min_p, "drop tokens below min_p x the top probability")->check(CLI::Range(0.0, 1.0));
  app.add_option("--repetition-penalty", o->repetition_penalty, "HF repetition penalty (1 = off)");
  app.add_option("--seed", o->seed, "sampling seed (same seed, same text)");
  app.add_option("--device", o->device, "cuda or cpu")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--max-context", o->max_context, "context (KV cache) length in tokens")->check(CLI::PositiveNumber);
  return [o]() { return run_generate(*o); };
}

}  // namespace fc::cli
