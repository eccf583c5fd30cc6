// Byte-level BPE: loading (vocab.json + merges.txt or tokenizer.json), the PCRE2 pre-tokenizer, and
// the merge loops. Speed comes from three things: a cache from piece bytes to ids (text repeats its
// words), merges keyed by id pairs in an open-addressing table, and no allocation per piece.
#include "llm/bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <mutex>
#include <stdexcept>

#include "llm/tokenizer_files.h"
#include "llm/unicode_text.h"

namespace ivl {

const char* const kQwen2PretokenizerPattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace {

// The same pattern for PCRE2: \s as the Unicode White_Space set (Python `regex` and Oniguruma agree
// on it; PCRE2's \s would add U+180E), \S as its complement.
#define IVL_WHITE_SPACE R"(\t\n\x{0B}\f\r\x{20}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000})"
const char* const kQwen2PatternForPcre2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^)" IVL_WHITE_SPACE R"(\p{L}\p{N}]+[\r\n]*|)"
    "[" IVL_WHITE_SPACE R"(]*[\r\n]+|)"
    "[" IVL_WHITE_SPACE "]+(?![^" IVL_WHITE_SPACE "])|"
    "[" IVL_WHITE_SPACE "]+";
#undef IVL_WHITE_SPACE

// GPT-2's bytes_to_unicode: every byte as a printable character, so that vocab.json and merges.txt
// can spell arbitrary bytes. Printable Latin-1 bytes stand for themselves; the other 68 bytes map
// to U+0100.. in byte order.
class ByteLevelAlphabet {
 public:
  ByteLevelAlphabet() {
    std::fill(std::begin(char_to_byte_), std::end(char_to_byte_), -1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const int c = printable ? b : next++;
      char_to_byte_[c] = static_cast<int16_t>(b);
      append_utf8(static_cast<char32_t>(c), byte_to_text_[b]);
    }
  }
  // Byte-level text -> raw bytes; false when a character is outside the alphabet.
  bool to_bytes(std::string_view text, std::string& bytes) const {
    bytes.clear();
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    for (size_t i = 0; i < text.size();) {
      int c = -1;
      if (p[i] < 0x80) {
        c = p[i++];
      } else if ((p[i] & 0xE0) == 0xC0 && i + 1 < text.size() && (p[i + 1] & 0xC0) == 0x80) {
        c = ((p[i] & 0x1F) << 6) | (p[i + 1] & 0x3F);
        i += 2;
      }
      if (c < 0 || c >= kAlphabetEnd || char_to_byte_[c] < 0) return false;
      bytes += static_cast<char>(char_to_byte_[c]);
    }
    return true;
  }
  std::string to_text(std::string_view bytes) const {
    std::string text;
    for (const char b : bytes) text += byte_to_text_[static_cast<unsigned char>(b)];
    return text;
  }

 private:
  static constexpr int kAlphabetEnd = 256 + 68;
  int16_t char_to_byte_[kAlphabetEnd];
  std::string byte_to_text_[256];
};

const ByteLevelAlphabet& byte_level_alphabet() {
  static const ByteLevelAlphabet alphabet;
  return alphabet;
}

uint64_t mix64(uint64_t x) {  // the splitmix64 finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t hash_bytes(std::string_view bytes) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ bytes.size();
  const char* p = bytes.data();
  size_t n = bytes.size();
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, 8);
    h = (h ^ word) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, p, n);
  return mix64(h ^ tail);
}

