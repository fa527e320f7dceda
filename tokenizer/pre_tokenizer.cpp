#include "tokenizer/pre_tokenizer.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace fc {
namespace {

// tokenizers' ByteLevel pre-tokenizer pattern (GPT-2's), used when use_regex is true.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

SplitBehavior parse_behavior(const std::string& name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  fail("tokenizer.json: unknown Split behavior '{}'", name);
}

struct Span {
  size_t begin, end;
  bool flag;  // matched the pattern (after invert); Removed drops these
};

}  // namespace

PreTokenizer PreTokenizer::from_json(const nlohmann::json& config) {
  PreTokenizer p;
  if (!config.is_null()) p.add_step(config);
  for (size_t i = 0; i + 1 < p.steps_.size(); ++i) {
    if (p.steps_[i].kind == Step::Kind::kByteLevel) {
      // After ByteLevel, `tokenizers` works on the mapped characters; nothing we load does that.
      fail("tokenizer.json: pre-tokenizer steps after ByteLevel are not supported");
    }
  }
  return p;
}

void PreTokenizer::add_step(const nlohmann::json& config) {
  const std::string type = config.value("type", "");
  if (type == "Sequence") {
    for (const auto& sub : config.at("pretokenizers")) add_step(sub);
    return;
  }
  Step step;
  if (type == "Split") {
    const auto& pattern = config.at("pattern");
    if (pattern.contains("Regex")) {
      step.regex = Regex(pattern["Regex"].get<std::string>(), Regex::Syntax::kOniguruma);
    } else if (pattern.contains("String")) {
      step.regex = Regex(pattern["String"].get<std::string>(), Regex::Syntax::kLiteral);
    } else {
      fail("tokenizer.json: Split pattern must be Regex or String, got {}", pattern.dump());
    }
    step.behavior = parse_behavior(config.at("behavior").get<std::string>());
    step.invert = config.value("invert", false);
  } else if (type == "ByteLevel") {
    step.kind = Step::Kind::kByteLevel;
    step.add_prefix_space = config.value("add_prefix_space", false);
    step.use_regex = config.value("use_regex", true);
    if (step.use_regex) step.regex = Regex(kGpt2Pattern, Regex::Syntax::kOniguruma);
    has_byte_level_ = true;
  } else {
    fail("tokenizer.json: pre-tokenizer type '{}' is not supported (Split, ByteLevel, Sequence are)", type);
  }
  steps_.push_back(std::move(step));
}

void PreTokenizer::run_step(size_t index, std::string_view text, Sink& sink) const {
  if (text.empty()) return;
  if (index == steps_.size()) {
    sink.piece(text);
    return;
  }
  const Step& step = steps_[index];
  if (step.kind == Step::Kind::kSplit) {
    split(step, index + 1, text, sink);
    return;
  }
  // ByteLevel: `tokenizers` prepends the space to every piece that reaches it without one.
  std::string prefixed;
  if (step.add_prefix_space && text[0] != ' ') {
    prefixed.reserve(text.size() + 1);
    prefixed += ' ';
    prefixed += text;
    text = prefixed;
  }
  if (step.use_regex) {
    split(step, index + 1, text, sink);
  } else {
    run_step(index + 1, text, sink);
  }
}

void PreTokenizer::split(const Step& step, size_t next, std::string_view text, Sink& sink) const {
  // Isolated keeps every piece, matches and the gaps between them, so it can stream.
  if (step.behavior == SplitBehavior::kIsolated) {
    size_t previous = 0;
    step.regex.for_each_match(text, [&](size_t begin, size_t end) {
      if (begin > previous) run_step(next, text.substr(previous, begin - previous), sink);
      run_step(next, text.substr(begin, end - begin), sink);
      previous = end;
    });
    if (previous < text.size()) run_step(next, text.substr(previous), sink);
    return;
  }
  // NormalizedString::split: the text as alternating gaps and matches, each flagged (flag = matched,
  // flipped by invert), then folded by the behaviour.
  std::vector<Span> spans;
  size_t previous = 0;
  step.regex.for_each_match(text, [&](size_t begin, size_t end) {
    if (begin != previous) spans.push_back({previous, begin, step.invert});
    spans.push_back({begin, end, !step.invert});
    previous = end;
  });
  if (previous != text.size()) spans.push_back({previous, text.size(), step.invert});

  std::vector<Span> out;  // flag now means: remove
  bool previous_match = false;
  switch (step.behavior) {
    case SplitBehavior::kRemoved:
      out = spans;
      break;
    case SplitBehavior::kIsolated:
      break;  // handled above
    case SplitBehavior::kContiguous:
      for (const Span& s : spans) {
        if (s.flag == previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back({s.begin, s.end, false});
        }
        previous_match = s.flag;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Span& s : spans) {
        if (s.flag && !previous_match && !out.empty()) {
          out.back().end = s.end;
        } else {
          out.push_back({s.begin, s.end, false});
        }
        previous_match = s.flag;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->flag && !previous_match && !out.empty()) {
          out.back().begin = it->begin;
        } else {
          out.push_back({it->begin, it->end, false});
        }
        previous_match = it->flag;
      }
      std::reverse(out.begin(), out.end());
      break;
  }
  for (const Span& s : out) {
    if (!s.flag) run_step(next, text.substr(s.begin, s.end - s.begin), sink);
  }
}

}  // namespace fc
