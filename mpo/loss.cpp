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

const char* preference_loss_name(PreferenceLoss type) {
  switch (type) {
    case PreferenceLoss::sigmoid: return "sigmoid";
    case PreferenceLoss::hinge: return "hinge";
    case PreferenceLoss::ipo: return "ipo";
    case PreferenceLoss::bco_pair: return "bco_pair";
  }
  return "?";
}

std::vector<PreferenceTerm> parse_loss_types(const std::string& list, const std::function<double(const std::string&)>& weight_of) {
  std::vector<std::string> names;
  for (size_t start = 0;;) {
    const size_t comma = list.find(',', start);
    names.push_back(list.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  std::vector<PreferenceTerm> terms;
  for (const std::string& name : names) {
    PreferenceTerm term;
    bool known = false;
    for (PreferenceLoss type : {PreferenceLoss::sigmoid, PreferenceLoss::hinge, PreferenceLoss::ipo, PreferenceLoss::bco_pair})
      if (name == preference_loss_name(type)) term.type = type, known = true;
    if (!known) fail("loss type '" + name + "' in '" + list + "' is not one of sigmoid, hinge, ipo, bco_pair");
    for (const PreferenceTerm& seen : terms)
      if (seen.type == term.type) fail("loss type '" + name + "' appears twice in '" + list + "'");
    term.weight = names.size() == 1 ? 1.0 : weight_of(name);
    terms.push_back(term);
  }
  return terms;
}

std::vector<PreferenceTerm> mpo_preference_terms() {
  return {{PreferenceLoss::sigmoid, 0.8}, {PreferenceLoss::bco_pair, 0.2}};
}

bool MpoConfig::uses_shift() const {
  for (const PreferenceTerm& term : terms)
    if (term.type == PreferenceLoss::bco_pair) return true;
  return false;
}

double MpoConfig::reward_weight() const {
  double total = 0;
  for (const PreferenceTerm& term : terms) total += term.weight;
  return total;
}

static void check_inputs(const MpoInputs& in, const MpoConfig& config) {
  const Shape pairs = in.policy_chosen.shape();
  std::vector<const Tensor*> others = {&in.policy_rejected, &in.ref_chosen, &in.ref_rejected, &in.chosen_tokens};
  if (config.length_normalized) others.push_back(&in.rejected_tokens);
  for (const Tensor* t : others)
    if (!t->defined() || t->shape() != pairs || pairs.size() != 1)
      fail("mpo_loss: every input must be [pairs], got " + in.policy_chosen.str() + " and " + (t->defined() ? t->str() : "none"));
  if (config.terms.empty()) fail("mpo_loss: no preference loss term");
}

// The log-prob ratios as the preference terms see them: sums, or per-token means.
static std::pair<Tensor, Tensor> log_ratios(const MpoInputs& in, const MpoConfig& config) {
  Tensor chosen = in.policy_chosen - in.ref_chosen.detach(), rejected = in.policy_rejected - in.ref_rejected.detach();
  if (config.length_normalized) {
    chosen = chosen / in.chosen_tokens.detach().to(chosen.dtype());
    rejected = rejected / in.rejected_tokens.detach().to(rejected.dtype());
  }
  return {chosen, rejected};
}

double batch_reward_mean(const MpoInputs& in, const MpoConfig& config) {
  check_inputs(in, config);
  NoGrad no_grad;
  const auto [chosen, rejected] = log_ratios(in, config);
  return mean(cat({chosen * config.beta, rejected * config.beta}, 0)).item();
}

MpoLoss mpo_loss(const MpoInputs& in, const MpoConfig& config, double delta) {
  check_inputs(in, config);
  const double beta = config.beta;
  MpoLoss out;
  const auto [chosen_ratio, rejected_ratio] = log_ratios(in, config);
  const Tensor margin = chosen_ratio - rejected_ratio;
  const Tensor chosen_reward = chosen_ratio * beta, rejected_reward = rejected_ratio * beta;
  out.chosen_rewards = chosen_reward.detach(), out.rejected_rewards = rejected_reward.detach();
  out.delta = delta;
  for (const PreferenceTerm& term : config.terms) {
    Tensor losses;
    switch (term.type) {
      case PreferenceLoss::sigmoid:
        losses = -log_sigmoid(margin * beta);
        if (config.label_smoothing != 0)
          losses = losses * (1 - config.label_smoothing) - log_sigmoid(margin * -beta) * config.label_smoothing;
        out.dpo = losses;
        break;
      case PreferenceLoss::hinge:
        losses = relu(1.0 - margin * beta);
        out.hinge = losses;
        break;
      case PreferenceLoss::ipo: {
        const Tensor off = margin - 1 / (2 * beta);
        losses = off * off;
        out.ipo = losses;
        break;
      }
      case PreferenceLoss::bco_pair:
        losses = -log_sigmoid(chosen_reward - delta) - log_sigmoid(-(rejected_reward - delta));
        out.bco = losses;
        break;
    }
    const Tensor weighted = term.weight == 1 ? losses : losses * term.weight;
    out.preference = out.preference.defined() ? out.preference + weighted : weighted;
  }

  const Tensor tokens = in.chosen_tokens.detach().to(in.policy_chosen.dtype());
  out.sft_pooled = -sum(in.policy_chosen) / sum(tokens);
  out.sft_per_pair = -in.policy_chosen / tokens;
  out.loss = mean(out.preference);
  if (config.weight_sft != 0) out.loss = out.loss + (config.sft_pooled ? out.sft_pooled : mean(out.sft_per_pair)) * config.weight_sft;
  return out;
}

}  // namespace ivl
