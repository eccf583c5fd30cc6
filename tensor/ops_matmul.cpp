// Matrix products: batched matmul with broadcasting, linear (x.W^T + b) and the patch-embedding
// convolution (im2col + one GEMM). Transposed views reach BLAS as transpose flags, never as copies.
// Shapes: a [..., M, K], b [..., K, N]; x [N, in], W [out, in]; image [B, C, H, W], kernel k.
#include <cblas.h>

#include <climits>

#include "tensor/autograd.h"
#include "tensor/cpu_helpers.h"
#include "tensor/cuda_backend.h"
#include "tensor/ops.h"

namespace ivl {
namespace detail {

static int blas_int(int64_t v, const char* what) {
  if (v > INT_MAX) fail(std::string("matmul: ") + what + " " + int_str(v) + " exceeds the BLAS int range");
  return static_cast<int>(v);
}

template <class T>
void cpu_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
              T* c, int64_t ldc, bool accumulate) {
  if (m == 0 || n == 0) return;
  const CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;
  const T beta = accumulate ? T(1) : T(0);
  if (k == 0) {  // BLAS leaves C alone when k == 0 only with beta == 1
    if (!accumulate)
      for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
    return;
  }
  if constexpr (std::is_same_v<T, float>)
    if (!ta && tb && m <= kGemmFewRows) return gemm_few_rows(m, n, k, a, lda, b, ldb, c, ldc, accumulate);
  const int M = blas_int(m, "M"), N = blas_int(n, "N"), K = blas_int(k, "K");
  const int LDA = blas_int(lda, "lda"), LDB = blas_int(ldb, "ldb"), LDC = blas_int(ldc, "ldc");
  // One row (or one column) of C is a matrix-vector product: gemv reads the matrix once, where gemm
  // would first copy it into its packed panels (decoding a token is all such products).
  auto gemv = [&](CBLAS_TRANSPOSE op, int rows, int cols, const T* matrix, int ld, const T* x, int incx, T* y, int incy) {
    if constexpr (std::is_same_v<T, float>) cblas_sgemv(CblasRowMajor, op, rows, cols, 1.0f, matrix, ld, x, incx, beta, y, incy);
    else cblas_dgemv(CblasRowMajor, op, rows, cols, 1.0, matrix, ld, x, incx, beta, y, incy);
  };
  if (m == 1)  // c[j] = sum_p a[p] opB[p, j]; a's elements lie lda apart when it is a transposed column
    return tb ? gemv(CblasNoTrans, N, K, b, LDB, a, ta ? LDA : 1, c, 1) : gemv(CblasTrans, K, N, b, LDB, a, ta ? LDA : 1, c, 1);
  if (n == 1)  // c[i * ldc] = sum_p opA[i, p] b[p]
    return ta ? gemv(CblasTrans, K, M, a, LDA, b, tb ? 1 : LDB, c, LDC) : gemv(CblasNoTrans, M, K, a, LDA, b, tb ? 1 : LDB, c, LDC);
  if constexpr (std::is_same_v<T, float>) cblas_sgemm(CblasRowMajor, opa, opb, M, N, K, 1.0f, a, LDA, b, LDB, beta, c, LDC);
  else cblas_dgemm(CblasRowMajor, opa, opb, M, N, K, 1.0, a, LDA, b, LDB, beta, c, LDC);
}
template void cpu_gemm<float>(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t, bool);
template void cpu_gemm<double>(bool, bool, int64_t, int64_t, int64_t, const double*, int64_t, const double*, int64_t, double*, int64_t, bool);

}  // namespace detail

using namespace detail;

