// The flag parser of every `ivl` command (tools/flags.h): unknown and valueless flags, numbers and
// booleans read with errors naming the flag, defaults, positionals, the help made from the table,
// --flags JSON files; then every command of the binary against it, and `ivl bench ... --json`.
#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "tests/catch.h"
#include "tests/test_support.h"
#include "tools/flags.h"

using namespace ivl::cli;
using json = nlohmann::json;

namespace {

const FlagTable& table() {
  static const FlagTable t{"bench toy",
                           "a toy command for the parser's tests",
                           {},
                           {{"--tiles", "N", "1", "image tiles"},
                            {"--max-tiles", "N", "12", "the most tiles"},
                            {"--learning-rate", "X", "5e-6", "the peak learning rate"},
                            {"--thumbnail", "BOOL", "true", "add a thumbnail tile"},
                            {"--name", "S", "", "a name"},
                            {"--model", "DIR", "", "a model directory", Flag::required},
                            {"--json", "", "", "print JSON"}},
                           "Some more words on the toy."};
  return t;
}

ParsedFlags parse(const Args& args, const FlagTable& t = table()) { return parse_flags(t, args); }

// The message of the FlagError that `run` throws ("" when it throws none; any other exception fails).
template <class Run>
std::string flag_error(Run&& run) {
  try {
    run();
  } catch (const FlagError& error) {
    return error.what();
  }
  return "";
}

std::string parse_error(const Args& args, const FlagTable& t = table()) {
  return flag_error([&] { parse(args, t); });
}

const std::string kBinary = IVL_BINARY;

}  // namespace

TEST_CASE("an unknown flag is refused, naming the closest known flag when it looks like a typo", "[flags]") {
  CHECK(parse_error({"--model", "m", "--tile", "4"}) == "unknown flag --tile (did you mean --tiles?)");
  CHECK(parse_error({"--model", "m", "--maxtiles", "4"}) == "unknown flag --maxtiles (did you mean --max-tiles?)");
  CHECK(parse_error({"--model", "m", "-jsn"}) == "unknown flag -jsn (did you mean --json?)");
  CHECK(parse_error({"--model", "m", "--hlep"}) == "unknown flag --hlep (did you mean --help?)");
  // Nothing near: no random suggestion, but where the list of flags is.
  CHECK(parse_error({"--model", "m", "--verbose"}) == "unknown flag --verbose (ivl bench toy --help lists its flags)");
  CHECK(closest_name("--learning_rate", {"--tiles", "--learning-rate"}) == "--learning-rate");
  CHECK(closest_name("--zzzz", {"--tiles", "--json"}).empty());
  CHECK(closest_name("--x", {}).empty());
}

TEST_CASE("a flag that needs a value refuses the end of the line or another flag in its place", "[flags]") {
  CHECK(parse_error({"--model", "m", "--tiles"}) == "--tiles needs a value: --tiles N");
  CHECK(parse_error({"--model", "m", "--tiles", "--json"}) == "--tiles needs a value: --tiles N");
  CHECK(parse_error({"--model"}) == "--model needs a value: --model DIR");
  // NAME=VALUE carries a value that starts with dashes; a lone dash and negative numbers are values.
  CHECK(parse({"--model", "m", "--name=--odd"}).text("--name") == "--odd");
  CHECK(parse({"--model", "m", "--name", "-"}).text("--name") == "-");
  CHECK(parse({"--model", "m", "--name", "-3"}).text("--name") == "-3");
  CHECK(parse({"--model=m", "--tiles=4"}).integer("--tiles", 1) == 4);
  CHECK(parse_error({"--model", "m", "--json=true"}) == "--json is a switch and takes no value");
  CHECK(parse_error({"--model", "m", "--tiles", "2", "--tiles", "3"}) == "--tiles is given twice");
}

TEST_CASE("a required flag that is missing is refused with what it is for", "[flags]") {
  CHECK(parse_error({"--tiles", "2"}) == "needs --model DIR (a model directory)");
  CHECK(parse_error({"--model", ""}).empty());  // given, even if empty: the command judges the value
}

