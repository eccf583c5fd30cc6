// Reference log-probs computed once and kept in a file, so that training reads them instead of running
// the frozen reference model (half the forwards, and the reference weights need not be in memory).
// Each pair's entry is keyed by a fingerprint of what its log-probs depend on: the pair's tokens,
// labels and pixels. The file as a whole is keyed by the reference weights, the tokenizer and the
// template; a file made for anything else is refused, never silently used.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "mpo/pairs.h"

namespace ivl {

// 64-bit fingerprints (not cryptographic: they detect stale files, they do not resist forgery).
uint64_t fingerprint_bytes(const void* data, size_t size, uint64_t seed = 0);
uint64_t fingerprint_pair(const PreferencePair& pair);
// The files of a tokenizer (vocab, merges, tokenizer.model / .json, the added tokens and configs).
uint64_t fingerprint_tokenizer_files(const std::string& model_dir);

struct ReferenceKey {
  uint64_t weights = 0, tokenizer = 0;
  std::string template_name;
  bool operator==(const ReferenceKey&) const = default;
  std::string str() const;
};

struct ReferenceEntry {
  double chosen = 0, rejected = 0;
};

class ReferenceCache {
 public:
  ReferenceCache() = default;
  explicit ReferenceCache(const ReferenceKey& key) : key_(key) {}
  // Reads a cache file; throws when it was made for another reference, tokenizer or template, naming
  // which and how to make a fresh one.
  static ReferenceCache load(const std::string& path, const ReferenceKey& expected);
  void save(const std::string& path) const;  // atomically

  const ReferenceKey& key() const { return key_; }
  size_t size() const { return entries_.size(); }
  void put(uint64_t pair_fingerprint, ReferenceEntry entry) { entries_[pair_fingerprint] = entry; }
  const ReferenceEntry* find(uint64_t pair_fingerprint) const;

 private:
  ReferenceKey key_;
  std::unordered_map<uint64_t, ReferenceEntry> entries_;
};

// The reference log-probs of one pair: the pair alone as a micro-batch of one (so that on the fly and
// cached give the same bits whatever the batch a pair trains in), [chosen, rejected].
ReferenceEntry pair_reference_logps(const InternVLChat& reference, const PreferencePair& pair, const CollateOptions& collate);

}  // namespace ivl