namespace {

const OpName kMatmul("matmul"), kLinear("linear"), kConv2dPatch("conv2d_patch");

// How BLAS reads the last two dims of a tensor: row-major with leading dim `ld`, or transposed
// (column-major storage). Anything else must be copied first.
struct MatrixLayout {
  bool usable = false, transposed = false;
  int64_t ld = 0;
};

MatrixLayout matrix_layout(const Tensor& t) {
  const int64_t rows = t.size(-2), cols = t.size(-1), rs = t.stride(-2), cs = t.stride(-1);
  if (cs == 1 || cols == 1) {
    const int64_t ld = rows == 1 ? std::max<int64_t>(cols, 1) : rs;
    if (ld >= std::max<int64_t>(cols, 1)) return {true, false, ld};
  }
  if (rs == 1 || rows == 1) {
    const int64_t ld = cols == 1 ? std::max<int64_t>(rows, 1) : cs;
    if (ld >= std::max<int64_t>(rows, 1)) return {true, true, ld};
  }
  return {};
}

// Element offsets of each matrix of `t` in a batch of shape `batch` (t's batch dims broadcast).
std::vector<int64_t> batch_offsets(const Tensor& t, const Shape& batch) {
  const Shape tb(t.shape().begin(), t.shape().end() - 2), ts(t.strides().begin(), t.strides().end() - 2);
  Shape strides(batch.size(), 0);
  for (size_t i = 0; i < tb.size(); ++i)
    if (tb[i] != 1) strides[batch.size() - tb.size() + i] = ts[i];
  std::vector<int64_t> offsets(static_cast<size_t>(shape_numel(batch)));
  std::vector<int64_t> index(batch.size(), 0);
  for (size_t b = 0; b < offsets.size(); ++b) {
    int64_t off = 0;
    for (size_t d = 0; d < batch.size(); ++d) off += index[d] * strides[d];
    offsets[b] = off;
    for (size_t d = batch.size(); d-- > 0;) {
      if (++index[d] < batch[d]) break;
      index[d] = 0;
    }
  }
  return offsets;
}

// True when `offsets` is b * stride for one stride (what strided-batched cuBLAS accepts).
bool uniform_stride(const std::vector<int64_t>& offsets, int64_t& stride) {
  stride = offsets.size() > 1 ? offsets[1] - offsets[0] : 0;
  for (size_t b = 0; b < offsets.size(); ++b)
    if (offsets[b] != static_cast<int64_t>(b) * stride) return false;
  return true;
}

Tensor matmul_forward(Tensor a, Tensor b) {
  const int64_t m = a.size(-2), k = a.size(-1), n = b.size(-1);
  const Shape batch = broadcast_shapes(Shape(a.shape().begin(), a.shape().end() - 2),
                                       Shape(b.shape().begin(), b.shape().end() - 2), "matmul");
  MatrixLayout la = matrix_layout(a), lb = matrix_layout(b);
  if (!la.usable) a = contiguous(a), la = matrix_layout(a);
  if (!lb.usable) b = contiguous(b), lb = matrix_layout(b);
  Shape out_shape = batch;
  out_shape.push_back(m), out_shape.push_back(n);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());

  // A batched a against one shared 2-D b: one tall GEMM instead of a loop.
  if (b.dim() == 2 && !la.transposed && a.is_contiguous() && m > 0) {
    const int64_t rows = shape_numel(Shape(a.shape().begin(), a.shape().end() - 1));
    if (a.device() == Device::cuda) {
      cuda::gemm_f32({1, rows, n, k, static_cast<const float*>(a.data_ptr()), k, 0, false,
                      static_cast<const float*>(b.data_ptr()), lb.ld, 0, lb.transposed,
                      static_cast<float*>(out.data_ptr()), n, 0});
      return out;
    }
    dispatch_float(a.dtype(), "matmul", [&](auto tag) {
      using T = decltype(tag);
      cpu_gemm<T>(false, lb.transposed, rows, n, k, static_cast<const T*>(a.data_ptr()), k,
                  static_cast<const T*>(b.data_ptr()), lb.ld, static_cast<T*>(out.data_ptr()), n);
    });
    return out;
  }

