// Small pieces shared by the subcommands: global flags, the sampling options of generate and chat,
// and loading a model + tokenizer for generation.
#pragma once
#include <atomic>
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "engine/backend.h"
#include "engine/generator.h"
#include "model/llama_weights.h"
#include "tokenizer/tokenizer.h"

namespace fc::cli {

DeviceKind parse_device(const std::string& name);  // "cpu" | "cuda"

struct GlobalOptions {
  bool quiet = false;  // --quiet: no progress bar, no statistics line, warnings and errors only
};
GlobalOptions& global_options();

// Options of generate and chat. Sampling values left unset on the command line come from the model's
// generation_config.json, else the defaults below (greedy).
struct ModelOptions {
  std::string model_dir, tokenizer_path, device = "cuda", system;
  int max_context = 4096;
  int max_new_tokens = 0;  // 0: generation_config.json's max_new_tokens, else 256
  float temperature = 0, top_p = 1, min_p = 0, repetition_penalty = 1, presence_penalty = 0, frequency_penalty = 0;
  int top_k = 0;
  uint64_t seed = 0;
  bool check_weights = false;  // --check-weights: scan every weight for NaN/Inf before the backend is built
  std::string quantize;        // --quantize fp8: quantize the projections on load ("" = as stored)
  CLI::Option *temperature_opt = nullptr, *top_p_opt = nullptr, *top_k_opt = nullptr, *min_p_opt = nullptr,
              *penalty_opt = nullptr, *seed_opt = nullptr;
};
void add_model_options(CLI::App& app, ModelOptions& o);

// --check-weights (generate, chat, validate; add_model_options adds it): check_weights_if_asked scans
// every tensor with check_weights_finite when the flag is set, so a NaN/Inf is one error line naming the
// file, the tensor and the first bad element's index. Call it after open_checkpoint, before the backend.
void add_check_weights_flag(CLI::App& app, bool& check_weights);

// --quantize fp8 (generate, chat, validate, bench; add_model_options adds it): the projections of a
// bf16/fp16/fp32 checkpoint become e4m3 with per-output-channel scales on load (model/quantization.h);
// "" = as stored. weight_format turns the option's value into BackendOptions::weights.
void add_quantize_option(CLI::App& app, std::string& quantize);
WeightFormat weight_format(const std::string& quantize);
void check_weights_if_asked(const Checkpoint& checkpoint, bool check_weights);

struct LoadedModel {
  std::unique_ptr<Checkpoint> checkpoint;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Backend> backend;
  GenerationParams params;  // sampling, max_new_tokens and stop ids resolved from options + files
  std::vector<int32_t> config_eos;
  DeviceKind device = DeviceKind::Cpu;
  double load_s = 0;         // opening the checkpoint, building the backend, uploading the weights
  double weight_bytes = 0;   // the checkpoint's tensors as stored
  bool random_seed = false;  // sampling without --seed: a random seed was drawn (printed so a run can be replayed)
};
// `backend`: what a command needs beyond the options (batch: sequences, tokens per step, KV pool); its
// max_context and show_progress are set here from --max-context and --quiet.
LoadedModel load_model(const ModelOptions& o, const BackendOptions& backend = {});

// Before the first request on the GPU: warm_up (engine/generator.h) for a prompt of `prompt_tokens`, then
// one line on stderr (unless --quiet) with the load time, the weights' rate and the warm-up's time. On
// the CPU: nothing (no lazy set-up to pay for).
void warm_up_and_report(LoadedModel& m, int prompt_tokens);

// The seed as the statistics line shows it: "seed N" (", random" when drawn because none was given), or
// "" when greedy.
std::string seed_note(const LoadedModel& m);

// SIGINT (Ctrl-C) sets this flag instead of killing the process, so generation stops at the next token
// and the statistics are still printed. A second Ctrl-C while the flag is set exits at once (status 130).
void install_interrupt_handler();
bool interrupted();
void clear_interrupt();

// A fresh 64-bit sampling seed from the system's entropy (a run without --seed: printed, so replayable).
uint64_t draw_random_seed();

// The text of one generation as generate shows it: ids through a StreamDecoder (special tokens
// skipped), stop ids never shown, the text cut before the first stop string (which is not shown).
class GenerationText {
 public:
  GenerationText(const Tokenizer& tokenizer, std::vector<int32_t> stop_ids, std::vector<std::string> stop_strings);
  // Adds a generated id; returns the text that can be shown now (a possible start of a stop string and
  // an unfinished character are held back).
  std::string push(int32_t id);
  // End of generation: the held-back tail (nothing after a stop string).
  std::string finish();
  bool stopped() const { return stops_.stopped(); }
  const std::string& matched() const { return stops_.matched(); }

 private:
  StreamDecoder stream_;
  StopStringMatcher stops_;
  std::vector<int32_t> stop_ids_;
};

}  // namespace fc::cli
