// The gradient-check cases: at least one per differentiable op, with odd sizes, broadcasting and
// non-contiguous views (made inside fn, so the view ops are checked too). Inputs are f64 with seeded
// values; ops with a kink (relu, abs, max, maximum) get inputs kept away from it.
#include <cmath>

#include "tensor/autograd.h"
#include "tensor/gradcheck.h"
#include "tensor/ops.h"
#include "tensor/random.h"

namespace ivl {

namespace {

using Inputs = std::vector<Tensor>;

Tensor randn(Generator& g, const Shape& s) { return Tensor::randn(s, g, DType::f64); }
// Positive values in [0.5, 2.5): for log, sqrt, rsqrt, pow and divisors.
Tensor positive(Generator& g, const Shape& s) { return Tensor::rand(s, g, DType::f64) * 2.0 + 0.5; }
// Normal values pushed at least 0.1 away from 0, for ops with a kink there.
Tensor away_from_zero(Generator& g, const Shape& s) {
  const Tensor x = randn(g, s);
  return x + where(ge(x, Tensor::scalar(0, DType::f64)), Tensor::scalar(0.1, DType::f64), Tensor::scalar(-0.1, DType::f64));
}
Tensor ids(const std::vector<int64_t>& v, const Shape& s) { return Tensor::from_vector(v, s); }
Tensor mask(const std::vector<uint8_t>& v, const Shape& s) { return Tensor::from_vector(v, s).to(DType::boolean); }

GradcheckCase unary_case(const std::string& op, Tensor (*f)(const Tensor&), bool positive_only = false) {
  return {op, "[3, 5, 7] transposed view",
          [positive_only](Generator& g) { return Inputs{positive_only ? positive(g, {7, 5, 3}) : randn(g, {7, 5, 3})}; },
          [f](const Inputs& x) { return f(x[0].permute({2, 1, 0})); }};
}

std::vector<GradcheckCase> make_cases() {
  std::vector<GradcheckCase> cases = {
      // ---- elementwise binary (broadcasting, scalars, views)
      {"add", "broadcast [3,1,5] + [4,1]", [](Generator& g) { return Inputs{randn(g, {3, 1, 5}), randn(g, {4, 1})}; },
       [](const Inputs& x) { return x[0] + x[1]; }},
      {"add", "tensor + scalar on a transposed view", [](Generator& g) { return Inputs{randn(g, {4, 3})}; },
       [](const Inputs& x) { return x[0].mT() + 2.5; }},
      {"sub", "broadcast [5] - [2,3,5] and 1 - x", [](Generator& g) { return Inputs{randn(g, {5}), randn(g, {2, 3, 5})}; },
       [](const Inputs& x) { return (1.0 - x[0]) - x[1]; }},
      {"mul", "broadcast [2,1,3] * [5,1] with a strided slice", [](Generator& g) { return Inputs{randn(g, {2, 1, 3}), randn(g, {10, 1})}; },
       [](const Inputs& x) { return x[0] * x[1].slice(0, 0, 10, 2); }},
      {"div", "broadcast [3,4] / [4] and scalar / x", [](Generator& g) { return Inputs{randn(g, {3, 4}), positive(g, {4})}; },
       [](const Inputs& x) { return x[0] / x[1] + 1.0 / x[1]; }},
      {"pow", "positive base ^ tensor exponent, broadcast", [](Generator& g) { return Inputs{positive(g, {3, 4}), randn(g, {4})}; },
       [](const Inputs& x) { return pow(x[0], x[1]); }},
      {"pow_scalar", "x^2.5 (x > 0) and x^3", [](Generator& g) { return Inputs{positive(g, {3, 5}), randn(g, {5})}; },
       [](const Inputs& x) { return pow(x[0], 2.5) + pow(x[1], 3.0); }},
      {"maximum", "broadcast [3,5] vs [5], inputs apart", [](Generator& g) { return Inputs{away_from_zero(g, {3, 5}), Tensor::zeros({5}, DType::f64) + 0.05}; },
       [](const Inputs& x) { return maximum(x[0], x[1]); }},
      // ---- elementwise unary
      unary_case("neg", neg), unary_case("exp", exp), unary_case("log", log, true), unary_case("sqrt", sqrt, true),
      unary_case("rsqrt", rsqrt, true), unary_case("tanh", tanh), unary_case("sigmoid", sigmoid),
      unary_case("log_sigmoid", log_sigmoid), unary_case("silu", silu), unary_case("gelu", gelu),
      unary_case("gelu_tanh", gelu_tanh),
      {"log_sigmoid", "large |x| (no overflow)", [](Generator& g) { return Inputs{randn(g, {9}) * 30.0}; },
       [](const Inputs& x) { return log_sigmoid(x[0]); }},
      {"relu", "values kept 0.1 away from the kink", [](Generator& g) { return Inputs{away_from_zero(g, {4, 7})}; },
       [](const Inputs& x) { return relu(x[0]); }},
      {"abs", "values kept 0.1 away from the kink", [](Generator& g) { return Inputs{away_from_zero(g, {4, 7})}; },
       [](const Inputs& x) { return abs(x[0]); }},
      // ---- conversions
      {"to_dtype", "f64 -> f32 -> f64", [](Generator& g) { return Inputs{randn(g, {3, 5})}; },
       [](const Inputs& x) { return x[0].to(DType::f32).to(DType::f64); }, 1e-4,
       "the f32 round trip rounds each value (relative 6e-8); a step of 1e-2 keeps that below 1e-5", 1e-2},
      {"to_device", "cpu -> cuda -> cpu", [](Generator& g) { return Inputs{randn(g, {3, 5})}; },
       [](const Inputs& x) { return x[0].to(Device::cuda).to(Device::cpu); }, 1e-6, "", 1e-6, true},
      {"contiguous", "of a permuted view", [](Generator& g) { return Inputs{randn(g, {3, 4, 5})}; },
       [](const Inputs& x) { return x[0].permute({2, 0, 1}).contiguous(); }},
      {"clone", "[5, 3]", [](Generator& g) { return Inputs{randn(g, {5, 3})}; }, [](const Inputs& x) { return x[0].clone(); }},
      // ---- reductions
      {"sum", "dims {0, 2} of [3,4,5]", [](Generator& g) { return Inputs{randn(g, {3, 4, 5})}; },
       [](const Inputs& x) { return sum(x[0], {0, 2}); }},
      {"sum", "all dims of a transposed view, keepdim", [](Generator& g) { return Inputs{randn(g, {3, 7})}; },
       [](const Inputs& x) { return sum(x[0].mT(), {}, true); }},
      {"sum", "dim -1 keepdim of a sliced view", [](Generator& g) { return Inputs{randn(g, {5, 9})}; },
       [](const Inputs& x) { return sum(x[0].slice(1, 1, 9, 3), {-1}, true); }},
      {"sum", "mean over dim 1 (mean is sum / n)", [](Generator& g) { return Inputs{randn(g, {3, 5, 2})}; },
       [](const Inputs& x) { return mean(x[0], {1}); }},
      {"max", "dim 1 of [4,5,3]", [](Generator& g) { return Inputs{randn(g, {4, 5, 3})}; },
       [](const Inputs& x) { return max(x[0], 1); }},
      {"max", "dim 0 keepdim of a transposed view", [](Generator& g) { return Inputs{randn(g, {3, 6})}; },
       [](const Inputs& x) { return max(x[0].mT(), 0, true); }},
      {"softmax", "last dim of [3,7]", [](Generator& g) { return Inputs{randn(g, {3, 7})}; },
       [](const Inputs& x) { return softmax(x[0], -1); }},
      {"softmax", "dim 0 of [5,2,3]", [](Generator& g) { return Inputs{randn(g, {5, 2, 3})}; },
       [](const Inputs& x) { return softmax(x[0], 0); }},
      {"log_softmax", "last dim of a transposed view", [](Generator& g) { return Inputs{randn(g, {7, 3})}; },
       [](const Inputs& x) { return log_softmax(x[0].mT(), -1); }},
      {"log_softmax", "dim 1 of [2,5,3]", [](Generator& g) { return Inputs{randn(g, {2, 5, 3})}; },
       [](const Inputs& x) { return log_softmax(x[0], 1); }},
      // ---- matrix products
      {"matmul", "[5,3] @ [3,4]", [](Generator& g) { return Inputs{randn(g, {5, 3}), randn(g, {3, 4})}; },
       [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul", "batch broadcast [2,1,3,4] @ [3,4,5]", [](Generator& g) { return Inputs{randn(g, {2, 1, 3, 4}), randn(g, {3, 4, 5})}; },
       [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul", "transposed views a^T @ b^T", [](Generator& g) { return Inputs{randn(g, {3, 5}), randn(g, {4, 3})}; },
       [](const Inputs& x) { return matmul(x[0].mT(), x[1].mT()); }},
      {"matmul", "batched [2,3,5] @ shared [5,4]", [](Generator& g) { return Inputs{randn(g, {2, 3, 5}), randn(g, {5, 4})}; },
       [](const Inputs& x) { return matmul(x[0], x[1]); }},
      {"matmul", "a permuted (non-BLAS) batch view", [](Generator& g) { return Inputs{randn(g, {3, 2, 4}), randn(g, {4, 3})}; },
       [](const Inputs& x) { return matmul(x[0].permute({1, 0, 2}), x[1]); }},
      {"linear", "x [2,3,5], W [4,5], b [4]", [](Generator& g) { return Inputs{randn(g, {2, 3, 5}), randn(g, {4, 5}), randn(g, {4})}; },
       [](const Inputs& x) { return linear(x[0], x[1], x[2]); }},
      {"linear", "no bias, W a transposed view", [](Generator& g) { return Inputs{randn(g, {3, 5}), randn(g, {5, 4})}; },
       [](const Inputs& x) { return linear(x[0], x[1].mT()); }},
      {"linear", "bias, x a transposed view", [](Generator& g) { return Inputs{randn(g, {5, 3}), randn(g, {2, 5}), randn(g, {2})}; },
       [](const Inputs& x) { return linear(x[0].mT(), x[1], x[2]); }},
      // ---- normalisation
      {"layer_norm", "weight and bias over the last dim 7", [](Generator& g) { return Inputs{randn(g, {3, 2, 7}), randn(g, {7}), randn(g, {7})}; },
       [](const Inputs& x) { return layer_norm(x[0], x[1], x[2], 1e-5); }},
      {"layer_norm", "no affine, transposed view", [](Generator& g) { return Inputs{randn(g, {5, 3})}; },
       [](const Inputs& x) { return layer_norm(x[0].mT(), Tensor(), Tensor(), 1e-6); }},
      {"layer_norm", "weight and bias as strided views", [](Generator& g) { return Inputs{randn(g, {2, 5}), randn(g, {10}), randn(g, {5, 2})}; },
       [](const Inputs& x) { return layer_norm(x[0], x[1].slice(0, 0, 10, 2), x[2].narrow(1, 1, 1).reshape({5}), 1e-5); }},
      {"rms_norm", "weight, last dim 6", [](Generator& g) { return Inputs{randn(g, {4, 6}), randn(g, {6})}; },
       [](const Inputs& x) { return rms_norm(x[0], x[1], 1e-6); }},
      {"rms_norm", "no weight, [2,3,5]", [](Generator& g) { return Inputs{randn(g, {2, 3, 5})}; },
       [](const Inputs& x) { return rms_norm(x[0], Tensor(), 1e-5); }},
      // ---- lookups and the patch convolution
      {"embedding", "repeated ids [2,3] into [7,5]", [](Generator& g) { return Inputs{randn(g, {7, 5}), ids({1, 4, 1, 6, 0, 4}, {2, 3})}; },
       [](const Inputs& x) { return embedding(x[0], x[1]); }},
      {"conv2d_patch", "[2,3,7,9] kernel 3 (border not covered), bias", [](Generator& g) {
         return Inputs{randn(g, {2, 3, 7, 9}), randn(g, {4, 3, 3, 3}), randn(g, {4})}; },
       [](const Inputs& x) { return conv2d_patch(x[0], x[1], x[2]); }},
      {"conv2d_patch", "kernel 2x3, no bias", [](Generator& g) { return Inputs{randn(g, {1, 2, 4, 6}), randn(g, {3, 2, 2, 3})}; },
       [](const Inputs& x) { return conv2d_patch(x[0], x[1]); }},
      // ---- shape and indexing
      {"reshape", "[3,4,5] -> [5,-1], and of a permuted view", [](Generator& g) { return Inputs{randn(g, {3, 4, 5})}; },
       [](const Inputs& x) { return x[0].reshape({5, -1}) + x[0].permute({2, 1, 0}).reshape({5, 12}); }},
      {"reshape", "unsqueeze and squeeze", [](Generator& g) { return Inputs{randn(g, {3, 4})}; },
       [](const Inputs& x) { return x[0].unsqueeze(1).squeeze(1).unsqueeze(0); }},
      {"permute", "[2,3,4] -> (2,0,1)", [](Generator& g) { return Inputs{randn(g, {2, 3, 4})}; },
       [](const Inputs& x) { return x[0].permute({2, 0, 1}); }},
      {"permute", "transpose(0, 2)", [](Generator& g) { return Inputs{randn(g, {2, 3, 4})}; },
       [](const Inputs& x) { return x[0].transpose(0, 2); }},
      {"slice", "step 2 from a negative start", [](Generator& g) { return Inputs{randn(g, {3, 9})}; },
       [](const Inputs& x) { return x[0].slice(1, -8, 9, 2); }},
      {"slice", "narrow of dim 0", [](Generator& g) { return Inputs{randn(g, {6, 4})}; },
       [](const Inputs& x) { return x[0].narrow(0, 2, 3); }},
      {"expand", "[3,1] -> [2,3,4]", [](Generator& g) { return Inputs{randn(g, {3, 1})}; },
       [](const Inputs& x) { return x[0].expand({2, 3, 4}); }},
      {"cat", "three inputs along dim 1", [](Generator& g) { return Inputs{randn(g, {2, 1, 3}), randn(g, {2, 4, 3}), randn(g, {2, 2, 3})}; },
       [](const Inputs& x) { return cat({x[0], x[1], x[2]}, 1); }},
      {"cat", "stack along a new dim 1", [](Generator& g) { return Inputs{randn(g, {3, 2}), randn(g, {3, 2})}; },
       [](const Inputs& x) { return stack({x[0], x[1]}, 1); }},
      {"index_select", "repeated indices along dim 1", [](Generator& g) { return Inputs{randn(g, {3, 5, 2}), ids({4, 0, 4, 2}, {4})}; },
       [](const Inputs& x) { return index_select(x[0], 1, x[1]); }},
      {"gather", "dim 1 with a smaller index", [](Generator& g) { return Inputs{randn(g, {3, 5}), ids({0, 4, 4, 1, 2, 2}, {2, 3})}; },
       [](const Inputs& x) { return gather(x[0], 1, x[1]); }},
      {"scatter_add", "into x and from src, repeated targets", [](Generator& g) {
         return Inputs{randn(g, {3, 4}), randn(g, {2, 4}), ids({2, 0, 2, 1, 2, 2, 0, 0}, {2, 4})}; },
       [](const Inputs& x) { return scatter_add(x[0], 0, x[2], x[1]); }},
      {"masked_fill", "broadcast mask [1,5]", [](Generator& g) { return Inputs{randn(g, {3, 5}), mask({1, 0, 0, 1, 0}, {1, 5})}; },
       [](const Inputs& x) { return masked_fill(x[0], x[1], -2.0); }},
      {"where", "broadcast condition [3,1], a [3,4], b [4]", [](Generator& g) {
         return Inputs{randn(g, {3, 4}), randn(g, {4}), mask({1, 0, 1}, {3, 1})}; },
       [](const Inputs& x) { return where(x[2], x[0], x[1]); }},
      // ---- transformer pieces
      {"rotary_embedding", "positions [T], theta 1e4", [](Generator& g) { return Inputs{randn(g, {2, 3, 5, 6}), ids({0, 1, 2, 3, 4}, {5})}; },
       [](const Inputs& x) { return rotary_embedding(x[0], x[1], 10000.0); }},
      {"rotary_embedding", "per-row positions [B,T], theta 1e6", [](Generator& g) {
         return Inputs{randn(g, {2, 1, 3, 8}), ids({5, 9, 200, 0, 0, 1}, {2, 3})}; },
       [](const Inputs& x) { return rotary_embedding(x[0], x[1], 1e6); }},
      {"scaled_dot_product_attention", "plain, T=4 S=5", [](Generator& g) {
         return Inputs{randn(g, {2, 2, 4, 3}), randn(g, {2, 2, 5, 3}), randn(g, {2, 2, 5, 3})}; },
       [](const Inputs& x) { return scaled_dot_product_attention(x[0], x[1], x[2]); }},
      {"scaled_dot_product_attention", "causal, grouped-query (4 query heads, 2 kv), Dv != D", [](Generator& g) {
         return Inputs{randn(g, {1, 4, 5, 3}), randn(g, {1, 2, 5, 3}), randn(g, {1, 2, 5, 2})}; },
       [](const Inputs& x) { AttentionOptions o; o.causal = true; return scaled_dot_product_attention(x[0], x[1], x[2], o); }},
      {"scaled_dot_product_attention", "key padding + causal, T > S (rows that see nothing), scale 0.3", [](Generator& g) {
         return Inputs{randn(g, {2, 2, 5, 4}), randn(g, {2, 1, 3, 4}), randn(g, {2, 1, 3, 4}), mask({1, 1, 0, 1, 0, 1}, {2, 3})}; },
       [](const Inputs& x) {
         AttentionOptions o;
         o.causal = true, o.scale = 0.3, o.key_padding_mask = x[3];
         return scaled_dot_product_attention(x[0], x[1], x[2], o);
       }},
      {"scaled_dot_product_attention", "k a prefix view of a longer cache, v a head-split view (read in place)", [](Generator& g) {
         return Inputs{randn(g, {2, 4, 2, 3}), randn(g, {2, 2, 6, 3}), randn(g, {2, 4, 2, 2})}; },
       [](const Inputs& x) {
         AttentionOptions o;
         o.causal = true;
         return scaled_dot_product_attention(x[0], x[1].narrow(2, 0, 4), x[2].transpose(1, 2), o);
       }},
      {"token_logprobs", "[2,3,7] with ignored positions", [](Generator& g) {
         return Inputs{randn(g, {2, 3, 7}), ids({3, -100, 6, 0, 2, -100}, {2, 3})}; },
       [](const Inputs& x) { return token_logprobs(x[0], x[1]); }},
      {"token_logprobs", "cross_entropy, mean over kept positions", [](Generator& g) {
         return Inputs{randn(g, {5, 4}), ids({1, -100, 3, 3, 0}, {5})}; },
       [](const Inputs& x) { return cross_entropy(x[0], x[1]); }},
      {"linear_token_logprobs", "7 rows in chunks of 3 (a short last chunk), V 11", [](Generator& g) {
         return Inputs{randn(g, {7, 5}), randn(g, {11, 5}), ids({0, 10, 3, 3, 7, 1, 10}, {7})}; },
       [](const Inputs& x) { return linear_token_logprobs(x[0], x[1], x[2], 3); }},
      {"linear_token_logprobs", "rows picked from a transposed view, one chunk", [](Generator& g) {
         return Inputs{randn(g, {4, 6}), randn(g, {5, 4}), ids({4, 0, 2, 1, 4, 3}, {6})}; },
       [](const Inputs& x) { return linear_token_logprobs(x[0].mT(), x[1], x[2]); }},
      {"checkpoint", "a recomputed block: tanh(x W) * x, x used twice inside, x a transposed view", [](Generator& g) {
         return Inputs{randn(g, {4, 3}), randn(g, {4, 4})}; },
       [](const Inputs& x) {
         return checkpoint([](const std::vector<Tensor>& in) { return tanh(matmul(in[0], in[1])) * in[0]; }, {x[0].mT(), x[1]});
       }},
      {"mul", "dropout p=0.3 (seeded mask)", [](Generator& g) { return Inputs{randn(g, {4, 6})}; },
       [](const Inputs& x) { Generator gen(7); return dropout(x[0], 0.3, gen); }},
      {"mul", "drop_path p=0.4 on [6,2,3]", [](Generator& g) { return Inputs{randn(g, {6, 2, 3})}; },
       [](const Inputs& x) { Generator gen(8); return drop_path(x[0], 0.4, gen); }},
  };
  return cases;
}

}  // namespace

const std::vector<GradcheckCase>& gradcheck_cases() {
  static const std::vector<GradcheckCase> cases = make_cases();
  return cases;
}

}  // namespace ivl
