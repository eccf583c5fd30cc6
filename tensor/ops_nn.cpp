// Fused neural-network nodes: layer_norm, rms_norm, rotary embedding, scaled-dot-product attention,
// token log-prob gather (and cross_entropy on top), plus dropout and drop_path. Each fused node
// saves the minimum (inputs and per-row statistics) and recomputes the rest in backward.
// Shapes: x [rows, D] after flattening leading dims; q [B, Hq, T, D], k/v [B, Hkv, S, D];
// logits [N, V].
#include <cmath>
#include <limits>

#include "tensor/autograd.h"
#include "tensor/cpu_helpers.h"
#include "tensor/ops.h"
#include "tensor/random.h"

namespace ivl {
using namespace detail;

namespace {
const OpName kLayerNorm("layer_norm"), kRmsNorm("rms_norm"), kRotary("rotary_embedding"),
    kAttention("scaled_dot_product_attention"), kTokenLogprobs("token_logprobs"),
    kLinearTokenLogprobs("linear_token_logprobs");

void require_cpu(std::initializer_list<Tensor> tensors, const char* op) {
  if (common_device(tensors, op) == Device::cuda) no_cuda_kernel(op);
}

void check_norm_params(const Tensor& x, const Tensor& weight, const Tensor& bias, const char* op) {
  for (const Tensor* p : {&weight, &bias})
    if (p->defined() && (p->dim() != 1 || p->size(0) != x.size(-1) || p->dtype() != x.dtype()))
      fail(std::string(op) + ": parameter " + p->str() + " must be [" + int_str(x.size(-1)) + "] of the input's dtype (" +
           x.str() + ")");
}
}  // namespace

// ---------------------------------------------------------------- layer_norm / rms_norm
// One kernel for both: `centered` (LayerNorm) subtracts the mean; RMSNorm does not.
// Per row: xhat = (x - mean) * rstd, y = xhat * w + b; rstd = 1/sqrt(var + eps).

static Tensor norm_op(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps, bool centered) {
  const char* name = centered ? "layer_norm" : "rms_norm";
  if (x.dim() < 1) fail(std::string(name) + ": needs at least one dim");
  check_norm_params(x, weight, bias, name);
  if (computes_in_f32(x)) {
    auto f = [](const Tensor& t) { return t.defined() ? to_dtype(t, DType::f32) : t; };
    return to_dtype(norm_op(f(x), f(weight), f(bias), eps, centered), x.dtype());
  }
  require_cpu({x, weight, bias}, name);
  const Tensor xc = contiguous(x.detach());
  const Tensor wc = weight.defined() ? contiguous(weight.detach()) : weight, bc = bias.defined() ? contiguous(bias.detach()) : bias;
  const int64_t D = x.size(-1), rows = D ? x.numel() / D : 0;
  Tensor y = Tensor::empty(x.shape(), x.dtype()), mean_t = Tensor::empty({rows}, DType::f64),
         rstd_t = Tensor::empty({rows}, DType::f64);
  dispatch_float(x.dtype(), name, [&](auto tag) {
    using T = decltype(tag);
    const T* px = static_cast<const T*>(xc.data_ptr());
    const T* pw = wc.defined() ? static_cast<const T*>(wc.data_ptr()) : nullptr;
    const T* pb = bc.defined() ? static_cast<const T*>(bc.data_ptr()) : nullptr;
    T* py = static_cast<T*>(y.data_ptr());
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = px + r * D;
      double mu = 0, var = 0;
      if (centered) {
        for (int64_t i = 0; i < D; ++i) mu += row[i];
        mu /= static_cast<double>(D);
      }
      for (int64_t i = 0; i < D; ++i) var += (row[i] - mu) * (row[i] - mu);
      const double rstd = 1.0 / std::sqrt(var / static_cast<double>(D) + eps);
      mean_t.data<double>()[r] = mu, rstd_t.data<double>()[r] = rstd;
      for (int64_t i = 0; i < D; ++i) {
        double v = (row[i] - mu) * rstd;
        if (pw) v *= pw[i];
        if (pb) v += pb[i];
        py[r * D + i] = static_cast<T>(v);
      }
    }
  });
  const bool need_x = x.requires_grad(), need_w = weight.defined() && weight.requires_grad(),
             need_b = bias.defined() && bias.requires_grad();
  return record(centered ? kLayerNorm : kRmsNorm, y, {x, weight, bias}, [=](const Tensor& g_in) {
    const Tensor g = contiguous(g_in);
    Tensor gx = Tensor::empty(xc.shape(), xc.dtype());
    Tensor gw = Tensor::zeros({D}, DType::f64), gb = Tensor::zeros({D}, DType::f64);
    dispatch_float(xc.dtype(), name, [&](auto tag) {
      using T = decltype(tag);
      const T* px = static_cast<const T*>(xc.data_ptr());
      const T* pg = static_cast<const T*>(g.data_ptr());
      const T* pw = wc.defined() ? static_cast<const T*>(wc.data_ptr()) : nullptr;
      T* pd = static_cast<T*>(gx.data_ptr());
      double* pgw = gw.data<double>();
      double* pgb = gb.data<double>();
      for (int64_t r = 0; r < rows; ++r) {
        const double mu = mean_t.data<double>()[r], rstd = rstd_t.data<double>()[r];
        double mean_gh = 0, mean_gh_xhat = 0;  // means over the row of (g*w) and (g*w*xhat)
        for (int64_t i = 0; i < D; ++i) {
          const double xhat = (px[r * D + i] - mu) * rstd, gh = pg[r * D + i] * (pw ? pw[i] : 1.0);
          mean_gh += gh, mean_gh_xhat += gh * xhat;
          pgw[i] += pg[r * D + i] * xhat, pgb[i] += pg[r * D + i];
        }
        mean_gh /= static_cast<double>(D), mean_gh_xhat /= static_cast<double>(D);
        if (!centered) mean_gh = 0;
        for (int64_t i = 0; i < D; ++i) {
          const double xhat = (px[r * D + i] - mu) * rstd, gh = pg[r * D + i] * (pw ? pw[i] : 1.0);
          pd[r * D + i] = static_cast<T>(rstd * (gh - mean_gh - xhat * mean_gh_xhat));
        }
      }
    });
    return std::vector<Tensor>{need_x ? gx : Tensor(), need_w ? to_dtype(gw, xc.dtype()) : Tensor(),
                               need_b ? to_dtype(gb, xc.dtype()) : Tensor()};
  });
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  return norm_op(x, weight, bias, eps, true);
}
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) { return norm_op(x, weight, Tensor(), eps, false); }

