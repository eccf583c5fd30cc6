// Byte-level BPE (GPT-2 style) as the slow transformers Qwen2Tokenizer does it: NFC, added tokens
// split out, the Qwen2 pre-tokenizer regex (PCRE2, JIT), each piece's bytes merged by merge rank.
// No BOS or EOS. Loaded from vocab.json + merges.txt or from a tokenizer.json.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "llm/tokenizer.h"

namespace ivl {

// The pre-tokenizer regex of Qwen2 (spec section 7.1) as tokenizer.json spells it. ivl matches it
// with \s spelled out as Unicode White_Space, which is what Python's `regex` module means by \s
// (PCRE2's own \s also takes U+180E).
extern const char* const kQwen2PretokenizerPattern;

std::unique_ptr<Tokenizer> load_byte_level_bpe(const std::string& vocab_json_path, const std::string& merges_txt_path,
                                               const AddedTokens& added);
// The "model" of a parsed tokenizer.json (type BPE over byte-level text). Its added_tokens are not
// read here: they are already in `added` (see apply_tokenizer_json_added_tokens).
std::unique_ptr<Tokenizer> load_byte_level_bpe(const nlohmann::json& tokenizer_json, const std::string& path,
                                               const AddedTokens& added);

// Internals exposed for tests and benchmarks. `tokenizer` must be a byte-level BPE tokenizer.
enum class BpeMergeLoop {
  automatic,  // what encode() uses: scan for short pieces, heap for long ones
  scan,       // find the lowest-ranked pair by scanning all pairs after each merge
  heap,       // a priority queue of pairs over a linked list of symbols
};
// One pre-tokenized piece (raw UTF-8 bytes) through BPE, bypassing the cache of merged pieces.
std::vector<int64_t> byte_level_bpe_merge(const Tokenizer& tokenizer, std::string_view piece, BpeMergeLoop loop);
// The pieces the pre-tokenizer regex cuts `text` into (no NFC, no added tokens).
std::vector<std::string> byte_level_bpe_pretokenize(const Tokenizer& tokenizer, std::string_view text);

}  // namespace ivl