// Token bytes -> id over the tokenizer's own table of token bytes: open addressing, each slot an id
// and a hash tag, so a lookup touches one slot and (usually) one string.
class TokenIndex {
 public:
  void build(const std::vector<std::string>& token_bytes, const std::vector<bool>& present) {
    size_t capacity = 16;
    while (capacity < 2 * token_bytes.size()) capacity *= 2;
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
    for (size_t id = 0; id < token_bytes.size(); ++id)
      if (present[id]) insert(token_bytes, token_bytes[id], static_cast<int32_t>(id));
  }
  // -1 when absent.
  int32_t find(const std::vector<std::string>& token_bytes, std::string_view bytes) const {
    const uint64_t hash = hash_bytes(bytes);
    const uint32_t tag = static_cast<uint32_t>(hash >> 32);
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.id_plus_one == 0) return -1;
      if (slot.tag == tag && token_bytes[slot.id_plus_one - 1] == bytes) return static_cast<int32_t>(slot.id_plus_one - 1);
    }
  }
  // false when the bytes are there already (under another id).
  bool insert(const std::vector<std::string>& token_bytes, std::string_view bytes, int32_t id) {
    const uint64_t hash = hash_bytes(bytes);
    const uint32_t tag = static_cast<uint32_t>(hash >> 32);
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      Slot& slot = slots_[i];
      if (slot.id_plus_one == 0) {
        slot = {static_cast<uint32_t>(id) + 1, tag};
        return true;
      }
      if (slot.tag == tag && token_bytes[slot.id_plus_one - 1] == bytes) return false;
    }
  }

 private:
  struct Slot {
    uint32_t id_plus_one = 0, tag = 0;
  };
  std::vector<Slot> slots_;
  size_t mask_ = 0;
};

// (left id, right id) -> (rank, merged id), open addressing with linear probing at load <= 1/2.
class MergeTable {
 public:
  struct Merge {
    uint32_t rank;
    int32_t merged;
  };
  void reserve(size_t count) {
    size_t capacity = 16;
    while (capacity < 2 * count) capacity *= 2;
    entries_.assign(capacity, Entry{kEmpty, {0, 0}});
    mask_ = capacity - 1;
  }
  bool insert(int32_t left, int32_t right, Merge merge) {  // false: the pair is already there
    const uint64_t key = pair_key(left, right);
    for (size_t i = mix64(key) & mask_;; i = (i + 1) & mask_) {
      if (entries_[i].key == key) return false;
      if (entries_[i].key == kEmpty) {
        entries_[i] = {key, merge};
        return true;
      }
    }
  }
  const Merge* find(int32_t left, int32_t right) const {
    const uint64_t key = pair_key(left, right);
    for (size_t i = mix64(key) & mask_;; i = (i + 1) & mask_) {
      if (entries_[i].key == key) return &entries_[i].merge;
      if (entries_[i].key == kEmpty) return nullptr;
    }
  }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // ids are below 2^31, so no pair key is all ones
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (uint64_t{static_cast<uint32_t>(left)} << 32) | static_cast<uint32_t>(right);
  }
  struct Entry {
    uint64_t key;
    Merge merge;
  };
  std::vector<Entry> entries_;
  size_t mask_ = 0;
};

// Piece bytes -> ids of the pieces merged so far. Keys and ids live in two flat arrays; the table
// holds offsets. It starts over when it grows past its limits, which only long runs of novel text do.
class WordCache {
 public:
  struct Ids {
    const int64_t* data;
    size_t count;
  };
  // Computed once per piece by the caller, for find() and then insert().
  static uint64_t hash(std::string_view piece) { return hash_bytes(piece) | (uint64_t{1} << 63); }
  bool find(std::string_view piece, uint64_t hash, Ids& found) const {
    if (slots_.empty()) return false;
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      const Slot& slot = slots_[i];
      if (slot.hash == 0) return false;
      if (slot.hash == hash && slot.key_length == piece.size() &&
          std::memcmp(keys_.data() + slot.key_offset, piece.data(), piece.size()) == 0) {
        found = {ids_.data() + slot.ids_offset, slot.ids_count};
        return true;
      }
    }
  }
  void insert(std::string_view piece, uint64_t hash, const int64_t* ids, size_t count) {
    if (piece.size() > kMaxPieceBytes) return;
    if (keys_.size() + piece.size() > kMaxKeyBytes || 2 * (used_ + 1) > kMaxSlots) clear();
    if (2 * (used_ + 1) > slots_.size()) grow();
    Slot slot{hash, static_cast<uint32_t>(keys_.size()), static_cast<uint32_t>(piece.size()),
              static_cast<uint32_t>(ids_.size()), static_cast<uint32_t>(count)};
    keys_.append(piece);
    ids_.insert(ids_.end(), ids, ids + count);
    place(slot);
    ++used_;
  }

 private:
  static constexpr size_t kMaxPieceBytes = 1024, kMaxKeyBytes = size_t{64} << 20, kMaxSlots = size_t{1} << 22;
  struct Slot {
    uint64_t hash = 0;  // 0: empty (stored hashes have their top bit set)
    uint32_t key_offset = 0, key_length = 0, ids_offset = 0, ids_count = 0;
  };
  void place(const Slot& slot) {
    size_t i = slot.hash & mask_;
    while (slots_[i].hash != 0) i = (i + 1) & mask_;
    slots_[i] = slot;
  }
  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 4096 : 2 * old.size(), Slot{});
    mask_ = slots_.size() - 1;
    for (const Slot& slot : old)
      if (slot.hash != 0) place(slot);
  }
  void clear() {
    slots_.clear();
    keys_.clear();
    ids_.clear();
    used_ = 0;
    grow();
  }
  std::vector<Slot> slots_;
  std::string keys_;
  std::vector<int64_t> ids_;
  size_t used_ = 0, mask_ = 0;
};

