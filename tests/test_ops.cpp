// Forward values of the ops against plain loops or hand-worked numbers (the gradient checks cover
// backward), half-precision behaviour, and the error messages of bad arguments.
#include <cmath>

#include "tensor/autograd.h"
#include "tensor/cpu_helpers.h"
#include "tensor/ops.h"
#include "tensor/random.h"
#include "tests/catch.h"
#include "tests/test_support.h"

using namespace ivl;

namespace {

// C[i][j] = sum_k A[i][k] B[k][j] with plain loops, for 2-D tensors of any layout.
Tensor naive_matmul(const Tensor& a, const Tensor& b) {
  const int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  const std::vector<double> x = a.to_doubles(), y = b.to_doubles();
  std::vector<double> c(static_cast<size_t>(m * n), 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j)
      for (int64_t p = 0; p < k; ++p) c[static_cast<size_t>(i * n + j)] += x[static_cast<size_t>(i * k + p)] * y[static_cast<size_t>(p * n + j)];
  return Tensor::from_vector(c, {m, n});
}

}  // namespace

TEST_CASE("matmul matches plain loops for every layout and batch broadcast", "[ops]") {
  Generator gen(1);
  for (DType dtype : {DType::f32, DType::f64}) {
    const Tensor a = Tensor::randn({7, 5}, gen, dtype), b = Tensor::randn({5, 3}, gen, dtype);
    const double tol = dtype == DType::f32 ? 1e-5 : 1e-12;
    CHECK(max_abs_diff(matmul(a, b).to(DType::f64), naive_matmul(a, b)) < tol);
    CHECK(max_abs_diff(matmul(a.mT().contiguous().mT(), b), naive_matmul(a, b)) < tol);
    CHECK(max_abs_diff(matmul(b.mT(), a.mT()).to(DType::f64), naive_matmul(b.mT(), a.mT())) < tol);
    CHECK(max_abs_diff(matmul(a.slice(1, 0, 5, 2), b.slice(0, 0, 5, 2)).to(DType::f64),
                       naive_matmul(a.slice(1, 0, 5, 2), b.slice(0, 0, 5, 2))) < tol);
  }
  const Tensor a = Tensor::randn({2, 1, 4, 3}, gen, DType::f64), b = Tensor::randn({5, 3, 2}, gen, DType::f64);
  const Tensor c = matmul(a, b);
  REQUIRE(c.shape() == Shape{2, 5, 4, 2});
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 5; ++j)
      CHECK(max_abs_diff(c.narrow(0, i, 1).narrow(1, j, 1).reshape({4, 2}),
                         naive_matmul(a.narrow(0, i, 1).reshape({4, 3}), b.narrow(0, j, 1).reshape({3, 2}))) < 1e-12);
  CHECK(matmul(Tensor::ones({2, 0}), Tensor::ones({0, 3})).to_doubles() == std::vector<double>(6, 0.0));
  CHECK_THROWS_WITH(matmul(Tensor::ones({2, 3}), Tensor::ones({4, 5})), HasSubstr("[2, 3] @ [4, 5]"));
  CHECK_THROWS_WITH(matmul(Tensor::ones({2, 3}), Tensor::ones({3, 5}, DType::f64)), HasSubstr("dtypes differ"));
}