// ---------------------------------------------------------------- rotary embedding
// out[i] = x[i] cos - x[i+h] sin, out[i+h] = x[i+h] cos + x[i] sin (h = D/2, angle p * inv_freq[i]);
// the backward is the inverse rotation.

static Tensor rotary_apply(const Tensor& x, const Tensor& positions, double theta, bool inverse) {
  const Tensor xc = contiguous(x);
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3), half = D / 2;
  const bool per_batch = positions.dim() == 2 && positions.size(0) > 1;  // [1, T] serves every row
  const Tensor pos = contiguous(to_dtype(positions, DType::i64));
  const int64_t* pp = pos.data<int64_t>();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), "rotary_embedding", [&](auto tag) {
    using F = decltype(tag);
    std::vector<F> inv_freq(static_cast<size_t>(half));  // as the official code: 1 / theta^(2i/D) in F
    for (int64_t i = 0; i < half; ++i)
      inv_freq[static_cast<size_t>(i)] = F(1) / std::pow(static_cast<F>(theta), static_cast<F>(2 * i) / static_cast<F>(D));
    std::vector<F> cos_t(static_cast<size_t>(half)), sin_t(static_cast<size_t>(half));
    const F* px = static_cast<const F*>(xc.data_ptr());
    F* po = static_cast<F*>(out.data_ptr());
    const F sign = inverse ? F(-1) : F(1);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t) {
        const F p = static_cast<F>(pp[per_batch ? b * T + t : t]);
        for (int64_t i = 0; i < half; ++i) {
          const F angle = p * inv_freq[static_cast<size_t>(i)];
          cos_t[static_cast<size_t>(i)] = std::cos(angle), sin_t[static_cast<size_t>(i)] = sign * std::sin(angle);
        }
        for (int64_t h = 0; h < H; ++h) {
          const F* row = px + ((b * H + h) * T + t) * D;
          F* o = po + ((b * H + h) * T + t) * D;
          for (int64_t i = 0; i < half; ++i) {
            const F c = cos_t[static_cast<size_t>(i)], s = sin_t[static_cast<size_t>(i)];
            o[i] = row[i] * c - row[i + half] * s;
            o[i + half] = row[i + half] * c + row[i] * s;
          }
        }
      }
  });
  return out;
}

