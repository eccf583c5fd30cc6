// The `ivl` subcommands. Each takes its arguments (after the subcommand name) and returns the exit
// code; user errors are thrown as exceptions and printed by main.
#pragma once
#include <string>
#include <vector>

namespace ivl::cli {

using Args = std::vector<std::string>;

int cmd_inspect(const Args& args);    // tools/cmd_inspect.cpp
int cmd_gradcheck(const Args& args);  // tools/cmd_gradcheck.cpp
int cmd_bench(const Args& args);      // tools/cmd_bench.cpp
int cmd_devices(const Args& args);    // tools/ivl.cpp
int cmd_check(const Args& args);      // tools/cmd_check.cpp
int cmd_preprocess(const Args& args); // tools/cmd_preprocess.cpp
int cmd_tokenize(const Args& args);   // tools/cmd_tokenize.cpp

// Small helpers for flag parsing, shared by the commands.
bool has_flag(const Args& args, const std::string& flag);
std::string flag_value(const Args& args, const std::string& flag, const std::string& fallback);
// A flag's value as a whole number >= 1; anything else is a clear error naming the flag.
int positive_int_flag(const Args& args, const std::string& flag, int fallback);

}  // namespace ivl::cli