TEST_CASE("few-row products (decoding) match plain loops, and a row's bits do not depend on the rows beside it", "[ops]") {
  Generator gen(4);
  // k = 37 leaves a tail past the eight lanes; n = 23 leaves columns past the groups of four; the
  // leading dimensions are wider than the rows.
  const int64_t k = 37, n = 23, lda = 41, ldb = 40, ldc = 29;
  const std::vector<float> a = floats(Tensor::randn({16, lda}, gen)), b = floats(Tensor::randn({n, ldb}, gen));
  std::vector<float> alone(static_cast<size_t>(16 * ldc));
  for (int64_t i = 0; i < 16; ++i)  // each row on its own
    detail::gemm_few_rows(1, n, k, a.data() + i * lda, lda, b.data(), ldb, alone.data() + i * ldc, ldc, false);
  for (int64_t i = 0; i < 16; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double expected = 0;
      for (int64_t p = 0; p < k; ++p) expected += static_cast<double>(a[static_cast<size_t>(i * lda + p)]) * b[static_cast<size_t>(j * ldb + p)];
      CHECK(std::abs(alone[static_cast<size_t>(i * ldc + j)] - expected) < 1e-5);
    }
  for (int64_t m = 1; m <= 16; ++m)
    for (bool portable : {false, true}) {
      INFO("m = " << m << (portable ? ", portable path" : ", vector path"));
      std::vector<float> c(static_cast<size_t>(m * ldc), -7.0f);
      detail::gemm_few_rows(m, n, k, a.data(), lda, b.data(), ldb, c.data(), ldc, false, portable);
      bool same = true, accumulated = true;
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) same = same && c[static_cast<size_t>(i * ldc + j)] == alone[static_cast<size_t>(i * ldc + j)];
      CHECK(same);
      CHECK(c[static_cast<size_t>(n)] == -7.0f);  // past the row's n columns: untouched
      detail::gemm_few_rows(m, n, k, a.data(), lda, b.data(), ldb, c.data(), ldc, true, portable);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          const float once = alone[static_cast<size_t>(i * ldc + j)];
          accumulated = accumulated && c[static_cast<size_t>(i * ldc + j)] == once + once;
        }
      CHECK(accumulated);
    }
  // bf16 B: the bits of the f32 kernel on B widened first.
  std::vector<uint16_t> b16(b.size());
  std::vector<float> widened(b.size());
  for (size_t i = 0; i < b.size(); ++i) b16[i] = f32_to_bf16(b[i]), widened[i] = bf16_to_f32(b16[i]);
  for (int64_t m : {1, 2, 5, 16}) {
    std::vector<float> c16(static_cast<size_t>(m * ldc)), c32(static_cast<size_t>(m * ldc));
    detail::gemm_few_rows_bf16(m, n, k, a.data(), lda, b16.data(), ldb, c16.data(), ldc, false);
    detail::gemm_few_rows(m, n, k, a.data(), lda, widened.data(), ldb, c32.data(), ldc, false);
    CHECK(c16 == c32);
  }
  // Through linear: a decoding batch's rows equal the rows decoded one at a time.
  const Tensor x = Tensor::randn({8, 64}, gen), w = Tensor::randn({300, 64}, gen);
  const Tensor together = linear(x, w);
  for (int64_t i = 0; i < 8; ++i) CHECK(floats(linear(x.narrow(0, i, 1), w)) == floats(together.narrow(0, i, 1)));
  // bf16 decoding reads the weight as stored: the same bits as the detour through f32 copies.
  const Tensor x16 = to_dtype(x, DType::bf16), w16 = to_dtype(w, DType::bf16), bias16 = to_dtype(Tensor::randn({300}, gen), DType::bf16);
  NoGrad no_grad;
  CHECK(linear(x16, w16, bias16).to_doubles() ==
        to_dtype(linear(to_dtype(x16, DType::f32), to_dtype(w16, DType::f32), to_dtype(bias16, DType::f32)), DType::bf16).to_doubles());
  CHECK(linear(x16, w16).dtype() == DType::bf16);
}

TEST_CASE("linear is x W^T + b, bf16 inputs compute in f32 and return bf16", "[ops]") {
  Generator gen(2);
  const Tensor x = Tensor::randn({2, 3, 4}, gen, DType::f64), w = Tensor::randn({5, 4}, gen, DType::f64),
               b = Tensor::randn({5}, gen, DType::f64);
  CHECK(max_abs_diff(linear(x, w, b), matmul(x, w.mT()) + b) < 1e-12);
  CHECK(max_abs_diff(linear(x, w), matmul(x, w.mT())) < 1e-12);
  const Tensor xb = x.to(DType::bf16), wb = w.to(DType::bf16), bb = b.to(DType::bf16);
  const Tensor yb = linear(xb, wb, bb);
  CHECK(yb.dtype() == DType::bf16);
  const Tensor want = linear(xb.to(DType::f32), wb.to(DType::f32), bb.to(DType::f32)).to(DType::bf16);
  CHECK(max_abs_diff(yb, want) == 0);
  CHECK_THROWS_WITH(linear(x, Tensor::ones({5, 3}, DType::f64)), HasSubstr("last dim must be 3"));
}

