#include "tokenizer/byte_level.h"

#include <array>

#include "tokenizer/utf8.h"

namespace fc {
namespace {

// bytes_to_unicode() of GPT-2's encoder.py: the printable Latin-1 bytes stand for themselves, the 68
// others (controls, space, DEL, NBSP, soft hyphen) take U+0100.. in byte order.
struct Tables {
  std::array<char32_t, 256> byte_to_char{};
  std::array<int16_t, 324> char_to_byte{};  // indexed by code point; -1 when not in the alphabet
  Tables() {
    char_to_byte.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      byte_to_char[b] = printable ? static_cast<char32_t>(b) : next++;
      char_to_byte[byte_to_char[b]] = static_cast<int16_t>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

char32_t byte_level_char(unsigned char b) { return tables().byte_to_char[b]; }

bool byte_level_to_bytes(std::string_view token, std::string& out) {
  const Tables& t = tables();
  out.clear();
  size_t i = 0;
  while (i < token.size()) {
    size_t subpart;
    bool incomplete;
    if (utf8_sequence_length(token.substr(i), &subpart, &incomplete) == 0) return false;
    const char32_t cp = next_code_point(token, i);
    if (cp >= t.char_to_byte.size() || t.char_to_byte[cp] < 0) return false;
    out.push_back(static_cast<char>(t.char_to_byte[cp]));
  }
  return true;
}

std::string bytes_to_byte_level(std::string_view bytes) {
  std::string out;
  for (unsigned char b : bytes) append_utf8(byte_level_char(b), out);
  return out;
}

}  // namespace fc
