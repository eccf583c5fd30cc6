// The MPO objective (mpo_and_mmpr.md section 1): for pairs i with policy and reference sequence
// log-probs of the chosen (c) and rejected (r) responses,
//   with u = (pc - rc) - (pr - rr), the preference terms of TRL 0.9.6's dpo_loss:
//   sigmoid:   -(1 - ls) log sigmoid(beta u) - ls log sigmoid(-beta u)   (ls: label smoothing, cDPO)
//   hinge:     relu(1 - beta u)
//   ipo:       (u - 1 / (2 beta))^2, on length-normalised log-probs when it is the only term
//   bco_pair:  -log sigmoid(beta (pc - rc) - delta) - log sigmoid(-(beta (pr - rr) - delta)),
//              delta = the running mean of the per-batch mean reward, updated before use, no gradient
//   SFT:       pooled over the batch, -(sum of chosen log-probs) / (chosen tokens) (the official
//              trainer), or per pair, -pc / |y_c| averaged (the paper's form)
//   loss = mean_i(sum_k w_k L_k,i) + w_g SFT   (MPO: sigmoid 0.8 + bco_pair 0.2, w_g = rpo_alpha 1, beta 0.1)
// The loss is a pure function of its inputs and delta. The shift lives outside it (RewardShift),
// updated by the MPO step (mpo/step.h), which knows about accumulation and processes.
#pragma once
#include <functional>
#include <string>
#include <vector>

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

enum class PreferenceLoss { sigmoid, hinge, ipo, bco_pair };
const char* preference_loss_name(PreferenceLoss type);  // the --loss_type spelling

struct PreferenceTerm {
  PreferenceLoss type = PreferenceLoss::sigmoid;
  double weight = 1;
};

// --loss_type as the official trainer reads it: one name (its weight is 1 whatever the weight
// flags say, as the official single-type path never reads them), or names joined by ',' each
// weighted by weight_of(name) (the official <type>_loss_weight). Unknown or repeated names throw.
std::vector<PreferenceTerm> parse_loss_types(const std::string& list, const std::function<double(const std::string& name)>& weight_of);

// MPO's terms: sigmoid 0.8, bco_pair 0.2 (the official --loss_type and weights).
std::vector<PreferenceTerm> mpo_preference_terms();

struct MpoConfig {
  double beta = 0.1;
  std::vector<PreferenceTerm> terms = mpo_preference_terms();
  double weight_sft = 1.0;       // rpo_alpha; 0 leaves the generation term out
  double label_smoothing = 0;    // of the sigmoid term
  // The preference terms see log-probs divided by the response length (the official trainer does
  // this when loss_type is exactly "ipo"). The SFT term always uses the sums.
  bool length_normalized = false;
  bool sft_pooled = true;        // false: the per-pair (paper) form
  bool uses_shift() const;       // a bco_pair term is present: the reward shift is updated and read
  double reward_weight() const;  // the sum of the term weights, by which the logged rewards are scaled
};

struct MpoInputs {
  Tensor policy_chosen, policy_rejected;  // [P] sequence log-probs, differentiable
  Tensor ref_chosen, ref_rejected;        // [P], constants
  Tensor chosen_tokens;                   // [P] response token counts of the chosen sequences
  Tensor rejected_tokens;                 // [P], needed only with length_normalized
};

struct MpoLoss {
  Tensor loss;                      // scalar
  Tensor dpo, bco, hinge, ipo;      // [P] per pair, unweighted; undefined for the terms not in the config
  Tensor preference;                // [P]: sum_k w_k L_k
  Tensor sft_pooled;                // scalar
  Tensor sft_per_pair;              // [P]
  double delta = 0;                 // the reward shift used
  Tensor chosen_rewards, rejected_rewards;  // [P], detached: beta * (policy - ref), normalised as the terms see them
};

// The batch's mean reward: the mean of the 2P rewards beta * (policy - ref), chosen and rejected
// (length-normalised under length_normalized, as the terms see them).
double batch_reward_mean(const MpoInputs& inputs, const MpoConfig& config);

// Every term, with the reward shift `delta` (a constant: it carries no gradient).
MpoLoss mpo_loss(const MpoInputs& inputs, const MpoConfig& config, double delta);

}  // namespace ivl