  const std::vector<int64_t> oa = batch_offsets(a, batch), ob = batch_offsets(b, batch);
  if (a.device() == Device::cuda) {
    int64_t sa = 0, sb = 0;
    if (!uniform_stride(oa, sa) || !uniform_stride(ob, sb)) no_cuda_kernel("matmul with this batch broadcast");
    cuda::gemm_f32({static_cast<int64_t>(oa.size()), m, n, k, static_cast<const float*>(a.data_ptr()), la.ld, sa,
                    la.transposed, static_cast<const float*>(b.data_ptr()), lb.ld, sb, lb.transposed,
                    static_cast<float*>(out.data_ptr()), n, m * n});
    return out;
  }
  dispatch_float(a.dtype(), "matmul", [&](auto tag) {
    using T = decltype(tag);
    const T* pa = static_cast<const T*>(a.data_ptr());
    const T* pb = static_cast<const T*>(b.data_ptr());
    T* po = static_cast<T*>(out.data_ptr());
    for (size_t i = 0; i < oa.size(); ++i)
      cpu_gemm<T>(la.transposed, lb.transposed, m, n, k, pa + oa[i], la.ld, pb + ob[i], lb.ld,
                  po + static_cast<int64_t>(i) * m * n, n);
  });
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (a.dim() < 2 || b.dim() < 2) fail("matmul: both operands must be at least 2-D, got " + a.str() + " and " + b.str());
  if (a.size(-1) != b.size(-2))
    fail("matmul: inner sizes differ: " + shape_str(a.shape()) + " @ " + shape_str(b.shape()));
  if (computes_in_f32(a) || computes_in_f32(b)) {
    check_same_dtype(a, b, "matmul");
    return to_dtype(matmul(to_dtype(a, DType::f32), to_dtype(b, DType::f32)), a.dtype());
  }
  common_device({a, b}, "matmul");
  check_same_dtype(a, b, "matmul");
  if (a.device() == Device::cuda && a.dtype() != DType::f32) no_cuda_kernel("matmul (non-f32)");
  Tensor out = matmul_forward(a.detach(), b.detach());
  const Tensor ad = a.detach(), bd = b.detach();
  const bool need_a = a.requires_grad(), need_b = b.requires_grad();
  return record(kMatmul, out, {a, b}, [=](const Tensor& g) {
    Tensor ga, gb;
    if (need_a) ga = sum_to(matmul(g, bd.mT()), ad.shape());
    if (need_b) {
      if (bd.dim() == 2 && ad.dim() > 2)  // fold the batch into one GEMM: a^T [K, B*M] . g [B*M, N]
      {
        const int64_t rows = shape_numel(Shape(ad.shape().begin(), ad.shape().end() - 1));
        gb = matmul(reshape(ad, {rows, ad.size(-1)}).mT(), reshape(g, {rows, g.size(-1)}));
      }
      else
        gb = sum_to(matmul(ad.mT(), g), bd.shape());
    }
    return std::vector<Tensor>{ga, gb};
  });
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (weight.dim() != 2) fail("linear: the weight must be [out, in], got " + weight.str());
  if (x.dim() < 1 || x.size(-1) != weight.size(1))
    fail("linear: input " + x.str() + " does not match weight " + weight.str() + " (last dim must be " +
         int_str(weight.size(1)) + ")");
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != weight.size(0)))
    fail("linear: the bias must be [" + int_str(weight.size(0)) + "], got " + bias.str());
  check_same_dtype(x, weight, "linear");
  if (bias.defined()) check_same_dtype(x, bias, "linear");
  if (computes_in_f32(x)) {
    // Decoding in bf16 (no gradient wanted): a few rows against the weight as it is stored, half the
    // bytes of an f32 copy and the same bits as the detour below.
    const int64_t in = weight.size(1), out_features = weight.size(0), rows = in > 0 ? x.numel() / in : 0;
    const bool wants_grad = grad_enabled() && (x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad()));
    if (x.dtype() == DType::bf16 && weight.device() == Device::cpu && rows > 0 && rows <= kGemmFewRows && !wants_grad &&
        weight.stride(1) == 1 && weight.stride(0) >= in) {
      const Tensor x2 = contiguous(to_dtype(x, DType::f32));
      Tensor out = Tensor::empty({rows, out_features});
      if (bias.defined()) copy_strided(out, expand(to_dtype(bias, DType::f32), out.shape()));
      gemm_few_rows_bf16(rows, out_features, in, x2.data<float>(), in, static_cast<const uint16_t*>(weight.data_ptr()),
                         weight.stride(0), out.data<float>(), out_features, bias.defined());
      Shape out_shape = x.shape();
      out_shape.back() = out_features;
      return to_dtype(reshape(out, out_shape), DType::bf16);
    }
    return to_dtype(linear(to_dtype(x, DType::f32), to_dtype(weight, DType::f32),
                           bias.defined() ? to_dtype(bias, DType::f32) : bias), x.dtype());
  }
  common_device({x, weight, bias}, "linear");
  check_same_dtype(x, weight, "linear");
  if (bias.defined()) check_same_dtype(x, bias, "linear");
  const int64_t in = weight.size(1), out_features = weight.size(0);
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  const Tensor x2 = reshape(contiguous(x.detach()), {-1, in});
  Tensor out;
  if (!bias.defined()) {
    out = matmul(x2, weight.detach().mT());
  } else {
    if (x.device() == Device::cuda) no_cuda_kernel("linear with bias");
    out = Tensor::empty({x2.size(0), out_features}, x.dtype());  // C starts as the bias rows; GEMM adds x W^T
    copy_strided(out, expand(bias.detach(), out.shape()));
    Tensor w = weight.detach();
    MatrixLayout lw = matrix_layout(w);
    if (!lw.usable) w = contiguous(w), lw = matrix_layout(w);
    dispatch_float(x.dtype(), "linear", [&](auto tag) {
      using T = decltype(tag);
      cpu_gemm<T>(false, !lw.transposed, x2.size(0), out_features, in, static_cast<const T*>(x2.data_ptr()), in,
                  static_cast<const T*>(w.data_ptr()), lw.ld, static_cast<T*>(out.data_ptr()), out_features, true);
    });
  }
  out = reshape(out, out_shape);
  const Tensor wd = weight.detach();
  const bool need_x = x.requires_grad(), need_w = weight.requires_grad(), need_b = bias.defined() && bias.requires_grad();
  const Shape x_shape = x.shape();
  return record(kLinear, out, {x, weight, bias}, [=](const Tensor& g) {
    const Tensor g2 = reshape(contiguous(g), {-1, out_features});
    return std::vector<Tensor>{need_x ? reshape(matmul(g2, wd), x_shape) : Tensor(),
                               need_w ? matmul(g2.mT(), x2) : Tensor(),
                               need_b ? sum(g2, {0}) : Tensor()};
  });
}

