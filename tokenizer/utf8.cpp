#include "tokenizer/utf8.h"

#include <cstdint>
#include <cstring>

#include "core/error.h"

namespace fc {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

// True when the 8 bytes at p are all ASCII.
inline bool ascii8(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return (v & 0x8080808080808080ull) == 0;
}

}  // namespace

size_t utf8_sequence_length(std::string_view bytes, size_t* maximal_subpart, bool* incomplete) {
  *incomplete = false;
  *maximal_subpart = 1;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  const unsigned b0 = p[0];
  if (b0 < 0x80) return 1;
  // The second byte's range is narrower after E0, ED, F0 and F4: that is what rules out overlong
  // forms, surrogates (U+D800..DFFF) and code points above U+10FFFF.
  size_t need;
  unsigned lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 1;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 2;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 3;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;  // a continuation byte, C0/C1 or F5..FF: never valid as a lead
  }
  for (size_t k = 1; k <= need; ++k) {
    if (k >= n) {
      *incomplete = true;
      *maximal_subpart = k;
      return 0;
    }
    const unsigned b = p[k];
    if (b < lo || b > hi) {
      *maximal_subpart = k;
      return 0;
    }
    lo = 0x80;
    hi = 0xBF;
  }
  return need + 1;
}

size_t find_invalid_utf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    if (i + 8 <= n && ascii8(p + i)) {
      i += 8;
      continue;
    }
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    size_t subpart;
    bool incomplete;
    const size_t len = utf8_sequence_length(text.substr(i), &subpart, &incomplete);
    if (len == 0) return i;
    i += len;
  }
  return std::string_view::npos;
}

void check_utf8(std::string_view text, const char* what) {
  const size_t bad = find_invalid_utf8(text);
  if (bad != std::string_view::npos) fail("invalid UTF-8 at byte {} of {}", bad, what);
}

size_t append_repaired_utf8(std::string_view bytes, Utf8Repair policy, bool at_end, std::string& out) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    size_t run = i;
    while (run < n && p[run] < 0x80) ++run;
    if (run > i) {
      out.append(bytes.data() + i, run - i);
      i = run;
      continue;
    }
    size_t subpart;
    bool incomplete;
    const size_t len = utf8_sequence_length(bytes.substr(i), &subpart, &incomplete);
    if (len > 0) {
      out.append(bytes.data() + i, len);
      i += len;
    } else if (incomplete && !at_end) {
      break;  // wait for the bytes that may complete it
    } else {
      out.append(kReplacement);
      i += policy == Utf8Repair::kMaximalSubpart ? subpart : 1;
    }
  }
  return i;
}

char32_t next_code_point(std::string_view text, size_t& i) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const unsigned b0 = p[i];
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  if (b0 < 0xE0) {
    const char32_t cp = ((b0 & 0x1F) << 6) | (p[i + 1] & 0x3F);
    i += 2;
    return cp;
  }
  if (b0 < 0xF0) {
    const char32_t cp = ((b0 & 0x0F) << 12) | ((p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
    i += 3;
    return cp;
  }
  const char32_t cp = ((b0 & 0x07) << 18) | ((p[i + 1] & 0x3F) << 12) | ((p[i + 2] & 0x3F) << 6) |
                      (p[i + 3] & 0x3F);
  i += 4;
  return cp;
}

void append_utf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

}  // namespace fc
