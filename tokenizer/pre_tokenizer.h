// The pre-tokenizer of tokenizer.json: how text is cut into pre-tokens before BPE. Supports what
// byte-level BPE models use: Split (Regex or String pattern, all five delimiter behaviours, invert),
// ByteLevel (add_prefix_space, use_regex) and Sequence of those. It works on raw bytes: the byte-level
// character mapping is folded into the BPE vocabulary at load, so ByteLevel here only splits.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "tokenizer/regex.h"

namespace fc {

// tokenizers' SplitDelimiterBehavior.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

class PreTokenizer {
 public:
  // Receives each pre-token in order.
  struct Sink {
    virtual void piece(std::string_view text) = 0;
  };

  // From tokenizer.json's "pre_tokenizer" (null: the whole text is one pre-token). Throws fc::Error
  // naming an unsupported type. The text is expected to end in ByteLevel (byte-level BPE).
  static PreTokenizer from_json(const nlohmann::json& config);

  // Cuts `text` (well-formed UTF-8) into pre-tokens. Empty pieces are never passed on.
  void run(std::string_view text, Sink& sink) const { run_step(0, text, sink); }

  bool has_byte_level() const { return has_byte_level_; }

 private:
  struct Step {
    enum class Kind { kSplit, kByteLevel } kind = Kind::kSplit;
    Regex regex;  // the Split pattern, or GPT-2's pattern for ByteLevel with use_regex
    SplitBehavior behavior = SplitBehavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;  // ByteLevel
    bool use_regex = false;         // ByteLevel
  };
  void add_step(const nlohmann::json& config);
  void run_step(size_t index, std::string_view text, Sink& sink) const;
  void split(const Step& step, size_t next, std::string_view text, Sink& sink) const;

  std::vector<Step> steps_;
  bool has_byte_level_ = false;
};

}  // namespace fc
