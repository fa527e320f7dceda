#include "tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <utility>

#include "core/error.h"
#include "tokenizer/utf8.h"

namespace fc {
namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  const int n = pcre2_get_error_message(code, buffer, sizeof(buffer));
  return n < 0 ? "PCRE2 error " + std::to_string(code) : std::string(reinterpret_cast<char*>(buffer), n);
}

// Per-thread match state shared by every Regex: encode() is const and may run on several threads.
// The JIT stack grows to 16 MiB: patterns like \s+(?!\S) backtrack over a whole whitespace run.
struct MatchScratch {
  pcre2_match_data* data = nullptr;
  pcre2_match_context* context = nullptr;
  pcre2_jit_stack* stack = nullptr;
  MatchScratch() {
    data = pcre2_match_data_create(1, nullptr);
    context = pcre2_match_context_create(nullptr);
    stack = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, nullptr);
    if (data == nullptr || context == nullptr || stack == nullptr) fail("out of memory for PCRE2 match data");
    pcre2_jit_stack_assign(context, nullptr, stack);
  }
  ~MatchScratch() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(context);
    pcre2_match_data_free(data);
  }
};

MatchScratch& scratch() {
  thread_local MatchScratch s;
  return s;
}

// Oniguruma's \w under Unicode: Letter | Mark | Number | Connector_Punctuation.
constexpr std::string_view kOnigWordClass = "\\p{L}\\p{M}\\p{N}\\p{Pc}";

}  // namespace

std::string translate_onig_pattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() + 32);
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\') {
      if (i + 1 >= p.size()) fail("regex '{}' ends with a lone backslash", p);
      const char e = p[++i];
      switch (e) {
        case 's': out += "\\p{White_Space}"; break;
        case 'S': out += "\\P{White_Space}"; break;
        case 'w': out += in_class ? std::string(kOnigWordClass) : "[" + std::string(kOnigWordClass) + "]"; break;
        case 'W':
          if (in_class) fail("regex '{}': \\W inside a character class is not supported", p);
          out += "[^" + std::string(kOnigWordClass) + "]";
          break;
        case 'h': out += in_class ? "0-9a-fA-F" : "[0-9a-fA-F]"; break;
        case 'H':
          if (in_class) fail("regex '{}': \\H inside a character class is not supported", p);
          out += "[^0-9a-fA-F]";
          break;
        default: out += c; out += e; break;  // \p{..}, \x{..}, \r, \n, \d, escaped punctuation
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal, not the end of the class.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (in_class && c == '[') {
      if (i + 1 < p.size() && p[i + 1] == ':') {  // POSIX class [:alpha:]: copy through ":]"
        const size_t close = p.find(":]", i + 2);
        if (close == std::string_view::npos) fail("regex '{}': unterminated POSIX class", p);
        out.append(p.substr(i, close + 2 - i));
        i = close + 1;
        continue;
      }
      fail("regex '{}': nested character classes (Oniguruma set operations) are not supported", p);
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

Regex::Regex(std::string_view pattern, Syntax syntax) : pattern_(pattern) {
  std::string compiled;
  uint32_t options = PCRE2_UTF | PCRE2_UCP;
  switch (syntax) {
    case Syntax::kOniguruma: compiled = translate_onig_pattern(pattern); break;
    case Syntax::kLiteral: compiled = std::string(pattern); options = PCRE2_UTF | PCRE2_LITERAL; break;
    case Syntax::kPcre2: compiled = std::string(pattern); break;
  }
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(compiled.data()), compiled.size(), options, &error,
                        &error_offset, nullptr);
  if (code_ == nullptr) {
    fail("cannot compile regex '{}' (as PCRE2 '{}'): {} at offset {}", pattern, compiled, pcre2_message(error),
         error_offset);
  }
  // Without JIT support (some platforms) pcre2_match interprets the same pattern, just slower.
  jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() {
  if (code_ != nullptr) pcre2_code_free(code_);
}

Regex::Regex(Regex&& other) noexcept
    : code_(std::exchange(other.code_, nullptr)), jit_(other.jit_), pattern_(std::move(other.pattern_)) {}

Regex& Regex::operator=(Regex&& other) noexcept {
  if (this != &other) {
    if (code_ != nullptr) pcre2_code_free(code_);
    code_ = std::exchange(other.code_, nullptr);
    jit_ = other.jit_;
    pattern_ = std::move(other.pattern_);
  }
  return *this;
}

bool Regex::match(std::string_view subject, size_t start, unsigned options, size_t* match_begin,
                  size_t* match_end) const {
  MatchScratch& s = scratch();
  const auto* text = reinterpret_cast<PCRE2_SPTR>(subject.data());
  // The whole text was checked once on entry to encode(); pieces are cut at character boundaries.
  options |= PCRE2_NO_UTF_CHECK;
  const int rc = jit_ && (options & PCRE2_ANCHORED) == 0
                     ? pcre2_jit_match(code_, text, subject.size(), start, options, s.data, s.context)
                     : pcre2_match(code_, text, subject.size(), start, options, s.data, s.context);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) fail("regex '{}' failed at byte {} of a {}-byte piece: {}", pattern_, start, subject.size(), pcre2_message(rc));
  const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(s.data);
  *match_begin = ovector[0];
  *match_end = ovector[1];
  return true;
}

bool Regex::find(std::string_view subject, size_t start, size_t* match_begin, size_t* match_end) const {
  return match(subject, start, 0, match_begin, match_end);
}

bool Regex::matches_at(std::string_view subject, size_t pos) const {
  size_t begin, end;
  return match(subject, pos, PCRE2_ANCHORED, &begin, &end);
}

size_t Regex::char_length(std::string_view subject, size_t pos) {
  size_t subpart;
  bool incomplete;
  const size_t len = utf8_sequence_length(subject.substr(pos), &subpart, &incomplete);
  return len == 0 ? 1 : len;
}

}  // namespace fc
