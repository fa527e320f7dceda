// GPT-2's byte-level alphabet: every byte is shown as one printable code point ("Ġ" is the space), so
// that a vocabulary of byte strings can be stored as JSON text. tokenizer.json spells every token in this
// alphabet; the BPE works on raw bytes and converts the vocabulary once, at load.
#pragma once
#include <string>
#include <string_view>

namespace fc {

// The code point that stands for byte b.
char32_t byte_level_char(unsigned char b);

// Converts a token spelled in the byte-level alphabet to its bytes. Returns false (out unspecified)
// when a character is not in the alphabet: such a token (an added token like "<|eot_id|>" is fine,
// being printable ASCII) cannot come out of byte-level pre-tokenization.
bool byte_level_to_bytes(std::string_view token, std::string& out);

// The reverse: raw bytes spelled in the byte-level alphabet (for diagnostics and the tests).
std::string bytes_to_byte_level(std::string_view bytes);

}  // namespace fc