TEST_CASE("numbers are checked when the command reads them, and their errors name the flag", "[flags]") {
  const auto integer_error = [](const std::string& value, int min, int max) {
    return flag_error([&] { parse({"--model", "m", "--tiles", value}).integer("--tiles", min, max); });
  };
  constexpr int kNoMax = std::numeric_limits<int>::max();
  CHECK(integer_error("x", 1, kNoMax) == "--tiles needs a whole number >= 1, got \"x\"");
  CHECK(integer_error("2.5", 1, kNoMax) == "--tiles needs a whole number >= 1, got \"2.5\"");
  CHECK(integer_error("4x", 1, kNoMax) == "--tiles needs a whole number >= 1, got \"4x\"");
  CHECK(integer_error("", 1, kNoMax) == "--tiles needs a whole number >= 1, got \"\"");
  CHECK(integer_error("0", 1, kNoMax) == "--tiles needs a whole number >= 1, got \"0\"");
  CHECK(integer_error("17", 1, 16) == "--tiles needs a whole number from 1 to 16, got \"17\"");
  CHECK(integer_error("99999999999", 1, kNoMax) == "--tiles needs a whole number from 1 to 2147483647, got \"99999999999\"");
  CHECK(integer_error("16", 1, 16).empty());
  CHECK(parse({"--model", "m", "--tiles", "-3"}).integer("--tiles", -5) == -3);
  CHECK(parse({"--model", "m", "--tiles", "5000000000"}).integer<int64_t>("--tiles", 1) == 5000000000);

  const auto real = [](const std::string& value) { return parse({"--model", "m", "--learning-rate", value}).real("--learning-rate"); };
  CHECK(real("1e-3") == 1e-3);
  CHECK(real("-0.5") == -0.5);
  CHECK(real("3") == 3.0);
  for (const std::string bad : {"abc", "1e-3x", "inf", "nan", ""})
    CHECK(flag_error([&] { real(bad); }) == "--learning-rate needs a number, got \"" + bad + "\"");
}

TEST_CASE("a switch is present or absent, and a boolean value reads true/false, yes/no or 1/0", "[flags]") {
  CHECK(parse({"--model", "m", "--json"}).boolean("--json"));
  CHECK_FALSE(parse({"--model", "m"}).boolean("--json"));
  CHECK(parse({"--model", "m"}).boolean("--thumbnail"));  // the table's default "true"
  for (const std::string yes : {"true", "TRUE", "yes", "1"}) CHECK(parse({"--model", "m", "--thumbnail", yes}).boolean("--thumbnail"));
  for (const std::string no : {"false", "No", "0"}) CHECK_FALSE(parse({"--model", "m", "--thumbnail", no}).boolean("--thumbnail"));
  CHECK(flag_error([] { parse({"--model", "m", "--thumbnail", "maybe"}).boolean("--thumbnail"); }) ==
        "--thumbnail needs true or false (or yes/no, 1/0), got \"maybe\"");
}

TEST_CASE("a flag not given reads the table's default, or a default computed by the command", "[flags]") {
  const ParsedFlags flags = parse({"--model", "dir"});
  CHECK(flags.integer("--tiles", 1) == 1);
  CHECK(flags.integer("--max-tiles", 1) == 12);
  CHECK(flags.real("--learning-rate") == 5e-6);
  CHECK(flags.text("--name").empty());
  CHECK_FALSE(flags.given("--name"));
  CHECK(flags.text("--name", "dir/golden.safetensors") == "dir/golden.safetensors");
  CHECK(parse({"--model", "dir", "--name", "x"}).text("--name", "dir/golden.safetensors") == "x");
  CHECK(flags.given("--model"));
  // A flag the table does not declare is the command's mistake, not the user's: not a FlagError.
  CHECK_THROWS_WITH(flags.text("--undeclared"), HasSubstr("which its table does not declare"));
  bool user_error = false;
  try {
    flags.text("--undeclared");
  } catch (const FlagError&) {
    user_error = true;
  } catch (const std::logic_error&) {
  }
  CHECK_FALSE(user_error);
}

TEST_CASE("positional arguments are counted: a missing one and an extra one are refused", "[flags]") {
  const FlagTable inspect{"inspect", "what a file holds", {"PATH"}, {}, ""};
  CHECK(parse({"model.safetensors"}, inspect).positionals() == std::vector<std::string>{"model.safetensors"});
  CHECK(parse_error({}, inspect) == "missing PATH");
  CHECK(parse_error({"a", "b"}, inspect) == "unexpected argument 'b'");
  CHECK(parse_error({"a", "--json"}, inspect) == "unknown flag --json (ivl inspect --help lists its flags)");
  CHECK(parse_error({"--model", "m", "stray"}) == "unexpected argument 'stray' (ivl bench toy takes no positional arguments)");
}

