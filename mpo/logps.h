// Sequence log-probabilities as the official trainer computes them: the logit at position t scores
// the label at t + 1; positions whose label is -100 (prompt, image, padding) do not count; the
// result is the SUM over the response tokens (no length normalisation).
// Shapes: logits [B, T, V] or hidden [B, T, H] with head [V, H]; labels [B, T] -> logps [B], tokens [B].
#pragma once
#include "tensor/ops.h"

namespace ivl {

struct SequenceLogps {
  Tensor logps;   // [B], the logits' dtype; differentiable
  Tensor tokens;  // [B] i64: how many label tokens each sum covers
};

// From full logits (what the official code materialises).
SequenceLogps sequence_logps(const Tensor& logits, const Tensor& labels, int64_t ignore_index = -100);

// The same numbers from the final hidden states, touching only the rows whose next label counts:
// those rows go through the head and the log-softmax gather `chunk` rows at a time
// (linear_token_logprobs), so neither the [B, T, V] logits nor their gradient ever exist. Almost every
// row of an MPO batch is an image or prompt token, so this is most of the decoder's memory and time.
SequenceLogps sequence_logps(const Tensor& hidden, const Tensor& head, const Tensor& labels, int64_t ignore_index = -100,
                             int64_t chunk = 256);

}  // namespace ivl
