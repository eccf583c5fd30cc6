// What every tokenizer family shares: the added-token split around the family's model, decoding
// runs of ordinary ids between added tokens, id lookups, and load_tokenizer's choice of family.
#include "llm/tokenizer.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <stdexcept>

#include "llm/bpe_tokenizer.h"
#include "llm/sentencepiece_tokenizer.h"
#include "llm/tokenizer_files.h"
#include "llm/unicode_text.h"

namespace ivl {

namespace fs = std::filesystem;

std::vector<int64_t> Tokenizer::encode(std::string_view text, bool add_special) const {
  if (const size_t bad = find_invalid_utf8(text); bad != std::string_view::npos)
    throw std::invalid_argument("encode: the text is not valid UTF-8 (byte " + std::to_string(bad) + ")");
  std::string storage;
  const std::string_view normalized = normalize(text, storage);
  std::vector<int64_t> ids;
  ids.reserve(normalized.size() / 3 + 2);
  if (add_special && bos_id_ >= 0) ids.push_back(bos_id_);
  added_.split(
      normalized, [&](std::string_view chunk) { encode_ordinary(chunk, ids); },
      [&](const AddedToken& token) { ids.push_back(token.id); });
  if (add_special && eos_id_ >= 0) ids.push_back(eos_id_);
  return ids;
}

// Decoding joins the text of the runs between added tokens and the added tokens' own text, with
// nothing inserted between them, so decode(encode(text)) gives the text back (its NFC form for
// byte-level BPE). The Hugging Face slow tokenizers differ only around added tokens: InternLM2's
// convert_tokens_to_string puts a space before a special token that follows other text (and its
// prefix-space step always adds then drops one leading space, a no-op), and transformers 4.x joins
// some added tokens with spaces (spaces_between_special_tokens). With skip_special = true, as
// InternVL2's chat() decodes, both give the same text.
std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special) const {
  const int64_t size = vocab_size(), ordinary_size = model_size();
  std::string text;
  size_t run_start = 0;
  const auto flush = [&](size_t end) {
    if (end > run_start) decode_ordinary(ids.data() + run_start, end - run_start, text);
  };
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t id = ids[i];
    if (id < 0 || id >= size)
      throw std::out_of_range("decode: id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(size) + ")");
    const AddedToken* added = added_.find(id);
    if (!added) {
      if (id >= ordinary_size) throw std::out_of_range("decode: id " + std::to_string(id) + " is not in the vocabulary");
      continue;
    }
    flush(i);
    run_start = i + 1;
    if (!(skip_special && added->special)) text += added->content;
  }
  flush(ids.size());
  return text;
}

int64_t Tokenizer::token_id(std::string_view token) const {
  if (const AddedToken* added = added_.find(token)) return added->id;
  const int64_t id = model_token_id(token);
  if (id < 0) throw std::out_of_range("unknown token '" + std::string(token) + "'");
  return id;
}

std::string Tokenizer::token(int64_t id) const {
  if (const AddedToken* added = added_.find(id)) return added->content;
  if (id < 0 || id >= model_size()) throw std::out_of_range("token: id " + std::to_string(id) + " is outside the vocabulary");
  return model_token(id);
}

int64_t Tokenizer::vocab_size() const { return std::max(model_size(), added_.max_id() + 1); }

void Tokenizer::set_sequence_policy(int64_t bos_id, int64_t eos_id) {
  for (const int64_t id : {bos_id, eos_id})
    if (id >= vocab_size()) throw std::out_of_range("sequence policy: id " + std::to_string(id) + " is outside the vocabulary");
  bos_id_ = bos_id < 0 ? -1 : bos_id;
  eos_id_ = eos_id < 0 ? -1 : eos_id;
}

void Tokenizer::set_pad_id(int64_t pad_id) {
  if (pad_id >= vocab_size()) throw std::out_of_range("pad token: id " + std::to_string(pad_id) + " is outside the vocabulary");
  pad_id_ = pad_id < 0 ? -1 : pad_id;
}