TEST_CASE("elementwise values, broadcasting, scalars and comparisons", "[ops]") {
  const Tensor a = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor r = Tensor::from_vector<float>({10, 20, 30}, {3});
  CHECK((a + r).to_doubles() == std::vector<double>{11, 22, 33, 14, 25, 36});
  CHECK((a.mT() * Tensor::from_vector<float>({1, -1}, {2})).to_doubles() == std::vector<double>{1, -4, 2, -5, 3, -6});
  CHECK((1.0 - a).to_doubles() == std::vector<double>{0, -1, -2, -3, -4, -5});
  CHECK((a / 2.0).to_doubles() == std::vector<double>{0.5, 1, 1.5, 2, 2.5, 3});
  CHECK(gt(a, Tensor::scalar(3)).to_doubles() == std::vector<double>{0, 0, 0, 1, 1, 1});
  CHECK(logical_not(gt(a, Tensor::scalar(3))).to_doubles() == std::vector<double>{1, 1, 1, 0, 0, 0});
  CHECK(maximum(a, Tensor::scalar(3.5)).to_doubles() == std::vector<double>{3.5, 3.5, 3.5, 4, 5, 6});
  CHECK((Tensor::arange(4) + Tensor::arange(4)).to_doubles() == std::vector<double>{0, 2, 4, 6});
  const Tensor x = Tensor::from_vector<double>({-2, -0.5, 0, 0.5, 3}, {5});
  const std::vector<double> v = x.to_doubles();
  for (size_t i = 0; i < v.size(); ++i) {
    const double s = 1 / (1 + std::exp(-v[i]));
    CHECK(std::abs(sigmoid(x).to_doubles()[i] - s) < 1e-15);
    CHECK(std::abs(silu(x).to_doubles()[i] - v[i] * s) < 1e-15);
    CHECK(std::abs(log_sigmoid(x).to_doubles()[i] - std::log(s)) < 1e-15);
    CHECK(std::abs(gelu(x).to_doubles()[i] - 0.5 * v[i] * (1 + std::erf(v[i] / std::sqrt(2.0)))) < 1e-15);
    CHECK(std::abs(gelu_tanh(x).to_doubles()[i] -
                   0.5 * v[i] * (1 + std::tanh(std::sqrt(2 / M_PI) * (v[i] + 0.044715 * v[i] * v[i] * v[i])))) < 1e-15);
  }
  CHECK(log_sigmoid(Tensor::scalar(-800, DType::f64)).item() == -800);
  CHECK_THROWS_WITH(a + Tensor::ones({4}), HasSubstr("do not broadcast"));
}

TEST_CASE("bf16 arithmetic runs in f32 and keeps scalars in f32", "[ops]") {
  const Tensor x = Tensor::from_vector<float>({1.5f, -0.75f, 3.0f}, {3}).to(DType::bf16);
  CHECK(exp(x).dtype() == DType::bf16);
  CHECK(max_abs_diff(exp(x), exp(x.to(DType::f32)).to(DType::bf16)) == 0);
  // 0.1 rounded to bf16 first would give a different product (PyTorch keeps the scalar in f32).
  CHECK(max_abs_diff(x * 0.1, (x.to(DType::f32) * 0.1).to(DType::bf16)) == 0);
  CHECK((x * 0.1).dtype() == DType::bf16);
}