Tensor rotary_embedding(const Tensor& x, const Tensor& positions, double theta) {
  if (computes_in_f32(x)) return to_dtype(rotary_embedding(to_dtype(x, DType::f32), positions, theta), x.dtype());
  require_cpu({x, positions}, "rotary_embedding");
  if (x.dim() != 4 || x.size(3) % 2 != 0) fail("rotary_embedding: x must be [B, H, T, D] with D even, got " + x.str());
  const bool ok = (positions.dim() == 1 && positions.size(0) == x.size(2)) ||
                  (positions.dim() == 2 && (positions.size(0) == x.size(0) || positions.size(0) == 1) &&
                   positions.size(1) == x.size(2));
  if (!ok) fail("rotary_embedding: positions must be [T], [1, T] or [B, T] for x " + x.str() + ", got " + positions.str());
  if (!(theta > 0)) fail("rotary_embedding: theta must be positive");
  Tensor out = rotary_apply(x.detach(), positions, theta, false);
  return record(kRotary, out, {x}, [positions, theta](const Tensor& g) {
    return std::vector<Tensor>{rotary_apply(g, positions, theta, true)};
  });
}

// ---------------------------------------------------------------- attention
// Per (batch, query head): S = scale * Q K^T, masked entries -inf, P = softmax(S), O = P V. The
// backward recomputes P from the saved row log-sum-exp: dV = P^T dO, dP = dO V^T,
// dS = P * (dP - rowsum(dO * O)), dQ = scale dS K, dK = scale dS^T Q (summed over a KV group).

