// Choosing the next token from a row of logits, as HF transformers' generate() does (4.37): the
// logits processors (repetition penalty, the minimum length), then for sampling the warpers
// (temperature, top-k, top-p) and a draw; greedy takes the argmax of the processed logits.
//
// The draw is counter-based: the uniform number for step t of sample s is Philox(seed, s, t), so a
// sample is the same text whatever batch it runs in and whatever ran before it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ivl {

struct SamplingOptions {
  bool do_sample = false;  // false (or temperature 0): greedy
  double temperature = 1.0;
  int64_t top_k = 50;  // 0: off (HF's default 50 applies only when sampling)
  double top_p = 1.0;  // 1: off
  double repetition_penalty = 1.0;  // over the tokens generated so far (the prompt arrives as embeddings)
  int64_t max_new_tokens = 128, min_new_tokens = 0;
  uint64_t seed = 0;
  bool greedy() const { return !do_sample || temperature == 0; }
  // A message naming the first out-of-range value ("" when all are valid).
  std::string invalid() const;
};

// HF's RepetitionPenaltyLogitsProcessor: each token already generated has its logit divided by the
// penalty when positive, multiplied when negative (once per distinct token).
void apply_repetition_penalty(std::vector<float>& logits, const std::vector<int64_t>& generated, double penalty);
// TopKLogitsWarper: logits below the k-th largest become -inf (ties with it stay).
void apply_top_k(std::vector<float>& logits, int64_t k);
// TopPLogitsWarper: sorted ascending, the tokens whose cumulative probability is <= 1 - p become
// -inf, always keeping the most likely one.
void apply_top_p(std::vector<float>& logits, double p);

// The next token of sample `sample_id` at `step` (0 for the first new token) from `logits` (one
// row, f32), after `generated` so far; `eos_ids` are held back while step < min_new_tokens.
int64_t choose_token(std::vector<float> logits, const std::vector<int64_t>& generated, const std::vector<int64_t>& eos_ids,
                     const SamplingOptions& options, uint64_t sample_id, int64_t step);

// Uniform in [0, 1) with 53 random bits: the draw of (seed, sample, step).
double sample_uniform(uint64_t seed, uint64_t sample_id, int64_t step);

}  // namespace ivl
