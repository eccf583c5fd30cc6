// `ivl tokenize`: text -> ids and ids -> text with a model directory's tokenizer, and a throughput
// benchmark (--bench) that tools/bench_tokenizer.py compares with the Hugging Face `tokenizers` library.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "llm/tokenizer.h"
#include "llm/tokenizer_files.h"
#include "tools/commands.h"

namespace ivl::cli {
namespace {

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

void write(const std::string& text) { std::fwrite(text.data(), 1, text.size(), stdout); }

void append_ids(const std::vector<int64_t>& ids, bool json, std::string& out) {
  if (json) out += '[';
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out += json ? "," : " ";
    out += std::to_string(ids[i]);
  }
  if (json) out += ']';
  out += '\n';
}

// "1 2 3", "1,2,3" or "[1, 2, 3]".
std::vector<int64_t> parse_ids(const std::string& text) {
  std::vector<int64_t> ids;
  size_t i = 0;
  const auto separator = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == '[' || c == ']'; };
  while (i < text.size()) {
    if (separator(text[i])) {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < text.size() && !separator(text[end])) ++end;
    const std::string word = text.substr(i, end - i);
    size_t used = 0;
    int64_t id = 0;
    try {
      id = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size()) throw std::invalid_argument("--decode: '" + word + "' is not a token id");
    ids.push_back(id);
    i = end;
  }
  return ids;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One benchmark mode: a first run (the merged-word cache starts empty) and the best of `repeat`.
template <class Run>
void bench_mode(const char* name, size_t bytes, int repeat, Run&& run) {
  size_t tokens = 0;
  auto start = std::chrono::steady_clock::now();
  tokens = run();
  const double first = seconds_since(start);
  double best = first;
  for (int r = 0; r < repeat; ++r) {
    start = std::chrono::steady_clock::now();
    run();
    best = std::min(best, seconds_since(start));
  }
  std::printf("%-6s tokens %zu  first %.3f s (%.0f tokens/s)  best of %d %.3f s (%.0f tokens/s, %.1f MB/s)\n", name,
              tokens, first, tokens / first, repeat, best, tokens / best, bytes / best / 1e6);
}

int bench(const std::string& directory, const std::string& file, int repeat, bool add_special) {
  const auto load_start = std::chrono::steady_clock::now();
  const auto tokenizer = load_tokenizer(directory);
  const double load_seconds = seconds_since(load_start);
  const std::string text = read_text_file(file);
  const std::vector<std::string> lines = split_lines(text);
  std::printf("tokenizer %s\nloaded in %.3f s\nfile %s: %zu bytes, %zu lines\n", tokenizer->describe().c_str(), load_seconds,
              file.c_str(), text.size(), lines.size());
  // Each mode gets a fresh tokenizer so that its first run starts with an empty cache.
  bench_mode("whole", text.size(), repeat, [&, fresh = load_tokenizer(directory)] {
    return fresh->encode(text, add_special).size();
  });
  bench_mode("lines", text.size(), repeat, [&, fresh = load_tokenizer(directory)] {
    size_t tokens = 0;
    for (const auto& line : lines) tokens += fresh->encode(line, add_special).size();
    return tokens;
  });
  return 0;
}

int cmd_tokenize(const ParsedFlags& flags) {
  const std::string directory = flags.text("--tokenizer");
  const std::string text_argument = flags.text("--text"), file = flags.text("--file");
  const bool has_text = flags.given("--text"), has_file = flags.given("--file");
  if (has_text == has_file) throw FlagError("give one of --text or --file");
  const bool json = flags.boolean("--json"), add_special = !flags.boolean("--no-special");

  if (flags.boolean("--bench")) {
    if (!has_file) throw FlagError("--bench needs --file");
    return bench(directory, file, flags.integer("--repeat", 1), add_special);
  }

  const auto tokenizer = load_tokenizer(directory);
  const std::string input = has_text ? text_argument : read_text_file(file);
  std::string out;
  if (flags.boolean("--decode")) {
    const bool skip_special = flags.boolean("--skip-special");
    if (json) {
      for (const auto& line : split_lines(input)) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        const nlohmann::json ids = nlohmann::json::parse(line, nullptr, false);
        if (!ids.is_array()) throw std::invalid_argument("--decode --json: expected one JSON array per line, found '" + line + "'");
        out += nlohmann::json(tokenizer->decode(ids.get<std::vector<int64_t>>(), skip_special)).dump() + "\n";
      }
    } else {
      out = tokenizer->decode(parse_ids(input), skip_special) + "\n";
    }
  } else if (json && has_file) {
    for (const auto& line : split_lines(input)) append_ids(tokenizer->encode(line, add_special), true, out);
  } else {
    append_ids(tokenizer->encode(input, add_special), json, out);
  }
  write(out);
  return 0;
}

}  // namespace

Command tokenize_command() {
  return {{"tokenize",
           "text <-> ids with a model directory's tokenizer, and its encoding speed (--bench)",
           {},
           {{"--tokenizer", "DIR", "", "a model (or tokenizer) directory", Flag::required},
            {"--text", "S", "", "the input: text to encode, or ids to decode"},
            {"--file", "F", "", "the input from a file instead"},
            {"--json", "", "", "JSON lines: one array of ids (or one string) per input line"},
            {"--no-special", "", "", "encode without BOS/EOS"},
            {"--decode", "", "", "ids -> text"},
            {"--skip-special", "", "", "decode without the special tokens"},
            {"--bench", "", "", "tokens per second on --file"},
            {"--repeat", "N", "3", "--bench: the best of N runs after the first"}},
           "modes:\n"
           "  encode: prints the ids separated by spaces; with --json, one JSON array per line of the input\n"
           "          (each line encoded on its own, without its newline). --no-special: no BOS/EOS.\n"
           "  decode: reads ids separated by spaces (or a JSON array) and prints the text; with --json, each\n"
           "          input line is a JSON array and each output line a JSON string. --skip-special drops\n"
           "          special tokens.\n"
           "  bench:  tokens per second on the file, encoded as one text and line by line (single thread;\n"
           "          first run with an empty cache, then the best of --repeat runs)."},
          cmd_tokenize};
}

}  // namespace ivl::cli
