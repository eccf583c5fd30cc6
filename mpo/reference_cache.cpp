// The reference log-prob cache (see reference_cache.h).
#include "mpo/reference_cache.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "nn/safetensors.h"

namespace ivl {

uint64_t fingerprint_bytes(const void* data, size_t size, uint64_t seed) {
  // Eight bytes at a time through a multiply-xorshift mix (the finaliser of splitmix64): fast enough
  // for a whole model's weights, and every input bit reaches every output bit.
  auto mix = [](uint64_t x) {
    x ^= x >> 30, x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27, x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  };
  const auto* bytes = static_cast<const uint8_t*>(data);
  uint64_t h = mix(seed ^ 0x9e3779b97f4a7c15ULL ^ size);
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t word;
    std::memcpy(&word, bytes + i, 8);
    h = mix(h ^ word) + 0x9e3779b97f4a7c15ULL;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, bytes + i, size - i);
  return mix(h ^ tail ^ (static_cast<uint64_t>(size - i) << 56));
}

static uint64_t fingerprint_ids(const std::vector<int64_t>& values, uint64_t seed) {
  return fingerprint_bytes(values.data(), values.size() * sizeof(int64_t), seed);
}

uint64_t fingerprint_pair(const PreferencePair& pair) {
  uint64_t h = fingerprint_ids(pair.chosen.input_ids, 1);
  h = fingerprint_ids(pair.chosen.labels, h);
  h = fingerprint_ids(pair.rejected.input_ids, h);
  h = fingerprint_ids(pair.rejected.labels, h);
  if (pair.pixel_values.defined()) {
    const Tensor pixels = pair.pixel_values.contiguous();
    h = fingerprint_bytes(pixels.data_ptr(), pixels.nbytes(), h);
  }
  return h;
}

uint64_t fingerprint_tokenizer_files(const std::string& model_dir) {
  uint64_t h = 0;
  for (const char* name : {"vocab.json", "merges.txt", "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "added_tokens.json",
                           "special_tokens_map.json"}) {
    const std::filesystem::path path = std::filesystem::path(model_dir) / name;
    if (!std::filesystem::exists(path)) continue;
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    h = fingerprint_bytes(name, std::strlen(name), h);
    h = fingerprint_bytes(bytes.data(), bytes.size(), h);
  }
  return h;
}

static std::string hex(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(value));
  return text;
}

std::string ReferenceKey::str() const { return "weights " + hex(weights) + ", tokenizer " + hex(tokenizer) + ", template " + template_name; }

ReferenceCache ReferenceCache::load(const std::string& path, const ReferenceKey& expected) {
  const SafetensorsFile file(path);
  const auto& meta = file.metadata();
  auto field = [&](const char* name) {
    const auto it = meta.find(name);
    if (it == meta.end()) fail(path + " is not a reference log-prob cache (no '" + name + "' in its metadata)");
    return it->second;
  };
  if (field("format") != "ivl-reference-logps-1") fail(path + " is not a reference log-prob cache of this version");
  ReferenceKey key;
  key.weights = std::stoull(field("reference_weights"), nullptr, 16);
  key.tokenizer = std::stoull(field("tokenizer"), nullptr, 16);
  key.template_name = field("template");
  if (!(key == expected))
    fail(path + " was made for " + key.str() + ", but this run has " + expected.str() +
         ": it belongs to another reference model, tokenizer or template. Delete it, or make a new one (ivl ref-logps, or "
         "train-mpo --precompute_ref_log_probs)");
  ReferenceCache cache(key);
  const Tensor pairs = file.get("pair_fingerprint"), chosen = file.get("chosen_logps"), rejected = file.get("rejected_logps");
  if (pairs.dtype() != DType::i64 || chosen.dtype() != DType::f64 || rejected.dtype() != DType::f64 || pairs.dim() != 1 ||
      chosen.shape() != pairs.shape() || rejected.shape() != pairs.shape())
    fail(path + ": expected pair_fingerprint i64 [N] and chosen_logps, rejected_logps f64 [N]");
  const auto* p = pairs.data<int64_t>();
  const auto* c = chosen.data<double>();
  const auto* r = rejected.data<double>();
  for (int64_t i = 0; i < pairs.numel(); ++i) cache.put(static_cast<uint64_t>(p[i]), {c[i], r[i]});
  return cache;
}

void ReferenceCache::save(const std::string& path) const {
  std::vector<int64_t> pairs;
  std::vector<double> chosen, rejected;
  for (const auto& [fingerprint, entry] : entries_)
    pairs.push_back(static_cast<int64_t>(fingerprint)), chosen.push_back(entry.chosen), rejected.push_back(entry.rejected);
  const auto n = static_cast<int64_t>(pairs.size());
  save_safetensors(path,
                   {{"pair_fingerprint", Tensor::from_vector(pairs, {n})},
                    {"chosen_logps", Tensor::from_vector(chosen, {n})},
                    {"rejected_logps", Tensor::from_vector(rejected, {n})}},
                   {{"format", "ivl-reference-logps-1"},
                    {"reference_weights", hex(key_.weights)},
                    {"tokenizer", hex(key_.tokenizer)},
                    {"template", key_.template_name}});
}

const ReferenceEntry* ReferenceCache::find(uint64_t pair_fingerprint) const {
  const auto it = entries_.find(pair_fingerprint);
  return it == entries_.end() ? nullptr : &it->second;
}

ReferenceEntry pair_reference_logps(const InternVLChat& reference, const PreferencePair& pair, const CollateOptions& collate) {
  const MpoBatch batch = collate_pairs({&pair}, collate);
  const std::vector<double> logps = reference_logps(reference, batch).to_doubles();
  return {logps[0], logps[1]};
}

}  // namespace ivl
