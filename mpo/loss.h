// The MPO objective (mpo_and_mmpr.md section 1): for pairs i with policy and reference sequence
// log-probs of the chosen (c) and rejected (r) responses,
//   DPO sigmoid:  L_p = -log sigmoid(beta * ((pc - rc) - (pr - rr)))
//   BCO pair:     L_q = -log sigmoid(beta (pc - rc) - delta) - log sigmoid(-(beta (pr - rr) - delta)),
//                 delta = the running mean of the per-batch mean reward, updated before use, no gradient
//   SFT:          pooled over the batch, -(sum of chosen log-probs) / (chosen tokens) (the official
//                 trainer), or per pair, -pc / |y_c| averaged (the paper's form)
//   loss = w_p mean(L_p) + w_q mean(L_q) + w_g SFT   (official weights 0.8, 0.2, 1.0; beta 0.1)
// The loss is a pure function of its inputs and delta. The shift lives outside it (RewardShift),
// updated by the MPO step (mpo/step.h), which knows about accumulation and processes.
#pragma once
#include "tensor/ops.h"

namespace ivl {

// TRL's RunningMoments as used for the BCO reward shift: a cumulative mean of the values it is
// given (its first update sets the mean, count starting at 1e-24), so delta after k updates = the
// mean of k batch means. Its state goes into checkpoints so that a resumed run continues the shift.
struct RewardShift {
  double mean = 0, var = 1, count = 1e-24;
  // One update with n values of mean x_mean and population variance x_var: one process gives its
  // batch mean (n = 1, x_var = 0); W processes give the mean and spread of their W batch means, n = W
  // (spec 1.6), so every process ends with the same shift.
  void update(double x_mean, double x_var = 0, double n = 1);
};

struct MpoConfig {
  double beta = 0.1;
  double weight_dpo = 0.8, weight_bco = 0.2, weight_sft = 1.0;
  bool sft_pooled = true;  // false: the per-pair (paper) form
};

struct MpoInputs {
  Tensor policy_chosen, policy_rejected;  // [P] sequence log-probs, differentiable
  Tensor ref_chosen, ref_rejected;        // [P], constants
  Tensor chosen_tokens;                   // [P] response token counts of the chosen sequences
};

struct MpoLoss {
  Tensor loss;                     // scalar
  Tensor dpo, bco;                 // [P] per pair
  Tensor sft_pooled;               // scalar
  Tensor sft_per_pair;             // [P]
  double delta = 0;                // the reward shift used
  Tensor chosen_rewards, rejected_rewards;  // [P], detached: beta * (policy - ref)
};

// The batch's mean reward: the mean of the 2P rewards beta * (policy - ref), chosen and rejected.
double batch_reward_mean(const MpoInputs& inputs, const MpoConfig& config);

// Every term, with the reward shift `delta` (a constant: it carries no gradient).
MpoLoss mpo_loss(const MpoInputs& inputs, const MpoConfig& config, double delta);

}  // namespace ivl