namespace {

struct AttentionShape {
  int64_t B, Hq, Hkv, T, S, D, Dv;
  double scale;
  bool causal;
};

// Where head (b, h) of a [B, H, rows, width] operand starts and how far apart its rows are. q, k and v
// are read in place when each row is contiguous (stride 1 along the width): the head-split views of
// a projection and the prefix views of a KV cache come in without a copy. Anything else is copied.
struct HeadRows {
  Tensor keep;  // owns the memory read (the input itself or its contiguous copy)
  int64_t batch_stride = 0, head_stride = 0, row_stride = 0;
  template <class F> const F* at(int64_t b, int64_t h) const {
    return static_cast<const F*>(keep.data_ptr()) + b * batch_stride + h * head_stride;
  }
};

HeadRows head_rows(const Tensor& x) {
  const Tensor t = x.stride(3) == 1 && x.stride(2) >= x.size(3) ? x.detach() : contiguous(x.detach());
  return {t, t.stride(0), t.stride(1), t.stride(2)};
}

// Rows of one head's [T, S] scores per parallel chunk.
int64_t attention_row_grain(const AttentionShape& a) { return std::max<int64_t>(1, kElementwiseGrain / std::max<int64_t>(a.S, 1)); }

// Fills `scores` [T, S] for one (b, h) with scale * q k^T and the masks applied (-inf).
template <class F>
void attention_scores(const AttentionShape& a, const F* q, int64_t ldq, const F* k, int64_t ldk, const uint8_t* key_mask,
                      F* scores) {
  cpu_gemm<F>(false, true, a.T, a.S, a.D, q, ldq, k, ldk, scores, a.S);
  const F scale = static_cast<F>(a.scale), minus_inf = -std::numeric_limits<F>::infinity();
  parallel_for(a.T, attention_row_grain(a), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t)
      for (int64_t s = 0; s < a.S; ++s) {
        F& score = scores[t * a.S + s];
        const bool hidden = (a.causal && s > t + (a.S - a.T)) || (key_mask && !key_mask[s]);
        score = hidden ? minus_inf : score * scale;
      }
  });
}

}  // namespace

Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionOptions& options) {
  const char* name = "scaled_dot_product_attention";
  check_same_dtype(q, k, name), check_same_dtype(q, v, name);
  if (computes_in_f32(q)) {
    AttentionOptions o = options;
    return to_dtype(scaled_dot_product_attention(to_dtype(q, DType::f32), to_dtype(k, DType::f32), to_dtype(v, DType::f32), o),
                    q.dtype());
  }
  require_cpu({q, k, v, options.key_padding_mask}, name);
  if (q.dim() != 4 || k.dim() != 4 || v.dim() != 4) fail(std::string(name) + ": q, k, v must be 4-D [B, H, T, D]");
  AttentionShape a{q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3), v.size(3), options.scale, options.causal};
  if (k.size(0) != a.B || v.size(0) != a.B || v.size(1) != a.Hkv || v.size(2) != a.S || k.size(3) != a.D)
    fail(std::string(name) + ": shapes do not match: q " + shape_str(q.shape()) + ", k " + shape_str(k.shape()) + ", v " +
         shape_str(v.shape()));
  if (a.Hkv == 0 || a.Hq % a.Hkv != 0)
    fail(std::string(name) + ": query heads (" + int_str(a.Hq) + ") must be a multiple of key/value heads (" + int_str(a.Hkv) + ")");
  if (a.scale == 0) a.scale = 1.0 / std::sqrt(static_cast<double>(a.D));
  Tensor mask;
  if (options.key_padding_mask.defined()) {
    mask = contiguous(options.key_padding_mask);
    if (mask.dtype() != DType::boolean || mask.shape() != Shape{a.B, a.S})
      fail(std::string(name) + ": key_padding_mask must be bool [" + int_str(a.B) + ", " + int_str(a.S) + "], got " + mask.str());
  }
  const HeadRows qr = head_rows(q), kr = head_rows(k), vr = head_rows(v);
  Tensor out = Tensor::empty({a.B, a.Hq, a.T, a.Dv}, q.dtype()), lse = Tensor::empty({a.B, a.Hq, a.T}, DType::f64);
  const int64_t group = a.Hq / a.Hkv;
  dispatch_float(q.dtype(), name, [&](auto tag) {
    using F = decltype(tag);
    std::vector<F> scores(static_cast<size_t>(a.T * a.S));
    for (int64_t b = 0; b < a.B; ++b)
      for (int64_t h = 0; h < a.Hq; ++h) {
        const int64_t hk = h / group;
        const uint8_t* km = mask.defined() ? mask.data<uint8_t>() + b * a.S : nullptr;
        attention_scores<F>(a, qr.at<F>(b, h), qr.row_stride, kr.at<F>(b, hk), kr.row_stride, km, scores.data());
        double* row_lse = lse.data<double>() + (b * a.Hq + h) * a.T;
        parallel_for(a.T, attention_row_grain(a), [&](int64_t begin, int64_t end) {
          std::vector<double> e(static_cast<size_t>(a.S));
          for (int64_t t = begin; t < end; ++t) {
            F* row = scores.data() + t * a.S;
            F m = -std::numeric_limits<F>::infinity();
            for (int64_t s = 0; s < a.S; ++s) m = std::max(m, row[s]);
            if (m == -std::numeric_limits<F>::infinity()) {  // sees no key: zeros out, no gradient
              std::fill(row, row + a.S, F(0));
              row_lse[t] = -std::numeric_limits<double>::infinity();
              continue;
            }
            double total = 0;
            for (int64_t s = 0; s < a.S; ++s) total += (e[static_cast<size_t>(s)] = std::exp(static_cast<double>(row[s] - m)));
            row_lse[t] = static_cast<double>(m) + std::log(total);
            for (int64_t s = 0; s < a.S; ++s) row[s] = static_cast<F>(e[static_cast<size_t>(s)] / total);
          }
        });
        cpu_gemm<F>(false, false, a.T, a.Dv, a.S, scores.data(), a.S, vr.at<F>(b, hk), vr.row_stride,
                    static_cast<F*>(out.data_ptr()) + (b * a.Hq + h) * a.T * a.Dv, a.Dv);
      }
  });
  const Tensor od = out.detach();
  const Shape q_shape = q.shape(), k_shape = k.shape(), v_shape = v.shape();
  return record(kAttention, out, {q, k, v}, [=](const Tensor& g_in) {
    const Tensor g = contiguous(g_in);
    const DType dtype = od.dtype();
    Tensor gq = Tensor::empty(q_shape, dtype), gk = Tensor::zeros(k_shape, dtype), gv = Tensor::zeros(v_shape, dtype);
    dispatch_float(od.dtype(), name, [&](auto tag) {
      using F = decltype(tag);
      std::vector<F> p(static_cast<size_t>(a.T * a.S)), dp(static_cast<size_t>(a.T * a.S));
      for (int64_t b = 0; b < a.B; ++b)
        for (int64_t h = 0; h < a.Hq; ++h) {
          const int64_t hk = h / group, qoff = (b * a.Hq + h) * a.T, koff = (b * a.Hkv + hk) * a.S;
          const F* qp = qr.at<F>(b, h);
          const F* kp = kr.at<F>(b, hk);
          const F* vp = vr.at<F>(b, hk);
          const F* gp = static_cast<const F*>(g.data_ptr()) + qoff * a.Dv;
          const F* op = static_cast<const F*>(od.data_ptr()) + qoff * a.Dv;
          const uint8_t* km = mask.defined() ? mask.data<uint8_t>() + b * a.S : nullptr;
          attention_scores<F>(a, qp, qr.row_stride, kp, kr.row_stride, km, p.data());
          const double* row_lse = lse.data<double>() + qoff;
          parallel_for(a.T, attention_row_grain(a), [&](int64_t begin, int64_t end) {
            for (int64_t t = begin; t < end; ++t)
              for (int64_t s = 0; s < a.S; ++s) {
                F& score = p[static_cast<size_t>(t * a.S + s)];
                score = std::isinf(row_lse[t]) ? F(0) : static_cast<F>(std::exp(static_cast<double>(score) - row_lse[t]));
              }
          });
          // dV += P^T dO; dP = dO V^T
          cpu_gemm<F>(true, false, a.S, a.Dv, a.T, p.data(), a.S, gp, a.Dv, static_cast<F*>(gv.data_ptr()) + koff * a.Dv, a.Dv, true);
          cpu_gemm<F>(false, true, a.T, a.S, a.Dv, gp, a.Dv, vp, vr.row_stride, dp.data(), a.S);
          parallel_for(a.T, attention_row_grain(a), [&](int64_t begin, int64_t end) {
            for (int64_t t = begin; t < end; ++t) {
              double delta = 0;
              for (int64_t j = 0; j < a.Dv; ++j) delta += static_cast<double>(gp[t * a.Dv + j]) * op[t * a.Dv + j];
              for (int64_t s = 0; s < a.S; ++s) {
                const size_t i = static_cast<size_t>(t * a.S + s);
                dp[i] = static_cast<F>(p[i] * (dp[i] - delta) * a.scale);  // now scale * dS
              }
            }
          });
          cpu_gemm<F>(false, false, a.T, a.D, a.S, dp.data(), a.S, kp, kr.row_stride, static_cast<F*>(gq.data_ptr()) + qoff * a.D, a.D);
          cpu_gemm<F>(true, false, a.S, a.D, a.T, dp.data(), a.S, qp, qr.row_stride, static_cast<F*>(gk.data_ptr()) + koff * a.D, a.D, true);
        }
    });
    return std::vector<Tensor>{gq, gk, gv};
  });
}

