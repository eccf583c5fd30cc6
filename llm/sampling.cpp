// The logits processors, warpers and the counter-based draw (see sampling.h).
#include "llm/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>

#include "tensor/random.h"

namespace ivl {

static constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

std::string SamplingOptions::invalid() const {
  if (!(temperature >= 0) || !std::isfinite(temperature)) return "temperature must be finite and >= 0, got " + std::to_string(temperature);
  if (top_k < 0) return "top_k must be >= 0 (0 turns it off), got " + std::to_string(top_k);
  if (!(top_p > 0 && top_p <= 1)) return "top_p must be in (0, 1], got " + std::to_string(top_p);
  if (!(repetition_penalty > 0) || !std::isfinite(repetition_penalty))
    return "repetition_penalty must be finite and > 0, got " + std::to_string(repetition_penalty);
  if (max_new_tokens < 1) return "max_new_tokens must be >= 1, got " + std::to_string(max_new_tokens);
  if (min_new_tokens < 0 || min_new_tokens > max_new_tokens)
    return "min_new_tokens must be in [0, max_new_tokens], got " + std::to_string(min_new_tokens);
  return "";
}

void apply_repetition_penalty(std::vector<float>& logits, const std::vector<int64_t>& generated, double penalty) {
  if (penalty == 1.0) return;
  const auto p = static_cast<float>(penalty);
  for (const int64_t token : std::set<int64_t>(generated.begin(), generated.end())) {
    if (token < 0 || token >= static_cast<int64_t>(logits.size())) continue;
    float& x = logits[static_cast<size_t>(token)];
    x = x < 0 ? x * p : x / p;
  }
}

void apply_top_k(std::vector<float>& logits, int64_t k) {
  if (k <= 0 || k >= static_cast<int64_t>(logits.size())) return;
  std::vector<float> sorted = logits;
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(), std::greater<float>());
  const float kth = sorted[static_cast<size_t>(k - 1)];
  for (float& x : logits)
    if (x < kth) x = kMinusInf;
}

void apply_top_p(std::vector<float>& logits, double p) {
  if (p >= 1.0 || logits.empty()) return;
  std::vector<size_t> order(logits.size());
  std::iota(order.begin(), order.end(), size_t{0});
  // Ascending, as torch.sort; ties in index order (a stable sort).
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return logits[a] < logits[b]; });
  const float top = logits[order.back()];
  double total = 0;
  for (const float x : logits) total += std::exp(static_cast<double>(x) - top);
  double cumulative = 0;
  const double threshold = 1.0 - p;
  for (size_t i = 0; i + 1 < order.size(); ++i) {  // the last (most likely) always stays
    cumulative += std::exp(static_cast<double>(logits[order[i]]) - top) / total;
    if (cumulative > threshold) break;
    logits[order[i]] = kMinusInf;
  }
}

double sample_uniform(uint64_t seed, uint64_t sample_id, int64_t step) {
  const auto words = philox4x32(seed, (sample_id << 32) ^ static_cast<uint64_t>(step));
  const uint64_t bits = (static_cast<uint64_t>(words[0]) << 21) ^ (words[1] >> 11);  // 53 bits
  return static_cast<double>(bits) * 0x1p-53;
}

int64_t choose_token(std::vector<float> logits, const std::vector<int64_t>& generated, const std::vector<int64_t>& eos_ids,
                     const SamplingOptions& options, uint64_t sample_id, int64_t step) {
  apply_repetition_penalty(logits, generated, options.repetition_penalty);
  if (step < options.min_new_tokens)
    for (const int64_t eos : eos_ids)
      if (eos >= 0 && eos < static_cast<int64_t>(logits.size())) logits[static_cast<size_t>(eos)] = kMinusInf;
  if (options.greedy())  // torch.argmax: the first of equal maxima
    return std::max_element(logits.begin(), logits.end()) - logits.begin();
  if (options.temperature != 1.0)
    for (float& x : logits) x = x / static_cast<float>(options.temperature);  // in f32, as torch divides
  apply_top_k(logits, options.top_k);
  apply_top_p(logits, options.top_p);
  const float top = *std::max_element(logits.begin(), logits.end());
  double total = 0;
  for (const float x : logits) total += std::exp(static_cast<double>(x) - top);
  const double target = sample_uniform(options.seed, sample_id, step) * total;
  double cumulative = 0;
  int64_t last_possible = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (logits[i] == kMinusInf) continue;
    cumulative += std::exp(static_cast<double>(logits[i]) - top);
    last_possible = static_cast<int64_t>(i);
    if (cumulative > target) return last_possible;
  }
  return last_possible;  // rounding left the target at the very end
}

}  // namespace ivl
