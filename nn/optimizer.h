// AdamW and gradient clipping over a ParameterSet's flat buffers, as the HF Trainer of transformers
// 4.37.2 runs them on torch 2.x: create_optimizer's two weight-decay groups, clip_grad_norm_, and
// torch.optim.AdamW's single-tensor update reproduced operation by operation (f32 in, f32 out).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "nn/parameters.h"

namespace ivl {

// Trainer.get_decay_parameter_names: a parameter is decayed unless it sits in an nn.LayerNorm module
// or its name contains "bias". So RMSNorm weights, ls1/ls2, the class and position embeddings and
// the patch embedding's weight ARE decayed (the function's own docstring warns of exactly this).
bool hf_weight_decay_applies(const Parameter& parameter);

// The two groups create_optimizer hands to torch: the present trainable parameters, decayed or not,
// in declaration order (torch's order is named_parameters'; AdamW is elementwise, so only the sets
// matter). decay_all puts every one in the decayed group: with a DeepSpeed config that has an
// "optimizer" block (the official zero_stage*_config.json do), deepspeed_init gives DeepSpeed one
// flat list of the trainable parameters instead of these groups, and DeepSpeed decays them all
// (with its own fused AdamW kernel: the same formula, other roundings).
struct ParameterGroups {
  std::vector<std::string> decayed, not_decayed;
};
ParameterGroups hf_parameter_groups(const ParameterSet& params, bool decay_all = false);

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // TrainingArguments' adam_beta1, adam_beta2, adam_epsilon
  double weight_decay = 0.0;                       // of the decayed group; the other group has 0
  bool decay_all = false;                          // see hf_parameter_groups
};

// torch.optim.AdamW (amsgrad off, maximize off) over params.flat() with params.flat_grad() as the
// gradient, skipping frozen parameters (torch never sees them: their grad is None). Per element, in
// the parameters' dtype, with torch's order of operations and roundings (scalars in double, then
// rounded once to the dtype, as torch's CPU kernels do):
//   step += 1;  p *= 1 - lr*wd;  m = fma(1-beta1, g - m, m)  (lerp_);  v = fma((1-beta2)*g, g, v*beta2);
//   denom = sqrt(v) / sqrt(1 - beta2^step) + eps;  p += (-lr / (1 - beta1^step) * m) / denom.
// The one known difference: torch's CPU sqrt goes through MKL's vector sqrt, which is not correctly
// rounded, so denom can differ from ours in its last bit (results then by about 1e-7 relative).
// One step count serves all parameters (torch keeps one per parameter, created at its first step:
// the two differ only for a parameter unfrozen in the middle of a run). A trainable parameter that
// the loss never reached has grad None in torch and is skipped; here its gradient is zeros, so it
// is decayed (Adam's part is 0): freeze such parameters to match.
class AdamW {
 public:
  // The moments start at zero and have the size of params.flat(); `params` must outlive the optimizer.
  AdamW(ParameterSet& params, const AdamWOptions& options);
  // One update with learning rate `lr` (the schedule's value for this step).
  void step(double lr);

  const AdamWOptions& options() const { return options_; }
  bool decays(const Parameter& parameter) const { return options_.decay_all || hf_weight_decay_applies(parameter); }
  // The state, laid out as params.flat() (torch's exp_avg, exp_avg_sq, step), for checkpoints.
  int64_t steps() const { return steps_; }
  const Tensor& exp_avg() const { return exp_avg_; }
  const Tensor& exp_avg_sq() const { return exp_avg_sq_; }
  // Restores a saved state (resume); the tensors must match the layout of params.flat().
  void load_state(const Tensor& exp_avg, const Tensor& exp_avg_sq, int64_t steps);

 private:
  ParameterSet* params_;
  AdamWOptions options_;
  Tensor exp_avg_, exp_avg_sq_;
  int64_t steps_ = 0;
};

// The 2-norm of the present trainable parameters' gradients (torch's total_norm: the norm of the
// per-tensor norms, each rounded to the dtype), as a double holding that dtype's value.
double gradient_norm(const ParameterSet& params);

// torch.nn.utils.clip_grad_norm_(trainable parameters, max_norm), as the HF Trainer calls it when
// max_grad_norm > 0: coef = max_norm / (total + 1e-6) in the dtype (torch: reciprocal, then times
// max_norm), and when coef < 1 every gradient is multiplied by it (torch multiplies by min(coef, 1),
// the same numbers). Returns the total before clipping. A non-finite total is returned with the
// gradients untouched (torch would multiply them all by 0 or NaN): the caller decides, e.g. to skip
// the step.
double clip_grad_norm(ParameterSet& params, double max_norm);

}  // namespace ivl