// ---------------------------------------------------------------- token log-probs
// log p(target) = logit[target] - logsumexp(logits). Both nodes save the per-row log-sum-exp; the
// backward is g * (onehot(target) - softmax(logits)).

namespace {

// log(sum_j exp(row[j])) with the running max taken out, summed in f64.
template <class F> double row_logsumexp(const F* row, int64_t V) {
  F m = -std::numeric_limits<F>::infinity();
  for (int64_t j = 0; j < V; ++j) m = std::max(m, row[j]);
  double total = 0;
  for (int64_t j = 0; j < V; ++j) total += std::exp(static_cast<double>(row[j] - m));
  return static_cast<double>(m) + std::log(total);
}

// The gradient of g * log p(target) with respect to one row of logits, written over the row.
template <class F> void logprob_row_backward(const F* logits, int64_t V, int64_t target, double lse, F g, F* out) {
  for (int64_t j = 0; j < V; ++j) out[j] = static_cast<F>(-g * std::exp(static_cast<double>(logits[j]) - lse));
  out[target] += g;
}

void check_targets(const int64_t* ids, int64_t n, int64_t V, int64_t ignore_index, const char* name) {
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] != ignore_index && (ids[i] < 0 || ids[i] >= V))
      fail(std::string(name) + ": target " + int_str(ids[i]) + " at position " + int_str(i) + " is outside the vocabulary [0, " +
           int_str(V) + ")");
}

}  // namespace