// The compiled pre-tokenizer regex with its reusable match data (one per tokenizer; callers hold
// the tokenizer's lock).
class PretokenizerRegex {
 public:
  explicit PretokenizerRegex(const char* pattern) {
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &error,
                          &error_offset, nullptr);
    if (!code_) throw std::runtime_error("pre-tokenizer regex: " + error_message(error) + " at offset " + std::to_string(error_offset));
    jit_ = pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE) == 0;  // without JIT support, the interpreter
    match_data_ = pcre2_match_data_create_from_pattern(code_, nullptr);
    context_ = pcre2_match_context_create(nullptr);
    if (jit_) {
      // Long whitespace runs backtrack through `\s+(?!\S)`; give the JIT room beyond its 32 KiB default.
      stack_ = pcre2_jit_stack_create(32 * 1024, 16 << 20, nullptr);
      pcre2_jit_stack_assign(context_, nullptr, stack_);
    }
    if (!match_data_ || !context_ || (jit_ && !stack_)) {
      release();
      throw std::bad_alloc();
    }
  }
  ~PretokenizerRegex() { release(); }
  PretokenizerRegex(const PretokenizerRegex&) = delete;
  PretokenizerRegex& operator=(const PretokenizerRegex&) = delete;

  // Calls on_piece for every match in `text` (valid UTF-8), in order; like Python's findall.
  template <class OnPiece>
  void for_each_piece(std::string_view text, OnPiece&& on_piece) {
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match_data_);
    PCRE2_SIZE offset = 0;
    while (offset < text.size()) {
      const int rc = jit_ ? pcre2_jit_match(code_, subject, text.size(), offset, 0, match_data_, context_)
                          : pcre2_match(code_, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, match_data_, context_);
      if (rc == PCRE2_ERROR_NOMATCH) return;
      if (rc < 0) throw std::runtime_error("pre-tokenizer regex: " + error_message(rc));
      const PCRE2_SIZE start = ovector[0], end = ovector[1];
      if (end == start) {  // the pattern has no empty match; step over one character if it ever did
        offset = end + 1;
        while (offset < text.size() && (static_cast<unsigned char>(text[offset]) & 0xC0) == 0x80) ++offset;
        continue;
      }
      on_piece(text.substr(start, end - start));
      offset = end;
    }
  }

 private:
  static std::string error_message(int code) {
    PCRE2_UCHAR buffer[256];
    pcre2_get_error_message(code, buffer, sizeof buffer);
    return reinterpret_cast<const char*>(buffer);
  }
  void release() {
    if (stack_) pcre2_jit_stack_free(stack_);
    if (context_) pcre2_match_context_free(context_);
    if (match_data_) pcre2_match_data_free(match_data_);
    if (code_) pcre2_code_free(code_);
    stack_ = nullptr, context_ = nullptr, match_data_ = nullptr, code_ = nullptr;
  }
  pcre2_code* code_ = nullptr;
  pcre2_match_data* match_data_ = nullptr;
  pcre2_match_context* context_ = nullptr;
  pcre2_jit_stack* stack_ = nullptr;
  bool jit_ = false;
};

// What a vocabulary source provides, before it is checked and indexed.
struct BpeSource {
  std::vector<std::pair<std::string, int64_t>> vocab;     // byte-level text -> id
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::string vocab_file;                                  // for messages
  std::function<std::string(size_t)> merge_location;       // "DIR/merges.txt line 7"
  std::string description;
};

