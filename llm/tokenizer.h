// Tokenizers of the InternVL2 language models: the interface every family implements, and
// load_tokenizer(), which picks the family from the files of a model directory. Qwen2 (InternVL2-1B)
// is byte-level BPE (llm/bpe_tokenizer.*); InternLM2 (2B, 8B) is SentencePiece
// (llm/sentencepiece_tokenizer.*). Both behave as the slow Hugging Face tokenizers the official code uses.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "llm/added_tokens.h"

namespace ivl {

enum class TokenizerFamily { byte_level_bpe, sentencepiece };

// Text <-> ids. Encoding splits the added tokens out first (each is one id wherever it appears),
// then hands the text between them to the family's model. The const methods are thread-safe;
// concurrent encode() calls on one byte-level BPE tokenizer take turns (they share its cache of
// merged pieces), so use one tokenizer per thread for parallel encoding.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // add_special: the family's sequence policy of the Hugging Face tokenizer (InternLM2 prepends BOS
  // <s>; Qwen2 adds nothing). Throws std::invalid_argument on text that is not valid UTF-8.
  std::vector<int64_t> encode(std::string_view text, bool add_special = true) const;
  // skip_special leaves out the added tokens marked special (all of the defaults are).
  std::string decode(const std::vector<int64_t>& ids, bool skip_special = false) const;

  // The id of a token as the vocabulary spells it ("Ġhello" for byte-level BPE, "▁hello" for
  // SentencePiece) or of an added token ("<IMG_CONTEXT>"). Throws when there is none.
  int64_t token_id(std::string_view token) const;
  // The vocabulary's spelling of an id (or an added token's text). Throws when out of range.
  std::string token(int64_t id) const;
  // One past the largest id (vocabulary and added tokens): 151655 for Qwen2 with the InternVL2 tokens.
  int64_t vocab_size() const;

  TokenizerFamily family() const { return family_; }
  const AddedTokens& added_tokens() const { return added_; }
  // The ids encode(add_special = true) puts before and after the text (-1: none). load_tokenizer
  // sets the family's policy, overridden by tokenizer_config.json's add_bos_token / add_eos_token.
  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }
  void set_sequence_policy(int64_t bos_id, int64_t eos_id);
  // The padding token (-1: none): tokenizer_config.json's / special_tokens_map.json's pad_token, else
  // the family's default (Qwen2 <|endoftext|> 151643; InternLM2 </s> 2, the same id as its EOS).
  int64_t pad_id() const { return pad_id_; }
  void set_pad_id(int64_t pad_id);
  // "byte-level BPE (vocab.json + merges.txt: 151643 tokens, ...)": for messages and logs.
  virtual std::string describe() const = 0;

 protected:
  Tokenizer(TokenizerFamily family, AddedTokens added) : family_(family), added_(std::move(added)) {}

  // Text already split at added tokens (and, for BPE, NFC normalized): append its ids.
  virtual void encode_ordinary(std::string_view text, std::vector<int64_t>& ids) const = 0;
  // A run of ordinary (not added) ids: append its text.
  virtual void decode_ordinary(const int64_t* ids, size_t count, std::string& text) const = 0;
  // Normalization applied to the whole text before the added tokens are split out.
  virtual std::string_view normalize(std::string_view text, std::string& storage) const { return text; }
  virtual int64_t model_token_id(std::string_view token) const = 0;  // -1 when absent
  virtual std::string model_token(int64_t id) const = 0;              // id < model_size()
  virtual int64_t model_size() const = 0;

 private:
  TokenizerFamily family_;
  AddedTokens added_;
  int64_t bos_id_ = -1, eos_id_ = -1, pad_id_ = -1;
};

// The tokenizer in `directory`. The family is tokenizer_config.json's tokenizer_class (Qwen2* or
// InternLM2*; others are refused), else SentencePiece when there is a tokenizer.model and no
// vocab.json/merges.txt, else byte-level BPE from tokenizer.json when present, or from vocab.json +
// merges.txt. Added tokens: the family's InternVL2 defaults, then tokenizer.json's added_tokens,
// added_tokens.json and tokenizer_config.json's added_tokens_decoder, each replacing any token with
// the same text or id. Errors name the file. (InternVL2-4B's Phi-3 tokenizer is not supported: its
// added tokens and prefix-space rules differ.)
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& directory);

}  // namespace ivl