TEST_CASE("reductions, softmax and log_softmax", "[ops]") {
  const Tensor a = Tensor::from_vector<double>({1, 5, 3, 4, 2, 6}, {2, 3});
  CHECK(sum(a).item() == 21);
  CHECK(sum(a, {0}).to_doubles() == std::vector<double>{5, 7, 9});
  CHECK(sum(a, {1}, true).shape() == Shape{2, 1});
  CHECK(mean(a, {1}).to_doubles() == std::vector<double>{3, 4});
  CHECK(max(a, 1).to_doubles() == std::vector<double>{5, 6});
  CHECK(argmax(a, 0).to_doubles() == std::vector<double>{1, 0, 1});
  CHECK(sum(gt(a, Tensor::scalar(2, DType::f64))).item() == 4);  // bool sums count
  const Tensor s = softmax(Tensor::from_vector<double>({1, 2, 3}, {3}));
  const double z = std::exp(1) + std::exp(2) + std::exp(3);
  CHECK(std::abs(s.to_doubles()[2] - std::exp(3) / z) < 1e-15);
  const Tensor big = Tensor::from_vector<float>({1000, 1001, 1002}, {3});
  CHECK(std::abs(softmax(big).to_doubles()[2] - std::exp(3) / z) < 1e-6);
  CHECK(std::abs(log_softmax(big).to_doubles()[0] - (1 - std::log(z))) < 1e-4);
  const Tensor col = softmax(a, 0);
  CHECK(max_abs_diff(sum(col, {0}), Tensor::ones({3}, DType::f64)) < 1e-15);
}

TEST_CASE("layer_norm and rms_norm follow their formulas", "[ops]") {
  const Tensor x = Tensor::from_vector<double>({1, 2, 3, 4, -1, 0, 2, 7}, {2, 4});
  const Tensor w = Tensor::from_vector<double>({1, 2, 0.5, -1}, {4}), b = Tensor::from_vector<double>({0, 1, 0, 2}, {4});
  const Tensor mu = mean(x, {1}, true);
  const Tensor var = mean((x - mu) * (x - mu), {1}, true);
  CHECK(max_abs_diff(layer_norm(x, w, b, 1e-5), (x - mu) / sqrt(var + 1e-5) * w + b) < 1e-14);
  CHECK(max_abs_diff(rms_norm(x, w, 1e-6), x * rsqrt(mean(x * x, {1}, true) + 1e-6) * w) < 1e-14);
  CHECK_THROWS_WITH(layer_norm(x, Tensor::ones({3}, DType::f64), Tensor(), 1e-5), HasSubstr("must be [4]"));
}

TEST_CASE("shape ops: cat, stack, index_select, gather, scatter_add, where, masked_fill, embedding", "[ops]") {
  const Tensor a = Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2}), b = Tensor::from_vector<float>({5, 6}, {2, 1});
  CHECK(cat({a, b}, 1).to_doubles() == std::vector<double>{1, 2, 5, 3, 4, 6});
  CHECK(stack({a, a}, 0).shape() == Shape{2, 2, 2});
  CHECK_THROWS_WITH(cat({a, b}, 0), HasSubstr("differ outside dim 0"));
  const Tensor idx = Tensor::from_vector<int64_t>({1, 1, 0}, {3});
  CHECK(index_select(a, 0, idx).to_doubles() == std::vector<double>{3, 4, 3, 4, 1, 2});
  CHECK(index_select(a.to(DType::bf16), 1, idx).to_doubles() == std::vector<double>{2, 2, 1, 4, 4, 3});
  const Tensor g = Tensor::from_vector<int64_t>({1, 0, 0, 0}, {2, 2});
  CHECK(gather(a, 1, g).to_doubles() == std::vector<double>{2, 1, 3, 3});
  CHECK(scatter_add(Tensor::zeros({2, 2}), 1, g, a).to_doubles() == std::vector<double>{2, 1, 7, 0});
  const Tensor m = Tensor::from_vector<uint8_t>({1, 0}, {2}).to(DType::boolean);
  CHECK(where(m, a, Tensor::scalar(0)).to_doubles() == std::vector<double>{1, 0, 3, 0});
  CHECK(masked_fill(a, m, -1).to_doubles() == std::vector<double>{-1, 2, -1, 4});
  const Tensor table = Tensor::from_vector<float>({0, 0, 1, 1, 2, 2}, {3, 2});
  const Tensor e = embedding(table, Tensor::from_vector<int32_t>({2, 0, 1, 2}, {2, 2}));
  CHECK(e.shape() == Shape{2, 2, 2});
  CHECK(e.to_doubles() == std::vector<double>{2, 2, 0, 0, 1, 1, 2, 2});
  CHECK_THROWS_WITH(embedding(table, Tensor::from_vector<int64_t>({3}, {1})), HasSubstr("index 3 is out of range [0, 3)"));
  CHECK_THROWS_WITH(gather(a, 1, Tensor::from_vector<int64_t>({-1}, {1, 1})), HasSubstr("out of range"));
}

