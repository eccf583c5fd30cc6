// UTF-8 text handling shared by the tokenizers: validation (tokenizers take Python-like text, so
// invalid UTF-8 is refused up front), NFC normalization with a fast path for text that is already
// NFC, and Python's errors="replace" decoding of byte sequences that are not valid UTF-8.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace ivl {

// The byte offset of the first invalid UTF-8 sequence (overlong forms, surrogates and code points
// above U+10FFFF are invalid), or std::string_view::npos when the text is valid.
size_t find_invalid_utf8(std::string_view text);

// NFC of valid UTF-8 text. Returns `text` itself when it is already NFC (the usual case: no copy),
// otherwise the normalized text stored in `storage`.
std::string_view nfc_normalize(std::string_view text, std::string& storage);

// Appends `bytes` to `out` as valid UTF-8: every maximal ill-formed subsequence becomes one U+FFFD,
// exactly as Python's bytes.decode("utf-8", errors="replace") does.
void append_utf8_replacing_invalid(std::string_view bytes, std::string& out);

// The UTF-8 encoding of one code point (no validation).
void append_utf8(char32_t code_point, std::string& out);

}  // namespace ivl