// ---------------------------------------------------------------- patch-embedding convolution

namespace {

// im2col for stride == kernel: cols [B*Ho*Wo, C*kh*kw], one row per patch, (c, i, j) order to match
// weight.reshape(O, C*kh*kw). With `to_image`, the reverse (patches do not overlap: a plain copy back).
template <class T>
void patch_columns(T* image, T* cols, int64_t B, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw, bool to_image) {
  const int64_t Ho = H / kh, Wo = W / kw, row = C * kh * kw;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t py = 0; py < Ho; ++py)
      for (int64_t px = 0; px < Wo; ++px) {
        T* col = cols + ((b * Ho + py) * Wo + px) * row;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t i = 0; i < kh; ++i) {
            T* pixel = image + ((b * C + c) * H + py * kh + i) * W + px * kw;
            T* dst = col + (c * kh + i) * kw;
            if (to_image) std::copy_n(dst, kw, pixel);
            else std::copy_n(pixel, kw, dst);
          }
      }
}

}  // namespace

Tensor conv2d_patch(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  if (x.dim() != 4 || weight.dim() != 4 || x.size(1) != weight.size(1))
    fail("conv2d_patch: needs x [B, C, H, W] and weight [O, C, kh, kw] with equal C, got " + x.str() + " and " + weight.str());
  if (computes_in_f32(x) || computes_in_f32(weight)) {
    check_same_dtype(x, weight, "conv2d_patch");
    return to_dtype(conv2d_patch(to_dtype(x, DType::f32), to_dtype(weight, DType::f32),
                                 bias.defined() ? to_dtype(bias, DType::f32) : bias), x.dtype());
  }
  if (common_device({x, weight, bias}, "conv2d_patch") == Device::cuda) no_cuda_kernel("conv2d_patch");
  check_same_dtype(x, weight, "conv2d_patch");
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = weight.size(0), kh = weight.size(2), kw = weight.size(3), Ho = H / kh, Wo = W / kw;
  if (Ho == 0 || Wo == 0) fail("conv2d_patch: image " + shape_str(x.shape()) + " is smaller than the kernel");
  const Tensor xc = contiguous(x.detach());
  Tensor cols = Tensor::empty({B * Ho * Wo, C * kh * kw}, x.dtype());
  dispatch_float(x.dtype(), "conv2d_patch", [&](auto tag) {
    using T = decltype(tag);
    patch_columns<T>(static_cast<T*>(xc.data_ptr()), static_cast<T*>(cols.data_ptr()), B, C, H, W, kh, kw, false);
  });
  Tensor out;
  {
    NoGrad no_grad;
    out = contiguous(permute(reshape(linear(cols, reshape(weight.detach(), {O, -1}), bias.defined() ? bias.detach() : bias),
                                     {B, Ho, Wo, O}), {0, 3, 1, 2}));
  }
  const Tensor w2 = reshape(weight.detach(), {O, -1});
  const Shape x_shape = x.shape(), w_shape = weight.shape();
  const bool need_x = x.requires_grad(), need_w = weight.requires_grad(), need_b = bias.defined() && bias.requires_grad();
  return record(kConv2dPatch, out, {x, weight, bias}, [=](const Tensor& g) {
    const Tensor g2 = reshape(contiguous(permute(g, {0, 2, 3, 1})), {B * Ho * Wo, O});
    Tensor gx;
    if (need_x) {
      const Tensor gcols = matmul(g2, w2);
      gx = Tensor::zeros(x_shape, g.dtype());  // pixels beyond the last whole patch get zero
      dispatch_float(g.dtype(), "conv2d_patch backward", [&](auto tag) {
        using T = decltype(tag);
        patch_columns<T>(static_cast<T*>(gx.data_ptr()), static_cast<T*>(gcols.data_ptr()), B, C, H, W, kh, kw, true);
      });
    }
    return std::vector<Tensor>{gx, need_w ? reshape(matmul(g2.mT(), cols), w_shape) : Tensor(),
                               need_b ? sum(g2, {0}) : Tensor()};
  });
}

}  // namespace ivl
