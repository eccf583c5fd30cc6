// Sequence log-probabilities as the official trainer computes them: the logit at position t scores
// the label at t + 1; positions whose label is -100 (prompt, image, padding) do not count; the
// result is the SUM over the response tokens (no length normalisation).
// Shapes: logits [B, T, V], labels [B, T] -> logps [B], tokens [B].
#pragma once
#include "tensor/ops.h"

namespace ivl {

struct SequenceLogps {
  Tensor logps;   // [B], the logits' dtype; differentiable
  Tensor tokens;  // [B] i64: how many label tokens each sum covers
};

SequenceLogps sequence_logps(const Tensor& logits, const Tensor& labels, int64_t ignore_index = -100);

}  // namespace ivl
