// Catch2 2 (Debian 12) and Catch2 3 (newer systems) under one include, plus the one matcher whose
// name differs between them: HasSubstr("text") for CHECK_THROWS_WITH / CHECK_THAT on strings.
#pragma once
#include <string>
#if __has_include(<catch2/catch_all.hpp>)
#include <catch2/catch_all.hpp>
inline auto HasSubstr(const std::string& text) { return Catch::Matchers::ContainsSubstring(text); }
#else
#include <catch2/catch.hpp>
inline auto HasSubstr(const std::string& text) { return Catch::Matchers::Contains(text); }
#endif
