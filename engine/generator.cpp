#include "engine/generator.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include "core/error.h"

namespace fc {

const char* stop_reason_name(StopReason reason) {
  switch (reason) {
    case StopReason::StopToken: return "stop token";
    case StopReason::StopString: return "stop string";
    case StopReason::MaxTokens: return "max new tokens";
    case StopReason::ContextFull: return "context full";
    case StopReason::Cancelled: return "cancelled";
  }
  return "?";
}

GenerationStats generate(Backend& backend, int seq_id, const std::vector<int32_t>& prompt,
                         const GenerationParams& params, const std::function<bool(int32_t)>& on_token,
                         const std::vector<int32_t>& history_before) {
  using clock = std::chrono::steady_clock;
  KVCacheManager& kv = backend.kv_cache();
  const int vocab = backend.config().vocab_size;
  if (prompt.empty()) fail("generate: the prompt is empty");
  for (int32_t id : prompt) {
    if (id < 0 || id >= vocab) fail("generate: token id {} is outside the model's vocabulary of {}", id, vocab);
  }
  const int context = kv.max_tokens_per_seq();
  if (kv.length(seq_id) + static_cast<int>(prompt.size()) > context) {
    fail("prompt of {} tokens (plus {} already in the conversation) exceeds the context of {} tokens",
         prompt.size(), kv.length(seq_id), context);
  }
  GenerationStats stats;
  stats.prompt_tokens = static_cast<int>(prompt.size());
  if (sampling_has_penalty(params.sampling)) {  // the context the penalties see: everything before
    std::vector<int32_t> context = history_before;
    context.insert(context.end(), prompt.begin(), prompt.end());
    backend.set_sampling_history(seq_id, context);
  }
  std::vector<int32_t> ids(1);
  SamplingParams sp = params.sampling;
  // A sampled id: recorded and streamed; false when it ends the generation (a stop id or the caller).
  auto accept = [&](int32_t id) {
    stats.ids.push_back(id);
    ++stats.generated_tokens;
    if (std::find(params.stop_ids.begin(), params.stop_ids.end(), id) != params.stop_ids.end()) {
      stats.stop = StopReason::StopToken;
      on_token(id);
      return false;
    }
    if (!on_token(id)) {
      stats.stop = StopReason::Cancelled;
      return false;
    }
    return true;
  };
  // After the id of `step` (0-based) with `length` tokens in the sequence's KV: the limit that ends the
  // generation there whatever the id, if any.
  auto limit_after = [&](int step, int length) -> std::optional<StopReason> {
    if (step + 1 == params.max_new_tokens) return StopReason::MaxTokens;
    if (length + 1 > context) return StopReason::ContextFull;
    return std::nullopt;
  };
  // The position of the token being chosen is the sequence length after the step (sp.step): one draw
  // per position, reproducible per seed.
  const auto t0 = clock::now();
  auto step_forward = [&](const ForwardBatch& batch) {
    sp.step = static_cast<uint64_t>(kv.length(seq_id) + batch.tokens.size());
    backend.forward_sample(batch, {sp}, ids);
  };
  step_forward({{seq_id}, {static_cast<int>(prompt.size())}, prompt, false});
  const auto first_token_time = clock::now();
  for (int step = 0; step < params.max_new_tokens; ++step) {
    if (!accept(ids[0])) break;
    if (const auto limit = limit_after(step, kv.length(seq_id))) {
      stats.stop = *limit;
      break;
    }
    step_forward({{seq_id}, {1}, {ids[0]}, false});
  }
  const auto t_end = clock::now();
  stats.prefill_ms = std::chrono::duration<double, std::milli>(first_token_time - t0).count();
  stats.decode_ms = std::chrono::duration<double, std::milli>(t_end - first_token_time).count();
  return stats;
}

std::string unescape_stop_string(std::string_view typed) {
  std::string out;
  for (size_t i = 0; i < typed.size(); ++i) {
    if (typed[i] == '\\' && i + 1 < typed.size()) {
      const char next = typed[i + 1];
      if (next == 'n' || next == 't' || next == '\\') {
        out += next == 'n' ? '\n' : next == 't' ? '\t' : '\\';
        ++i;
        continue;
      }
    }
    out += typed[i];
  }
  return out;
}

double warm_up(Backend& backend, int prompt_tokens, const GenerationParams& params) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  KVCacheManager& kv = backend.kv_cache();
  constexpr int kDecodeSteps = 4;  // at most: 2 greedy, 2 with the request's sampler
  if (kv.max_tokens_per_seq() <= kDecodeSteps + 1) return 0;
  const int tokens = std::max(1, std::min(prompt_tokens, kv.max_tokens_per_seq() - kDecodeSteps - 1));
  const int seq = kv.create_sequence();
  try {
    // Token ids do not matter to the kernels; 0..n-1 are valid in every vocabulary.
    std::vector<int32_t> prompt(tokens);
    for (int i = 0; i < tokens; ++i) prompt[i] = i % backend.config().vocab_size;
    std::vector<int32_t> ids;
    if (sampling_has_penalty(params.sampling)) backend.set_sampling_history(seq, prompt);
    SamplingParams greedy = params.sampling;
    greedy.temperature = 0;
    backend.forward_sample({{seq}, {tokens}, prompt, false}, {greedy}, ids);
    // Two decode steps each way: the CUDA backend runs a graph's first step eagerly and captures it on
    // the second (engine/cuda_parts.h GraphCache); one graph serves every sampler, but a sampled row
    // takes more of the kernel's code than a greedy one.
    std::vector<SamplingParams> samplers = {greedy};
    if (params.sampling.temperature > 0) samplers.push_back(params.sampling);
    for (const SamplingParams& p : samplers) {
      for (int step = 0; step < 2; ++step) {
        SamplingParams at = p;
        at.step = static_cast<uint64_t>(kv.length(seq) + 1);
        backend.forward_sample({{seq}, {1}, {ids[0]}, false}, {at}, ids);
      }
    }
  } catch (...) {
    kv.release_sequence(seq);
    throw;
  }
  kv.release_sequence(seq);
  return std::chrono::duration<double, std::milli>(clock::now() - t0).count();
}

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
}

std::string StopStringMatcher::push(std::string_view text) {
  if (stopped_) return {};
  pending_.append(text);
  // The earliest complete stop string wins (two may end in the same push).
  size_t cut = std::string::npos;
  for (const std::string& s : stops_) {
    const size_t at = pending_.find(s);
    if (at != std::string::npos && at < cut) {
      cut = at;
      matched_ = s;
    }
  }
  if (cut != std::string::npos) {
    stopped_ = true;
    std::string out = pending_.substr(0, cut);
    pending_.clear();
    return out;
  }
  // Hold back the longest tail of pending_ that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& s : stops_) {
    for (size_t k = std::min(s.size() - 1, pending_.size()); k > hold; --k) {
      if (pending_.compare(pending_.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopStringMatcher::flush() {
  std::string out;
  out.swap(pending_);
  return stopped_ ? std::string() : out;
}

}  // namespace fc
