#include "apps/cli_common.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <random>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "core/error.h"
#include "tokenizer/chat.h"

namespace fc::cli {

DeviceKind parse_device(const std::string& name) {
  if (name == "cpu") return DeviceKind::Cpu;
  if (name == "cuda") return DeviceKind::Cuda;
  fail("unknown device '{}' (expected cpu or cuda)", name);
}

GlobalOptions& global_options() {
  static GlobalOptions options;
  return options;
}

void add_model_options(CLI::App& app, ModelOptions& o) {
  app.add_option("--model", o.model_dir, "Hugging Face model directory")->required();
  app.add_option("--tokenizer", o.tokenizer_path, "tokenizer.json / tokenizer.model (default: the model's)");
  app.add_option("--system", o.system, "system message (chat template)");
  // Left out, the sampling options come from the model's generation_config.json: the help says so.
  app.add_option("--max-new-tokens", o.max_new_tokens, "most tokens to generate")
      ->check(CLI::PositiveNumber)
      ->default_str("generation_config.json, else 256");
  o.temperature_opt = app.add_option("--temperature", o.temperature, "0 = greedy")
                          ->check(CLI::NonNegativeNumber)
                          ->default_str("generation_config.json, else 0");
  o.top_k_opt = app.add_option("--top-k", o.top_k, "keep the k most likely tokens (0 = off)")
                    ->check(CLI::NonNegativeNumber)
                    ->default_str("generation_config.json, else 0");
  o.top_p_opt = app.add_option("--top-p", o.top_p, "nucleus sampling mass (1 = off)")
                    ->check(CLI::Range(0.0, 1.0))
                    ->default_str("generation_config.json, else 1");
  o.min_p_opt = app.add_option("--min-p", o.min_p, "drop tokens below min_p x the top probability")
                    ->check(CLI::Range(0.0, 1.0))
                    ->default_str("generation_config.json, else 0");
  o.penalty_opt = app.add_option("--repetition-penalty", o.repetition_penalty, "HF repetition penalty (1 = off)")
                      ->check(CLI::PositiveNumber)
                      ->default_str("generation_config.json, else 1");
  app.add_option("--presence-penalty", o.presence_penalty,
                 "subtract this from the logit of every token generated so far (OpenAI; 0 = off)")
      ->check(CLI::Range(-2.0, 2.0));
  app.add_option("--frequency-penalty", o.frequency_penalty,
                 "subtract this x the times a token was generated so far (OpenAI; 0 = off)")
      ->check(CLI::Range(-2.0, 2.0));
  o.seed_opt = app.add_option("--seed", o.seed, "sampling seed: same seed, same text")
                   ->default_str("random, printed with the statistics");
  app.add_option("--device", o.device, "cuda or cpu")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--max-context", o.max_context, "context (KV cache) length in tokens")->check(CLI::PositiveNumber);
  add_check_weights_flag(app, o.check_weights);
  add_quantize_option(app, o.quantize);
}

void add_quantize_option(CLI::App& app, std::string& quantize) {
  app.add_option("--quantize", quantize,
                 "fp8: quantize the attention and MLP weights on load (e4m3, one scale per output channel; "
                 "embeddings and lm_head stay as stored)")
      ->check(CLI::IsMember({"fp8"}));
}

WeightFormat weight_format(const std::string& quantize) {
  if (quantize.empty()) return WeightFormat::kAsStored;
  if (quantize == "fp8") return WeightFormat::kFp8;
  fail("--quantize {}: unknown format (expected fp8)", quantize);
}

void add_check_weights_flag(CLI::App& app, bool& check_weights) {
  app.add_flag("--check-weights", check_weights,
               "read every weight once and refuse a checkpoint holding NaN or Inf (one pass over the files)");
}

void check_weights_if_asked(const Checkpoint& checkpoint, bool check_weights) {
  if (!check_weights) return;
  // Before the backend: a corrupted checkpoint is refused before gigabytes are uploaded to the GPU.
  check_weights_finite(checkpoint);
  const double bytes = static_cast<double>(checkpoint.store.total_bytes());
  spdlog::info("--check-weights: {} tensors ({}) hold no NaN or Inf", checkpoint.store.names().size(),
               bytes >= 1e9 ? fmt::format("{:.2f} GB", bytes / 1e9) : fmt::format("{:.1f} MB", bytes / 1e6));
}

LoadedModel load_model(const ModelOptions& o, const BackendOptions& backend) {
  const DeviceKind device = parse_device(o.device);
  const auto t0 = std::chrono::steady_clock::now();
  LoadedModel m;
  m.device = device;
  m.checkpoint = std::make_unique<Checkpoint>(open_checkpoint(o.model_dir));
  const Checkpoint& ckpt = *m.checkpoint;
  check_weights_if_asked(ckpt, o.check_weights);
  m.tokenizer = load_tokenizer(o.tokenizer_path.empty() ? o.model_dir : o.tokenizer_path);
  if (m.tokenizer->vocab_size() > ckpt.config.vocab_size) {
    fail("tokenizer has {} tokens but the model's vocab_size is {}", m.tokenizer->vocab_size(), ckpt.config.vocab_size);
  }
  m.config_eos = ckpt.config.eos_token_ids;
  m.config_eos.insert(m.config_eos.end(), ckpt.generation.eos_token_ids.begin(), ckpt.generation.eos_token_ids.end());

  // Command line > generation_config.json > greedy. do_sample: false in the file means greedy unless
  // the user asks for a temperature.
  const GenerationConfig& g = ckpt.generation;
  GenerationParams& p = m.params;
  auto given = [](const CLI::Option* opt) { return opt != nullptr && opt->count() > 0; };
  p.sampling.temperature = given(o.temperature_opt) ? o.temperature : g.temperature.value_or(0.f);
  if (!given(o.temperature_opt) && g.do_sample.has_value() && !*g.do_sample) p.sampling.temperature = 0;
  p.sampling.top_k = given(o.top_k_opt) ? o.top_k : g.top_k.value_or(0);
  p.sampling.top_p = given(o.top_p_opt) ? o.top_p : g.top_p.value_or(1.f);
  p.sampling.min_p = given(o.min_p_opt) ? o.min_p : g.min_p.value_or(0.f);
  p.sampling.seed = o.seed;
  if (!given(o.seed_opt) && p.sampling.temperature > 0) {
    // No seed asked for: a fresh one each run (two runs differ), printed so that any run can be replayed.
    p.sampling.seed = draw_random_seed();
    m.random_seed = true;
  }
  p.sampling.repetition_penalty = given(o.penalty_opt) ? o.repetition_penalty : g.repetition_penalty.value_or(1.f);
  p.sampling.presence_penalty = o.presence_penalty;
  p.sampling.frequency_penalty = o.frequency_penalty;
  p.max_new_tokens = o.max_new_tokens > 0 ? o.max_new_tokens : g.max_new_tokens.value_or(256);
  p.stop_ids = chat_stop_ids(*m.tokenizer, m.config_eos);

  BackendOptions bo = backend;
  bo.max_context = std::min(o.max_context, ckpt.config.max_position_embeddings);
  bo.show_progress = !global_options().quiet;
  bo.weights = weight_format(o.quantize);
  m.backend = make_backend(device, ckpt, bo);
  m.load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  m.weight_bytes = static_cast<double>(ckpt.store.total_bytes());
  return m;
}

void warm_up_and_report(LoadedModel& m, int prompt_tokens) {
  // The CPU backend has nothing to load lazily or capture: no warm-up, and no line, there.
  if (m.device != DeviceKind::Cuda) return;
  const double warm_ms = warm_up(*m.backend, prompt_tokens, m.params);
  if (global_options().quiet) return;
  std::fprintf(stderr, "loaded %.2f GB of weights in %.2f s (%.2f GB/s); warm-up %.0f ms\n", m.weight_bytes / 1e9,
               m.load_s, m.weight_bytes / 1e9 / std::max(m.load_s, 1e-9), warm_ms);
}

std::string seed_note(const LoadedModel& m) {
  if (!(m.params.sampling.temperature > 0)) return "";
  return fmt::format("seed {}{}", m.params.sampling.seed, m.random_seed ? " (random)" : "");
}

namespace {
volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void on_sigint(int) {
  if (g_interrupted) {
    // The user insists: leave now (only async-signal-safe calls here).
    const char msg[] = "\n";
    (void)!write(STDERR_FILENO, msg, sizeof msg - 1);
    _exit(130);
  }
  g_interrupted = 1;
}
}  // namespace

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a blocking read of the next chat turn returns on Ctrl-C
  sigaction(SIGINT, &sa, nullptr);
}

bool interrupted() { return g_interrupted != 0; }
void clear_interrupt() { g_interrupted = 0; }

uint64_t draw_random_seed() {
  std::random_device entropy;
  return static_cast<uint64_t>(entropy()) << 32 | entropy();
}

GenerationText::GenerationText(const Tokenizer& tokenizer, std::vector<int32_t> stop_ids,
                               std::vector<std::string> stop_strings)
    : stream_(tokenizer, /*skip_special=*/true), stops_(std::move(stop_strings)), stop_ids_(std::move(stop_ids)) {}

std::string GenerationText::push(int32_t id) {
  if (std::find(stop_ids_.begin(), stop_ids_.end(), id) != stop_ids_.end()) return {};
  return stops_.push(stream_.push(id));
}

std::string GenerationText::finish() {
  if (stops_.stopped()) return {};
  return stops_.push(stream_.flush()) + stops_.flush();
}

}  // namespace fc::cli