namespace {

bool has_file(const fs::path& directory, const char* name) { return fs::is_regular_file(directory / name); }

// tokenizer_config.json's add_bos_token / add_eos_token over the family default; the token itself
// is bos_token / eos_token when named, else the family's.
int64_t policy_id(const Tokenizer& tokenizer, std::optional<bool> add, bool default_add,
                  const std::optional<std::string>& name, const std::string& default_name, const std::string& config_path) {
  if (!add.value_or(default_add)) return -1;
  const std::string token = name.value_or(default_name);
  if (token.empty()) fail_in_file(config_path, "add_bos_token/add_eos_token is true but the token is not named");
  try {
    return tokenizer.token_id(token);
  } catch (const std::out_of_range&) {
    fail_in_file(config_path, "the sequence token '" + token + "' is not in the vocabulary");
  }
}

// pad_token as the config files name it, else the family's default (the Hugging Face classes'
// constructor argument: Qwen2Tokenizer "<|endoftext|>", InternLM2Tokenizer "</s>"). A default that
// the vocabulary lacks means no pad token; a named one must exist.
int64_t pad_token_id(const Tokenizer& tokenizer, const std::optional<std::string>& name, const std::string& default_name,
                     const std::string& directory) {
  try {
    return tokenizer.token_id(name.value_or(default_name));
  } catch (const std::out_of_range&) {
    if (!name) return -1;
    throw std::runtime_error(directory + ": the pad_token '" + *name +
                             "' of tokenizer_config.json / special_tokens_map.json is not in the vocabulary");
  }
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& directory) {
  const fs::path dir(directory);
  if (!fs::is_directory(dir)) throw std::runtime_error("tokenizer directory '" + directory + "' does not exist or is not a directory");
  const TokenizerConfig config = read_tokenizer_config(directory);
  const bool has_vocab = has_file(dir, "vocab.json"), has_merges = has_file(dir, "merges.txt"),
             has_json = has_file(dir, "tokenizer.json"), has_model = has_file(dir, "tokenizer.model");

  const std::string config_path = (dir / "tokenizer_config.json").string();

  // The family: the tokenizer class named in tokenizer_config.json, else the files present. Other
  // classes (Phi-3's LlamaTokenizer, ...) tokenize differently, so they are refused, not guessed at.
  const std::string& name = config.tokenizer_class;
  bool sentencepiece = false;
  if (name.find("InternLM2") != std::string::npos)
    sentencepiece = true;
  else if (name.find("Qwen2") != std::string::npos)
    sentencepiece = false;
  else if (!name.empty())
    fail_in_file(config_path, "tokenizer_class '" + name + "' is not supported (ivl reads Qwen2Tokenizer and InternLM2Tokenizer)");
  else
    sentencepiece = has_model && !has_vocab && !has_merges;
  if (!sentencepiece && !has_json && !has_vocab && !has_merges && !has_model)
    throw std::runtime_error("no tokenizer in '" + directory + "': expected vocab.json + merges.txt or tokenizer.json " +
                             "(byte-level BPE), or tokenizer.model (SentencePiece)");

  std::unique_ptr<Tokenizer> tokenizer;
  if (sentencepiece) {
    if (!has_model) throw std::runtime_error((dir / "tokenizer.model").string() + ": missing (the SentencePiece model of " + directory + ")");
    AddedTokens added = internlm2_internvl2_added_tokens();
    apply_added_token_files(directory, added);
    tokenizer = load_sentencepiece((dir / "tokenizer.model").string(), added);
    tokenizer->set_sequence_policy(policy_id(*tokenizer, config.add_bos_token, true, config.bos_token, "<s>", config_path),
                                   policy_id(*tokenizer, config.add_eos_token, false, config.eos_token, "</s>", config_path));
    tokenizer->set_pad_id(pad_token_id(*tokenizer, config.pad_token, "</s>", directory));
    return tokenizer;
  }

  AddedTokens added = qwen2_internvl2_added_tokens();
  if (has_json) {  // tokenizer.json holds vocabulary, merges and added tokens in one file
    const std::string path = (dir / "tokenizer.json").string();
    const nlohmann::json json = read_json_file(path);
    apply_tokenizer_json_added_tokens(json, path, added);
    apply_added_token_files(directory, added);
    tokenizer = load_byte_level_bpe(json, path, added);
  } else {
    if (!has_vocab || !has_merges)
      throw std::runtime_error((dir / (has_vocab ? "merges.txt" : "vocab.json")).string() +
                               ": missing (byte-level BPE needs both vocab.json and merges.txt)");
    apply_added_token_files(directory, added);
    tokenizer = load_byte_level_bpe((dir / "vocab.json").string(), (dir / "merges.txt").string(), added);
  }
  // Qwen2: bos_token is null and nothing is added; a config may still ask for BOS/EOS.
  tokenizer->set_sequence_policy(policy_id(*tokenizer, config.add_bos_token, false, config.bos_token, "", config_path),
                                 policy_id(*tokenizer, config.add_eos_token, false, config.eos_token, "", config_path));
  tokenizer->set_pad_id(pad_token_id(*tokenizer, config.pad_token, "<|endoftext|>", directory));
  return tokenizer;
}

}  // namespace ivl