Tensor token_logprobs(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  const char* name = "token_logprobs";
  if (computes_in_f32(logits)) return to_dtype(token_logprobs(to_dtype(logits, DType::f32), targets, ignore_index), logits.dtype());
  require_cpu({logits, targets}, name);
  if (logits.dim() < 1 || Shape(logits.shape().begin(), logits.shape().end() - 1) != targets.shape())
    fail(std::string(name) + ": logits " + logits.str() + " and targets " + targets.str() + " do not match ([..., V] and [...])");
  const int64_t V = logits.size(-1), N = targets.numel();
  const Tensor lc = contiguous(logits.detach());
  const Tensor tc = contiguous(to_dtype(targets, DType::i64));
  const int64_t* ids = tc.data<int64_t>();
  check_targets(ids, N, V, ignore_index, name);
  Tensor out = Tensor::empty(targets.shape(), logits.dtype()), lse = Tensor::empty({N}, DType::f64);
  dispatch_float(logits.dtype(), name, [&](auto tag) {
    using F = decltype(tag);
    const F* pl = static_cast<const F*>(lc.data_ptr());
    F* po = static_cast<F*>(out.data_ptr());
    for (int64_t i = 0; i < N; ++i) {
      lse.data<double>()[i] = row_logsumexp(pl + i * V, V);
      po[i] = ids[i] == ignore_index ? F(0) : static_cast<F>(pl[i * V + ids[i]] - lse.data<double>()[i]);
    }
  });
  return record(kTokenLogprobs, out, {logits}, [=](const Tensor& g_in) {
    const int64_t* target_ids = tc.data<int64_t>();  // from the captured tc: the targets outlive forward
    const Tensor g = contiguous(g_in);
    Tensor gl = Tensor::empty(lc.shape(), lc.dtype());
    dispatch_float(lc.dtype(), name, [&](auto tag) {
      using F = decltype(tag);
      const F* pl = static_cast<const F*>(lc.data_ptr());
      const F* pg = static_cast<const F*>(g.data_ptr());
      F* pd = static_cast<F*>(gl.data_ptr());
      for (int64_t i = 0; i < N; ++i) {
        if (target_ids[i] == ignore_index) std::fill(pd + i * V, pd + (i + 1) * V, F(0));
        else logprob_row_backward(pl + i * V, V, target_ids[i], lse.data<double>()[i], pg[i], pd + i * V);
      }
    });
    return std::vector<Tensor>{gl};
  });
}

