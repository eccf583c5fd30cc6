// `ivl`: the command line. One subcommand per job; every user error ends as a message and exit code 1.
#include <cstdio>
#include <exception>
#include <functional>
#include <map>

#include "tensor/cuda_backend.h"
#include "tools/commands.h"

namespace ivl::cli {

bool has_flag(const Args& args, const std::string& flag) {
  for (const auto& a : args)
    if (a == flag) return true;
  return false;
}

std::string flag_value(const Args& args, const std::string& flag, const std::string& fallback) {
  for (size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == flag) return args[i + 1];
  return fallback;
}

int positive_int_flag(const Args& args, const std::string& flag, int fallback) {
  const std::string text = flag_value(args, flag, std::to_string(fallback));
  size_t used = 0;
  int value = 0;
  try {
    value = std::stoi(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || value < 1)
    throw std::invalid_argument(flag + " needs a positive whole number, got \"" + text + "\"");
  return value;
}

int cmd_devices(const Args&) {
  std::printf("cpu: available\ncuda: %s\n", cuda::device_summary().c_str());
  return 0;
}

}  // namespace ivl::cli

namespace {

struct Command {
  std::function<int(const ivl::cli::Args&)> run;
  const char* usage;
};

const std::map<std::string, Command>& commands() {
  using namespace ivl::cli;
  static const std::map<std::string, Command> table = {
      {"inspect", {cmd_inspect, "inspect PATH            tensors of a .safetensors file, or a model directory's config and parameter counts"}},
      {"gradcheck", {cmd_gradcheck, "gradcheck [--op NAME]   every op's backward against central finite differences (f64)"}},
      {"bench", {cmd_bench, "bench gemm | model      engine matmul vs direct cblas_sgemm and per-op overhead | an InternVL2-1B forward"}},
      {"check", {cmd_check, "check --model DIR         a model against golden tensors of the official code (forward, MPO loss, gradients)"}},
      {"preprocess", {cmd_preprocess, "preprocess --image F [--max-tiles N] [--no-thumbnail] [--out F]   an image as the official pipeline tiles it"}},
      {"tokenize", {cmd_tokenize, "tokenize --tokenizer DIR (--text S | --file F) [--json] [--no-special] [--decode [--skip-special]] [--bench]   text <-> ids"}},
      {"devices", {cmd_devices, "devices                 the compute devices this build can use"}},
  };
  return table;
}

void usage() {
  std::fprintf(stderr, "usage: ivl COMMAND [ARGS]\n\ncommands:\n");
  for (const auto& [name, command] : commands()) std::fprintf(stderr, "  ivl %s\n", command.usage);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    usage();
    return argc < 2 ? 1 : 0;
  }
  auto it = commands().find(argv[1]);
  if (it == commands().end()) {
    std::fprintf(stderr, "ivl: unknown command '%s'\n\n", argv[1]);
    usage();
    return 1;
  }
  try {
    return it->second.run(ivl::cli::Args(argv + 2, argv + argc));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ivl %s: %s\n", argv[1], e.what());
    return 1;
  }
}
