#include "engine/generator.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace fc {

const char* stop_reason_name(StopReason reason) {
  switch (reason) {
    case StopReason::StopToken: return "stop token";
    case StopReason::MaxTokens: return "max new tokens";
    case StopReason::ContextFull: return "context full";
    case StopReason::Cancelled: return "cancelled";
  }
  return "?";
}

GenerationStats generate(Backend& backend, int seq_id, const std::vector<int32_t>& prompt,
                         const GenerationParams& params, const std::function<bool(int32_t)>& on_token) {
  using clock = std::chrono::steady_clock;
  KVCacheManager& kv = backend.kv_cache();
  const int vocab = backend.config().vocab_size;
  if (prompt.empty()) fail("generate: the prompt is empty");
  const int context = kv.max_tokens_per_seq();
  if (kv.length(seq_id) + static_cast<int>(prompt.size()) > context) {
    fail("prompt of {} tokens (plus {} already in the conversation) exceeds the context of {} tokens",
         prompt.size(), kv.length(seq_id), context);
  }
  GenerationStats stats;
  stats.prompt_tokens = static_cast<int>(prompt.size());
  std::vector<int32_t> history(prompt);  // for the repetition penalty
  std::vector<float> logits;
  const auto t0 = clock::now();
  backend.forward({{seq_id}, {static_cast<int>(prompt.size())}, prompt, false}, logits);
  auto first_token_time = t0;
  for (int step = 0; step < params.max_new_tokens; ++step) {
    if (params.repetition_penalty != 1.0f) {
      const int32_t offsets[2] = {0, static_cast<int32_t>(history.size())};
      repetition_penalty_ref(logits.data(), 1, vocab, history.data(), offsets, &params.repetition_penalty);
    }
    SamplingParams sp = params.sampling;
    sp.step = static_cast<uint64_t>(kv.length(seq_id));  // one draw per position: reproducible per seed
    const int32_t id = sample_ref(logits.data(), vocab, sp, sampling_random(sp.seed, sp.step)).id;
    if (step == 0) first_token_time = clock::now();
    stats.ids.push_back(id);
    ++stats.generated_tokens;
    history.push_back(id);
    if (std::find(params.stop_ids.begin(), params.stop_ids.end(), id) != params.stop_ids.end()) {
      stats.stop = StopReason::StopToken;
      on_token(id);
      break;
    }
    if (!on_token(id)) {
      stats.stop = StopReason::Cancelled;
      break;
    }
    if (step + 1 == params.max_new_tokens) {
      stats.stop = StopReason::MaxTokens;
      break;
    }
    if (kv.length(seq_id) + 1 > context) {
      stats.stop = StopReason::ContextFull;
      break;
    }
    backend.forward({{seq_id}, {1}, {id}, false}, logits);
  }
  const auto t_end = clock::now();
  stats.prefill_ms = std::chrono::duration<double, std::milli>(first_token_time - t0).count();
  stats.decode_ms = std::chrono::duration<double, std::milli>(t_end - first_token_time).count();
  return stats;
}

}  // namespace fc