// The head and the log-prob gather as one node, `chunk` rows at a time: forward makes each chunk's
// logits (one GEMM), keeps its log-sum-exp and drops the logits; backward makes them again, turns them
// into the logit gradient and feeds two GEMMs (d hidden = dlogits W, d weight += dlogits^T hidden).
Tensor linear_token_logprobs(const Tensor& hidden, const Tensor& weight, const Tensor& targets, int64_t chunk) {
  const char* name = "linear_token_logprobs";
  check_same_dtype(hidden, weight, name);
  if (computes_in_f32(hidden))
    return to_dtype(linear_token_logprobs(to_dtype(hidden, DType::f32), to_dtype(weight, DType::f32), targets, chunk), hidden.dtype());
  require_cpu({hidden, weight, targets}, name);
  if (hidden.dim() != 2 || weight.dim() != 2 || weight.size(1) != hidden.size(1) || targets.dim() != 1 ||
      targets.size(0) != hidden.size(0))
    fail(std::string(name) + ": needs hidden [N, H], weight [V, H] and targets [N], got " + hidden.str() + ", " + weight.str() +
         " and " + targets.str());
  if (chunk < 1) fail(std::string(name) + ": chunk must be at least 1 row, got " + int_str(chunk));
  const int64_t N = hidden.size(0), H = hidden.size(1), V = weight.size(0);
  const Tensor hc = contiguous(hidden.detach()), wc = contiguous(weight.detach());
  const Tensor tc = contiguous(to_dtype(targets, DType::i64));
  check_targets(tc.data<int64_t>(), N, V, std::numeric_limits<int64_t>::min(), name);
  const int64_t rows_per_chunk = std::min(chunk, std::max<int64_t>(N, 1));
  Tensor out = Tensor::empty({N}, hidden.dtype()), lse = Tensor::empty({N}, DType::f64);
  dispatch_float(hidden.dtype(), name, [&](auto tag) {
    using F = decltype(tag);
    const F* ph = static_cast<const F*>(hc.data_ptr());
    const F* pw = static_cast<const F*>(wc.data_ptr());
    const int64_t* ids = tc.data<int64_t>();
    std::vector<F> logits(static_cast<size_t>(rows_per_chunk * V));
    for (int64_t r0 = 0; r0 < N; r0 += rows_per_chunk) {
      const int64_t n = std::min(rows_per_chunk, N - r0);
      cpu_gemm<F>(false, true, n, V, H, ph + r0 * H, H, pw, H, logits.data(), V);
      for (int64_t i = 0; i < n; ++i) {
        const F* row = logits.data() + i * V;
        const double l = row_logsumexp(row, V);
        lse.data<double>()[r0 + i] = l;
        static_cast<F*>(out.data_ptr())[r0 + i] = static_cast<F>(row[ids[r0 + i]] - l);
      }
    }
  });
  const bool need_hidden = hidden.requires_grad(), need_weight = weight.requires_grad();
  return record(kLinearTokenLogprobs, out, {hidden, weight}, [=](const Tensor& g_in) {
    const Tensor g = contiguous(g_in);
    const DType dtype = hc.dtype();
    Tensor gh = Tensor::zeros({N, H}, dtype), gw = Tensor::zeros({V, H}, dtype);
    dispatch_float(dtype, name, [&](auto tag) {
      using F = decltype(tag);
      const F* ph = static_cast<const F*>(hc.data_ptr());
      const F* pw = static_cast<const F*>(wc.data_ptr());
      const F* pg = static_cast<const F*>(g.data_ptr());
      const int64_t* ids = tc.data<int64_t>();
      std::vector<F> logits(static_cast<size_t>(rows_per_chunk * V));
      for (int64_t r0 = 0; r0 < N; r0 += rows_per_chunk) {
        const int64_t n = std::min(rows_per_chunk, N - r0);
        cpu_gemm<F>(false, true, n, V, H, ph + r0 * H, H, pw, H, logits.data(), V);
        for (int64_t i = 0; i < n; ++i)  // in place: logits -> their gradient
          logprob_row_backward(logits.data() + i * V, V, ids[r0 + i], lse.data<double>()[r0 + i], pg[r0 + i], logits.data() + i * V);
        if (need_hidden) cpu_gemm<F>(false, false, n, H, V, logits.data(), V, pw, H, static_cast<F*>(gh.data_ptr()) + r0 * H, H);
        if (need_weight) cpu_gemm<F>(true, false, V, H, n, logits.data(), V, ph + r0 * H, H, static_cast<F*>(gw.data_ptr()), H, true);
      }
    });
    return std::vector<Tensor>{need_hidden ? gh : Tensor(), need_weight ? gw : Tensor()};
  });
}

Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index) {
  const Tensor counted = ne(to_dtype(targets, DType::i64), Tensor::scalar(static_cast<double>(ignore_index), DType::i64));
  const double count = sum(counted).item();
  const Tensor logprobs = token_logprobs(logits, targets, ignore_index);
  if (!computes_in_f32(logprobs)) return -sum(logprobs) / count;  // 0 counted: NaN, as PyTorch
  return to_dtype(-sum(to_dtype(logprobs, DType::f32)) / count, logprobs.dtype());  // one rounding, at the end
}

