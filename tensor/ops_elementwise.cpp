// Elementwise ops: unary math, broadcasting binary arithmetic, comparisons, and the copies and
// conversions (contiguous, clone, dtype, device). Each unary op is one enum value with its formula
// in unary_value and its derivative in unary_derivative, right below, and one table entry saying
// whether its backward needs the saved input or output.
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "tensor/autograd.h"
#include "tensor/cpu_helpers.h"
#include "tensor/cuda_backend.h"
#include "tensor/ops.h"

namespace ivl {
namespace detail {

std::string int_str(int64_t v) { return std::to_string(v); }

void no_cuda_kernel(const char* op) {
  fail(std::string(op) + ": this op has no CUDA kernel yet; move its inputs to the CPU with .to(Device::cpu)");
}

Device common_device(std::initializer_list<Tensor> tensors, const char* op) {
  const Tensor* first = nullptr;
  for (const Tensor& t : tensors) {
    if (!t.defined()) continue;
    if (!first) first = &t;
    else if (t.device() != first->device())
      fail(std::string(op) + ": inputs are on different devices (" + first->str() + " and " + t.str() + ")");
  }
  if (!first) fail(std::string(op) + ": no defined input");
  return first->device();
}

void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  if (a.dtype() != b.dtype())
    fail(std::string(op) + ": dtypes differ (" + a.str() + " and " + b.str() + "); convert one with .to(dtype)");
}

Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  Shape strides(shape.size(), 0);
  const size_t lead = shape.size() - t.shape().size();
  for (size_t i = 0; i < t.shape().size(); ++i)
    strides[lead + i] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  return strides;
}

static cuda::StridedLayout cuda_layout(const Shape& shape, const Shape& strides) {
  if (shape.size() > static_cast<size_t>(cuda::kMaxDims))
    fail("CUDA kernels take at most " + int_str(cuda::kMaxDims) + " dims, got " + shape_str(shape));
  cuda::StridedLayout layout;
  layout.ndim = static_cast<int>(shape.size());
  for (size_t i = 0; i < shape.size(); ++i) layout.shape[i] = shape[i], layout.strides[i] = strides[i];
  return layout;
}

void copy_strided(const Tensor& dst, const Tensor& src) {
  if (dst.shape() != src.shape() || dst.dtype() != src.dtype())
    fail("copy: " + dst.str() + " <- " + src.str() + " needs equal shapes and dtypes");
  const Device device = common_device({dst, src}, "copy");
  if (device == Device::cuda) {
    if (!dst.is_contiguous()) no_cuda_kernel("copy into a strided CUDA view");
    cuda::strided_copy(dst.data_ptr(), src.data_ptr(), dtype_size(src.dtype()), cuda_layout(src.shape(), src.strides()));
    return;
  }
  auto copy_as = [&](auto word) {
    using W = decltype(word);
    W* d = static_cast<W*>(dst.data_ptr());
    const W* s = static_cast<const W*>(src.data_ptr());
    auto row = [&](auto base, int64_t n, auto step) {
      for (int64_t i = 0; i < n; ++i) d[base[0] + i * step[0]] = s[base[1] + i * step[1]];
    };
    bool disjoint = true;  // an expanded destination writes one element from several rows
    for (int64_t i = 0; i < dst.dim(); ++i) disjoint = disjoint && (dst.stride(i) != 0 || dst.size(i) == 1);
    if (disjoint) parallel_for_each_row<2>(dst.shape(), {&dst.strides(), &src.strides()}, row);
    else for_each_row<2>(dst.shape(), {&dst.strides(), &src.strides()}, row);
  };
  switch (dtype_size(src.dtype())) {
    case 1: copy_as(uint8_t{}); break;
    case 2: copy_as(uint16_t{}); break;
    case 4: copy_as(uint32_t{}); break;
    default: copy_as(uint64_t{}); break;
  }
}

}  // namespace detail

