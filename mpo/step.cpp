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
  check_batch(batch);
  if (!reference.defined() || reference.shape() != Shape{batch.input_ids.size(0)})
    fail("mpo_step: the reference log-probs must be [" + std::to_string(batch.input_ids.size(0)) + "], got " +
         (reference.defined() ? reference.str() : std::string("none")));
  MpoStepResult result;
  const SequenceLogps logps = model_logps(policy, batch, options.logps_chunk, options.drop_path,
                                          options.keep_activations ? &result.image_tokens : nullptr,
                                          options.keep_activations ? &result.hidden : nullptr);
  const MpoInputs inputs{rows_of(logps.logps, batch.chosen_rows), rows_of(logps.logps, batch.rejected_rows),
                         rows_of(reference, batch.chosen_rows), rows_of(reference, batch.rejected_rows),
                         rows_of(logps.tokens, batch.chosen_rows)};
  result.batch_reward_mean = batch_reward_mean(inputs, options.loss);
  options.update_shift(shift, result.batch_reward_mean);  // before use, as TRL's bco_pair
  result.loss = mpo_loss(inputs, options.loss, shift.mean);
  if (options.backward && result.loss.loss.requires_grad())
    (options.loss_scale == 1 ? result.loss.loss : result.loss.loss * options.loss_scale).backward();
  MpoLoss& l = result.loss;
  for (Tensor* t : {&l.loss, &l.dpo, &l.bco, &l.sft_pooled, &l.sft_per_pair}) *t = t->detach();
  result.policy = {logps.logps.detach(), logps.tokens};
  result.reference = reference;
  return result;
}

}  // namespace ivl