TEST_CASE("conv2d_patch equals a direct convolution with stride = kernel", "[ops]") {
  Generator gen(3);
  const Tensor x = Tensor::randn({2, 3, 8, 10}, gen, DType::f64), w = Tensor::randn({4, 3, 4, 5}, gen, DType::f64),
               b = Tensor::randn({4}, gen, DType::f64);
  const Tensor y = conv2d_patch(x, w, b);
  REQUIRE(y.shape() == Shape{2, 4, 2, 2});
  const std::vector<double> xv = x.to_doubles(), wv = w.to_doubles(), bv = b.to_doubles(), yv = y.to_doubles();
  double worst = 0;
  for (int n = 0; n < 2; ++n)
    for (int o = 0; o < 4; ++o)
      for (int py = 0; py < 2; ++py)
        for (int px = 0; px < 2; ++px) {
          double acc = bv[static_cast<size_t>(o)];
          for (int c = 0; c < 3; ++c)
            for (int i = 0; i < 4; ++i)
              for (int j = 0; j < 5; ++j)
                acc += xv[static_cast<size_t>(((n * 3 + c) * 8 + py * 4 + i) * 10 + px * 5 + j)] *
                       wv[static_cast<size_t>(((o * 3 + c) * 4 + i) * 5 + j)];
          worst = std::max(worst, std::abs(acc - yv[static_cast<size_t>(((n * 4 + o) * 2 + py) * 2 + px)]));
        }
  CHECK(worst < 1e-12);
}

TEST_CASE("rotary_embedding rotates pairs (i, i + D/2) by position * theta^(-2i/D)", "[ops]") {
  Generator gen(4);
  const Tensor x = Tensor::randn({1, 2, 3, 4}, gen, DType::f64);
  const Tensor pos = Tensor::from_vector<int64_t>({0, 5, 17}, {3});
  const Tensor y = rotary_embedding(x, pos, 100.0);
  const std::vector<double> xv = x.to_doubles(), yv = y.to_doubles();
  for (int h = 0; h < 2; ++h)
    for (int t = 0; t < 3; ++t)
      for (int i = 0; i < 2; ++i) {
        const double angle = std::vector<double>{0, 5, 17}[static_cast<size_t>(t)] * std::pow(100.0, -2.0 * i / 4);
        const size_t base = static_cast<size_t>((h * 3 + t) * 4);
        const double x1 = xv[base + static_cast<size_t>(i)], x2 = xv[base + static_cast<size_t>(i) + 2];
        CHECK(std::abs(yv[base + static_cast<size_t>(i)] - (x1 * std::cos(angle) - x2 * std::sin(angle))) < 1e-14);
        CHECK(std::abs(yv[base + static_cast<size_t>(i) + 2] - (x2 * std::cos(angle) + x1 * std::sin(angle))) < 1e-14);
      }
  const Tensor per_row = rotary_embedding(x, Tensor::from_vector<int64_t>({0, 5, 17}, {1, 3}), 100.0);
  CHECK(max_abs_diff(per_row, y) == 0);
  CHECK_THROWS_WITH(rotary_embedding(x, Tensor::arange(4), 100.0), HasSubstr("positions must be"));
}