class ByteLevelBpeTokenizer final : public Tokenizer {
 public:
  ByteLevelBpeTokenizer(BpeSource source, const AddedTokens& added)
      : Tokenizer(TokenizerFamily::byte_level_bpe, added), regex_(kQwen2PatternForPcre2) {
    index_vocabulary(source);
    index_merges(source);
    description_ = source.description + ": " + std::to_string(vocabulary_size_) + " tokens, " +
                   std::to_string(merge_count_) + " merges, " + std::to_string(added.list().size()) + " added tokens";
  }

  std::string describe() const override { return "byte-level BPE (" + description_ + ")"; }

  void merge(std::string_view piece, BpeMergeLoop loop, std::vector<int64_t>& ids) const {
    if (piece.empty()) return;
    if (loop == BpeMergeLoop::automatic) loop = piece.size() <= kScanLimit ? BpeMergeLoop::scan : BpeMergeLoop::heap;
    if (loop == BpeMergeLoop::scan)
      merge_by_scan(piece, ids);
    else
      merge_by_heap(piece, ids);
  }

  std::vector<std::string> pretokenize(std::string_view text) const {
    std::lock_guard lock(mutex_);
    std::vector<std::string> pieces;
    regex_.for_each_piece(text, [&](std::string_view piece) { pieces.emplace_back(piece); });
    return pieces;
  }

 protected:
  std::string_view normalize(std::string_view text, std::string& storage) const override {
    return nfc_normalize(text, storage);
  }

  void encode_ordinary(std::string_view text, std::vector<int64_t>& ids) const override {
    std::lock_guard lock(mutex_);
    regex_.for_each_piece(text, [&](std::string_view piece) {
      if (piece.size() == 1) {  // a single byte is always its own token; skip the cache
        ids.push_back(byte_token_[static_cast<unsigned char>(piece[0])]);
        return;
      }
      const uint64_t hash = WordCache::hash(piece);
      WordCache::Ids cached;
      if (cache_.find(piece, hash, cached)) {
        ids.insert(ids.end(), cached.data, cached.data + cached.count);
        return;
      }
      const size_t first = ids.size();
      merge(piece, BpeMergeLoop::automatic, ids);
      cache_.insert(piece, hash, ids.data() + first, ids.size() - first);
    });
  }

  void decode_ordinary(const int64_t* ids, size_t count, std::string& text) const override {
    std::string bytes;
    for (size_t i = 0; i < count; ++i) {
      if (!present_[static_cast<size_t>(ids[i])])
        throw std::out_of_range("decode: id " + std::to_string(ids[i]) + " is not in the vocabulary");
      bytes += token_bytes_[static_cast<size_t>(ids[i])];
    }
    append_utf8_replacing_invalid(bytes, text);  // as the slow tokenizer's errors="replace"
  }

  int64_t model_token_id(std::string_view token) const override {
    std::string bytes;
    if (!byte_level_alphabet().to_bytes(token, bytes)) return -1;
    return index_.find(token_bytes_, bytes);
  }
  std::string model_token(int64_t id) const override {
    if (!present_[static_cast<size_t>(id)]) throw std::out_of_range("token: id " + std::to_string(id) + " is not in the vocabulary");
    return byte_level_alphabet().to_text(token_bytes_[static_cast<size_t>(id)]);
  }
  int64_t model_size() const override { return static_cast<int64_t>(token_bytes_.size()); }

 private:
  // Pieces up to this many bytes merge by scanning (cheapest for the short words that dominate);
  // longer ones (long CJK runs, whitespace) use the heap, whose cost grows as n log n.
  static constexpr size_t kScanLimit = 48;