using namespace detail;

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* what) {
  Shape out(std::max(a.size(), b.size()));
  for (size_t i = 0; i < out.size(); ++i) {
    const int64_t da = i < out.size() - a.size() ? 1 : a[i - (out.size() - a.size())];
    const int64_t db = i < out.size() - b.size() ? 1 : b[i - (out.size() - b.size())];
    if (da != db && da != 1 && db != 1)
      fail(std::string(what) + ": shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const size_t lead = x.shape().size() - shape.size();
  std::vector<int64_t> dims;
  for (size_t i = 0; i < x.shape().size(); ++i)
    if (i < lead || (shape[i - lead] == 1 && x.shape()[i] != 1)) dims.push_back(static_cast<int64_t>(i));
  return reshape(sum(x, dims, true), shape);
}

// ---------------------------------------------------------------- copies and conversions

static const OpName kContiguous("contiguous"), kClone("clone"), kToDtype("to_dtype"), kToDevice("to_device");

static Tensor copy_of(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  copy_strided(out, x);
  return out;
}

void copy_into(const Tensor& dst, const Tensor& src) {
  if (dst.shape() != src.shape()) fail("copy_into: shapes differ: " + dst.str() + " <- " + src.str());
  if (!dst.is_leaf()) fail("copy_into: the destination " + dst.str() + " is the output of an op in a graph");
  NoGrad no_grad;
  copy_strided(dst.detach(), to_device(to_dtype(src.detach(), dst.dtype()), dst.device()));
}

void add_into(const Tensor& dst, const Tensor& src) {
  if (dst.shape() != src.shape()) fail("add_into: shapes differ: " + dst.str() + " += " + src.str());
  if (!dst.is_leaf()) fail("add_into: the destination " + dst.str() + " is the output of an op in a graph");
  NoGrad no_grad;
  const Tensor s = contiguous(to_device(to_dtype(src.detach(), dst.dtype()), dst.device()));
  if (dst.device() == Device::cpu && dst.is_contiguous() && (dst.dtype() == DType::f32 || dst.dtype() == DType::f64)) {
    dispatch_float(dst.dtype(), "add_into", [&](auto tag) {
      using F = decltype(tag);
      F* d = static_cast<F*>(dst.data_ptr());
      const F* a = static_cast<const F*>(s.data_ptr());
      parallel_for(dst.numel(), kElementwiseGrain, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) d[i] += a[i];
      });
    });
    return;
  }
  copy_strided(dst.detach(), add(dst.detach(), s));  // other dtypes, strided views, CUDA: through the add op
}

void fill_into(const Tensor& dst, double value) {
  if (!dst.is_leaf()) fail("fill_into: the destination " + dst.str() + " is the output of an op in a graph");
  if (dst.is_contiguous() && dst.device() == Device::cuda) return cuda::fill(dst.data_ptr(), dst.dtype(), dst.numel(), value);
  if (dst.is_contiguous() && (dst.dtype() == DType::f32 || dst.dtype() == DType::f64))
    return dispatch_float(dst.dtype(), "fill_into", [&](auto tag) {
      using F = decltype(tag);
      F* d = static_cast<F*>(dst.data_ptr());
      parallel_for(dst.numel(), kElementwiseGrain, [&](int64_t begin, int64_t end) { std::fill(d + begin, d + end, static_cast<F>(value)); });
    });
  copy_into(dst, Tensor::scalar(value, dst.dtype(), dst.device()).expand(dst.shape()));
}

void release_into_zeros(const Tensor& dst) {
  if (!dst.is_leaf()) fail("release_into_zeros: the destination " + dst.str() + " is the output of an op in a graph");
  const Storage& storage = *dst.storage();
  if (!storage.zero_mapped || !dst.is_contiguous() || dst.nbytes() == 0) return fill_into(dst, 0.0);
  const uintptr_t page = 4096, begin = reinterpret_cast<uintptr_t>(dst.data_ptr()), end = begin + dst.nbytes();
  const uintptr_t first = (begin + page - 1) / page * page, last = end / page * page;
  if (last <= first || ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED) != 0)
    return fill_into(dst, 0.0);
  std::memset(reinterpret_cast<void*>(begin), 0, first - begin);  // the partial pages at both ends
  std::memset(reinterpret_cast<void*>(last), 0, end - last);
}

