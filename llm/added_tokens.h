// Added tokens: strings such as <|im_start|> or <IMG_CONTEXT> that always become one id, found in
// the text before the tokenizer model sees it (leftmost match first, then the longest, as the
// Hugging Face slow tokenizers' trie does). Also the InternVL2 defaults of each family.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ivl {

struct AddedToken {
  std::string content;
  int64_t id = -1;
  bool special = true;  // left out by decode(skip_special = true)
};

class AddedTokens {
 public:
  AddedTokens() = default;
  explicit AddedTokens(const std::vector<AddedToken>& tokens);

  // Adds a token, replacing any token with the same text or the same id: a model directory's own
  // files override the defaults this way.
  void set(const AddedToken& token);
  const std::vector<AddedToken>& list() const { return tokens_; }  // in id order
  const AddedToken* find(std::string_view content) const;
  const AddedToken* find(int64_t id) const;
  int64_t max_id() const { return tokens_.empty() ? -1 : tokens_.back().id; }

  // Cuts `text` at the added tokens: on_text(chunk) for each non-empty stretch of ordinary text and
  // on_token(token) for each added token, in order.
  template <class OnText, class OnToken>
  void split(std::string_view text, OnText&& on_text, OnToken&& on_token) const {
    size_t chunk_start = 0, at = 0;
    while (at < text.size()) {
      const AddedToken* token = match_at(text, at);
      if (!token) {
        ++at;
        continue;
      }
      if (at > chunk_start) on_text(text.substr(chunk_start, at - chunk_start));
      on_token(*token);
      at += token->content.size();
      chunk_start = at;
    }
    if (chunk_start < text.size()) on_text(text.substr(chunk_start));
  }

 private:
  // The longest added token that starts at text[at], or null.
  const AddedToken* match_at(std::string_view text, size_t at) const {
    const auto& candidates = by_first_byte_[static_cast<unsigned char>(text[at])];
    for (const uint32_t index : candidates) {  // longest first
      const std::string& content = tokens_[index].content;
      if (text.compare(at, content.size(), content) == 0) return &tokens_[index];
    }
    return nullptr;
  }
  void index();

  std::vector<AddedToken> tokens_;
  std::array<std::vector<uint32_t>, 256> by_first_byte_;
};

// Qwen2 with InternVL2: <|endoftext|> 151643, <|im_start|> 151644, <|im_end|> 151645, then the
// InternVL2 tokens <img> 151646 ... </box> 151654 (the order internvl_chat_finetune.py adds them).
AddedTokens qwen2_internvl2_added_tokens();
// InternLM2 with InternVL2: <unk> 0, <s> 1, </s> 2, the chat tokens 92538..92543 (<|plugin|> ...
// <|im_start|>), and <img> 92544 ... </box> 92552 (spec section 7.2).
AddedTokens internlm2_internvl2_added_tokens();

}  // namespace ivl