TEST_CASE("--help is made from the table: synopsis, summary, one line per flag with value, default and help", "[flags]") {
  // --help stops parsing: neither the missing --model nor what follows it is an error.
  CHECK(parse({"--help"}).help());
  CHECK(parse({"--tiles", "2", "-h", "--nonsense"}).help());
  CHECK_FALSE(parse({"--model", "m"}).help());
  CHECK(synopsis(table()) ==
        "ivl bench toy --model DIR [--tiles N] [--max-tiles N] [--learning-rate X] [--thumbnail BOOL] [--name S] [--json]");
  const std::string help = help_text(table());
  INFO(help);
  CHECK(help.rfind("usage: " + synopsis(table()) + "\n\na toy command for the parser's tests\n", 0) == 0);
  CHECK_THAT(help, HasSubstr("\n  --tiles N          image tiles (default: 1)\n"));
  CHECK_THAT(help, HasSubstr("\n  --learning-rate X  the peak learning rate (default: 5e-6)\n"));
  CHECK_THAT(help, HasSubstr("\n  --name S           a name\n"));
  CHECK_THAT(help, HasSubstr("\n  --model DIR        a model directory (required)\n"));
  CHECK_THAT(help, HasSubstr("\n  --json             print JSON\n"));
  CHECK_THAT(help, HasSubstr("\n  --flags FILE       read flags from a JSON object"));
  CHECK_THAT(help, HasSubstr("\n  --help             print this help (also -h)\n"));
  CHECK_THAT(help, HasSubstr("\nSome more words on the toy.\n"));
}

TEST_CASE("a flags file sets flags by their names without dashes (_ for -), and the command line wins", "[flags]") {
  TemporaryDirectory directory;
  directory.write("flags.json", R"({"model": "dir", "max_tiles": 6, "learning-rate": 1e-5, "thumbnail": false,
                                    "name": "from the file", "json": true, "tiles": "3"})");
  const std::string file = directory.file("flags.json");
  const ParsedFlags flags = parse({"--flags", file});
  CHECK(flags.text("--model") == "dir");  // a required flag may come from the file
  CHECK(flags.integer("--max-tiles", 1) == 6);
  CHECK(flags.real("--learning-rate") == 1e-5);
  CHECK_FALSE(flags.boolean("--thumbnail"));
  CHECK(flags.boolean("--json"));
  CHECK(flags.integer("--tiles", 1) == 3);

  const ParsedFlags overridden = parse({"--tiles", "5", "--flags", file, "--name", "typed"});
  CHECK(overridden.integer("--tiles", 1) == 5);
  CHECK(overridden.text("--name") == "typed");
  CHECK(overridden.integer("--max-tiles", 1) == 6);

  directory.write("off.json", R"({"model": "dir", "json": false})");
  CHECK_FALSE(parse({"--flags", directory.file("off.json")}).boolean("--json"));
  CHECK_FALSE(parse({"--flags", directory.file("off.json")}).given("--json"));
  // A bad value from the file says where it came from.
  directory.write("bad_value.json", R"({"model": "dir", "tiles": "many"})");
  CHECK(flag_error([&] { parse({"--flags", directory.file("bad_value.json")}).integer("--tiles", 1); }) ==
        "--tiles needs a whole number >= 1, got \"many\" (in flags file '" + directory.file("bad_value.json") + "')");
  CHECK(parse_error({"--flags", file, "--flags", file}) == "--flags is given twice");
}

TEST_CASE("a flags file with an unknown key, a bad value or broken JSON is refused, naming the file", "[flags]") {
  TemporaryDirectory directory;
  const auto error_of = [&](const std::string& name, const std::string& text) {
    directory.write(name, text);
    return parse_error({"--model", "m", "--flags", directory.file(name)});
  };
  const std::string where = "flags file '" + directory.file("f.json") + "'";
  CHECK(error_of("f.json", R"({"tile": 2})") == where + ": unknown flag \"tile\" (did you mean --tiles?)");
  CHECK(error_of("f.json", R"({"flags": "other.json"})") == where + ": unknown flag \"flags\"");  // files do not nest
  CHECK(error_of("f.json", R"({"completely_else": 2})") == where + ": unknown flag \"completely_else\"");
  CHECK(error_of("f.json", R"({"tiles": [1, 2]})") == where + ": \"tiles\" needs a string, a number or a boolean, not array");
  CHECK(error_of("f.json", R"({"tiles": null})") == where + ": \"tiles\" needs a string, a number or a boolean, not null");
  CHECK(error_of("f.json", R"({"json": "maybe"})") == where + ": \"json\" is a switch and needs true or false, got \"maybe\"");
  CHECK(error_of("f.json", R"([1, 2])") == where + " must hold one JSON object {\"name\": value, ...}");
  CHECK_THAT(error_of("f.json", R"({"tiles": 2,)"), HasSubstr(where + " is not valid JSON: "));
  CHECK(parse_error({"--model", "m", "--flags", directory.file("absent.json")}) ==
        "cannot read flags file '" + directory.file("absent.json") + "'");
}

