// The one flag parser of every `ivl` command: a command is a small table of flags (name, value
// name, default, help), from which come its parsing, its errors, its --help text and its line in
// `ivl --help`. Values are checked when the command reads them, each error naming the flag.
#pragma once
#include <cstdint>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace ivl::cli {

using Args = std::vector<std::string>;

// A mistake in what the user typed (or wrote in a --flags file): main prints it with the usage line.
struct FlagError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

struct Flag {
  enum Need { optional, required };
  std::string name;           // "--tiles"
  std::string value_name;     // "N" in the help; empty for a switch, which is only present or absent
  std::string default_value;  // as it would be typed; empty: no default (a switch's is "absent")
  std::string help;           // one line
  Need need = optional;
  // The value of a flag given without one (`--do_train` for `--do_train True`, as Python's argparse
  // reads the HF Trainer's booleans); empty: a value is required.
  std::string implicit_value = "";
  // May be given several times (`--image a.jpg --image b.png`); list() returns the values in order.
  bool repeatable = false;
};

struct FlagTable {
  std::string name;                      // "inspect", "bench model"
  std::string summary;                   // the one line `ivl --help` shows
  std::vector<std::string> positionals;  // the names of the positional arguments, all required: {"PATH"}
  std::vector<Flag> flags;               // --help/-h and --flags FILE come with every table
  std::string details;                   // more help paragraphs, when the flags alone do not tell it
};

class ParsedFlags {
 public:
  bool help() const { return help_; }  // --help or -h: print help_text(table()), run nothing
  const FlagTable& table() const { return table_; }
  const std::vector<std::string>& positionals() const { return positionals_; }

  // On the command line or in the --flags file (for a switch: present).
  bool given(const std::string& name) const;
  // The value given, else the table's default; the second form takes a default computed at run
  // time (from other flags), which the flag's help line describes.
  std::string text(const std::string& name) const;
  std::string text(const std::string& name, const std::string& fallback) const;
  // A whole number in [min, max], in the type of min ("--tiles needs a whole number >= 1, got \"x\"").
  template <class Integer>
  Integer integer(const std::string& name, Integer min, Integer max = std::numeric_limits<Integer>::max()) const {
    return static_cast<Integer>(integer_in(name, static_cast<int64_t>(min), static_cast<int64_t>(max)));
  }
  double real(const std::string& name) const;
  // Every value of a repeatable flag, in command-line order (empty when not given).
  std::vector<std::string> list(const std::string& name) const;
  // A switch: present or not. A flag with a value: true/false, yes/no or 1/0.
  bool boolean(const std::string& name) const;

 private:
  friend ParsedFlags parse_flags(const FlagTable& table, const Args& args);
  struct Value {
    std::string text;
    std::string origin;  // "" for the command line, else " (in flags file 'F')" for errors
  };
  const Flag& flag(const std::string& name) const;
  const Value* value(const std::string& name) const;
  FlagError value_error(const std::string& name, const std::string& wanted) const;
  int64_t integer_in(const std::string& name, int64_t min, int64_t max) const;

  FlagTable table_;
  std::map<std::string, Value> values_;
  std::vector<std::string> positionals_;
  bool help_ = false;
};

// The arguments after the command's name against its table: unknown flags (with the closest known
// one), a missing value, a missing required flag, a wrong count of positionals are FlagErrors.
// `--flags FILE` reads a JSON object {"max_tiles": 6, ...} (names without dashes; a name is the
// flag's as written, or with _ for -); what the command line gives wins over the file.
ParsedFlags parse_flags(const FlagTable& table, const Args& args);

// "ivl NAME POSITIONALS --required X [--optional N] ..."
std::string synopsis(const FlagTable& table);
// The synopsis, the summary, one line per flag with its value name, default and help, the details.
std::string help_text(const FlagTable& table);

// The name in `names` nearest to `typed` by edit distance (ignoring leading dashes), or "" when
// even the nearest is too far to be what was meant.
std::string closest_name(const std::string& typed, const std::vector<std::string>& names);

}  // namespace ivl::cli
