// `ivl inspect PATH`: what a .safetensors file holds (one line per tensor, then totals), or for a
// model directory the config.json summary and the parameter counts of each part of the model.
// Every malformed input ends as an exception, which main prints before exiting with 1.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "internvl/internvl_chat.h"
#include "nn/safetensors.h"
#include "tools/commands.h"

namespace ivl::cli {
namespace {

using json = nlohmann::json;

// 1234567 -> "1,234,567": parameter counts of real models are hard to read without separators.
std::string grouped(uint64_t value) {
  const std::string digits = std::to_string(value);
  std::string text;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) text += ',';
    text += digits[i];
  }
  return text;
}

// 1234567 -> "1.23M", for the totals a reader compares with a model card ("2B").
std::string abbreviated(uint64_t value) {
  const char* suffixes[] = {"", "K", "M", "B", "T"};
  double scaled = static_cast<double>(value);
  size_t suffix = 0;
  while (scaled >= 1000.0 && suffix + 1 < std::size(suffixes)) {
    scaled /= 1000.0;
    ++suffix;
  }
  char text[32];
  std::snprintf(text, sizeof text, suffix == 0 ? "%.0f%s" : "%.2f%s", scaled, suffixes[suffix]);
  return text;
}

uint64_t element_count(const SafetensorsEntry& entry) {
  return static_cast<uint64_t>(shape_numel(entry.shape));
}

// How many tensors, elements and bytes of each dtype: "BF16 x 55".
struct Tally {
  uint64_t tensors = 0, parameters = 0, bytes = 0;
  std::map<std::string, uint64_t> tensors_per_dtype;

  void add(const SafetensorsEntry& entry) {
    ++tensors;
    parameters += element_count(entry);
    bytes += entry.nbytes();
    ++tensors_per_dtype[safetensors_dtype_string(entry.dtype)];
  }
  std::string dtype_mix() const {
    std::string mix;
    for (const auto& [dtype, count] : tensors_per_dtype)
      mix += (mix.empty() ? "" : ", ") + dtype + " x " + std::to_string(count);
    return mix.empty() ? "-" : mix;
  }
};

void inspect_file(const std::string& path) {
  const SafetensorsFile file(path);
  size_t name_width = 4, dtype_width = 5, shape_width = 5;
  for (const auto& entry : file.entries()) {
    name_width = std::max(name_width, entry.name.size());
    dtype_width = std::max(dtype_width, std::string(safetensors_dtype_string(entry.dtype)).size());
    shape_width = std::max(shape_width, shape_str(entry.shape).size());
  }
  const int name_columns = static_cast<int>(name_width), dtype_columns = static_cast<int>(dtype_width),
            shape_columns = static_cast<int>(shape_width);
  std::printf("%s\n", path.c_str());
  std::printf("  %-*s  %-*s  %-*s  %s\n", name_columns, "name", dtype_columns, "dtype", shape_columns, "shape", "bytes");
  Tally tally;
  for (const auto& entry : file.entries()) {
    std::printf("  %-*s  %-*s  %-*s  %s\n", name_columns, entry.name.c_str(), dtype_columns,
                safetensors_dtype_string(entry.dtype), shape_columns, shape_str(entry.shape).c_str(),
                grouped(entry.nbytes()).c_str());
    tally.add(entry);
  }
  std::printf("total: %s tensors, %s parameters (%s), %s bytes (%s)\n", grouped(tally.tensors).c_str(),
              grouped(tally.parameters).c_str(), abbreviated(tally.parameters).c_str(), grouped(tally.bytes).c_str(),
              tally.dtype_mix().c_str());
  for (const auto& [key, value] : file.metadata()) std::printf("metadata: %s = %s\n", key.c_str(), value.c_str());
}

// A config value as a person writes it: strings bare, lists of strings comma-separated. Nested
// values are only described, so a hostile config.json cannot drive a deep recursive dump.
std::string config_value_text(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_primitive()) return value.dump();
  if (value.is_array() && std::all_of(value.begin(), value.end(), [](const json& e) { return e.is_primitive(); })) {
    std::string text;
    for (const auto& element : value)
      text += (text.empty() ? "" : ", ") + (element.is_string() ? element.get<std::string>() : element.dump());
    return text.empty() ? "[]" : text;
  }
  return std::string("(") + (value.is_array() ? "a list of " : "an object of ") + std::to_string(value.size()) +
         (value.is_array() ? " values)" : " keys)");
}

// One line "label: key value, key value" with the keys present in `object`.
void print_config_line(const char* label, const json& object, const std::vector<const char*>& keys) {
  std::string line;
  for (const char* key : keys) {
    const auto it = object.find(key);
    if (it == object.end()) continue;
    line += (line.empty() ? "" : ", ") + std::string(key) + " " + config_value_text(*it);
  }
  if (!line.empty()) std::printf("  %s: %s\n", label, line.c_str());
}

