// Helpers shared by the CPU kernels of every op family: strided iteration, dtype dispatch, element
// load/store for every dtype, and the device/dtype checks at op entry. Internal to tensor/.
#pragma once
#include <algorithm>
#include <array>
#include <string>
#include <type_traits>
#include <vector>

#include "tensor/parallel.h"
#include "tensor/tensor.h"

namespace ivl::detail {

// Element wrappers for the dtypes that have no C++ arithmetic type of their own.
struct bf16_t { uint16_t bits; };
struct f16_t { uint16_t bits; };
struct bool_t { uint8_t value; };

template <class T> inline double load(T v) { return static_cast<double>(v); }
template <> inline double load(bf16_t v) { return bf16_to_f32(v.bits); }
template <> inline double load(f16_t v) { return f16_to_f32(v.bits); }
template <> inline double load(bool_t v) { return v.value != 0; }
template <class T> inline T store(double v) { return static_cast<T>(v); }
template <> inline bf16_t store(double v) { return {f32_to_bf16(static_cast<float>(v))}; }
template <> inline f16_t store(double v) { return {f32_to_f16(static_cast<float>(v))}; }
template <> inline bool_t store(double v) { return {static_cast<uint8_t>(v != 0)}; }

// Calls f(T{}) with T the element type of `dtype` (bf16_t, f16_t, bool_t for those dtypes).
template <class F> decltype(auto) dispatch_any(DType dtype, F&& f) {
  switch (dtype) {
    case DType::f32: return f(float{});
    case DType::f64: return f(double{});
    case DType::bf16: return f(bf16_t{});
    case DType::f16: return f(f16_t{});
    case DType::i32: return f(int32_t{});
    case DType::i64: return f(int64_t{});
    case DType::u8: return f(uint8_t{});
    case DType::boolean: return f(bool_t{});
  }
  fail("unknown dtype");
}

// Calls f(T{}) for the compute types of CPU kernels: float or double.
template <class F> decltype(auto) dispatch_float(DType dtype, const char* op, F&& f) {
  if (dtype == DType::f32) return f(float{});
  if (dtype == DType::f64) return f(double{});
  fail(std::string(op) + ": needs an f32 or f64 tensor on the CPU, got " + dtype_name(dtype));
}

// Calls f(I{}) for an index tensor's element type.
template <class F> decltype(auto) dispatch_index(DType dtype, const char* op, F&& f) {
  if (dtype == DType::i64) return f(int64_t{});
  if (dtype == DType::i32) return f(int32_t{});
  fail(std::string(op) + ": indices must be i32 or i64, got " + dtype_name(dtype));
}

// Rows [begin, end) of `shape` (its innermost rows, numbered in row-major order): row(offsets, n,
// inner_strides) with, per operand, the element offset of the row's first element and its stride
// along the row. For ndim >= 1 and a non-empty shape.
template <size_t N, class Row>
void for_rows(const Shape& shape, const std::array<const Shape*, N>& strides, int64_t begin, int64_t end, Row&& row) {
  const size_t ndim = shape.size();
  const int64_t n = shape[ndim - 1];
  std::array<int64_t, N> base{}, inner{};
  for (size_t k = 0; k < N; ++k) inner[k] = (*strides[k])[ndim - 1];
  std::vector<int64_t> index(ndim, 0);
  for (size_t d = ndim - 1, rest = static_cast<size_t>(begin); d-- > 0;) {  // unravel the first row
    index[d] = static_cast<int64_t>(rest % static_cast<size_t>(shape[d]));
    rest /= static_cast<size_t>(shape[d]);
    for (size_t k = 0; k < N; ++k) base[k] += index[d] * (*strides[k])[d];
  }
  for (int64_t r = begin; r < end; ++r) {
    row(base, n, inner);
    for (size_t d = ndim - 1; d-- > 0;) {
      for (size_t k = 0; k < N; ++k) base[k] += (*strides[k])[d];
      if (++index[d] < shape[d]) break;
      for (size_t k = 0; k < N; ++k) base[k] -= (*strides[k])[d] * shape[d];
      index[d] = 0;
    }
  }
}

// Walks `shape` in row-major order, one innermost row at a time (see for_rows).
template <size_t N, class Row>
void for_each_row(const Shape& shape, const std::array<const Shape*, N>& strides, Row&& row) {
  const int64_t numel = shape_numel(shape);
  if (numel == 0) return;
  if (shape.empty()) return row(std::array<int64_t, N>{}, int64_t{1}, std::array<int64_t, N>{});
  for_rows<N>(shape, strides, 0, numel / shape.back(), row);
}

// for_each_row with the rows split over the engine's threads (parallel.h): for kernels whose rows
// write disjoint memory (a freshly allocated dense output).
template <size_t N, class Row>
void parallel_for_each_row(const Shape& shape, const std::array<const Shape*, N>& strides, Row&& row) {
  const int64_t numel = shape_numel(shape);
  if (shape.empty() || numel < 2 * kElementwiseGrain) return for_each_row<N>(shape, strides, row);
  const int64_t n = shape.back();
  parallel_for(numel / n, std::max<int64_t>(1, kElementwiseGrain / n),
               [&](int64_t begin, int64_t end) { for_rows<N>(shape, strides, begin, end, row); });
}

// Strides that read `t` as if it had `shape` (broadcast dims get stride 0).
Shape broadcast_strides(const Tensor& t, const Shape& shape);

// Copies src into dst elementwise (same shape and dtype; any strides; same device).
void copy_strided(const Tensor& dst, const Tensor& src);

// Checks that all defined tensors share one device and returns it.
Device common_device(std::initializer_list<Tensor> tensors, const char* op);
// Checks that a and b share a dtype.
void check_same_dtype(const Tensor& a, const Tensor& b, const char* op);
// True for a bf16/f16 tensor on the CPU: such ops run on an f32 copy and convert back.
inline bool computes_in_f32(const Tensor& t) { return t.defined() && t.device() == Device::cpu && is_half(t.dtype()); }
[[noreturn]] void no_cuda_kernel(const char* op);
std::string int_str(int64_t v);

}  // namespace ivl::detail

namespace ivl::detail {

// Row-major C = op(A) . op(B) (+ C when accumulate) through CBLAS; T is float or double.
template <class T>
void cpu_gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda,
              const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate = false);

// C = A . B^T (+ C) for a few rows of A, reading B once (tensor/cpu/gemm_few_rows.cpp): a [m, k],
// b [n, k], c [m, n], each row-major with its leading dimension. Each c[i, j] gets the same bits
// whatever m is. cpu_gemm sends f32 products with m <= kGemmFewRows here. `portable` skips the
// AVX2 path (for the test that both give the same bits).
void gemm_few_rows(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                   int64_t ldc, bool accumulate, bool portable = false);
// The same with B in bf16 (its bits), each element widened to f32 as it is read: the bits of
// gemm_few_rows on B converted to f32 first, at half the bytes read.
void gemm_few_rows_bf16(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const uint16_t* b, int64_t ldb, float* c,
                        int64_t ldc, bool accumulate, bool portable = false);
inline constexpr int64_t kGemmFewRows = 16;

}  // namespace ivl::detail
