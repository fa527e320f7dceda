// The files of `flashcore batch`: requests read from JSON Lines, results written as JSON Lines.
//
// Input: one JSON object per line: `id` (any JSON value, echoed; null when absent), `prompt` (text) or
// `messages` (a list of {role, content}, rendered with the chat template), and optionally
// `max_new_tokens`, `temperature`, `top_p`, `top_k`, `min_p`, `seed`, `repetition_penalty`,
// `presence_penalty`, `frequency_penalty`, `stop` (a string or a list of them). Blank lines are skipped. A line that is not a JSON object, lacks its text or has a field of the
// wrong type or range is an error naming its line number.
#pragma once
#include <cstdint>
#include <istream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/scheduler.h"
#include "tokenizer/chat.h"

namespace fc::cli {

struct BatchLine {
  int line = 0;         // 1-based line number in the input
  nlohmann::json id;    // echoed in the result
  std::optional<std::string> prompt;
  std::vector<ChatMessage> messages;  // when there is no prompt
  std::optional<int> max_new_tokens, top_k;
  std::optional<float> temperature, top_p, min_p, repetition_penalty, presence_penalty, frequency_penalty;
  std::optional<uint64_t> seed;
  std::optional<std::vector<std::string>> stop;
};

// One input line (without its newline) -> a request. Throws fc::Error "line N: ..." for a bad line.
// Names of fields it does not know are added to `unknown` (they are ignored, not an error: a file may
// carry metadata of its own).
BatchLine parse_batch_line(const std::string& text, int line, std::vector<std::string>& unknown);

struct BatchInput {
  std::vector<BatchLine> requests;
  std::vector<std::string> errors;  // "line N: ..." for each bad line, which was skipped
  std::vector<std::string> unknown_fields;  // "name (line N)", the first line each appears on
};
// Reads every line; with `strict` the first bad line throws instead of being skipped.
BatchInput read_batch_input(std::istream& in, bool strict);

// The result line of a request: id, text, token_ids, prompt_tokens, completion_tokens, stop_reason
// (generate --json's names), ttft_ms; stop_string when one ended it; seed when it sampled. A request that
// could not run: id and error.
struct BatchOutcome {
  std::string text;
  std::string stop_string;  // the stop string that ended it, if one did
  bool sampled = false;
  uint64_t seed = 0;
};
std::string result_line(const BatchLine& request, const BatchResult& result, const BatchOutcome& outcome);

}  // namespace fc::cli
