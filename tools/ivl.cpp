// `ivl`: the command line. One subcommand per job, named by one word (`inspect`) or two (`bench
// model`); every user error ends as a message and exit code 1.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "tensor/cuda_backend.h"
#include "tools/commands.h"

namespace ivl::cli {
namespace {

int cmd_devices(const ParsedFlags&) {
  std::printf("cpu: available\ncuda: %s\n", cuda::device_summary().c_str());
  return 0;
}

}  // namespace

Command devices_command() { return {{"devices", "the compute devices this build can use", {}, {}, ""}, cmd_devices}; }

}  // namespace ivl::cli

namespace {

using ivl::cli::Command;

std::vector<Command> commands() {
  using namespace ivl::cli;
  std::vector<Command> all = {inspect_command(), gradcheck_command(), check_command()};
  for (Command& train : train_commands()) all.push_back(std::move(train));
  for (Command& generation : generate_commands()) all.push_back(std::move(generation));
  for (Command& data : data_commands()) all.push_back(std::move(data));
  for (Command& bench : bench_commands()) all.push_back(std::move(bench));
  for (Command command : {preprocess_command(), tokenize_command(), devices_command()}) all.push_back(std::move(command));
  return all;
}

// The commands whose name starts with `prefix` ("" for all, "bench " for the benchmarks), one line each.
void list_commands(const std::vector<Command>& all, const std::string& prefix, FILE* out) {
  size_t width = 0;
  for (const Command& command : all) width = std::max(width, command.table.name.size());
  std::fprintf(out, "usage: ivl COMMAND [ARGS]   (ivl COMMAND --help describes its flags)\n\ncommands:\n");
  for (const Command& command : all)
    if (command.table.name.rfind(prefix, 0) == 0)
      std::fprintf(out, "  ivl %-*s  %s\n", static_cast<int>(width), command.table.name.c_str(), command.table.summary.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<Command> all = commands();
  const ivl::cli::Args words(argv + 1, argv + argc);
  const auto is_help = [](const std::string& word) { return word == "--help" || word == "-h"; };
  if (words.empty() || is_help(words[0])) {
    list_commands(all, "", words.empty() ? stderr : stdout);
    return words.empty() ? 1 : 0;
  }
  const Command* command = nullptr;
  size_t name_words = 0;
  bool group = false;  // words[0] begins two-word names ("bench")
  std::vector<std::string> names;
  for (const Command& candidate : all) {
    const std::string& name = candidate.table.name;
    names.push_back(name);
    if (name == words[0]) command = &candidate, name_words = 1;
    if (name.rfind(words[0] + " ", 0) == 0) {
      group = true;
      if (words.size() > 1 && name == words[0] + " " + words[1]) command = &candidate, name_words = 2;
    }
  }
  if (!command) {
    if (group && (words.size() == 1 || is_help(words[1]))) {  // `ivl bench`: which benchmarks there are
      list_commands(all, words[0] + " ", words.size() == 1 ? stderr : stdout);
      return words.size() == 1 ? 1 : 0;
    }
    const std::string typed = group ? words[0] + " " + words[1] : words[0];
    const std::string near = ivl::cli::closest_name(typed, names);
    const std::string hint = near.empty() ? "" : " (did you mean '" + near + "'?)";
    std::fprintf(stderr, "ivl: unknown command '%s'%s\n\n", typed.c_str(), hint.c_str());
    list_commands(all, group ? words[0] + " " : "", stderr);
    return 1;
  }
  const ivl::cli::FlagTable& table = command->table;
  try {
    const ivl::cli::ParsedFlags flags = ivl::cli::parse_flags(table, ivl::cli::Args(words.begin() + static_cast<long>(name_words), words.end()));
    if (flags.help()) {
      std::fputs(ivl::cli::help_text(table).c_str(), stdout);
      return 0;
    }
    return command->run(flags);
  } catch (const ivl::cli::FlagError& e) {
    std::fprintf(stderr, "ivl %s: %s\nusage: %s\n", table.name.c_str(), e.what(), ivl::cli::synopsis(table).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ivl %s: %s\n", table.name.c_str(), e.what());
    return 1;
  }
}
