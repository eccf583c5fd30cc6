// Reductions over dims (sum, mean, max, argmax) and softmax / log_softmax, each with its backward.
// Sums of f32 accumulate in f64 on the CPU, one element after another in row-major order of the
// reduced dims: the same inputs give the same bits, and the rounding error is f64's, not f32's
// (a different order could still change the last bit of the f32 result).
#include <algorithm>
#include <cmath>
#include <limits>

#include "tensor/autograd.h"
#include "tensor/cpu_helpers.h"
#include "tensor/ops.h"

namespace ivl {
using namespace detail;

namespace {

const OpName kSum("sum"), kMax("max"), kSoftmax("softmax"), kLogSoftmax("log_softmax");

// Sorted, de-duplicated, wrapped dims; all dims when `dims` is empty.
std::vector<int64_t> reduced_dims(const Tensor& x, const std::vector<int64_t>& dims, const char* op) {
  std::vector<int64_t> out;
  if (dims.empty()) {
    for (int64_t d = 0; d < x.dim(); ++d) out.push_back(d);
    return out;
  }
  for (int64_t d : dims) out.push_back(wrap_dim(d, x.dim(), op));
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Shape kept_shape(const Tensor& x, const std::vector<int64_t>& dims) {
  Shape shape = x.shape();
  for (int64_t d : dims) shape[static_cast<size_t>(d)] = 1;
  return shape;
}

// x viewed as [outer, n, inner] around `dim` (x contiguous).
struct RowLayout {
  int64_t outer = 1, n = 1, inner = 1;
};
RowLayout row_layout(const Tensor& x, int64_t dim) {
  RowLayout l;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (d < dim) l.outer *= x.size(d);
    else if (d == dim) l.n = x.size(d);
    else l.inner *= x.size(d);
  }
  return l;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  if (computes_in_f32(x)) return to_dtype(sum(to_dtype(x, DType::f32), dims_in, keepdim), x.dtype());
  if (x.device() == Device::cuda) no_cuda_kernel("sum");
  const std::vector<int64_t> dims = reduced_dims(x, dims_in, "sum");
  // Kept dims first, reduced dims last: each output element then sums one contiguous run.
  std::vector<int64_t> order;
  Shape out_shape;
  int64_t run = 1;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (!std::binary_search(dims.begin(), dims.end(), d)) order.push_back(d), out_shape.push_back(x.size(d));
  for (int64_t d : dims) order.push_back(d), run *= x.size(d);
  const Tensor xs = contiguous(permute(x.detach(), order));
  const bool integral = !is_floating(x.dtype());
  Tensor out = Tensor::empty(out_shape, integral ? DType::i64 : x.dtype());
  const int64_t rows = out.numel();
  if (integral) {
    int64_t* po = out.data<int64_t>();
    dispatch_any(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      const T* px = static_cast<const T*>(xs.data_ptr());
      for (int64_t r = 0; r < rows; ++r) {
        int64_t acc = 0;
        for (int64_t i = 0; i < run; ++i) acc += static_cast<int64_t>(load(px[r * run + i]));
        po[r] = acc;
      }
    });
  } else {
    dispatch_float(x.dtype(), "sum", [&](auto tag) {
      using T = decltype(tag);
      const T* px = static_cast<const T*>(xs.data_ptr());
      T* po = static_cast<T*>(out.data_ptr());
      for (int64_t r = 0; r < rows; ++r) {
        double acc = 0;
        for (int64_t i = 0; i < run; ++i) acc += px[r * run + i];
        po[r] = static_cast<T>(acc);
      }
    });
  }
  const Shape keep = kept_shape(x, dims);
  if (keepdim) out = reshape(out, keep);
  const Shape in_shape = x.shape();
  return record(kSum, out, {x}, [keep, in_shape](const Tensor& g) {
    return std::vector<Tensor>{contiguous(expand(reshape(g, keep), in_shape))};
  });
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  if (computes_in_f32(x)) return to_dtype(mean(to_dtype(x, DType::f32), dims, keepdim), x.dtype());  // one rounding
  const std::vector<int64_t> reduced = reduced_dims(x, dims, "mean");
  int64_t count = 1;
  for (int64_t d : reduced) count *= x.size(d);
  return sum(x, dims, keepdim) / static_cast<double>(count);
}

// Values and (first) indices of the maximum along `dim`, keepdim shape.
static std::pair<Tensor, Tensor> max_with_indices(const Tensor& x, int64_t dim, const char* op) {
  if (x.device() == Device::cuda) no_cuda_kernel(op);
  if (x.size(dim) == 0) fail(std::string(op) + ": cannot reduce the empty dim " + std::to_string(dim) + " of " + x.str());
  const Tensor xc = contiguous(x.detach());
  const RowLayout l = row_layout(xc, dim);
  Shape keep = x.shape();
  keep[static_cast<size_t>(dim)] = 1;
  Tensor values = Tensor::empty(keep, x.dtype()), indices = Tensor::empty(keep, DType::i64);
  int64_t* pi = indices.data<int64_t>();
  dispatch_any(x.dtype(), [&](auto tag) {
    using T = decltype(tag);
    const T* px = static_cast<const T*>(xc.data_ptr());
    T* pv = static_cast<T*>(values.data_ptr());
    for (int64_t o = 0; o < l.outer; ++o)
      for (int64_t i = 0; i < l.inner; ++i) {
        const T* row = px + o * l.n * l.inner + i;
        int64_t best = 0;
        for (int64_t j = 1; j < l.n; ++j) {
          const double candidate = load(row[j * l.inner]), current = load(row[best * l.inner]);
          if (std::isnan(current)) break;  // NaN wins, as in PyTorch
          if (candidate > current || std::isnan(candidate)) best = j;
        }
        pv[o * l.inner + i] = row[best * l.inner];
        pi[o * l.inner + i] = best;
      }
  });
  return {values, indices};
}

Tensor max(const Tensor& x, int64_t dim_in, bool keepdim) {
  if (computes_in_f32(x)) return to_dtype(max(to_dtype(x, DType::f32), dim_in, keepdim), x.dtype());
  const int64_t dim = wrap_dim(dim_in, x.dim(), "max");
  auto found = max_with_indices(x, dim, "max");
  Tensor values = found.first;
  const Tensor indices = found.second;  // not a structured binding: clang 14 cannot capture those
  const Shape keep = values.shape(), in_shape = x.shape();
  if (!keepdim) values = squeeze(values, dim);
  return record(kMax, values, {x}, [=](const Tensor& g) {
    const Tensor zeros = Tensor::zeros(in_shape, g.dtype(), g.device());
    return std::vector<Tensor>{scatter_add(zeros, dim, indices, reshape(g, keep))};
  });
}

Tensor argmax(const Tensor& x, int64_t dim_in, bool keepdim) {
  const int64_t dim = wrap_dim(dim_in, x.dim(), "argmax");
  Tensor indices = max_with_indices(x, dim, "argmax").second;
  return keepdim ? indices : squeeze(indices, dim);
}

// ---------------------------------------------------------------- softmax

// log_softmax when `log`, else softmax, along `dim` of a contiguous x.
static Tensor softmax_forward(const Tensor& x, int64_t dim, bool log, const char* op) {
  if (x.device() == Device::cuda) no_cuda_kernel(op);
  const Tensor xc = contiguous(x.detach());
  const RowLayout l = row_layout(xc, dim);
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* px = static_cast<const T*>(xc.data_ptr());
    T* py = static_cast<T*>(out.data_ptr());
    for (int64_t o = 0; o < l.outer; ++o)
      for (int64_t i = 0; i < l.inner; ++i) {
        const int64_t base = o * l.n * l.inner + i;
        T m = -std::numeric_limits<T>::infinity();
        for (int64_t j = 0; j < l.n; ++j) m = std::max(m, px[base + j * l.inner]);
        double total = 0;
        for (int64_t j = 0; j < l.n; ++j) total += std::exp(static_cast<double>(px[base + j * l.inner] - m));
        if (log) {
          const T lse = static_cast<T>(std::log(total));
          for (int64_t j = 0; j < l.n; ++j) py[base + j * l.inner] = px[base + j * l.inner] - m - lse;
        } else {
          for (int64_t j = 0; j < l.n; ++j)
            py[base + j * l.inner] = static_cast<T>(std::exp(static_cast<double>(px[base + j * l.inner] - m)) / total);
        }
      }
  });
  return out;
}