  void index_vocabulary(const BpeSource& source) {
    const ByteLevelAlphabet& alphabet = byte_level_alphabet();
    int64_t max_id = -1;
    for (const auto& [text, id] : source.vocab) max_id = std::max(max_id, id);
    if (max_id < 0) fail_in_file(source.vocab_file, "the vocabulary is empty");
    if (max_id >= (int64_t{1} << 31) - 1) fail_in_file(source.vocab_file, "token id " + std::to_string(max_id) + " is too large");
    token_bytes_.assign(static_cast<size_t>(max_id) + 1, std::string());
    present_.assign(static_cast<size_t>(max_id) + 1, false);
    for (const auto& [text, id] : source.vocab) {
      std::string& bytes = token_bytes_[static_cast<size_t>(id)];
      if (present_[static_cast<size_t>(id)])
        fail_in_file(source.vocab_file, "id " + std::to_string(id) + " is given to two tokens");
      if (!alphabet.to_bytes(text, bytes) || bytes.empty())
        fail_in_file(source.vocab_file, "token '" + text + "' (id " + std::to_string(id) + ") is not byte-level text");
      present_[static_cast<size_t>(id)] = true;
    }
    index_.build(token_bytes_, present_);
    for (const auto& [text, id] : source.vocab)
      if (index_.find(token_bytes_, token_bytes_[static_cast<size_t>(id)]) != id)
        fail_in_file(source.vocab_file, "token '" + text + "' appears twice");
    vocabulary_size_ = source.vocab.size();
    for (int b = 0; b < 256; ++b) {
      const std::string byte(1, static_cast<char>(b));
      byte_token_[b] = index_.find(token_bytes_, byte);
      if (byte_token_[b] < 0)
        fail_in_file(source.vocab_file, "byte " + std::to_string(b) + " ('" + alphabet.to_text(byte) +
                                            "') has no token; a byte-level vocabulary needs all 256");
    }
  }

  void index_merges(const BpeSource& source) {
    const ByteLevelAlphabet& alphabet = byte_level_alphabet();
    merges_.reserve(source.merges.size());
    std::string left_bytes, right_bytes;
    for (size_t rank = 0; rank < source.merges.size(); ++rank) {
      const auto& [left, right] = source.merges[rank];
      const auto id_of = [&](const std::string& text, std::string& bytes) {
        if (!alphabet.to_bytes(text, bytes))
          fail_in_file(source.merge_location(rank), "'" + text + "' is not byte-level text");
        const int32_t id = index_.find(token_bytes_, bytes);
        if (id < 0) fail_in_file(source.merge_location(rank), "'" + text + "' is not in the vocabulary (" + source.vocab_file + ")");
        return id;
      };
      const int32_t left_id = id_of(left, left_bytes), right_id = id_of(right, right_bytes);
      left_bytes += right_bytes;
      const int32_t merged = index_.find(token_bytes_, left_bytes);
      if (merged < 0)
        fail_in_file(source.merge_location(rank), "the merge '" + left + right + "' is not in the vocabulary (" + source.vocab_file + ")");
      // A repeated pair keeps its first (lowest) rank.
      if (merges_.insert(left_id, right_id, {static_cast<uint32_t>(rank), merged})) ++merge_count_;
    }
  }

  // Scan: ranks of all adjacent pairs in an array; merge the lowest (leftmost on ties), then
  // refresh the two pairs next to it. Quadratic, but with tiny constants for short pieces.
  void merge_by_scan(std::string_view piece, std::vector<int64_t>& ids) const {
    constexpr uint32_t kNone = ~uint32_t{0};
    const size_t n = piece.size();
    constexpr size_t kOnStack = 256;  // encode() stays on the stack; tests may force longer pieces here
    static_assert(kScanLimit <= kOnStack);
    int32_t symbols_on_stack[kOnStack], merged_on_stack[kOnStack];
    uint32_t ranks_on_stack[kOnStack];
    std::vector<int32_t> symbols_on_heap, merged_on_heap;
    std::vector<uint32_t> ranks_on_heap;
    if (n > kOnStack) symbols_on_heap.resize(n), merged_on_heap.resize(n), ranks_on_heap.resize(n);
    int32_t* symbols = n > kOnStack ? symbols_on_heap.data() : symbols_on_stack;
    int32_t* merged = n > kOnStack ? merged_on_heap.data() : merged_on_stack;
    uint32_t* ranks = n > kOnStack ? ranks_on_heap.data() : ranks_on_stack;
    size_t count = n;
    for (size_t i = 0; i < n; ++i) symbols[i] = byte_token_[static_cast<unsigned char>(piece[i])];
    const auto refresh = [&](size_t i) {  // the pair (symbols[i], symbols[i + 1])
      const MergeTable::Merge* m = merges_.find(symbols[i], symbols[i + 1]);
      ranks[i] = m ? m->rank : kNone;
      merged[i] = m ? m->merged : -1;
    };
    for (size_t i = 0; i + 1 < count; ++i) refresh(i);
    while (count > 1) {
      size_t best = 0;
      for (size_t i = 1; i + 1 < count; ++i)
        if (ranks[i] < ranks[best]) best = i;
      if (ranks[best] == kNone) break;
      symbols[best] = merged[best];
      const size_t tail = count - best - 2;  // pairs and symbols after the merged one shift left
      std::memmove(symbols + best + 1, symbols + best + 2, tail * sizeof(int32_t));
      std::memmove(ranks + best + 1, ranks + best + 2, (tail > 0 ? tail - 1 : 0) * sizeof(uint32_t));
      std::memmove(merged + best + 1, merged + best + 2, (tail > 0 ? tail - 1 : 0) * sizeof(int32_t));
      --count;
      if (best > 0) refresh(best - 1);
      if (best + 1 < count) refresh(best);
    }
    for (size_t i = 0; i < count; ++i) ids.push_back(symbols[i]);
  }

