// UTF-8 validation, NFC through utf8proc (only around the characters that NFC could change), and
// replacement decoding. The NFC fast path matters: most text is already NFC, and running utf8proc
// over every character would cost as much as the whole BPE.
#include "llm/unicode_text.h"

#include <utf8proc.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

namespace ivl {
namespace {

// The length of the well-formed UTF-8 sequence at `p` (Unicode Table 3-7), or 0 when it is
// ill-formed; then `subpart` is the length of its maximal ill-formed prefix (at least 1), which is
// what one U+FFFD replaces.
size_t utf8_sequence_length(const unsigned char* p, size_t remaining, size_t& subpart) {
  const unsigned char lead = p[0];
  size_t length = 0;
  unsigned char low = 0x80, high = 0xBF;  // the range allowed for the second byte
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;  // overlong
    if (lead == 0xED) high = 0x9F;  // surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;  // overlong
    if (lead == 0xF4) high = 0x8F;  // above U+10FFFF
  } else {
    subpart = 1;
    return 0;
  }
  for (size_t i = 1; i < length; ++i) {
    const bool in_range = i < remaining && (i == 1 ? (p[i] >= low && p[i] <= high) : (p[i] >= 0x80 && p[i] <= 0xBF));
    if (!in_range) {
      subpart = i;
      return 0;
    }
  }
  return length;
}

// Decodes the valid sequence of `length` bytes at `p`.
char32_t decode_code_point(const unsigned char* p, size_t length) {
  switch (length) {
    case 1: return p[0];
    case 2: return (char32_t(p[0] & 0x1F) << 6) | (p[1] & 0x3F);
    case 3: return (char32_t(p[0] & 0x0F) << 12) | (char32_t(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
    default:
      return (char32_t(p[0] & 0x07) << 18) | (char32_t(p[1] & 0x3F) << 12) | (char32_t(p[2] & 0x3F) << 6) | (p[3] & 0x3F);
  }
}

// One bit per code point: set when NFC might change the text at that character. A character is
// safe when it has combining class 0, NFC maps it to itself, and it is never the second half of a
// canonical composition (as U+0B3E or the Hangul vowel and trailing jamo are). A run of safe
// characters is unchanged by NFC, and nothing before a safe character can combine with it, so NFC
// only has to run from the last safe character before an unsafe one up to the next safe one.
class NfcUnsafeTable {
 public:
  NfcUnsafeTable() : bits_((kCodePoints + 63) / 64, 0) {
    utf8proc_int32_t decomposed[32];
    for (utf8proc_int32_t c = 0x80; c < static_cast<utf8proc_int32_t>(kCodePoints); ++c) {
      if (c >= 0xD800 && c <= 0xDFFF) continue;
      if (utf8proc_get_property(c)->combining_class != 0) mark(c);
      int boundclass = UTF8PROC_BOUNDCLASS_START;
      const utf8proc_ssize_t n = utf8proc_decompose_char(c, decomposed, 32, UTF8PROC_DECOMPOSE, &boundclass);
      if (n <= 0 || (n == 1 && decomposed[0] == c)) continue;
      // Every later starter of a canonical decomposition is the second half of some composition.
      for (utf8proc_ssize_t i = 1; i < n; ++i)
        if (utf8proc_get_property(decomposed[i])->combining_class == 0) mark(decomposed[i]);
      if (!maps_to_itself(c)) mark(c);
    }
  }
  bool unsafe(char32_t c) const { return (bits_[c >> 6] >> (c & 63)) & 1; }

 private:
  static constexpr size_t kCodePoints = 0x110000;
  void mark(utf8proc_int32_t c) { bits_[static_cast<size_t>(c) >> 6] |= uint64_t{1} << (c & 63); }
  static bool maps_to_itself(utf8proc_int32_t c) {
    std::string text;
    append_utf8(static_cast<char32_t>(c), text);
    utf8proc_uint8_t* normalized = utf8proc_NFC(reinterpret_cast<const utf8proc_uint8_t*>(text.c_str()));
    const bool same = normalized != nullptr && text == reinterpret_cast<const char*>(normalized);
    std::free(normalized);
    return same;
  }
  std::vector<uint64_t> bits_;
};

const NfcUnsafeTable& nfc_unsafe_table() {
  static const NfcUnsafeTable table;  // built on the first non-ASCII text (about 30 ms)
  return table;
}

void append_nfc_of(std::string_view region, std::string& out) {
  utf8proc_uint8_t* normalized = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(region.data()),
                                          static_cast<utf8proc_ssize_t>(region.size()), &normalized,
                                          static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) throw std::runtime_error(std::string("NFC normalization failed: ") + utf8proc_errmsg(n));
  out.append(reinterpret_cast<const char*>(normalized), static_cast<size_t>(n));
  std::free(normalized);
}

bool all_ascii(const unsigned char* p) {
  uint64_t word;
  std::memcpy(&word, p, 8);
  return (word & 0x8080808080808080ull) == 0;
}

}  // namespace

void append_utf8(char32_t c, std::string& out) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

size_t find_invalid_utf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t size = text.size();
  size_t i = 0;
  while (i < size) {
    if (i + 8 <= size && all_ascii(p + i)) {
      i += 8;
      continue;
    }
    size_t subpart = 0;
    const size_t length = utf8_sequence_length(p + i, size - i, subpart);
    if (length == 0) return i;
    i += length;
  }
  return std::string_view::npos;
}

