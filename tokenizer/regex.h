// PCRE2 (UTF + UCP, JIT-compiled) behind the pre-tokenizer. tokenizer.json patterns are written for
// Oniguruma, which `tokenizers` runs them with; the few escapes whose meaning differs in PCRE2 are
// rewritten at compile time (see translate_onig_pattern).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

typedef struct pcre2_real_code_8 pcre2_code_8;

namespace fc {

// Rewrites an Oniguruma pattern into a PCRE2 pattern with the same meaning under UTF + UCP:
//   \s \S  -> \p{White_Space} \P{White_Space}  (PCRE2's \s also takes U+180E, which is not White_Space)
//   \w \W  -> letters, marks, numbers, connector punctuation (PCRE2 10.42's \w lacks the marks)
//   \h \H  -> hex digits (PCRE2's \h is horizontal space)
// Everything else is passed through. Throws fc::Error for a construct it cannot carry over.
std::string translate_onig_pattern(std::string_view pattern);

class Regex {
 public:
  enum class Syntax { kOniguruma, kLiteral, kPcre2 };
  Regex() = default;
  // Compiles `pattern`; throws fc::Error naming the pattern and PCRE2's message on failure.
  Regex(std::string_view pattern, Syntax syntax);
  ~Regex();
  Regex(Regex&& other) noexcept;
  Regex& operator=(Regex&& other) noexcept;
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Finds the first match in subject[start, end of subject). The subject must be well-formed UTF-8
  // (it is not checked again). Returns false when there is none; lookarounds see all of `subject`.
  bool find(std::string_view subject, size_t start, size_t* match_begin, size_t* match_end) const;
  // True when the pattern matches at exactly `pos` (anchored there).
  bool matches_at(std::string_view subject, size_t pos) const;

  // Calls fn(begin, end) for every match, left to right and non-overlapping, the way Oniguruma's
  // find_iter in `tokenizers` walks them: an empty match right where the previous match ended is
  // skipped by advancing one character.
  template <typename Fn>
  void for_each_match(std::string_view subject, Fn&& fn) const {
    size_t start = 0;
    size_t last_end = std::string_view::npos;
    size_t begin, end;
    while (start <= subject.size() && find(subject, start, &begin, &end)) {
      if (begin == end && end == last_end) {
        if (start >= subject.size()) break;
        start += char_length(subject, start);
        continue;
      }
      fn(begin, end);
      last_end = end;
      start = end;
    }
  }

  const std::string& pattern() const { return pattern_; }

 private:
  static size_t char_length(std::string_view subject, size_t pos);
  bool match(std::string_view subject, size_t start, unsigned options, size_t* match_begin, size_t* match_end) const;

  pcre2_code_8* code_ = nullptr;
  bool jit_ = false;
  std::string pattern_;  // as given, for error messages
};

}  // namespace fc
