// InternLM2's tokenizer: libsentencepiece on tokenizer.model, with the Hugging Face
// InternLM2Tokenizer layer on top (added tokens split out first, each stretch between them encoded
// by SentencePiece on its own, BOS <s> prepended).
#pragma once
#include <memory>
#include <string>

#include "llm/tokenizer.h"

namespace ivl {

// The sequence policy (BOS) is load_tokenizer's business: see Tokenizer::set_sequence_policy.
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& model_path, const AddedTokens& added);

}  // namespace ivl