std::string_view nfc_normalize(std::string_view text, std::string& storage) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t size = text.size();
  const NfcUnsafeTable* table = nullptr;
  size_t copied = 0;          // text[0, copied) is already in storage (when anything changed)
  size_t last_safe = 0;       // start of the last safe character seen
  bool changed = false;
  size_t i = 0;
  while (i < size) {
    if (i + 8 <= size && all_ascii(p + i)) {
      i += 8;
      last_safe = i - 1;
      continue;
    }
    if (p[i] < 0x80) {
      last_safe = i++;
      continue;
    }
    size_t subpart = 0;
    size_t length = utf8_sequence_length(p + i, size - i, subpart);
    if (length == 0) throw std::invalid_argument("NFC: invalid UTF-8 at byte " + std::to_string(i));
    if (!table) table = &nfc_unsafe_table();
    if (!table->unsafe(decode_code_point(p + i, length))) {
      last_safe = i;
      i += length;
      continue;
    }
    // An unsafe character: normalize from the last safe character up to the next safe one.
    const size_t region_start = std::max(last_safe, copied);
    size_t region_end = i + length;
    while (region_end < size) {
      if (p[region_end] < 0x80) break;
      length = utf8_sequence_length(p + region_end, size - region_end, subpart);
      if (length == 0) throw std::invalid_argument("NFC: invalid UTF-8 at byte " + std::to_string(region_end));
      if (!table->unsafe(decode_code_point(p + region_end, length))) break;
      region_end += length;
    }
    if (!changed) {
      storage.clear();
      storage.reserve(size + size / 8);
      changed = true;
    }
    storage.append(text.substr(copied, region_start - copied));
    append_nfc_of(text.substr(region_start, region_end - region_start), storage);
    copied = region_end;
    i = region_end;
    last_safe = region_end;  // the safe character that ended the region (or the end)
  }
  if (!changed) return text;
  storage.append(text.substr(copied));
  return storage;
}

void append_utf8_replacing_invalid(std::string_view bytes, std::string& out) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t size = bytes.size();
  size_t i = 0, valid_from = 0;
  while (i < size) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    size_t subpart = 0;
    const size_t length = utf8_sequence_length(p + i, size - i, subpart);
    if (length > 0) {
      i += length;
      continue;
    }
    out.append(bytes.substr(valid_from, i - valid_from));
    out += "\xEF\xBF\xBD";
    i += subpart;
    valid_from = i;
  }
  out.append(bytes.substr(valid_from));
}

}  // namespace ivl