void print_config(const std::string& config_path) {
  std::ifstream stream(config_path, std::ios::binary);
  if (!stream) fail("cannot open '" + config_path + "'");
  const std::string text((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
  json config;
  try {
    config = json::parse(text);
  } catch (const json::exception& e) {
    fail("'" + config_path + "' is not valid JSON: " + e.what());
  }
  if (!config.is_object()) fail("'" + config_path + "' is not a JSON object");

  std::printf("config.json:\n");
  for (const char* key : {"architectures", "template", "downsample_ratio", "ps_version", "select_layer"}) {
    const auto it = config.find(key);
    if (it != config.end()) std::printf("  %s: %s\n", key, config_value_text(*it).c_str());
  }
  const auto vision = config.find("vision_config");
  if (vision != config.end() && vision->is_object())
    print_config_line("vision_config", *vision,
                      {"architectures", "image_size", "patch_size", "hidden_size", "num_hidden_layers",
                       "num_attention_heads", "norm_type"});
  const auto llm = config.find("llm_config");
  if (llm != config.end() && llm->is_object())
    print_config_line("llm_config", *llm,
                      {"architectures", "hidden_size", "num_hidden_layers", "num_attention_heads",
                       "num_key_value_heads", "vocab_size", "intermediate_size"});
}

// The top-level parts of an InternVLChatModel, by the first component of the weight names.
std::string model_part(const std::string& name) {
  for (const char* part : {"vision_model", "mlp1", "language_model"}) {
    const std::string prefix = std::string(part) + ".";
    if (name.compare(0, prefix.size(), prefix) == 0) return part;
  }
  return "other";
}

void inspect_model_directory(const std::string& directory) {
  std::printf("%s\n", directory.c_str());
  const std::string config_path = (std::filesystem::path(directory) / "config.json").string();
  if (std::filesystem::is_regular_file(config_path))
    print_config(config_path);
  else
    std::printf("config.json: absent\n");

  // What the model built from config.json declares, part by part (needs no weights).
  std::map<std::string, uint64_t> declared;
  if (std::filesystem::is_regular_file(config_path)) {
    ParameterSet params;
    const InternVLChat model(InternVLChatConfig::from_file(config_path), params);
    for (const Parameter& p : params.parameters()) declared[model_part(p.name())] += static_cast<uint64_t>(shape_numel(p.shape()));
    uint64_t total = 0;
    std::printf("parameters the config declares:\n");
    for (const char* part : {"vision_model", "mlp1", "language_model"}) {
      std::printf("  %-15s %14s (%7s)\n", part, grouped(declared[part]).c_str(), abbreviated(declared[part]).c_str());
      total += declared[part];
    }
    std::printf("  %-15s %14s (%7s)\n", "total", grouped(total).c_str(), abbreviated(total).c_str());
  }
  const bool has_weights = std::filesystem::is_regular_file(std::filesystem::path(directory) / "model.safetensors") ||
                           std::filesystem::is_regular_file(std::filesystem::path(directory) / "model.safetensors.index.json");
  if (!has_weights) {
    std::printf("weights: none in this directory\n");
    return;
  }

  const SafetensorsCheckpoint checkpoint(directory);
  const auto shards = checkpoint.shard_paths();
  std::printf("weights (%zu shard%s):", shards.size(), shards.size() == 1 ? "" : "s");
  for (const auto& shard : shards) std::printf(" %s", std::filesystem::path(shard).filename().c_str());
  std::printf("\n");

  std::map<std::string, Tally> parts = {{"vision_model", {}}, {"mlp1", {}}, {"language_model", {}}, {"other", {}}};
  Tally total;
  for (const auto& name : checkpoint.names()) {
    const auto& entry = checkpoint.entry(name);
    parts[model_part(name)].add(entry);
    total.add(entry);
  }
  for (const char* part : {"vision_model", "mlp1", "language_model", "other"}) {
    const Tally& tally = parts[part];
    std::printf("  %-15s %14s parameters (%7s) in %4s tensors  %s\n", part, grouped(tally.parameters).c_str(),
                abbreviated(tally.parameters).c_str(), grouped(tally.tensors).c_str(), tally.dtype_mix().c_str());
  }
  std::printf("  %-15s %14s parameters (%7s) in %4s tensors  %s, %s bytes\n", "total", grouped(total.parameters).c_str(),
              abbreviated(total.parameters).c_str(), grouped(total.tensors).c_str(), total.dtype_mix().c_str(),
              grouped(total.bytes).c_str());
}

int cmd_inspect(const ParsedFlags& flags) {
  const std::string& path = flags.positionals()[0];
  if (path.empty()) throw FlagError("PATH is empty: give a .safetensors file or a model directory");
  std::error_code error;
  const auto status = std::filesystem::status(path, error);
  if (std::filesystem::is_directory(status))
    inspect_model_directory(path);
  else if (std::filesystem::exists(status))
    inspect_file(path);
  else
    throw FlagError("no such file or directory: '" + path + "'");
  return 0;
}

}  // namespace

Command inspect_command() {
  return {{"inspect", "a .safetensors file's tensors, or a model directory's config and parameter counts", {"PATH"}, {},
           "PATH is a .safetensors file (one line per tensor, then totals) or a model directory (config.json\n"
           "summary, the parameters the config declares, and the weights' counts per part when present)."},
          cmd_inspect};
}

}  // namespace ivl::cli