// ---------------------------------------------------------------- dropout, drop_path
// Both multiply by a seeded keep-mask scaled by 1/(1-p); the gradient is that of `mul`.

static Tensor keep_mask(const Shape& shape, double p, Generator& gen, DType dtype, Device device) {
  Tensor mask = Tensor::empty(shape, DType::f64);
  const int64_t n = mask.numel();
  const uint64_t base = gen.reserve(static_cast<uint64_t>(n + 3) / 4);
  const double scale = 1.0 / (1.0 - p);
  double* pm = mask.data<double>();
  for (int64_t i = 0; i < n; ++i) pm[i] = philox_uniform_at(gen.seed(), base, static_cast<uint64_t>(i)) < p ? 0.0 : scale;
  return to_device(to_dtype(mask, dtype), device);
}

static void check_probability(double p, const char* op) {
  if (!(p >= 0 && p < 1)) fail(std::string(op) + ": p must be in [0, 1), got " + std::to_string(p));
}

Tensor dropout(const Tensor& x, double p, Generator& gen, bool training) {
  check_probability(p, "dropout");
  if (!training || p == 0) return x;
  return mul(x, keep_mask(x.shape(), p, gen, x.dtype(), x.device()));
}

Tensor drop_path(const Tensor& x, double p, Generator& gen, bool training) {
  check_probability(p, "drop_path");
  if (!training || p == 0) return x;
  if (x.dim() < 1) fail("drop_path: needs a batch dim");
  Shape shape(static_cast<size_t>(x.dim()), 1);
  shape[0] = x.size(0);
  return mul(x, keep_mask(shape, p, gen, x.dtype(), x.device()));
}

}  // namespace ivl
