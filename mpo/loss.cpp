// The MPO loss terms (see loss.h).
#include "mpo/loss.h"

#include <cmath>

#include "tensor/autograd.h"

namespace ivl {

void RewardShift::update(double batch_mean) {
  // TRL RunningMoments.update with one value: n = 1, its variance 0.
  const double n = 1, delta_mean = batch_mean - mean, total = count + n;
  mean += delta_mean * n / total;
  var = (var * count + delta_mean * delta_mean * count * n / total) / total;
  count = total;
}

MpoLoss mpo_loss(const MpoInputs& in, const MpoConfig& config, RewardShift& shift) {
  const Shape pairs = in.policy_chosen.shape();
  for (const Tensor* t : {&in.policy_rejected, &in.ref_chosen, &in.ref_rejected, &in.chosen_tokens})
    if (t->shape() != pairs || pairs.size() != 1)
      fail("mpo_loss: every input must be [pairs], got " + in.policy_chosen.str() + " and " + t->str());
  const double beta = config.beta;
  MpoLoss out;
  const Tensor chosen_ratio = in.policy_chosen - in.ref_chosen.detach();
  const Tensor rejected_ratio = in.policy_rejected - in.ref_rejected.detach();
  out.dpo = -log_sigmoid((chosen_ratio - rejected_ratio) * beta);

  const Tensor chosen_reward = chosen_ratio * beta, rejected_reward = rejected_ratio * beta;
  out.chosen_rewards = chosen_reward.detach(), out.rejected_rewards = rejected_reward.detach();
  shift.update(mean(cat({out.chosen_rewards, out.rejected_rewards}, 0)).item());
  out.delta = shift.mean;
  out.bco = -log_sigmoid(chosen_reward - out.delta) - log_sigmoid(-(rejected_reward - out.delta));

  const Tensor tokens = in.chosen_tokens.detach().to(in.policy_chosen.dtype());
  out.sft_pooled = -sum(in.policy_chosen) / sum(tokens);
  out.sft_per_pair = -in.policy_chosen / tokens;
  const Tensor sft = config.sft_pooled ? out.sft_pooled : mean(out.sft_per_pair);
  out.loss = mean(out.dpo) * config.weight_dpo + mean(out.bco) * config.weight_bco + sft * config.weight_sft;
  return out;
}

}  // namespace ivl