Tensor contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  return record(kContiguous, copy_of(x), {x}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
}

Tensor clone(const Tensor& x) {
  return record(kClone, copy_of(x), {x}, [](const Tensor& g) { return std::vector<Tensor>{g}; });
}

Tensor to_dtype(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  const Tensor src = contiguous(x.detach());
  if (src.device() == Device::cuda) no_cuda_kernel("to_dtype");
  Tensor out = Tensor::empty(x.shape(), dtype);
  const int64_t n = x.numel();
  dispatch_any(src.dtype(), [&](auto s) {
    using S = decltype(s);
    dispatch_any(dtype, [&](auto d) {
      using D = decltype(d);
      const S* in = static_cast<const S*>(src.data_ptr());
      D* o = static_cast<D*>(out.data_ptr());
      for (int64_t i = 0; i < n; ++i) o[i] = store<D>(load(in[i]));
    });
  });
  if (!is_floating(dtype)) return out;  // integer and bool results carry no gradient (as PyTorch)
  const DType from = x.dtype();
  return record(kToDtype, out, {x}, [from](const Tensor& g) { return std::vector<Tensor>{to_dtype(g, from)}; });
}

Tensor to_device(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  const Tensor src = contiguous(x.detach());
  Tensor out = Tensor::empty(x.shape(), x.dtype(), device);
  if (device == Device::cuda) cuda::copy_host_to_device(out.data_ptr(), src.data_ptr(), src.nbytes());
  else cuda::copy_device_to_host(out.data_ptr(), src.data_ptr(), src.nbytes());
  const Device from = x.device();
  return record(kToDevice, out, {x}, [from](const Tensor& g) { return std::vector<Tensor>{to_device(g, from)}; });
}

// ---------------------------------------------------------------- unary math