  // Heap: symbols in a linked list over an array; candidate pairs in a min-heap by (rank, position),
  // stale entries dropped when popped (their symbols changed since).
  void merge_by_heap(std::string_view piece, std::vector<int64_t>& ids) const {
    struct Symbol {
      int32_t id, prev, next;
    };
    struct Candidate {
      uint32_t rank;
      int32_t position, left, right, merged;
      bool operator>(const Candidate& other) const {
        return rank != other.rank ? rank > other.rank : position > other.position;
      }
    };
    const int32_t n = static_cast<int32_t>(piece.size());
    thread_local std::vector<Symbol> symbols;  // reused: no allocation per piece
    thread_local std::vector<Candidate> heap;
    symbols.resize(static_cast<size_t>(n));
    heap.clear();
    for (int32_t i = 0; i < n; ++i)
      symbols[static_cast<size_t>(i)] = {byte_token_[static_cast<unsigned char>(piece[static_cast<size_t>(i)])], i - 1, i + 1 < n ? i + 1 : -1};
    const auto consider = [&](int32_t position) {  // the pair (position, its next)
      const Symbol& left = symbols[static_cast<size_t>(position)];
      if (left.next < 0) return;
      const Symbol& right = symbols[static_cast<size_t>(left.next)];
      if (const MergeTable::Merge* m = merges_.find(left.id, right.id)) {
        heap.push_back({m->rank, position, left.id, right.id, m->merged});
        std::push_heap(heap.begin(), heap.end(), std::greater<>());
      }
    };
    for (int32_t i = 0; i + 1 < n; ++i) consider(i);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), std::greater<>());
      const Candidate top = heap.back();
      heap.pop_back();
      Symbol& left = symbols[static_cast<size_t>(top.position)];
      if (left.id != top.left || left.next < 0 || symbols[static_cast<size_t>(left.next)].id != top.right) continue;
      Symbol& right = symbols[static_cast<size_t>(left.next)];
      left.id = top.merged;
      left.next = right.next;
      if (right.next >= 0) symbols[static_cast<size_t>(right.next)].prev = top.position;
      right.id = -1;  // gone; stale candidates that name it fail the check above
      if (left.prev >= 0) consider(left.prev);
      consider(top.position);
    }
    for (int32_t i = 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) ids.push_back(symbols[static_cast<size_t>(i)].id);
  }

  std::vector<std::string> token_bytes_;  // raw bytes of each id
  std::vector<bool> present_;             // ids that vocab.json defines
  TokenIndex index_;                      // bytes -> id
  int32_t byte_token_[256] = {};
  MergeTable merges_;
  size_t vocabulary_size_ = 0, merge_count_ = 0;
  std::string description_;

  mutable std::mutex mutex_;  // guards the cache and the regex's match data
  mutable PretokenizerRegex regex_;
  mutable WordCache cache_;
};

const ByteLevelBpeTokenizer& as_bpe(const Tokenizer& tokenizer) {
  const auto* bpe = dynamic_cast<const ByteLevelBpeTokenizer*>(&tokenizer);
  if (!bpe) throw std::invalid_argument("not a byte-level BPE tokenizer: " + tokenizer.describe());
  return *bpe;
}

