// Reading the Hugging Face tokenizer files of a model directory (tokenizer_config.json,
// added_tokens.json, the added_tokens of tokenizer.json). Every error names the file and what in it
// was wrong.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "llm/added_tokens.h"

namespace ivl {

std::string read_text_file(const std::string& path);
nlohmann::json read_json_file(const std::string& path);  // must hold a JSON object
// "invalid <what>" errors of one file: "DIR/vocab.json: token 'x' has a negative id".
[[noreturn]] void fail_in_file(const std::string& path, const std::string& message);

// What tokenizer_config.json says about the family and the sequence policy; all empty when the
// directory has no such file.
struct TokenizerConfig {
  std::string tokenizer_class;  // "Qwen2Tokenizer", "InternLM2Tokenizer", ...
  std::optional<bool> add_bos_token, add_eos_token;
  std::optional<std::string> bos_token, eos_token;
  std::optional<std::string> pad_token;  // tokenizer_config.json's, else special_tokens_map.json's
};
TokenizerConfig read_tokenizer_config(const std::string& directory);

// tokenizer.json's "added_tokens" array ({"id", "content", "special", ...}) on top of `tokens`.
void apply_tokenizer_json_added_tokens(const nlohmann::json& tokenizer_json, const std::string& path, AddedTokens& tokens);
// added_tokens.json ({"<img>": 151646, ...}), then tokenizer_config.json's "added_tokens_decoder"
// ({"151646": {"content": "<img>", "special": true}}), each on top of `tokens`, when present.
void apply_added_token_files(const std::string& directory, AddedTokens& tokens);

}  // namespace ivl