namespace {

enum class Unary { neg, exp, log, sqrt, rsqrt, tanh, sigmoid, log_sigmoid, silu, gelu, gelu_tanh, relu, abs, pow };

struct UnaryInfo {
  const OpName& op;
  bool backward_needs_x, backward_needs_y;
};

const OpName kNeg("neg"), kExp("exp"), kLog("log"), kSqrt("sqrt"), kRsqrt("rsqrt"), kTanh("tanh"),
    kSigmoid("sigmoid"), kLogSigmoid("log_sigmoid"), kSilu("silu"), kGelu("gelu"), kGeluTanh("gelu_tanh"),
    kRelu("relu"), kAbs("abs"), kPowScalar("pow_scalar");

const UnaryInfo& unary_info(Unary u) {
  static const UnaryInfo table[] = {
      {kNeg, false, false},  {kExp, false, true},     {kLog, true, false},   {kSqrt, false, true},
      {kRsqrt, false, true}, {kTanh, false, true},    {kSigmoid, false, true}, {kLogSigmoid, true, false},
      {kSilu, true, false},  {kGelu, true, false},    {kGeluTanh, true, false}, {kRelu, true, false},
      {kAbs, true, false},   {kPowScalar, true, false},
  };
  return table[static_cast<int>(u)];
}

template <class T> T stable_sigmoid(T x) {
  if (x >= 0) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}

constexpr double kSqrt1_2 = 0.70710678118654752440, kInvSqrt2Pi = 0.39894228040143267794,
                 kSqrt2OverPi = 0.79788456080286535588, kGeluCubic = 0.044715;

// The value of each unary op, computed in T (float for f32 tensors, as PyTorch does).
template <class T> T unary_value(Unary u, T x, T p) {
  switch (u) {
    case Unary::neg: return -x;
    case Unary::exp: return std::exp(x);
    case Unary::log: return std::log(x);
    case Unary::sqrt: return std::sqrt(x);
    case Unary::rsqrt: return T(1) / std::sqrt(x);
    case Unary::tanh: return std::tanh(x);
    case Unary::sigmoid: return stable_sigmoid(x);
    case Unary::log_sigmoid: return std::min(x, T(0)) - std::log1p(std::exp(-std::abs(x)));
    case Unary::silu: return x * stable_sigmoid(x);
    case Unary::gelu: return x * T(0.5) * (T(1) + std::erf(x * T(kSqrt1_2)));
    case Unary::gelu_tanh: return T(0.5) * x * (T(1) + std::tanh(T(kSqrt2OverPi) * (x + T(kGeluCubic) * x * x * x)));
    case Unary::relu: return x > 0 || x != x ? x : T(0);  // NaN passes through, as PyTorch
    case Unary::abs: return std::abs(x);
    case Unary::pow: return std::pow(x, p);
  }
  return x;
}

// d value / dx, from the input x and/or the output y (whichever the table says is saved).
template <class T> T unary_derivative(Unary u, T x, T y, T p) {
  switch (u) {
    case Unary::neg: return T(-1);
    case Unary::exp: return y;
    case Unary::log: return T(1) / x;
    case Unary::sqrt: return T(0.5) / y;
    case Unary::rsqrt: return T(-0.5) * y * y * y;
    case Unary::tanh: return T(1) - y * y;
    case Unary::sigmoid: return y * (T(1) - y);
    case Unary::log_sigmoid: return stable_sigmoid(-x);
    case Unary::silu: {
      const T s = stable_sigmoid(x);
      return s * (T(1) + x * (T(1) - s));
    }
    case Unary::gelu: return T(0.5) * (T(1) + std::erf(x * T(kSqrt1_2))) + x * T(kInvSqrt2Pi) * std::exp(T(-0.5) * x * x);
    case Unary::gelu_tanh: {
      const T t = std::tanh(T(kSqrt2OverPi) * (x + T(kGeluCubic) * x * x * x));
      return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * T(kSqrt2OverPi) * (T(1) + T(3 * kGeluCubic) * x * x);
    }
    case Unary::relu: return x > 0 ? T(1) : T(0);
    case Unary::abs: return x > 0 ? T(1) : (x < 0 ? T(-1) : T(0));
    case Unary::pow: return p * std::pow(x, p - T(1));
  }
  return T(0);
}

Tensor unary_forward(Unary u, const Tensor& x, double param) {
  if (x.device() == Device::cuda) no_cuda_kernel(unary_info(u).op.name);
  const Tensor in = contiguous(x.detach());
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  dispatch_float(x.dtype(), unary_info(u).op.name, [&](auto tag) {
    using T = decltype(tag);
    const T* px = static_cast<const T*>(in.data_ptr());
    T* py = static_cast<T*>(out.data_ptr());
    const T p = static_cast<T>(param);
    parallel_for(x.numel(), kElementwiseGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) py[i] = unary_value(u, px[i], p);
    });
  });
  return out;
}

// dx = g * derivative, one pass. x or y may be undefined when the table says they are not needed.
Tensor unary_backward(Unary u, const Tensor& x, const Tensor& y, const Tensor& g, double param) {
  const Tensor& like = x.defined() ? x : y.defined() ? y : g;
  if (like.device() == Device::cuda) no_cuda_kernel(unary_info(u).op.name);
  const Tensor gc = contiguous(g), xc = x.defined() ? contiguous(x) : x, yc = y.defined() ? contiguous(y) : y;
  Tensor dx = Tensor::empty(like.shape(), like.dtype());
  dispatch_float(like.dtype(), unary_info(u).op.name, [&](auto tag) {
    using T = decltype(tag);
    const T* px = xc.defined() ? static_cast<const T*>(xc.data_ptr()) : nullptr;
    const T* py = yc.defined() ? static_cast<const T*>(yc.data_ptr()) : nullptr;
    const T* pg = static_cast<const T*>(gc.data_ptr());
    T* pd = static_cast<T*>(dx.data_ptr());
    const T p = static_cast<T>(param);
    parallel_for(like.numel(), kElementwiseGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) pd[i] = pg[i] * unary_derivative(u, px ? px[i] : T(0), py ? py[i] : T(0), p);
    });
  });
  return dx;
}