// vocab.json is one flat object of 150k entries: read it with SAX events straight into the source,
// without building a DOM (which would be most of the loading time).
class VocabReader : public nlohmann::json_sax<nlohmann::json> {
 public:
  VocabReader(std::string path, BpeSource& source) : path_(std::move(path)), source_(source) {}
  bool start_object(std::size_t) override {
    if (depth_++ > 0) return value_error("an object");
    return true;
  }
  bool end_object() override {
    --depth_;
    return true;
  }
  bool key(string_t& text) override {
    key_ = std::move(text);
    return true;
  }
  bool number_unsigned(number_unsigned_t value) override {
    if (depth_ == 0) return value_error("a number");
    source_.vocab.emplace_back(std::move(key_), static_cast<int64_t>(value));
    return true;
  }
  bool number_integer(number_integer_t value) override {
    return value < 0 ? value_error(std::to_string(value)) : number_unsigned(static_cast<number_unsigned_t>(value));
  }
  bool number_float(number_float_t, const string_t& text) override { return value_error(text); }
  bool null() override { return value_error("null"); }
  bool boolean(bool) override { return value_error("a boolean"); }
  bool string(string_t& text) override { return value_error("\"" + text + "\""); }
  bool binary(binary_t&) override { return value_error("binary data"); }
  bool start_array(std::size_t) override { return value_error("an array"); }
  bool end_array() override { return true; }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& error) override {
    fail_in_file(path_, "not valid JSON (" + std::string(error.what()) + "); is the file truncated?");
  }

 private:
  bool value_error(const std::string& found) {
    if (depth_ == 0) fail_in_file(path_, "expected the vocabulary as a JSON object {\"token\": id}, found " + found);
    fail_in_file(path_, "token '" + key_ + "': expected a non-negative integer id, found " + found);
  }
  std::string path_, key_;
  BpeSource& source_;
  int depth_ = 0;
};

void read_vocab_object(const nlohmann::json& vocab, const std::string& where, BpeSource& source) {
  if (!vocab.is_object()) fail_in_file(where, "expected the vocabulary as a JSON object {\"token\": id}");
  source.vocab.reserve(vocab.size());
  for (const auto& [text, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0)
      fail_in_file(where, "token '" + text + "': expected a non-negative integer id, found " + id.dump());
    source.vocab.emplace_back(text, id.get<int64_t>());
  }
}

// tokenizer.json must describe the algorithm this file implements; anything else would tokenize
// differently without a word of warning.
void check_tokenizer_json_algorithm(const nlohmann::json& json, const std::string& path) {
  const nlohmann::json& model = json["model"];
  if (model.contains("type") && model["type"] != "BPE")
    fail_in_file(path, "model.type is " + model["type"].dump() + "; only byte-level BPE is read from tokenizer.json");
  const auto non_default = [&](const char* key, const nlohmann::json& fine) {
    return model.contains(key) && !model[key].is_null() && model[key] != fine;
  };
  if (non_default("continuing_subword_prefix", "") || non_default("end_of_word_suffix", "") ||
      non_default("byte_fallback", false) || non_default("ignore_merges", false) || non_default("dropout", 0.0))
    fail_in_file(path, "model options other than plain BPE (subword prefix/suffix, byte_fallback, ignore_merges, dropout) are not supported");
  bool byte_level = false, qwen2_split = false, other_split = false;
  std::function<void(const nlohmann::json&)> visit = [&](const nlohmann::json& node) {
    if (node.is_object()) {
      if (node.contains("type") && node["type"] == "ByteLevel") {
        byte_level = true;
        if (node.contains("use_regex") && node["use_regex"] == true) other_split = true;  // GPT-2's own regex
      }
      if (node.contains("type") && node["type"] == "Split") {
        const auto* pattern = node.contains("pattern") && node["pattern"].contains("Regex") ? &node["pattern"]["Regex"] : nullptr;
        (pattern && *pattern == kQwen2PretokenizerPattern ? qwen2_split : other_split) = true;
      }
      for (const auto& [key, child] : node.items()) visit(child);
    } else if (node.is_array()) {
      for (const auto& child : node) visit(child);
    }
  };
  if (json.contains("pre_tokenizer")) visit(json["pre_tokenizer"]);
  if (!byte_level || !qwen2_split || other_split)
    fail_in_file(path, "the pre-tokenizer is not Qwen2's (a Split with its regex, then ByteLevel without regex); "
                       "only that byte-level BPE is supported");
}

}  // namespace

