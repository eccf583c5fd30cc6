// Python's str semantics on UTF-8 text, as the official MMPR judge (CPython 3.11) applies them:
// lengths and indices in code points, strip() and split() on Unicode whitespace, the full case
// mappings of upper() and lower() (ß.upper() is SS), isalpha(), and float()'s grammar (underscores
// between digits, inf/nan, Unicode decimal digits). Inputs are valid UTF-8 (they come from JSON).
//
// Character properties come from utf8proc (Unicode 15); Python 3.11 has Unicode 14, so a letter
// added in Unicode 15 is alpha here and not there. The case expansions are Python's own, generated
// by tools/gen_python_case.py into python_case.inc.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ivl::py {

std::u32string code_points(std::string_view utf8);
std::string utf8(std::u32string_view code_points);
size_t length(std::string_view text);  // len(): code points

bool is_space(char32_t c);  // str.isspace()
bool is_alpha(char32_t c);  // str.isalpha(): categories Lu Ll Lt Lm Lo
bool is_decimal(char32_t c);  // what \d matches in a str pattern: category Nd

std::string strip(std::string_view text);                           // strip()
std::string strip(std::string_view text, std::string_view chars);   // strip(chars): any of chars, both ends
std::string rstrip(std::string_view text, std::string_view chars);  // rstrip(chars)
std::vector<std::string> split(std::string_view text);              // split(): runs of whitespace
std::string lower(std::string_view text);                           // lower(), final sigma included
std::string upper(std::string_view text);                           // upper()

// text.count(sub) (non-overlapping; an empty sub counts len + 1); replace(old, new) of every copy.
size_t count(std::string_view text, std::string_view sub);
std::string replace(std::string_view text, std::string_view old_sub, std::string_view new_sub);
bool contains(std::string_view text, std::string_view sub);

// float(text), or nothing where Python raises ValueError. Overflow gives inf, as in Python.
std::optional<double> to_float(std::string_view text);

}  // namespace ivl::py
