// One MPO micro-step on a batch of preference pairs, the one piece that `ivl check`, the trainer and
// the benchmarks call: the policy forward (each pair's image encoded once, both responses spliced
// from it), the sequence log-probs from the scored rows only, the chosen/rejected rows, the batch's
// mean reward into the reward shift, the loss, and its backward (scaled, for accumulation).
// The reference log-probs come from reference_logps() on the frozen model, or from a cache.
// Shapes: P pairs, 2P rows of T positions; pixel_values [tiles, 3, S, S].
#pragma once
#include <functional>
#include <vector>

#include "internvl/internvl_chat.h"
#include "mpo/logps.h"
#include "mpo/loss.h"

namespace ivl {

struct MpoBatch {
  Tensor pixel_values;                     // [tiles, 3, S, S], f32; undefined when no row has an image
  std::vector<TileSpan> row_tiles;         // per row; empty: the official layout (tiles consumed in row order)
  Tensor input_ids, attention_mask, labels;  // [2P, T]
  std::vector<int64_t> chosen_rows, rejected_rows;  // P each: pair i is (chosen_rows[i], rejected_rows[i])
  int64_t image_context_id = -1;
};

// How the shift hears of a micro-batch's mean reward (only when a bco_pair term is in the loss). One process updates it with its own mean;
// several processes first gather every rank's mean, then update with their mean, spread and count
// (RewardShift::update), so that all ranks keep the same shift.
using ShiftUpdate = std::function<void(RewardShift& shift, double local_batch_mean)>;
void update_shift_one_process(RewardShift& shift, double local_batch_mean);

struct MpoStepOptions {
  MpoConfig loss;
  double loss_scale = 1;           // backward of loss * scale (1 / accumulation steps)
  bool backward = true;            // false: forward and loss only
  Generator* drop_path = nullptr;  // the ViT's stochastic depth (training), or none
  int64_t logps_chunk = 256;       // rows per head + log-softmax chunk
  bool keep_activations = false;   // return the policy's image tokens and hidden states (for checks)
  bool logits_means = false;       // compute the logits/* metrics (one [H] product per row)
  ShiftUpdate update_shift = update_shift_one_process;
};

struct MpoStepResult {
  MpoLoss loss;                    // tensors detached after backward
  SequenceLogps policy;            // [2P], detached, in row order (piece after piece)
  Tensor reference;                // [2P], in the same order
  MpoInputs pairs;                 // [P] each, pair by pair (piece after piece), detached
  double batch_reward_mean = 0;    // this micro-batch's, before the shift took it in
  // With logits_means: the mean of every logit of the chosen (rejected) rows, prompt and padding
  // included, as the official logits/chosen (logits/rejected) metric.
  double logits_mean_chosen = 0, logits_mean_rejected = 0;
  Tensor image_tokens, hidden;     // with keep_activations: [tiles, tokens, H] and [2P, T, H], detached
};

// The reference model's sequence log-probs of the batch, without gradient: [2P].
Tensor reference_logps(const InternVLChat& reference, const MpoBatch& batch, int64_t chunk = 256);

// The step. Gradients accumulate into the policy parameters' .grad (nothing is zeroed here).
MpoStepResult mpo_step(const InternVLChat& policy, const MpoBatch& batch, const Tensor& reference_logps,
                       RewardShift& shift, const MpoStepOptions& options = {});
// The same over a micro-batch made of pieces forwarded one by one (the trainer makes one piece per
// pair, so that a pair's log-probs do not depend on the pairs it is batched with: the reference then
// comes out bit for bit the same on the fly and from a cache, and a policy equal to the reference
// gives rewards of exactly 0). The loss, the reward mean and the backward take all pieces at once;
// references[k] is piece k's [rows].
MpoStepResult mpo_step(const InternVLChat& policy, const std::vector<MpoBatch>& pieces, const std::vector<Tensor>& references,
                       RewardShift& shift, const MpoStepOptions& options = {});

}  // namespace ivl