Tensor unary(Unary u, const Tensor& x, double param = 0) {
  if (computes_in_f32(x)) return to_dtype(unary(u, to_dtype(x, DType::f32), param), x.dtype());
  Tensor y = unary_forward(u, x, param);
  if (!needs_grad({x})) return y;
  const UnaryInfo& info = unary_info(u);
  Tensor saved_x = info.backward_needs_x ? x.detach() : Tensor();
  Tensor saved_y = info.backward_needs_y ? y.detach() : Tensor();
  return record(info.op, y, {x}, [u, saved_x, saved_y, param](const Tensor& g) {
    return std::vector<Tensor>{unary_backward(u, saved_x, saved_y, g, param)};
  });
}

}  // namespace

Tensor neg(const Tensor& x) { return unary(Unary::neg, x); }
Tensor exp(const Tensor& x) { return unary(Unary::exp, x); }
Tensor log(const Tensor& x) { return unary(Unary::log, x); }
Tensor sqrt(const Tensor& x) { return unary(Unary::sqrt, x); }
Tensor rsqrt(const Tensor& x) { return unary(Unary::rsqrt, x); }
Tensor tanh(const Tensor& x) { return unary(Unary::tanh, x); }
Tensor sigmoid(const Tensor& x) { return unary(Unary::sigmoid, x); }
Tensor log_sigmoid(const Tensor& x) { return unary(Unary::log_sigmoid, x); }
Tensor silu(const Tensor& x) { return unary(Unary::silu, x); }
Tensor gelu(const Tensor& x) { return unary(Unary::gelu, x); }
Tensor gelu_tanh(const Tensor& x) { return unary(Unary::gelu_tanh, x); }
Tensor relu(const Tensor& x) { return unary(Unary::relu, x); }
Tensor abs(const Tensor& x) { return unary(Unary::abs, x); }
Tensor pow(const Tensor& x, double exponent) { return unary(Unary::pow, x, exponent); }

// ---------------------------------------------------------------- binary arithmetic and comparisons

