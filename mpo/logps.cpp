// sequence_logps: shift by one, the log-softmax gather (fused over full logits, or fused with the head
// over the scored rows), a masked sum per sequence.
#include "mpo/logps.h"

namespace ivl {

static void check_shapes(const Tensor& x, const Tensor& labels, const char* what) {
  if (x.dim() != 3 || labels.dim() != 2 || x.size(0) != labels.size(0) || x.size(1) != labels.size(1))
    fail(std::string("sequence_logps: ") + what + " must be [B, T, *] and labels [B, T], got " + x.str() + " and " + labels.str());
}

SequenceLogps sequence_logps(const Tensor& logits, const Tensor& labels, int64_t ignore_index) {
  check_shapes(logits, labels, "logits");
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

SequenceLogps sequence_logps(const Tensor& hidden, const Tensor& head, const Tensor& labels, int64_t ignore_index,
                             int64_t chunk) {
  check_shapes(hidden, labels, "hidden states");
  const int64_t B = hidden.size(0), T = hidden.size(1), H = hidden.size(2);
  const std::vector<double> label_values = labels.to_doubles();
  std::vector<int64_t> rows, targets, sequence, tokens(static_cast<size_t>(B), 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t + 1 < T; ++t) {
      const auto next = static_cast<int64_t>(label_values[static_cast<size_t>(b * T + t + 1)]);
      if (next == ignore_index) continue;
      rows.push_back(b * T + t), targets.push_back(next), sequence.push_back(b);
      ++tokens[static_cast<size_t>(b)];
    }
  const Tensor token_counts = Tensor::from_vector(tokens, {B});
  if (rows.empty()) return {Tensor::zeros({B}, hidden.dtype()), token_counts};
  const auto N = static_cast<int64_t>(rows.size());
  const Tensor scored = index_select(hidden.reshape({B * T, H}), 0, Tensor::from_vector(rows, {N}));
  const Tensor per_token = linear_token_logprobs(scored, head, Tensor::from_vector(targets, {N}), chunk);
  // Summed per sequence in f64, in position order, as sum() of the full-logits path does.
  const Tensor sums = scatter_add(Tensor::zeros({B}, DType::f64), 0, Tensor::from_vector(sequence, {N}), per_token.to(DType::f64));
  return {sums.to(hidden.dtype()), token_counts};
}

}  // namespace ivl
