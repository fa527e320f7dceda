// UTF-8 checks and repair shared by the tokenizers and the streaming detokenizer.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace fc {

// How ill-formed bytes in decoded output become U+FFFD.
enum class Utf8Repair {
  // One U+FFFD per maximal ill-formed subpart (Unicode 15 §3.9, WHATWG): what Rust's
  // String::from_utf8_lossy does, hence what Hugging Face `tokenizers`' ByteLevel decoder gives.
  kMaximalSubpart,
  // One U+FFFD per ill-formed byte: what libsentencepiece's decoder gives for byte pieces.
  kPerByte,
};

// Offset of the first byte that does not start a well-formed UTF-8 sequence (overlongs, surrogates and
// code points above U+10FFFF are ill-formed), or npos when the whole text is well-formed.
size_t find_invalid_utf8(std::string_view text);

// Throws fc::Error "invalid UTF-8 at byte N of <what>" unless `text` is well-formed.
void check_utf8(std::string_view text, const char* what = "the input");

// Length of the well-formed sequence at the start of `bytes` (1-4), 0 when `bytes` starts with an
// ill-formed one. *incomplete is set when the bytes so far are a valid prefix that the end cuts short.
size_t utf8_sequence_length(std::string_view bytes, size_t* maximal_subpart, bool* incomplete);

// Appends `bytes` to `out`, replacing ill-formed sequences with U+FFFD per `policy`. With
// at_end == false, stops before a trailing sequence that is incomplete but could still be completed by
// more bytes, and returns how many bytes were consumed; with at_end == true consumes everything.
size_t append_repaired_utf8(std::string_view bytes, Utf8Repair policy, bool at_end, std::string& out);

// Decodes the code point at text[i] (text must be well-formed there); advances i.
char32_t next_code_point(std::string_view text, size_t& i);

// Appends the UTF-8 encoding of `cp` to `out`.
void append_utf8(char32_t cp, std::string& out);

}  // namespace fc