// softmax: dx = y * (g - sum(g * y)); log_softmax: dx = g - exp(y) * sum(g).
static Tensor softmax_backward(const Tensor& y, const Tensor& g_in, int64_t dim, bool log, const char* op) {
  if (y.device() == Device::cuda) no_cuda_kernel(op);
  const Tensor g = contiguous(g_in);
  const RowLayout l = row_layout(y, dim);
  Tensor dx = Tensor::empty(y.shape(), y.dtype());
  dispatch_float(y.dtype(), op, [&](auto tag) {
    using T = decltype(tag);
    const T* py = static_cast<const T*>(y.data_ptr());
    const T* pg = static_cast<const T*>(g.data_ptr());
    T* pd = static_cast<T*>(dx.data_ptr());
    for (int64_t o = 0; o < l.outer; ++o)
      for (int64_t i = 0; i < l.inner; ++i) {
        const int64_t base = o * l.n * l.inner + i;
        double dot = 0;
        for (int64_t j = 0; j < l.n; ++j) {
          const int64_t k = base + j * l.inner;
          dot += log ? static_cast<double>(pg[k]) : static_cast<double>(pg[k]) * py[k];
        }
        for (int64_t j = 0; j < l.n; ++j) {
          const int64_t k = base + j * l.inner;
          pd[k] = log ? static_cast<T>(pg[k] - std::exp(static_cast<double>(py[k])) * dot)
                      : static_cast<T>(py[k] * (pg[k] - dot));
        }
      }
  });
  return dx;
}

static Tensor softmax_op(const Tensor& x, int64_t dim_in, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  if (computes_in_f32(x)) return to_dtype(softmax_op(to_dtype(x, DType::f32), dim_in, log), x.dtype());
  const int64_t dim = wrap_dim(dim_in, x.dim(), name);
  Tensor y = softmax_forward(x, dim, log, name);
  Tensor saved = y.detach();
  return record(log ? kLogSoftmax : kSoftmax, y, {x}, [saved, dim, log, name](const Tensor& g) {
    return std::vector<Tensor>{softmax_backward(saved, g, dim, log, name)};
  });
}

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_op(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_op(x, dim, true); }

}  // namespace ivl
