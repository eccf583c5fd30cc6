// The flag parser of tools/flags.h: the command line and a --flags JSON file against a command's
// table, then the values read as text, numbers or booleans with errors that name the flag, and the
// help text made from the same table.
#include "tools/flags.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

namespace ivl::cli {
namespace {

// Every command takes these two; they are not in the tables so that no table can forget them.
const Flag kFlagsFile{"--flags", "FILE", "", "read flags from a JSON object {\"max_tiles\": 6, ...}; the command line wins"};
const Flag kHelp{"--help", "", "", "print this help (also -h)"};

std::string without_dashes(const std::string& name) { return name.substr(std::min(name.find_first_not_of('-'), name.size())); }

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> previous(b.size() + 1), current(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) previous[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    current[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      current[j] = std::min({previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(previous, current);
  }
  return previous[b.size()];
}

const Flag* find_flag(const FlagTable& table, const std::string& name) {
  for (const Flag& flag : table.flags)
    if (flag.name == name) return &flag;
  return nullptr;
}

std::vector<std::string> flag_names(const FlagTable& table) {
  std::vector<std::string> names;
  for (const Flag& flag : table.flags) names.push_back(flag.name);
  names.push_back(kFlagsFile.name);
  names.push_back(kHelp.name);
  return names;
}

std::string unknown_flag(const FlagTable& table, const std::string& name) {
  const std::string near = closest_name(name, flag_names(table));
  return "unknown flag " + name +
         (near.empty() ? " (ivl " + table.name + " --help lists its flags)" : " (did you mean " + near + "?)");
}

// "true" and "false" as people write them on command lines and in JSON.
std::optional<bool> parse_bool(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (text == "true" || text == "yes" || text == "1") return true;
  if (text == "false" || text == "no" || text == "0") return false;
  return std::nullopt;
}

}  // namespace

std::string closest_name(const std::string& typed, const std::vector<std::string>& names) {
  const std::string bare = without_dashes(typed);
  std::string best;
  size_t best_distance = 0;
  for (const std::string& name : names) {
    const size_t distance = edit_distance(bare, without_dashes(name));
    if (best.empty() || distance < best_distance) best = name, best_distance = distance;
  }
  // More than half the letters changed is a different word, not a typo (--verbose is not --help).
  return !best.empty() && 2 * best_distance <= without_dashes(best).size() ? best : "";
}

const Flag& ParsedFlags::flag(const std::string& name) const {
  if (const Flag* found = find_flag(table_, name)) return *found;
  throw std::logic_error("ivl " + table_.name + " reads the flag " + name + ", which its table does not declare");
}

const ParsedFlags::Value* ParsedFlags::value(const std::string& name) const {
  flag(name);
  const auto it = values_.find(name);
  return it == values_.end() ? nullptr : &it->second;
}

bool ParsedFlags::given(const std::string& name) const { return value(name) != nullptr; }

std::string ParsedFlags::text(const std::string& name) const { return text(name, flag(name).default_value); }

std::string ParsedFlags::text(const std::string& name, const std::string& fallback) const {
  const Value* given_value = value(name);
  return given_value ? given_value->text : fallback;
}

FlagError ParsedFlags::value_error(const std::string& name, const std::string& wanted) const {
  const Value* given_value = value(name);
  return FlagError(name + " needs " + wanted + ", got \"" + text(name) + "\"" + (given_value ? given_value->origin : ""));
}

int64_t ParsedFlags::integer_in(const std::string& name, int64_t min, int64_t max) const {
  const std::string text_value = text(name);
  int64_t number = 0;
  const char* end = text_value.data() + text_value.size();
  const auto [stop, error] = std::from_chars(text_value.data(), end, number);
  const bool whole = !text_value.empty() && error == std::errc() && stop == end;
  if (whole && number >= min && number <= max) return number;
  // A bound as large as the type's own is no bound a person chose: only "too large" mentions it.
  const bool state_max = max < std::numeric_limits<int32_t>::max() || (whole && number > max);
  throw value_error(name, "a whole number " + (state_max ? "from " + std::to_string(min) + " to " + std::to_string(max)
                                                       : ">= " + std::to_string(min)));
}

double ParsedFlags::real(const std::string& name) const {
  const std::string text_value = text(name);
  double number = 0;
  const char* end = text_value.data() + text_value.size();
  const auto [stop, error] = std::from_chars(text_value.data(), end, number);
  if (!text_value.empty() && error == std::errc() && stop == end && std::isfinite(number)) return number;
  throw value_error(name, "a number");
}

bool ParsedFlags::boolean(const std::string& name) const {
  if (flag(name).value_name.empty()) return given(name);
  if (const std::optional<bool> parsed = parse_bool(text(name))) return *parsed;
  throw value_error(name, "true or false (or yes/no, 1/0)");
}

namespace {

// The flags a --flags file sets, as text ("" for a switch that is on; a switch set false is left out).
std::map<std::string, std::string> read_flags_file(const std::string& path, const FlagTable& table) {
  const std::string where = "flags file '" + path + "'";
  std::map<std::string, std::string> values;
  std::ifstream stream(path, std::ios::binary);
  if (!stream) throw FlagError("cannot read " + where);
  nlohmann::json object;
  try {
    object = nlohmann::json::parse(stream);
  } catch (const nlohmann::json::exception& e) {
    throw FlagError(where + " is not valid JSON: " + e.what());
  }
  if (!object.is_object()) throw FlagError(where + " must hold one JSON object {\"name\": value, ...}");
  for (const auto& [key, json_value] : object.items()) {
    std::string name = "--" + key;
    const Flag* flag = find_flag(table, name);
    if (!flag) {
      std::replace(name.begin(), name.end(), '_', '-');
      flag = find_flag(table, name);
    }
    if (!flag) {  // only the table's flags: a file names neither --help nor another --flags file
      std::vector<std::string> names;
      for (const Flag& known : table.flags) names.push_back(known.name);
      const std::string near = closest_name(name, names);
      throw FlagError(where + ": unknown flag \"" + key + "\"" + (near.empty() ? "" : " (did you mean " + near + "?)"));
    }
    std::string text;
    if (json_value.is_string()) text = json_value.get<std::string>();
    else if (json_value.is_boolean()) text = json_value.get<bool>() ? "true" : "false";
    else if (json_value.is_number()) text = json_value.dump();
    else throw FlagError(where + ": \"" + key + "\" needs a string, a number or a boolean, not " + json_value.type_name());
    if (flag->value_name.empty()) {  // a switch: true turns it on, false leaves it off
      const std::optional<bool> on = parse_bool(text);
      if (!on) throw FlagError(where + ": \"" + key + "\" is a switch and needs true or false, got " + json_value.dump());
      if (!*on) continue;
      text.clear();
    }
    values[name] = text;
  }
  return values;
}

}  // namespace

ParsedFlags parse_flags(const FlagTable& table, const Args& args) {
  ParsedFlags parsed;
  parsed.table_ = table;
  std::optional<std::string> flags_file;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      parsed.help_ = true;
      return parsed;
    }
    if (arg.size() < 2 || arg[0] != '-') {  // "-" alone is a positional (stdin, by custom)
      parsed.positionals_.push_back(arg);
      continue;
    }
    const size_t equals = arg.find('=');
    const std::string name = arg.substr(0, equals);
    const Flag* flag = name == kFlagsFile.name ? &kFlagsFile : find_flag(table, name);
    if (!flag) throw FlagError(unknown_flag(table, name));
    if ((parsed.values_.count(name) && !flag->repeatable) || (flag == &kFlagsFile && flags_file))
      throw FlagError(name + " is given twice");
    std::string value;
    if (flag->value_name.empty()) {
      if (equals != std::string::npos) throw FlagError(name + " is a switch and takes no value");
    } else if (equals != std::string::npos) {
      value = arg.substr(equals + 1);
    } else if (i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) {
      value = args[++i];
    } else if (!flag->implicit_value.empty()) {
      value = flag->implicit_value;
    } else {
      throw FlagError(name + " needs a value: " + name + " " + flag->value_name);
    }
    if (flag == &kFlagsFile) flags_file = value;
    else if (flag->repeatable && parsed.values_.count(name)) parsed.values_[name].text += '\n' + value;
    else parsed.values_[name] = {value, ""};
  }
  if (flags_file)  // try_emplace: what the command line gave stays
    for (const auto& [name, value] : read_flags_file(*flags_file, table))
      parsed.values_.try_emplace(name, ParsedFlags::Value{value, " (in flags file '" + *flags_file + "')"});

