// Autoregressive generation for one sequence: prefill the prompt, then sample one token per step until
// a stop id, the token limit or the context limit. The caller streams text from the on_token callback.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/backend.h"
#include "kernels/sampling.h"

namespace fc {

enum class StopReason { StopToken, StopString, MaxTokens, ContextFull, Cancelled };
const char* stop_reason_name(StopReason reason);

struct GenerationParams {
  int max_new_tokens = 128;
  SamplingParams sampling;  // temperature <= 0: greedy; seed; top-k/top-p/min-p; penalties
  std::vector<int32_t> stop_ids;
};

struct GenerationStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;
  double prefill_ms = 0;  // time to first token (prefill + first sample)
  double decode_ms = 0;   // the remaining steps
  StopReason stop = StopReason::MaxTokens;
  std::vector<int32_t> ids;  // generated ids (the stop id included when one ended it)
};

// on_token(id) returns false to stop (Cancelled). Uses KV sequence `seq_id`, which may already hold a
// prefix (multi-turn chat): only `prompt` (the new tokens) is prefilled; `history` (may be empty) is
// what the sequence already holds, for the repetition penalty (HF penalises every id of input_ids; the
// presence and frequency penalties count only the ids this call generates, as vLLM's do).
//
// Sampling draw of the token at position p is sampling_random(seed, p): the same seed gives the same
// text on every run and on either backend (CPU and GPU samplers pick identical ids for equal logits).
// Every token is chosen by Backend::forward_sample (on the GPU for the CUDA backend, penalties included).
GenerationStats generate(Backend& backend, int seq_id, const std::vector<int32_t>& prompt,
                         const GenerationParams& params, const std::function<bool(int32_t)>& on_token,
                         const std::vector<int32_t>& history = {});

// Finds stop strings in streamed text that may be split across tokens anywhere (even inside a UTF-8
// character's bytes). push() returns the text that can safely be shown: everything except a tail
// that could still become the start of a stop string. Once a stop string is complete, push() returns
// the text before it and stopped() is true; the stop string itself and anything after are dropped.
// A stop string as typed on a command line: \n, \t and \\ become a newline, a tab and one backslash
// (the shell passes "\n" as two characters); a backslash before anything else, or at the end, stays.
std::string unescape_stop_string(std::string_view typed);

// Runs one untimed prefill of `prompt_tokens` tokens and two decode steps the way generate() will run
// them for `params` through a fresh sequence, then frees it: the kernels load, cuBLASLt makes its plans for these shapes
// and the CUDA backend captures its decode graphs before the first request is timed. Returns the
// milliseconds it took. Leaves the KV cache as it found it.
double warm_up(Backend& backend, int prompt_tokens, const GenerationParams& params);

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops);
  std::string push(std::string_view text);
  std::string flush();  // end of generation: the held-back tail (no stop string completed)
  bool stopped() const { return stopped_; }
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;  // text not shown yet: a possible prefix of a stop string
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace fc