namespace {

// The commands `ivl --help` lists ("inspect", "bench model", ...): the test covers each one the
// binary has, including those added after it was written.
std::vector<std::string> listed_commands() {
  const auto [text, code] = run_command("'" + kBinary + "' --help");
  REQUIRE(code == 0);
  std::vector<std::string> names;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("  ivl ", 0) != 0) continue;
    const size_t end = line.find("  ", 6);
    names.push_back(line.substr(6, end - 6));
  }
  return names;
}

// The flags a command's --help lists ("--tiles", ..., "--flags", "--help").
std::vector<std::string> listed_flags(const std::string& help) {
  std::vector<std::string> flags;
  std::istringstream lines(help.substr(help.find("\nflags:\n")));
  std::string line;
  while (std::getline(lines, line))
    if (line.rfind("  --", 0) == 0) flags.push_back(line.substr(2, line.find(' ', 2) - 2));
  return flags;
}

}  // namespace

TEST_CASE("ivl --help lists every command, and each one's --help prints its usage and flags", "[flags][cli]") {
  const std::vector<std::string> commands = listed_commands();
  for (const char* expected : {"inspect", "gradcheck", "check", "bench gemm", "bench model", "preprocess", "tokenize", "devices"})
    CHECK(std::find(commands.begin(), commands.end(), expected) != commands.end());
  for (const std::string& command : commands) {
    for (const char* help_flag : {"--help", "-h"}) {
      const auto [help, code] = run_command("'" + kBinary + "' " + command + " " + help_flag);
      INFO(command << " " << help_flag << ":\n" << help);
      CHECK(code == 0);
      CHECK(help.rfind("usage: ivl " + command, 0) == 0);
      CHECK_THAT(help, HasSubstr("\nflags:\n"));
      CHECK_THAT(help, HasSubstr("  --flags FILE"));
    }
  }
  const auto [benchmarks, code] = run_command("'" + kBinary + "' bench --help");
  CHECK(code == 0);
  CHECK_THAT(benchmarks, HasSubstr("ivl bench model"));
  const auto [none, none_code] = run_command("'" + kBinary + "'");
  CHECK(none_code == 1);
  CHECK_THAT(none, HasSubstr("ivl inspect"));
  const auto [unknown, unknown_code] = run_command("'" + kBinary + "' bench modle");
  CHECK(unknown_code == 1);
  CHECK_THAT(unknown, HasSubstr("unknown command 'bench modle' (did you mean 'bench model'?)"));
}

TEST_CASE("every command refuses a mistyped flag, naming the flag that was meant", "[flags][cli]") {
  for (const std::string& command : listed_commands()) {
    const auto [help, help_code] = run_command("'" + kBinary + "' " + command + " --help");
    REQUIRE(help_code == 0);
    const std::vector<std::string> flags = listed_flags(help);
    INFO(command << ":\n" << help);
    CHECK(flags.size() >= 2);  // at least --flags and --help
    for (const std::string& flag : flags) {
      const std::string typo = flag.substr(0, flag.size() - 1);  // --tiles -> --tile
      const auto [error, code] = run_command("'" + kBinary + "' " + command + " " + typo);
      INFO(error);
      CHECK(code == 1);
      // --adam_beta is as near to --adam_beta1 as to --adam_beta2: then either is a right answer.
      const auto equally_near = std::count_if(flags.begin(), flags.end(), [&](const std::string& other) {
        return other.size() == flag.size() && other.rfind(typo, 0) == 0;
      });
      CHECK_THAT(error, HasSubstr("ivl " + command + ": unknown flag " + typo + " (did you mean " + (equally_near > 1 ? "--" : flag + "?)")));
    }
  }
}