TEST_CASE("attention equals softmax(q k^T scale + mask) v, with grouped heads and padding", "[ops]") {
  Generator gen(5);
  const int64_t B = 2, Hq = 4, Hkv = 2, T = 3, S = 5, D = 4;
  const Tensor q = Tensor::randn({B, Hq, T, D}, gen, DType::f64), k = Tensor::randn({B, Hkv, S, D}, gen, DType::f64),
               v = Tensor::randn({B, Hkv, S, D}, gen, DType::f64);
  const Tensor keep = Tensor::from_vector<uint8_t>({1, 1, 1, 0, 1, 1, 1, 1, 1, 1}, {B, S}).to(DType::boolean);
  AttentionOptions options;
  options.causal = true, options.key_padding_mask = keep;
  const Tensor got = scaled_dot_product_attention(q, k, v, options);
  // Reference: repeat each kv head for its query group, build the additive mask by hand.
  const Tensor kr = index_select(k, 1, Tensor::from_vector<int64_t>({0, 0, 1, 1}, {4}));
  const Tensor vr = index_select(v, 1, Tensor::from_vector<int64_t>({0, 0, 1, 1}, {4}));
  std::vector<double> bias(static_cast<size_t>(B * T * S));
  const std::vector<double> kv = keep.to_doubles();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t s = 0; s < S; ++s)
        bias[static_cast<size_t>((b * T + t) * S + s)] = (s <= t + S - T && kv[static_cast<size_t>(b * S + s)]) ? 0 : -1e300;
  const Tensor scores = matmul(q, kr.mT()) / std::sqrt(4.0) + Tensor::from_vector(bias, {B, 1, T, S});
  CHECK(max_abs_diff(got, matmul(softmax(scores, -1), vr)) < 1e-14);
  CHECK_THROWS_WITH(scaled_dot_product_attention(q, Tensor::randn({B, 3, S, D}, gen, DType::f64),
                                                 Tensor::randn({B, 3, S, D}, gen, DType::f64)),
                    HasSubstr("multiple of key/value heads"));
}

TEST_CASE("token_logprobs gathers log_softmax at the targets and zeroes ignored positions", "[ops]") {
  Generator gen(6);
  const Tensor logits = Tensor::randn({2, 3, 11}, gen, DType::f64);
  const Tensor targets = Tensor::from_vector<int64_t>({4, -100, 10, 0, 7, -100}, {2, 3});
  const std::vector<double> got = token_logprobs(logits, targets).to_doubles();
  const std::vector<double> ls = log_softmax(logits, -1).to_doubles();
  const std::vector<double> t = targets.to_doubles();
  for (size_t i = 0; i < 6; ++i) CHECK(std::abs(got[i] - (t[i] < 0 ? 0 : ls[i * 11 + static_cast<size_t>(t[i])])) < 1e-14);
  CHECK(std::abs(cross_entropy(logits, targets).item() - (-(got[0] + got[2] + got[3] + got[4]) / 4)) < 1e-14);
  CHECK_THROWS_WITH(token_logprobs(logits, Tensor::from_vector<int64_t>({11, 0, 0, 0, 0, 0}, {2, 3})),
                    HasSubstr("outside the vocabulary"));
}

TEST_CASE("dropout and drop_path are seeded, scaled and off in eval", "[ops]") {
  const Tensor x = Tensor::ones({100, 50});
  Generator g1(9), g2(9);
  const Tensor a = dropout(x, 0.25, g1), b = dropout(x, 0.25, g2);
  CHECK(a.to_doubles() == b.to_doubles());
  const std::vector<double> v = a.to_doubles();
  const double kept = static_cast<double>(std::count(v.begin(), v.end(), 1 / 0.75f));
  CHECK(std::count(v.begin(), v.end(), 0.0) + kept == 5000);
  CHECK(std::abs(kept / 5000 - 0.75) < 0.03);
  CHECK(dropout(x, 0.25, g1, false).storage() == x.storage());
  Generator g3(10);
  const std::vector<double> p = drop_path(x, 0.5, g3).to_doubles();
  for (size_t row = 0; row < 100; ++row)
    CHECK(std::count(p.begin() + static_cast<long>(row * 50), p.begin() + static_cast<long>(row * 50 + 50), p[row * 50]) == 50);
  CHECK_THROWS_WITH(dropout(x, 1.0, g1), HasSubstr("[0, 1)"));
}

