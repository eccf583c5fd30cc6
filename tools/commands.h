// The `ivl` subcommands. Each is a flag table (its help text and its line in `ivl --help`) and a
// function that runs it on the parsed flags and returns the exit code; user errors are thrown as
// exceptions and printed by main.
#pragma once
#include <vector>

#include "tools/flags.h"

namespace ivl::cli {

struct Command {
  FlagTable table;
  int (*run)(const ParsedFlags& flags);
};

Command inspect_command();              // tools/cmd_inspect.cpp
Command gradcheck_command();            // tools/cmd_gradcheck.cpp
Command check_command();                // tools/cmd_check.cpp
std::vector<Command> bench_commands();  // tools/cmd_bench.cpp: bench gemm, bench model, bench mpo-step
Command preprocess_command();           // tools/cmd_preprocess.cpp
Command tokenize_command();             // tools/cmd_tokenize.cpp
Command devices_command();              // tools/ivl.cpp
std::vector<Command> train_commands();  // tools/cmd_train.cpp: train-mpo, ref-logps
std::vector<Command> generate_commands();  // tools/cmd_generate.cpp: chat, generate
std::vector<Command> data_commands();      // tools/cmd_data.cpp: judge

}  // namespace ivl::cli