std::unique_ptr<Tokenizer> load_byte_level_bpe(const std::string& vocab_json_path, const std::string& merges_txt_path,
                                               const AddedTokens& added) {
  BpeSource source;
  source.vocab_file = vocab_json_path;
  {
    const std::string text = read_text_file(vocab_json_path);
    VocabReader reader(vocab_json_path, source);
    source.vocab.reserve(text.size() / 16);
    nlohmann::json::sax_parse(text, &reader);
  }

  // merges.txt: one "left right" pair per line in rank order, after an optional "#version" line.
  const std::string text = read_text_file(merges_txt_path);
  std::vector<size_t> line_numbers;
  size_t line_number = 0;
  for (size_t start = 0; start < text.size();) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + start, end - start);
    ++line_number;
    start = end + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
    if (line.empty() || (line_number == 1 && line.starts_with("#version"))) continue;
    const size_t space = line.find(' ');
    if (space == std::string_view::npos || space == 0 || line.find(' ', space + 1) != std::string_view::npos)
      fail_in_file(merges_txt_path + " line " + std::to_string(line_number),
                   "expected two tokens separated by one space, found '" + std::string(line) + "'");
    source.merges.emplace_back(std::string(line.substr(0, space)), std::string(line.substr(space + 1)));
    line_numbers.push_back(line_number);
  }
  source.merge_location = [merges_txt_path, line_numbers](size_t rank) {
    return merges_txt_path + " line " + std::to_string(line_numbers[rank]);
  };
  source.description = "vocab.json + merges.txt";
  return std::make_unique<ByteLevelBpeTokenizer>(std::move(source), added);
}

std::unique_ptr<Tokenizer> load_byte_level_bpe(const nlohmann::json& json, const std::string& path, const AddedTokens& added) {
  if (!json.contains("model") || !json["model"].is_object()) fail_in_file(path, "no \"model\" object");
  check_tokenizer_json_algorithm(json, path);
  const nlohmann::json& model = json["model"];
  BpeSource source;
  source.vocab_file = path;
  if (!model.contains("vocab")) fail_in_file(path, "model.vocab is missing");
  read_vocab_object(model["vocab"], path + ": model.vocab", source);
  if (!model.contains("merges") || !model["merges"].is_array()) fail_in_file(path, "model.merges: expected an array");
  const nlohmann::json& merges = model["merges"];
  source.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const nlohmann::json& merge = merges[i];
    const std::string where = path + ": model.merges[" + std::to_string(i) + "]";
    if (merge.is_string()) {  // "left right" (tokenizers < 0.20)
      const std::string pair = merge.get<std::string>();
      const size_t space = pair.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 == pair.size() || pair.find(' ', space + 1) != std::string::npos)
        throw std::runtime_error(where + ": expected two tokens separated by one space, found '" + pair + "'");
      source.merges.emplace_back(pair.substr(0, space), pair.substr(space + 1));
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {  // ["left", "right"]
      source.merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
    } else {
      throw std::runtime_error(where + ": expected \"left right\" or [\"left\", \"right\"], found " + merge.dump());
    }
  }
  source.merge_location = [path](size_t rank) { return path + ": model.merges[" + std::to_string(rank) + "]"; };
  source.description = "tokenizer.json";
  return std::make_unique<ByteLevelBpeTokenizer>(std::move(source), added);
}

std::vector<int64_t> byte_level_bpe_merge(const Tokenizer& tokenizer, std::string_view piece, BpeMergeLoop loop) {
  std::vector<int64_t> ids;
  as_bpe(tokenizer).merge(piece, loop, ids);
  return ids;
}

std::vector<std::string> byte_level_bpe_pretokenize(const Tokenizer& tokenizer, std::string_view text) {
  if (find_invalid_utf8(text) != std::string_view::npos) throw std::invalid_argument("pretokenize: the text is not valid UTF-8");
  return as_bpe(tokenizer).pretokenize(text);
}

}  // namespace ivl
