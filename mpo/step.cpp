// The MPO micro-step (see step.h).
#include "mpo/step.h"

#include "tensor/autograd.h"

namespace ivl {

void update_shift_one_process(RewardShift& shift, double local_batch_mean) { shift.update(local_batch_mean); }

static void check_batch(const MpoBatch& batch) {
  const Tensor& ids = batch.input_ids;
  if (ids.dim() != 2 || batch.labels.shape() != ids.shape() || (batch.attention_mask.defined() && batch.attention_mask.shape() != ids.shape()))
    fail("mpo_step: input_ids, labels and attention_mask must be [rows, T] alike, got " + ids.str() + ", " + batch.labels.str() +
         " and " + (batch.attention_mask.defined() ? batch.attention_mask.str() : std::string("none")));
  if (batch.chosen_rows.empty() || batch.chosen_rows.size() != batch.rejected_rows.size())
    fail("mpo_step: needs as many chosen as rejected rows, at least one; got " + std::to_string(batch.chosen_rows.size()) +
         " and " + std::to_string(batch.rejected_rows.size()));
  for (const auto* rows : {&batch.chosen_rows, &batch.rejected_rows})
    for (int64_t r : *rows)
      if (r < 0 || r >= ids.size(0)) fail("mpo_step: row " + std::to_string(r) + " is outside the batch of " + std::to_string(ids.size(0)));
}

static Tensor rows_of(const Tensor& t, const std::vector<int64_t>& rows) {
  return index_select(t, 0, Tensor::from_vector(rows, {static_cast<int64_t>(rows.size())}));
}

static SequenceLogps model_logps(const InternVLChat& model, const MpoBatch& batch, int64_t chunk, Generator* drop_path,
                                 Tensor* image_tokens_out, Tensor* hidden_out) {
  const Tensor image_tokens = batch.pixel_values.defined() ? model.extract_feature(batch.pixel_values, drop_path) : Tensor();
  const Tensor embeddings = model.splice_image_tokens(batch.input_ids, image_tokens, batch.image_context_id, batch.row_tiles);
  const Tensor hidden = model.llm().hidden(embeddings, batch.attention_mask);
  if (image_tokens_out && image_tokens.defined()) *image_tokens_out = image_tokens.detach();
  if (hidden_out) *hidden_out = hidden.detach();
  return sequence_logps(hidden, model.llm().head(), batch.labels, -100, chunk);
}

Tensor reference_logps(const InternVLChat& reference, const MpoBatch& batch, int64_t chunk) {
  check_batch(batch);
  NoGrad no_grad;
  return model_logps(reference, batch, chunk, nullptr, nullptr, nullptr).logps;
}

MpoStepResult mpo_step(const InternVLChat& policy, const MpoBatch& batch, const Tensor& reference, RewardShift& shift,
                       const MpoStepOptions& options) {
  return mpo_step(policy, std::vector<MpoBatch>{batch}, std::vector<Tensor>{reference}, shift, options);
}

MpoStepResult mpo_step(const InternVLChat& policy, const std::vector<MpoBatch>& pieces, const std::vector<Tensor>& references,
                       RewardShift& shift, const MpoStepOptions& options) {
  if (pieces.empty() || pieces.size() != references.size())
    fail("mpo_step: needs one reference log-prob tensor per piece of the micro-batch, got " + std::to_string(pieces.size()) + " pieces and " +
         std::to_string(references.size()));
  if (options.keep_activations && pieces.size() != 1) fail("mpo_step: keep_activations needs a micro-batch of one piece");
  MpoStepResult result;
  // Each piece forwarded on its own; its chosen rows, then its rejected rows, gathered across pieces.
  std::vector<Tensor> policy_chosen, policy_rejected, ref_chosen, ref_rejected, tokens_chosen, tokens_rejected;
  std::vector<Tensor> policy_rows, token_rows;
  double logits_chosen = 0, logits_rejected = 0;
  int64_t rows_chosen = 0, rows_rejected = 0;
  for (size_t k = 0; k < pieces.size(); ++k) {
    const MpoBatch& batch = pieces[k];
    const Tensor& reference = references[k];
    check_batch(batch);
    if (!reference.defined() || reference.shape() != Shape{batch.input_ids.size(0)})
      fail("mpo_step: the reference log-probs must be [" + std::to_string(batch.input_ids.size(0)) + "], got " +
           (reference.defined() ? reference.str() : std::string("none")));
    Tensor hidden;
    const SequenceLogps logps = model_logps(policy, batch, options.logps_chunk, options.drop_path,
                                            options.keep_activations ? &result.image_tokens : nullptr,
                                            options.keep_activations || options.logits_means ? &hidden : nullptr);
    if (options.keep_activations) result.hidden = hidden;
    policy_rows.push_back(logps.logps.detach()), token_rows.push_back(logps.tokens);
    policy_chosen.push_back(rows_of(logps.logps, batch.chosen_rows)), policy_rejected.push_back(rows_of(logps.logps, batch.rejected_rows));
    ref_chosen.push_back(rows_of(reference, batch.chosen_rows)), ref_rejected.push_back(rows_of(reference, batch.rejected_rows));
    tokens_chosen.push_back(rows_of(logps.tokens, batch.chosen_rows)), tokens_rejected.push_back(rows_of(logps.tokens, batch.rejected_rows));
    if (options.logits_means) {
      // The mean of a row's whole [T, V] logits without the logits: sum_t sum_v h_t . w_v =
      // (sum_t h_t) . (sum_v w_v), one [H] vector per row (the official logits/* metrics).
      NoGrad no_grad;
      const Tensor& head = policy.llm().head();
      const Tensor per_row = matmul(sum(hidden, {1}), sum(head, {0}).reshape({head.size(1), 1})).reshape({batch.input_ids.size(0)});
      const double cells = static_cast<double>(batch.input_ids.size(1) * head.size(0));
      logits_chosen += sum(rows_of(per_row, batch.chosen_rows)).item() / cells, rows_chosen += static_cast<int64_t>(batch.chosen_rows.size());
      logits_rejected += sum(rows_of(per_row, batch.rejected_rows)).item() / cells, rows_rejected += static_cast<int64_t>(batch.rejected_rows.size());
    }
  }
  auto joined = [](const std::vector<Tensor>& parts) { return parts.size() == 1 ? parts[0] : cat(parts, 0); };
  const MpoInputs inputs{joined(policy_chosen), joined(policy_rejected), joined(ref_chosen), joined(ref_rejected), joined(tokens_chosen),
                         joined(tokens_rejected)};
  result.batch_reward_mean = batch_reward_mean(inputs, options.loss);
  if (options.loss.uses_shift()) options.update_shift(shift, result.batch_reward_mean);  // before use, as TRL's bco_pair
  result.loss = mpo_loss(inputs, options.loss, shift.mean);
  if (options.logits_means) {
    result.logits_mean_chosen = logits_chosen / static_cast<double>(rows_chosen);
    result.logits_mean_rejected = logits_rejected / static_cast<double>(rows_rejected);
  }
  if (options.backward && result.loss.loss.requires_grad())
    (options.loss_scale == 1 ? result.loss.loss : result.loss.loss * options.loss_scale).backward();
  MpoLoss& l = result.loss;
  for (Tensor* t : {&l.loss, &l.dpo, &l.bco, &l.hinge, &l.ipo, &l.preference, &l.sft_pooled, &l.sft_per_pair})
    if (t->defined()) *t = t->detach();
  result.policy = {joined(policy_rows), joined(token_rows)};
  result.reference = joined(references);
  result.pairs = {inputs.policy_chosen.detach(), inputs.policy_rejected.detach(), inputs.ref_chosen, inputs.ref_rejected, inputs.chosen_tokens,
                  inputs.rejected_tokens};
  return result;
}

}  // namespace ivl
