// The gradient-check harness: analytic gradients from one backward pass against central
// differences of the same scalar, element by element (a deterministic sample when inputs are large).
#include "tensor/gradcheck.h"

#include <cmath>

#include "tensor/autograd.h"
#include "tensor/cuda_backend.h"
#include "tensor/ops.h"
#include "tensor/random.h"

namespace ivl {

static void collect_nodes(const std::shared_ptr<Node>& root, std::set<std::string>& names) {
  std::vector<Node*> stack{root.get()};
  std::set<Node*> seen{root.get()};
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    if (!node->leaf) names.insert(node->name);
    for (const auto& next : node->next)
      if (next && seen.insert(next.get()).second) stack.push_back(next.get());
  }
}

// <f(inputs), weights> in f64.
static double weighted_output(const GradcheckCase& c, const std::vector<Tensor>& inputs, const std::vector<double>& weights) {
  NoGrad no_grad;
  const std::vector<double> y = c.fn(inputs).to_doubles();
  double total = 0;
  for (size_t i = 0; i < y.size(); ++i) total += y[i] * weights[i];
  return total;
}

GradcheckResult run_gradcheck(const GradcheckCase& c, int64_t max_elements_per_input) {
  GradcheckResult result;
  result.op = c.op, result.description = c.description, result.tolerance = c.tolerance;
  if (c.needs_cuda && !cuda::available()) {
    result.skipped = true;
    result.error = "needs a CUDA device";
    return result;
  }
  try {
    Generator gen(20261126);
    std::vector<Tensor> inputs = c.inputs(gen);
    for (Tensor& t : inputs) {
      if (t.dtype() != DType::f64) continue;
      if (!t.is_contiguous()) fail("case inputs must be contiguous (make views inside fn)");
      t.set_requires_grad(true);
    }
    const Tensor y = c.fn(inputs);
    if (y.dtype() != DType::f64) fail("the case's output is " + y.str() + ", not f64");
    if (!y.grad_fn()) fail("the output has no graph (did the op record a node?)");
    collect_nodes(y.grad_fn(), result.nodes);
    const Tensor w = Tensor::randn(y.shape(), gen, DType::f64);
    const std::vector<double> weights = w.to_doubles();
    y.backward(w);

    double max_diff = 0, max_numeric = 0;
    for (Tensor& input : inputs) {
      if (input.dtype() != DType::f64) continue;
      const Tensor grad = input.grad().defined() ? input.grad() : Tensor::zeros(input.shape(), DType::f64);
      const std::vector<double> analytic = grad.to_doubles();
      double* data = input.data<double>();  // leaves are made contiguous by Tensor::randn & co.
      const int64_t n = input.numel();
      const int64_t stride = n > max_elements_per_input ? n / max_elements_per_input + 1 : 1;  // sample big inputs
      for (int64_t i = 0; i < n; i += stride) {
        const double original = data[i];
        data[i] = original + c.step;
        const double plus = weighted_output(c, inputs, weights);
        data[i] = original - c.step;
        const double minus = weighted_output(c, inputs, weights);
        data[i] = original;
        const double numeric = (plus - minus) / (2 * c.step);
        max_diff = std::max(max_diff, std::abs(numeric - analytic[static_cast<size_t>(i)]));
        max_numeric = std::max(max_numeric, std::abs(numeric));
        ++result.checked_elements;
      }
    }
    result.max_rel_error = max_diff / std::max(max_numeric, 1e-12);
    result.passed = result.max_rel_error <= c.tolerance && result.nodes.count(c.op) == 1;
    if (result.nodes.count(c.op) == 0) result.error = "the graph has no '" + c.op + "' node";
  } catch (const std::exception& e) {
    result.error = e.what();
    result.passed = false;
  }
  return result;
}

}  // namespace ivl
