// The MPO loss terms and the reward shift (see loss.h).
#include "mpo/loss.h"

#include <cmath>

#include "tensor/autograd.h"

namespace ivl {

void RewardShift::update(double x_mean, double x_var, double n) {
  // TRL RunningMoments.update: combine the running moments with those of the new values.
  const double delta_mean = x_mean - mean, total = count + n;
  mean += delta_mean * n / total;
  var = (var * count + delta_mean * delta_mean * count * n / total + x_var * n) / total;
  count = total;
}

static void check_inputs(const MpoInputs& in) {
  const Shape pairs = in.policy_chosen.shape();
  for (const Tensor* t : {&in.policy_rejected, &in.ref_chosen, &in.ref_rejected, &in.chosen_tokens})
    if (t->shape() != pairs || pairs.size() != 1)
      fail("mpo_loss: every input must be [pairs], got " + in.policy_chosen.str() + " and " + t->str());
}

double batch_reward_mean(const MpoInputs& in, const MpoConfig& config) {
  check_inputs(in);
  NoGrad no_grad;
  const Tensor chosen = (in.policy_chosen - in.ref_chosen) * config.beta, rejected = (in.policy_rejected - in.ref_rejected) * config.beta;
  return mean(cat({chosen, rejected}, 0)).item();
}

MpoLoss mpo_loss(const MpoInputs& in, const MpoConfig& config, double delta) {
  check_inputs(in);
  const double beta = config.beta;
  MpoLoss out;
  const Tensor chosen_ratio = in.policy_chosen - in.ref_chosen.detach();
  const Tensor rejected_ratio = in.policy_rejected - in.ref_rejected.detach();
  out.dpo = -log_sigmoid((chosen_ratio - rejected_ratio) * beta);

  const Tensor chosen_reward = chosen_ratio * beta, rejected_reward = rejected_ratio * beta;
  out.chosen_rewards = chosen_reward.detach(), out.rejected_rewards = rejected_reward.detach();
  out.delta = delta;
  out.bco = -log_sigmoid(chosen_reward - delta) - log_sigmoid(-(rejected_reward - delta));

  const Tensor tokens = in.chosen_tokens.detach().to(in.policy_chosen.dtype());
  out.sft_pooled = -sum(in.policy_chosen) / sum(tokens);
  out.sft_per_pair = -in.policy_chosen / tokens;
  const Tensor sft = config.sft_pooled ? out.sft_pooled : mean(out.sft_per_pair);
  out.loss = mean(out.dpo) * config.weight_dpo + mean(out.bco) * config.weight_bco + sft * config.weight_sft;
  return out;
}

}  // namespace ivl
