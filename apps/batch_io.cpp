#include "apps/batch_io.h"

#include <limits>

#include "core/error.h"

namespace fc::cli {

namespace {

using nlohmann::json;

// A number field of the request, checked for type and range. `what` names the range in the error.
template <typename T>
std::optional<T> number_field(const json& j, const char* name, int line, double lo, double hi, const char* what) {
  const auto it = j.find(name);
  if (it == j.end() || it->is_null()) return std::nullopt;
  const bool integral = std::numeric_limits<T>::is_integer;
  if (!it->is_number() || (integral && !it->is_number_integer())) {
    fail("line {}: \"{}\" must be {}, not {}", line, name, integral ? "an integer" : "a number", it->dump());
  }
  const double v = it->get<double>();
  if (!(v >= lo && v <= hi)) fail("line {}: \"{}\" must be {} (got {})", line, name, what, it->dump());
  return it->get<T>();
}

std::vector<ChatMessage> parse_messages(const json& list, int line) {
  if (!list.is_array() || list.empty()) fail("line {}: \"messages\" must be a non-empty list of {{role, content}}", line);
  std::vector<ChatMessage> messages;
  for (const json& m : list) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
        !m["content"].is_string()) {
      fail("line {}: each message must be an object with string \"role\" and \"content\" (got {})", line, m.dump());
    }
    messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return messages;
}

std::vector<std::string> parse_stop(const json& stop, int line) {
  if (stop.is_string()) return {stop.get<std::string>()};
  if (!stop.is_array()) fail("line {}: \"stop\" must be a string or a list of strings", line);
  std::vector<std::string> stops;
  for (const json& s : stop) {
    if (!s.is_string()) fail("line {}: \"stop\" must be a string or a list of strings (got {})", line, s.dump());
    stops.push_back(s.get<std::string>());
  }
  return stops;
}

const char* const kFields[] = {"id",   "prompt", "messages", "max_new_tokens",     "temperature",      "top_p",
                               "top_k", "min_p", "seed",    "repetition_penalty", "presence_penalty", "frequency_penalty",
                               "stop"};

}  // namespace

BatchLine parse_batch_line(const std::string& text, int line, std::vector<std::string>& unknown) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    // nlohmann's message is "[json.exception.parse_error.101] parse error at line 1, column 5: ..."
    const std::string what = e.what();
    const size_t at = what.find("column");
    fail("line {}: not valid JSON ({})", line, at == std::string::npos ? what : what.substr(at));
  }
  if (!j.is_object()) fail("line {}: expected a JSON object, got {}", line, j.type_name());
  BatchLine r;
  r.line = line;
  if (j.contains("id")) r.id = j["id"];
  if (j.contains("prompt") && !j["prompt"].is_null()) {
    if (!j["prompt"].is_string()) fail("line {}: \"prompt\" must be a string", line);
    r.prompt = j["prompt"].get<std::string>();
    if (j.contains("messages")) fail("line {}: give \"prompt\" or \"messages\", not both", line);
  } else if (j.contains("messages")) {
    r.messages = parse_messages(j["messages"], line);
  } else {
    fail("line {}: no \"prompt\" (text) or \"messages\" (chat)", line);
  }
  r.max_new_tokens = number_field<int>(j, "max_new_tokens", line, 1, std::numeric_limits<int>::max(), "at least 1");
  r.temperature = number_field<float>(j, "temperature", line, 0, 1e6, "0 (greedy) or more");
  r.top_p = number_field<float>(j, "top_p", line, 0, 1, "in [0, 1]");
  r.top_k = number_field<int>(j, "top_k", line, 0, std::numeric_limits<int>::max(), "0 (off) or more");
  r.min_p = number_field<float>(j, "min_p", line, 0, 1, "in [0, 1]");
  r.seed = number_field<uint64_t>(j, "seed", line, 0, 18446744073709551615.0, "a non-negative integer");
  r.repetition_penalty = number_field<float>(j, "repetition_penalty", line, 1e-6, 1e6, "positive");
  r.presence_penalty = number_field<float>(j, "presence_penalty", line, -2, 2, "in [-2, 2]");
  r.frequency_penalty = number_field<float>(j, "frequency_penalty", line, -2, 2, "in [-2, 2]");
  if (j.contains("stop") && !j["stop"].is_null()) r.stop = parse_stop(j["stop"], line);
  for (const auto& [key, value] : j.items()) {
    if (std::find(std::begin(kFields), std::end(kFields), key) == std::end(kFields)) unknown.push_back(key);
  }
  return r;
}

BatchInput read_batch_input(std::istream& in, bool strict) {
  BatchInput input;
  std::vector<std::string> seen_unknown;
  std::string text;
  for (int line = 1; std::getline(in, text); ++line) {
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (text.find_first_not_of(" \t") == std::string::npos) continue;
    std::vector<std::string> unknown;
    try {
      input.requests.push_back(parse_batch_line(text, line, unknown));
    } catch (const Error& e) {
      if (strict) throw;
      input.errors.push_back(e.what());
    }
    for (const std::string& key : unknown) {
      if (std::find(seen_unknown.begin(), seen_unknown.end(), key) != seen_unknown.end()) continue;
      seen_unknown.push_back(key);
      input.unknown_fields.push_back(fmt::format("\"{}\" (line {})", key, line));
    }
  }
  return input;
}

std::string result_line(const BatchLine& request, const BatchResult& result, const BatchOutcome& outcome) {
  json j = {{"id", request.id}};
  if (!result.error.empty()) {
    j["error"] = result.error;
  } else {
    j["text"] = outcome.text;
    j["token_ids"] = result.ids;
    j["prompt_tokens"] = result.prompt_tokens;
    j["completion_tokens"] = result.ids.size();
    j["stop_reason"] = stop_reason_name(result.stop);
    if (!outcome.stop_string.empty()) j["stop_string"] = outcome.stop_string;
    j["ttft_ms"] = result.ttft_ms;
    if (outcome.sampled) j["seed"] = outcome.seed;  // replays the request alone: generate --seed N
  }
  // A stop string or a cut may leave bytes that are not UTF-8; JSON cannot carry them: U+FFFD.
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace fc::cli
