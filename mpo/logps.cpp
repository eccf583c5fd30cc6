// sequence_logps: shift by one, fused log-softmax gather, masked sum.
#include "mpo/logps.h"

namespace ivl {

SequenceLogps sequence_logps(const Tensor& logits, const Tensor& labels, int64_t ignore_index) {
  if (logits.dim() != 3 || labels.dim() != 2 || logits.size(0) != labels.size(0) || logits.size(1) != labels.size(1))
    fail("sequence_logps: logits must be [B, T, V] and labels [B, T], got " + logits.str() + " and " + labels.str());
  const int64_t T = logits.size(1);
  if (T < 2) {
    const int64_t B = logits.size(0);
    return {Tensor::zeros({B}, logits.dtype()), Tensor::zeros({B}, DType::i64)};
  }
  const Tensor targets = labels.narrow(1, 1, T - 1);
  const Tensor per_token = token_logprobs(logits.narrow(1, 0, T - 1), targets, ignore_index);  // 0 where ignored
  const Tensor counted = ne(targets.to(DType::i64), Tensor::scalar(static_cast<double>(ignore_index), DType::i64));
  return {sum(per_token, {1}), sum(counted, {1})};
}

}  // namespace ivl
