// The autograd engine: accumulation, reuse of a tensor, detach, NoGrad, requires_grad, release of
// saved tensors, retain_graph, deep graphs, and the errors of misuse.
#include <cmath>

#include "tensor/autograd.h"
#include "tensor/ops.h"
#include "tensor/random.h"
#include "tests/catch.h"
#include "tests/test_support.h"

using namespace ivl;

static Tensor leaf(std::vector<double> v) {
  Tensor t = Tensor::from_vector<double>(v, {static_cast<int64_t>(v.size())});
  t.set_requires_grad();
  return t;
}

TEST_CASE("a tensor used several times gets the sum of its gradients", "[autograd]") {
  Tensor x = leaf({1, 2, 3});
  sum(x * x + x * 3.0 + exp(x) * 0.0).backward();  // d/dx = 2x + 3
  CHECK(x.grad().to_doubles() == std::vector<double>{5, 7, 9});
}

TEST_CASE("gradients accumulate across backward calls until zero_grad", "[autograd]") {
  Tensor x = leaf({1, -1});
  sum(x * 2.0).backward();
  sum(x * 2.0).backward();
  CHECK(x.grad().to_doubles() == std::vector<double>{4, 4});
  x.zero_grad();
  sum(x).backward();
  CHECK(x.grad().to_doubles() == std::vector<double>{1, 1});
}

TEST_CASE("detach, NoGrad and requires_grad decide what is recorded", "[autograd]") {
  Tensor a = leaf({2}), b = leaf({3});
  Tensor c = Tensor::from_vector<double>({5}, {1});
  sum(a * b.detach() + c * a).backward();
  CHECK(a.grad().item() == 3 + 5);
  CHECK_FALSE(b.grad().defined());
  CHECK_FALSE(c.requires_grad());
  {
    NoGrad no_grad;
    const Tensor y = a * b;
    CHECK_FALSE(y.requires_grad());
    CHECK(y.is_leaf());
  }
  CHECK((a * b).requires_grad());
  CHECK_THROWS_WITH(sum(c * 2.0).backward(), HasSubstr("does not require grad"));
  CHECK_THROWS_WITH((a * b).set_requires_grad(false), HasSubstr("only leaf"));
  Tensor ints = Tensor::arange(3);
  CHECK_THROWS_WITH(ints.set_requires_grad(), HasSubstr("cannot have gradients"));
}

TEST_CASE("backward frees saved tensors unless retain_graph", "[autograd]") {
  Tensor x = leaf({0.5, 1.5});
  Tensor loss;
  std::weak_ptr<Storage> saved;
  {
    const Tensor y = exp(x);  // exp saves its output for backward
    saved = y.storage();
    loss = sum(y * y);
  }
  CHECK_FALSE(saved.expired());  // the graph still holds it
  loss.backward(Tensor(), /*retain_graph=*/true);
  CHECK_FALSE(saved.expired());
  const std::vector<double> once = x.grad().to_doubles();
  loss.backward();
  CHECK(saved.expired());
  const std::vector<double> twice = x.grad().to_doubles();
  CHECK(std::abs(twice[0] - 2 * once[0]) < 1e-12 * std::abs(twice[0]));
  CHECK_THROWS_WITH(loss.backward(), HasSubstr("already freed"));
}

TEST_CASE("backward needs a gradient for a non-scalar output of the right shape", "[autograd]") {
  Tensor x = leaf({1, 2});
  const Tensor y = x * 2.0;
  CHECK_THROWS_WITH(y.backward(), HasSubstr("non-scalar"));
  CHECK_THROWS_WITH(y.backward(Tensor::ones({3}, DType::f64)), HasSubstr("does not match the output"));
  CHECK_THROWS_WITH(y.backward(Tensor::ones({2}, DType::f32)), HasSubstr("does not match the output"));
  y.backward(Tensor::from_vector<double>({1, 10}, {2}));
  CHECK(x.grad().to_doubles() == std::vector<double>{2, 20});
}