TEST_CASE("ivl bench model --json prints one JSON object with the reference script's keys, the table on stderr", "[flags][cli]") {
  const std::string config = std::string(IVL_SHARED_DIR) + "/fixtures/tiny-qwen2/config.json";
  const std::string command = "'" + kBinary + "' bench model --config '" + config + "' --tiles 2 --runs 3 --json";
  const auto [out, code] = run_command("{ " + command + " 2>/dev/null; }");
  INFO(out);
  REQUIRE(code == 0);
  const json report = json::parse(out);  // one value, nothing else on stdout
  CHECK(report.at("what") == "forward");
  CHECK(report.at("device") == "cpu");
  CHECK(report.at("threads").get<int>() >= 1);
  CHECK(report.at("dtype") == "f32");
  CHECK(report.at("tiles") == 2);
  CHECK(report.at("positions") == 2 * 4 + 64);  // the tiny 56-pixel tiles give 4 image tokens each
  CHECK(report.at("seconds_min").get<double>() > 0);
  CHECK(report.at("seconds_min").get<double>() <= report.at("seconds_median").get<double>());
  CHECK(report.at("vision_seconds_median").get<double>() > 0);
  CHECK(report.at("decoder_seconds_median").get<double>() > 0);
  CHECK(report.at("peak_rss_GiB").get<double>() > 0);
  CHECK(report.at("peak_gpu_GiB").is_null());
  const auto [table_text, table_code] = run_command("{ " + command + " >/dev/null; }");
  CHECK(table_code == 0);
  CHECK_THAT(table_text, HasSubstr("vision s"));
}

TEST_CASE("ivl bench mpo-step --json reports the work and time of the official benchmark's keys", "[flags][cli]") {
  const std::string config = std::string(IVL_SHARED_DIR) + "/fixtures/tiny-qwen2/config.json";
  const auto [out, code] = run_command("{ '" + kBinary + "' bench mpo-step --config '" + config +
                                       "' --pairs 2 --tiles 3 --prompt 10 --response 7 --runs 2 --json 2>/dev/null; }");
  INFO(out);
  REQUIRE(code == 0);
  const json report = json::parse(out);
  CHECK(report.at("what") == "mpo-step");
  CHECK(report.at("tiles") == 3);
  CHECK(report.at("sequences") == 4);
  CHECK(report.at("seq_len") == 10 + 3 * 4 + 7);
  CHECK(report.at("tokens") == 4 * (10 + 3 * 4 + 7));
  CHECK(report.at("seconds_min").get<double>() > 0);
  CHECK(report.at("seconds_min").get<double>() <= report.at("seconds_median").get<double>());
  CHECK(report.at("tokens_per_s").get<double>() > 0);
  CHECK(report.at("peak_rss_GiB").get<double>() > 0);
}

TEST_CASE("ivl bench gemm --json prints one JSON object: the shapes' GF/s and the 1024^3 matmul's seconds", "[flags][cli]") {
  const auto [out, code] = run_command("{ '" + kBinary + "' bench gemm --json 2>/dev/null; }");
  INFO(out);
  REQUIRE(code == 0);
  const json report = json::parse(out);
  CHECK(report.at("what") == "gemm");
  CHECK(report.at("device") == "cpu");
  CHECK(report.at("threads").get<int>() >= 1);
  const json& shapes = report.at("shapes");
  REQUIRE(shapes.size() == 3);
  CHECK(shapes[0].at("m") == 1024);
  CHECK(shapes[0].at("n") == 1024);
  CHECK(shapes[0].at("k") == 1024);
  for (const json& shape : shapes) {
    CHECK(shape.at("engine_GF_per_s").get<double>() > 0);
    CHECK(shape.at("cblas_GF_per_s").get<double>() > 0);
    CHECK(shape.at("engine_over_cblas").get<double>() > 0);
  }
  // 2 m n k flops in seconds_median at engine_GF_per_s (both rounded: within a percent).
  const double seconds = report.at("seconds_median").get<double>();
  const double gigaflops = 2.0 * 1024 * 1024 * 1024 / seconds * 1e-9;
  CHECK(std::abs(gigaflops / shapes[0].at("engine_GF_per_s").get<double>() - 1) < 0.01);
  CHECK(report.at("seconds_min").get<double>() <= seconds);
  CHECK(report.at("peak_rss_GiB").get<double>() > 0);
}