TEST_CASE("regressions: one-row linear keeps its bias, targets outlive forward, K = 0 backward", "[ops]") {
  const Tensor w = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}), b = Tensor::from_vector<float>({10, 20}, {2});
  for (int i = 0; i < 3; ++i) CHECK(linear(Tensor::ones({1, 3}), w, b).to_doubles() == std::vector<double>{16, 35});
  CHECK(b.to_doubles() == std::vector<double>{10, 20});
  CHECK(linear(Tensor::ones({3}), w, b).to_doubles() == std::vector<double>{16, 35});

  Generator gen(11);
  Tensor logits = Tensor::randn({4, 6}, gen, DType::f64);
  logits.set_requires_grad();
  Tensor loss = sum(token_logprobs(logits, Tensor::from_vector<int32_t>({1, 5, -100, 0}, {4})));  // i32: converted inside
  loss.backward();
  const std::vector<double> with_i32 = logits.grad().to_doubles();
  logits.zero_grad();
  sum(token_logprobs(logits, Tensor::from_vector<int64_t>({1, 5, -100, 0}, {4}))).backward();
  CHECK(logits.grad().to_doubles() == with_i32);

  Tensor a = Tensor::ones({2, 3, 0}, DType::f64), m = Tensor::ones({0, 4}, DType::f64);
  a.set_requires_grad(), m.set_requires_grad();
  sum(matmul(a, m)).backward();
  CHECK(m.grad().shape() == Shape{0, 4});
  CHECK(a.grad().shape() == Shape{2, 3, 0});
}

TEST_CASE("regressions: dtype rules of PyTorch for integers, bools and NaN", "[ops]") {
  const Tensor i = Tensor::from_vector<int64_t>({1, 2, 3}, {3});
  CHECK((i * 0.5).dtype() == DType::f32);
  CHECK((i * 0.5).to_doubles() == std::vector<double>{0.5, 1, 1.5});
  CHECK((i + 1.0).dtype() == DType::i64);
  CHECK(std::isinf((i / 0.0).to_doubles()[0]));  // true division: no integer trap
  CHECK(div(i, i).dtype() == DType::f32);
  const Tensor flag = gt(i, Tensor::scalar(1, DType::i64));
  CHECK_THROWS_WITH(flag + flag, HasSubstr("bool tensors take only comparisons"));
  const double nan = std::nan("");
  const Tensor x = Tensor::from_vector<double>({1, nan, -2}, {3});
  CHECK(std::isnan(relu(x).to_doubles()[1]));
  CHECK(std::isnan(maximum(x, Tensor::scalar(0, DType::f64)).to_doubles()[1]));
  CHECK(std::isnan(max(x, 0).item()));
  CHECK(argmax(x, 0).item() == 1);
  CHECK(max(Tensor::ones({0, 5}), 1).shape() == Shape{0});
}

TEST_CASE("regressions: views and argument checks", "[ops]") {
  const Tensor x = Tensor::from_vector<float>({0, 1, 2, 3, 4, 5}, {2, 3}).mT();
  CHECK(x.unsqueeze(1).storage() == x.storage());  // no copy of a strided tensor
  CHECK(x.unsqueeze(1).squeeze(1).to_doubles() == x.to_doubles());
  CHECK(Tensor::scalar(2).squeeze(0).dim() == 0);
  CHECK(x.narrow(0, -1, 1).to_doubles() == std::vector<double>{2, 5});
  CHECK_THROWS_WITH(Tensor::ones({1}).expand({-2}), HasSubstr("invalid size"));
  CHECK_THROWS_WITH(Tensor::empty({int64_t{1} << 40, int64_t{1} << 40}), HasSubstr("too large"));
  Generator gen(12);
  const Tensor q = Tensor::randn({1, 2, 3, 4}, gen);
  CHECK_THROWS_WITH(scaled_dot_product_attention(q.to(DType::bf16), q, q), HasSubstr("dtypes differ"));
  CHECK_THROWS_WITH(layer_norm(q.to(DType::bf16), Tensor::ones({4}), Tensor(), 1e-5), HasSubstr("input's dtype"));
  const Tensor pos = Tensor::from_vector<int64_t>({3, 4, 5}, {1, 3});
  CHECK(max_abs_diff(rotary_embedding(q, pos, 1e4), rotary_embedding(q, pos.reshape({3}), 1e4)) == 0);
  Tensor table = Tensor::randn({5, 2}, gen).to(DType::bf16);
  table.set_requires_grad();
  sum(index_select(table, 0, Tensor::from_vector<int64_t>({1, 1, 4}, {3})).to(DType::f32)).backward();
  CHECK(table.grad().dtype() == DType::bf16);
  CHECK(table.grad().to_doubles() == std::vector<double>{0, 0, 2, 2, 0, 0, 0, 0, 1, 1});
}