  for (const Flag& flag : table.flags)
    if (flag.need == Flag::required && !parsed.values_.count(flag.name))
      throw FlagError("needs " + flag.name + " " + flag.value_name + " (" + flag.help + ")");
  const std::vector<std::string>& got = parsed.positionals_;
  if (got.size() < table.positionals.size()) throw FlagError("missing " + table.positionals[got.size()]);
  if (got.size() > table.positionals.size())
    throw FlagError("unexpected argument '" + got[table.positionals.size()] + "'" +
                    (table.positionals.empty() ? " (ivl " + table.name + " takes no positional arguments)" : ""));
  return parsed;
}

std::string synopsis(const FlagTable& table) {
  std::string line = "ivl " + table.name;
  for (const std::string& positional : table.positionals) line += " " + positional;
  const auto optional_count = std::count_if(table.flags.begin(), table.flags.end(), [](const Flag& f) { return f.need == Flag::optional; });
  for (const Flag::Need need : {Flag::required, Flag::optional})
    for (const Flag& flag : table.flags) {
      if (flag.need != need) continue;
      if (need == Flag::optional && optional_count > 12) {  // a long table: its help lists them
        line += " [flags]";
        break;
      }
      const std::string words = flag.value_name.empty() ? flag.name : flag.name + " " + flag.value_name;
      line += need == Flag::required ? " " + words : " [" + words + "]";
    }
  return line;
}

std::string help_text(const FlagTable& table) {
  std::vector<Flag> flags = table.flags;
  flags.push_back(kFlagsFile);
  flags.push_back(kHelp);
  size_t width = 0;
  for (const Flag& flag : flags) width = std::max(width, flag.name.size() + 1 + flag.value_name.size());
  std::string text = "usage: " + synopsis(table) + "\n\n" + table.summary + "\n\nflags:\n";
  for (const Flag& flag : flags) {
    std::string left = flag.value_name.empty() ? flag.name : flag.name + " " + flag.value_name;
    left.resize(width, ' ');
    text += "  " + left + "  " + flag.help;
    if (flag.need == Flag::required) text += " (required)";
    else if (!flag.default_value.empty()) text += " (default: " + flag.default_value + ")";
    text += "\n";
  }
  if (!table.details.empty()) text += "\n" + table.details + "\n";
  return text;
}

std::vector<std::string> ParsedFlags::list(const std::string& name) const {
  std::vector<std::string> out;
  const Value* v = value(name);
  if (!v) return out;
  size_t start = 0;
  for (size_t end; (end = v->text.find('\n', start)) != std::string::npos; start = end + 1) out.push_back(v->text.substr(start, end - start));
  out.push_back(v->text.substr(start));
  return out;
}

}  // namespace ivl::cli
