// The added-token table: replacement rules, the first-byte index behind split(), and the InternVL2
// defaults of each family.
#include "llm/added_tokens.h"

#include <algorithm>
#include <stdexcept>

namespace ivl {

namespace {

// The tokens InternVL2's fine-tuning script adds, in its order (ids follow the base vocabulary).
const char* const kInternVL2Tokens[] = {"<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>",
                                        "<ref>", "</ref>", "<box>", "</box>"};

void add_internvl2_tokens(std::vector<AddedToken>& tokens, int64_t first_id) {
  for (const char* content : kInternVL2Tokens) tokens.push_back({content, first_id++, true});
}

}  // namespace

AddedTokens::AddedTokens(const std::vector<AddedToken>& tokens) {
  for (const auto& token : tokens) set(token);
}

void AddedTokens::set(const AddedToken& token) {
  if (token.content.empty()) throw std::invalid_argument("added token " + std::to_string(token.id) + " has empty text");
  if (token.id < 0) throw std::invalid_argument("added token '" + token.content + "' has a negative id");
  std::erase_if(tokens_, [&](const AddedToken& t) { return t.content == token.content || t.id == token.id; });
  tokens_.insert(std::lower_bound(tokens_.begin(), tokens_.end(), token,
                                  [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; }),
                 token);
  index();
}

void AddedTokens::index() {
  for (auto& candidates : by_first_byte_) candidates.clear();
  for (uint32_t i = 0; i < tokens_.size(); ++i)
    by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(i);
  for (auto& candidates : by_first_byte_)
    std::stable_sort(candidates.begin(), candidates.end(),
                     [&](uint32_t a, uint32_t b) { return tokens_[a].content.size() > tokens_[b].content.size(); });
}

const AddedToken* AddedTokens::find(std::string_view content) const {
  for (const auto& token : tokens_)
    if (token.content == content) return &token;
  return nullptr;
}

const AddedToken* AddedTokens::find(int64_t id) const {
  const auto it = std::lower_bound(tokens_.begin(), tokens_.end(), id,
                                   [](const AddedToken& t, int64_t value) { return t.id < value; });
  return it != tokens_.end() && it->id == id ? &*it : nullptr;
}

AddedTokens qwen2_internvl2_added_tokens() {
  std::vector<AddedToken> tokens = {{"<|endoftext|>", 151643, true}, {"<|im_start|>", 151644, true}, {"<|im_end|>", 151645, true}};
  add_internvl2_tokens(tokens, 151646);
  return AddedTokens(tokens);
}

AddedTokens internlm2_internvl2_added_tokens() {
  std::vector<AddedToken> tokens = {
      {"<unk>", 0, true},
      {"<s>", 1, true},
      {"</s>", 2, true},
      // Named [UNUSED_TOKEN_141..146] inside tokenizer.model; the chat models' configs rename them.
      {"<|plugin|>", 92538, true},
      {"<|interpreter|>", 92539, true},
      {"<|action_end|>", 92540, true},
      {"<|action_start|>", 92541, true},
      {"<|im_end|>", 92542, true},
      {"<|im_start|>", 92543, true},
  };
  add_internvl2_tokens(tokens, 92544);
  return AddedTokens(tokens);
}

}  // namespace ivl