namespace {

enum class Binary { add, sub, mul, div, pow, maximum, eq, ne, lt, le, gt, ge, logical_and };

template <class T> T binary_value(Binary op, T a, T b) {
  switch (op) {
    case Binary::add: return a + b;
    case Binary::sub: return a - b;
    case Binary::mul: return a * b;
    case Binary::div: return a / b;
    case Binary::pow: return static_cast<T>(std::pow(a, b));
    case Binary::maximum:
      if (b != b) return b;  // NaN wins, as in PyTorch
      return a >= b || a != a ? a : b;
    default: return T(0);
  }
}

template <class T> bool compare(Binary op, T a, T b) {
  switch (op) {
    case Binary::eq: return a == b;
    case Binary::ne: return a != b;
    case Binary::lt: return a < b;
    case Binary::le: return a <= b;
    case Binary::gt: return a > b;
    case Binary::ge: return a >= b;
    case Binary::logical_and: return a != T(0) && b != T(0);
    default: return false;
  }
}

bool is_comparison(Binary op) { return op >= Binary::eq; }

const char* binary_name(Binary op) {
  static const char* names[] = {"add", "sub", "mul", "div", "pow", "maximum", "eq", "ne", "lt", "le", "gt", "ge", "logical_and"};
  return names[static_cast<int>(op)];
}

Tensor binary_forward(Binary op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  const Device device = common_device({a, b}, name);
  check_same_dtype(a, b, name);
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  const bool comparison = is_comparison(op);
  Tensor out = Tensor::empty(shape, comparison ? DType::boolean : a.dtype(), device);
  const Shape out_strides = out.strides(), a_strides = broadcast_strides(a, shape), b_strides = broadcast_strides(b, shape);
  if (device == Device::cuda) {
    if (comparison || op == Binary::pow || op == Binary::maximum || a.dtype() != DType::f32) no_cuda_kernel(name);
    const cuda::BinaryOp cop = op == Binary::add ? cuda::BinaryOp::add : op == Binary::sub ? cuda::BinaryOp::sub
                             : op == Binary::mul ? cuda::BinaryOp::mul : cuda::BinaryOp::div;
    cuda::binary(cop, static_cast<float*>(out.data_ptr()), static_cast<const float*>(a.data_ptr()),
                 cuda_layout(shape, a_strides), static_cast<const float*>(b.data_ptr()), cuda_layout(shape, b_strides));
    return out;
  }
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const T* pa = static_cast<const T*>(a.data_ptr());
    const T* pb = static_cast<const T*>(b.data_ptr());
    if (comparison) {
      uint8_t* po = static_cast<uint8_t*>(out.data_ptr());
      parallel_for_each_row<3>(shape, {&out_strides, &a_strides, &b_strides}, [&](auto base, int64_t n, auto step) {
        for (int64_t i = 0; i < n; ++i)
          po[base[0] + i] = compare(op, pa[base[1] + i * step[1]], pb[base[2] + i * step[2]]);
      });
    } else {
      T* po = static_cast<T*>(out.data_ptr());
      parallel_for_each_row<3>(shape, {&out_strides, &a_strides, &b_strides}, [&](auto base, int64_t n, auto step) {
        for (int64_t i = 0; i < n; ++i)
          po[base[0] + i] = binary_value(op, pa[base[1] + i * step[1]], pb[base[2] + i * step[2]]);
      });
    }
  };
  if (a.dtype() == DType::boolean && !comparison)
    fail(std::string(name) + ": bool tensors take only comparisons and logical ops; convert with .to(dtype) first");
  switch (a.dtype()) {
    case DType::f32: run(float{}); break;
    case DType::f64: run(double{}); break;
    case DType::i32: run(int32_t{}); break;
    case DType::i64: run(int64_t{}); break;
    case DType::u8: case DType::boolean: run(uint8_t{}); break;
    default: fail(std::string(name) + ": unsupported dtype " + dtype_name(a.dtype()));
  }
  return out;
}

const OpName kAdd("add"), kSub("sub"), kMul("mul"), kDiv("div"), kPow("pow"), kMaximum("maximum");