TEST_CASE("leaf gradients are fresh contiguous tensors of the leaf's shape and dtype", "[autograd]") {
  Tensor w = Tensor::ones({3, 1}, DType::bf16);
  w.set_requires_grad();
  const Tensor x = Tensor::ones({3, 4}, DType::bf16);
  sum(w * x).backward();  // broadcast: the gradient sums over 4 columns
  CHECK(w.grad().dtype() == DType::bf16);
  CHECK(w.grad().shape() == Shape{3, 1});
  CHECK(w.grad().is_contiguous());
  CHECK(w.grad().to_doubles() == std::vector<double>{4, 4, 4});
  Tensor v = leaf({1, 2});
  v.backward(Tensor::from_vector<double>({3, 4}, {2}));  // backward on a leaf itself
  CHECK(v.grad().to_doubles() == std::vector<double>{3, 4});
}

TEST_CASE("a path that gets no gradient does not stall the rest", "[autograd]") {
  Tensor a = leaf({1, 2, 3});
  // The first slice's gradient dies in "* 0.0" only numerically; a detached branch gets none at all.
  const Tensor parts = cat({a.narrow(0, 0, 1).detach() * 0.0, a.narrow(0, 1, 2)}, 0);
  sum(parts * parts).backward();
  CHECK(a.grad().to_doubles() == std::vector<double>{0, 4, 6});
}

TEST_CASE("a deep chain backpropagates without recursion", "[autograd]") {
  Tensor x = leaf({1});
  Tensor y = x;
  for (int i = 0; i < 200000; ++i) y = y * 1.0;
  sum(y).backward(Tensor(), /*retain_graph=*/true);
  CHECK(x.grad().item() == 1);
  y = Tensor();  // and the graph is freed without recursion too
}

TEST_CASE("every differentiable op is registered by name", "[autograd]") {
  const std::vector<std::string> ops = registered_ops();
  for (const char* name : {"add", "matmul", "linear", "layer_norm", "rms_norm", "scaled_dot_product_attention",
                           "token_logprobs", "rotary_embedding", "conv2d_patch", "embedding", "softmax"})
    CHECK(std::find(ops.begin(), ops.end(), name) != ops.end());
}

TEST_CASE("leaf gradients never alias each other or the caller's seed", "[autograd]") {
  Tensor a = leaf({1, 2}), c = leaf({3, 4});
  sum(a + c).backward();
  CHECK(a.grad().storage() != c.grad().storage());
  Tensor z = leaf({1, 2});
  const Tensor seed = Tensor::from_vector<double>({5, 6}, {2});
  z.backward(seed);
  CHECK(z.grad().storage() != seed.storage());
  CHECK(z.grad().to_doubles() == std::vector<double>{5, 6});
}

TEST_CASE("a checkpointed block records one node and gives the gradients of the plain block", "[autograd]") {
  Generator gen(21);
  Tensor w = Tensor::randn({4, 4}, gen, DType::f64), x = Tensor::randn({3, 4}, gen, DType::f64);
  w.set_requires_grad(), x.set_requires_grad();
  auto block = [&w](const std::vector<Tensor>& in) { return tanh(matmul(in[0], w)) * in[0]; };  // w is captured
  sum(block({x}) * 1.5).backward();
  const Tensor gw = w.grad().clone(), gx = x.grad().clone();
  w.zero_grad(), x.zero_grad();
  const Tensor y = checkpoint(block, {x});
  CHECK(std::string(y.grad_fn()->name) == "checkpoint");
  REQUIRE(y.grad_fn()->next.size() == 1);  // only the input: nothing inside was recorded
  CHECK(y.grad_fn()->next[0]->leaf.get() == x.impl());
  sum(y * 1.5).backward();
  CHECK(max_abs_diff(w.grad(), gw) == 0);  // the captured parameter gets its gradient from the recompute
  CHECK(max_abs_diff(x.grad(), gx) == 0);
  // An input that needs no gradient still lets the captured parameter get one.
  w.zero_grad();
  sum(checkpoint(block, {x.detach()}) * 1.5).backward();
  CHECK(max_abs_diff(w.grad(), gw) == 0);
  NoGrad no_grad;
  CHECK_FALSE(checkpoint(block, {x}).requires_grad());
}
