// Autoregressive generation for one sequence: prefill the prompt, then sample one token per step until
// a stop id, the token limit or the context limit. The caller streams text from the on_token callback.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/backend.h"
#include "kernels/sampling.h"

namespace fc {

enum class StopReason { StopToken, MaxTokens, ContextFull, Cancelled };
const char* stop_reason_name(StopReason reason);

struct GenerationParams {
  int max_new_tokens = 128;
  SamplingParams sampling;  // temperature <= 0: greedy; seed; top-k/top-p/min-p
  float repetition_penalty = 1.0f;
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
// prefix (multi-turn chat): only `prompt` (the new tokens) is prefilled.
GenerationStats generate(Backend& backend, int seq_id, const std::vector<int32_t>& prompt,
                         const GenerationParams& params, const std::function<bool(int32_t)>& on_token);

}  // namespace fc
