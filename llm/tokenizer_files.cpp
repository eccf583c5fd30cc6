// The JSON side files of a Hugging Face tokenizer: read, check the fields used, and fold the added
// tokens they list into an AddedTokens table.
#include "llm/tokenizer_files.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace ivl {

namespace fs = std::filesystem;

void fail_in_file(const std::string& path, const std::string& message) {
  throw std::runtime_error(path + ": " + message);
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_in_file(path, "cannot open the file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) fail_in_file(path, "read error");
  return std::move(text).str();
}

nlohmann::json read_json_file(const std::string& path) {
  const std::string text = read_text_file(path);
  nlohmann::json value;
  try {
    value = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    fail_in_file(path, "not valid JSON (" + std::string(e.what()) + "); is the file truncated?");
  }
  if (!value.is_object()) fail_in_file(path, std::string("expected a JSON object, found ") + value.type_name());
  return value;
}

namespace {

// bos_token and friends are either a string or an AddedToken object {"content": ...}; null means none.
std::optional<std::string> token_text(const nlohmann::json& config, const std::string& key, const std::string& path) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  fail_in_file(path, key + ": expected a string or an object with \"content\", found " + it->dump());
}

std::optional<bool> flag(const nlohmann::json& config, const std::string& key, const std::string& path) {
  const auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) fail_in_file(path, key + ": expected true or false, found " + it->dump());
  return it->get<bool>();
}

int64_t token_id_value(const nlohmann::json& value, const std::string& path, const std::string& what) {
  if (!value.is_number_integer() || value.get<int64_t>() < 0)
    fail_in_file(path, what + ": expected a non-negative integer id, found " + value.dump());
  return value.get<int64_t>();
}

}  // namespace

TokenizerConfig read_tokenizer_config(const std::string& directory) {
  TokenizerConfig config;
  const std::string path = (fs::path(directory) / "tokenizer_config.json").string();
  if (fs::exists(path)) {
    const nlohmann::json json = read_json_file(path);
    if (json.contains("tokenizer_class") && json["tokenizer_class"].is_string())
      config.tokenizer_class = json["tokenizer_class"].get<std::string>();
    config.add_bos_token = flag(json, "add_bos_token", path);
    config.add_eos_token = flag(json, "add_eos_token", path);
    config.bos_token = token_text(json, "bos_token", path);
    config.eos_token = token_text(json, "eos_token", path);
    config.pad_token = token_text(json, "pad_token", path);
  }
  // save_pretrained writes the special tokens to both files; an older directory may have only the map.
  const std::string map_path = (fs::path(directory) / "special_tokens_map.json").string();
  if (!config.pad_token && fs::exists(map_path)) config.pad_token = token_text(read_json_file(map_path), "pad_token", map_path);
  return config;
}

void apply_tokenizer_json_added_tokens(const nlohmann::json& tokenizer_json, const std::string& path, AddedTokens& tokens) {
  const auto it = tokenizer_json.find("added_tokens");
  if (it == tokenizer_json.end() || it->is_null()) return;
  if (!it->is_array()) fail_in_file(path, "added_tokens: expected an array");
  for (size_t i = 0; i < it->size(); ++i) {
    const nlohmann::json& entry = (*it)[i];
    const std::string where = "added_tokens[" + std::to_string(i) + "]";
    if (!entry.is_object() || !entry.contains("content") || !entry["content"].is_string() ||
        entry["content"].get<std::string>().empty() || !entry.contains("id"))
      fail_in_file(path, where + ": expected {\"id\": ..., \"content\": \"...\"}");
    const bool special = entry.contains("special") && entry["special"].is_boolean() ? entry["special"].get<bool>() : true;
    tokens.set({entry["content"].get<std::string>(), token_id_value(entry["id"], path, where + ".id"), special});
  }
}

void apply_added_token_files(const std::string& directory, AddedTokens& tokens) {
  const std::string added_path = (fs::path(directory) / "added_tokens.json").string();
  if (fs::exists(added_path)) {
    const nlohmann::json json = read_json_file(added_path);
    for (const auto& [content, id] : json.items()) {
      // Keep the special flag of the token this one replaces; a new token counts as special, as the
      // InternVL2 script adds its tokens with special_tokens=True.
      const AddedToken* previous = tokens.find(std::string_view(content));
      if (content.empty()) fail_in_file(added_path, "an added token with empty text");
      tokens.set({content, token_id_value(id, added_path, "\"" + content + "\""), previous ? previous->special : true});
    }
  }
  const std::string config_path = (fs::path(directory) / "tokenizer_config.json").string();
  if (fs::exists(config_path)) {
    const nlohmann::json json = read_json_file(config_path);
    const auto it = json.find("added_tokens_decoder");
    if (it != json.end() && !it->is_null()) {
      if (!it->is_object()) fail_in_file(config_path, "added_tokens_decoder: expected an object");
      for (const auto& [key, entry] : it->items()) {
        const std::string where = "added_tokens_decoder[\"" + key + "\"]";
        int64_t id = -1;
        try {
          size_t used = 0;
          id = std::stoll(key, &used);
          if (used != key.size() || id < 0) id = -1;
        } catch (const std::exception&) {
        }
        if (id < 0) fail_in_file(config_path, where + ": the key is not a token id");
        if (!entry.is_object() || !entry.contains("content") || !entry["content"].is_string() || entry["content"].get<std::string>().empty())
          fail_in_file(config_path, where + ": expected {\"content\": \"...\", ...}");
        const bool special = entry.contains("special") && entry["special"].is_boolean() ? entry["special"].get<bool>() : true;
        tokens.set({entry["content"].get<std::string>(), id, special});
      }
    }
  }
}

}  // namespace ivl