Tensor binary(Binary op, const Tensor& a, const Tensor& b) {
  // Division is true division, as Python's `/`: integers divide as f32 (and never trap on zero).
  if (op == Binary::div && is_integral(a.dtype()) && a.dtype() == b.dtype())
    return binary(op, to_dtype(a, DType::f32), to_dtype(b, DType::f32));
  if (computes_in_f32(a) || computes_in_f32(b)) {
    check_same_dtype(a, b, binary_name(op));
    Tensor out = binary(op, to_dtype(a, DType::f32), to_dtype(b, DType::f32));
    return is_comparison(op) ? out : to_dtype(out, a.dtype());
  }
  Tensor out = binary_forward(op, a, b);
  if (is_comparison(op) || !needs_grad({a, b})) return out;
  const Shape sa = a.shape(), sb = b.shape();
  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  auto grads = [sa, sb](const Tensor& ga, const Tensor& gb) {
    return std::vector<Tensor>{ga.defined() ? sum_to(ga, sa) : ga, gb.defined() ? sum_to(gb, sb) : gb};
  };
  switch (op) {
    case Binary::add:
      return record(kAdd, out, {a, b}, [grads](const Tensor& g) { return grads(g, g); });
    case Binary::sub:
      return record(kSub, out, {a, b}, [grads, need_b](const Tensor& g) { return grads(g, need_b ? neg(g) : Tensor()); });
    case Binary::mul: {
      Tensor ad = a.detach(), bd = b.detach();
      return record(kMul, out, {a, b}, [=](const Tensor& g) {
        return grads(need_a ? mul(g, bd) : Tensor(), need_b ? mul(g, ad) : Tensor());
      });
    }
    case Binary::div: {
      Tensor bd = b.detach(), outd = out.detach();
      return record(kDiv, out, {a, b}, [=](const Tensor& g) {
        Tensor ga = div(g, bd);
        return grads(need_a ? ga : Tensor(), need_b ? neg(mul(ga, outd)) : Tensor());
      });
    }
    case Binary::pow: {
      Tensor ad = a.detach(), bd = b.detach(), outd = out.detach();
      return record(kPow, out, {a, b}, [=](const Tensor& g) {
        return grads(need_a ? mul(g, mul(bd, pow(ad, sub(bd, Tensor::scalar(1, bd.dtype(), bd.device()))))) : Tensor(),
                     need_b ? mul(g, mul(outd, log(ad))) : Tensor());
      });
    }
    case Binary::maximum: {
      Tensor a_wins = binary_forward(Binary::ge, a.detach(), b.detach());
      return record(kMaximum, out, {a, b}, [=](const Tensor& g) {
        const Tensor zero = Tensor::scalar(0, g.dtype(), g.device());
        return grads(need_a ? where(a_wins, g, zero) : Tensor(), need_b ? where(a_wins, zero, g) : Tensor());
      });
    }
    default: return out;
  }
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(Binary::add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(Binary::sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(Binary::mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(Binary::div, a, b); }
Tensor pow(const Tensor& a, const Tensor& b) { return binary(Binary::pow, a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary(Binary::maximum, a, b); }
Tensor eq(const Tensor& a, const Tensor& b) { return binary(Binary::eq, a, b); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary(Binary::ne, a, b); }
Tensor lt(const Tensor& a, const Tensor& b) { return binary(Binary::lt, a, b); }
Tensor le(const Tensor& a, const Tensor& b) { return binary(Binary::le, a, b); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary(Binary::gt, a, b); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary(Binary::ge, a, b); }
Tensor logical_and(const Tensor& a, const Tensor& b) {
  return binary(Binary::logical_and, to_dtype(a, DType::boolean), to_dtype(b, DType::boolean));
}
Tensor logical_not(const Tensor& x) { return eq(to_dtype(x, DType::boolean), Tensor::scalar(0, DType::boolean, x.device())); }

// A double operand takes the tensor's dtype, with PyTorch's two exceptions: next to bf16/f16 on the
// CPU it stays f32 (x * 0.1 multiplies by 0.1, not by 0.1 rounded to bf16), and a fractional value
// next to an integer tensor makes the result f32 (int * 0.5 is not 0).
static Tensor with_scalar(Binary op, const Tensor& t, double v, bool scalar_first) {
  if (is_integral(t.dtype()) && v != std::floor(v)) return with_scalar(op, to_dtype(t, DType::f32), v, scalar_first);
  const Tensor s = Tensor::scalar(v, computes_in_f32(t) ? DType::f32 : t.dtype(), t.device());
  if (s.dtype() != t.dtype()) {
    Tensor tf = to_dtype(t, DType::f32);
    return to_dtype(scalar_first ? binary(op, s, tf) : binary(op, tf, s), t.dtype());
  }
  return scalar_first ? binary(op, s, t) : binary(op, t, s);
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, double b) { return with_scalar(Binary::add, a, b, false); }
Tensor operator-(const Tensor& a, double b) { return with_scalar(Binary::sub, a, b, false); }
Tensor operator*(const Tensor& a, double b) { return with_scalar(Binary::mul, a, b, false); }
Tensor operator/(const Tensor& a, double b) { return with_scalar(Binary::div, a, b, false); }
Tensor operator+(double a, const Tensor& b) { return with_scalar(Binary::add, b, a, true); }
Tensor operator-(double a, const Tensor& b) { return with_scalar(Binary::sub, b, a, true); }
Tensor operator*(double a, const Tensor& b) { return with_scalar(Binary::mul, b, a, true); }
Tensor operator/(double a, const Tensor& b) { return with_scalar(Binary::div, b, a, true); }

}  // namespace ivl
