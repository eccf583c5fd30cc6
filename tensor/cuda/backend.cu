// The first CUDA slice: device memory, host<->device copies, fill, strided copy, one broadcasting
// elementwise kernel (f32 add/sub/mul/div) and f32 GEMM through cuBLAS. Every kernel is checked
// against its CPU twin by tests/cuda/. cuBLAS runs in its default (pedantic f32, no TF32) math mode
// so results match the CPU to f32 rounding.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>
#include <mutex>
#include <stdexcept>
#include <string>

#include "tensor/cuda_backend.h"

namespace ivl::cuda {

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(status));
}

void check_blas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cuBLAS: ") + what + " failed with status " + std::to_string(static_cast<int>(status)));
}

cublasHandle_t blas_handle() {
  static cublasHandle_t handle = [] {
    cublasHandle_t h;
    check_blas(cublasCreate(&h), "cublasCreate");
    return h;
  }();
  return handle;
}

constexpr int kThreads = 256;
unsigned blocks_for(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

// Element offset of the i-th element (row-major over layout.shape) under layout.strides.
__device__ int64_t strided_offset(const StridedLayout& layout, int64_t i) {
  int64_t offset = 0;
  for (int d = layout.ndim - 1; d >= 0; --d) {
    const int64_t size = layout.shape[d];
    offset += (i % size) * layout.strides[d];
    i /= size;
  }
  return offset;
}

int64_t layout_numel(const StridedLayout& layout) {
  int64_t n = 1;
  for (int d = 0; d < layout.ndim; ++d) n *= layout.shape[d];
  return n;
}

template <class T> __global__ void fill_kernel(T* dst, int64_t n, T value) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] = value;
}

template <class W> __global__ void strided_copy_kernel(W* dst, const W* src, StridedLayout layout, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) dst[i] = src[strided_offset(layout, i)];
}

__global__ void binary_kernel(BinaryOp op, float* out, const float* a, StridedLayout la, const float* b, StridedLayout lb,
                              int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  const float x = a[strided_offset(la, i)], y = b[strided_offset(lb, i)];
  switch (op) {
    case BinaryOp::add: out[i] = x + y; break;
    case BinaryOp::sub: out[i] = x - y; break;
    case BinaryOp::mul: out[i] = x * y; break;
    case BinaryOp::div: out[i] = x / y; break;
  }
}

template <class T> void launch_fill(void* dst, int64_t n, T value) {
  if (n == 0) return;
  fill_kernel<T><<<blocks_for(n), kThreads>>>(static_cast<T*>(dst), n, value);
  check(cudaGetLastError(), "fill kernel");
}

}  // namespace

bool built() { return true; }

bool available() {
  static const bool ok = [] {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  }();
  return ok;
}

std::string device_summary() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) return std::string("unavailable: ") + cudaGetErrorString(status);
  if (count == 0) return "unavailable: no CUDA device";
  cudaDeviceProp prop;
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  return std::string(prop.name) + ", " + std::to_string(prop.totalGlobalMem >> 30) + " GiB, sm_" +
         std::to_string(prop.major * 10 + prop.minor) + (count > 1 ? " (+" + std::to_string(count - 1) + " more)" : "");
}

void synchronize() { check(cudaDeviceSynchronize(), "synchronize"); }

std::shared_ptr<void> allocate(size_t nbytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, nbytes ? nbytes : 1), ("cudaMalloc of " + std::to_string(nbytes) + " bytes").c_str());
  return std::shared_ptr<void>(p, [](void* q) { cudaFree(q); });
}

void copy_host_to_device(void* dst, const void* src, size_t n) { check(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice), "copy to device"); }
void copy_device_to_host(void* dst, const void* src, size_t n) { check(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost), "copy to host"); }
void copy_device_to_device(void* dst, const void* src, size_t n) { check(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToDevice), "device copy"); }

void fill(void* dst, DType dtype, int64_t n, double value) {
  switch (dtype) {
    case DType::f32: return launch_fill<float>(dst, n, static_cast<float>(value));
    case DType::f64: return launch_fill<double>(dst, n, value);
    case DType::bf16: return launch_fill<uint16_t>(dst, n, f32_to_bf16(static_cast<float>(value)));
    case DType::f16: return launch_fill<uint16_t>(dst, n, f32_to_f16(static_cast<float>(value)));
    case DType::i32: return launch_fill<int32_t>(dst, n, static_cast<int32_t>(value));
    case DType::i64: return launch_fill<int64_t>(dst, n, static_cast<int64_t>(value));
    case DType::u8: return launch_fill<uint8_t>(dst, n, static_cast<uint8_t>(value));
    case DType::boolean: return launch_fill<uint8_t>(dst, n, static_cast<uint8_t>(value != 0));
  }
}

void strided_copy(void* dst, const void* src, size_t element_size, const StridedLayout& layout) {
  const int64_t n = layout_numel(layout);
  if (n == 0) return;
  switch (element_size) {
    case 1: strided_copy_kernel<<<blocks_for(n), kThreads>>>(static_cast<uint8_t*>(dst), static_cast<const uint8_t*>(src), layout, n); break;
    case 2: strided_copy_kernel<<<blocks_for(n), kThreads>>>(static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(src), layout, n); break;
    case 4: strided_copy_kernel<<<blocks_for(n), kThreads>>>(static_cast<uint32_t*>(dst), static_cast<const uint32_t*>(src), layout, n); break;
    default: strided_copy_kernel<<<blocks_for(n), kThreads>>>(static_cast<uint64_t*>(dst), static_cast<const uint64_t*>(src), layout, n); break;
  }
  check(cudaGetLastError(), "strided copy kernel");
}

void binary(BinaryOp op, float* out, const float* a, const StridedLayout& a_layout, const float* b, const StridedLayout& b_layout) {
  const int64_t n = layout_numel(a_layout);
  if (n == 0) return;
  binary_kernel<<<blocks_for(n), kThreads>>>(op, out, a, a_layout, b, b_layout, n);
  check(cudaGetLastError(), "binary kernel");
}

int blas_int(int64_t v, const char* what) {
  if (v < 0 || v > INT32_MAX) throw std::runtime_error(std::string("cuBLAS GEMM: ") + what + " = " + std::to_string(v) + " is outside the int range");
  return static_cast<int>(v);
}

// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands, keep the flags.
void gemm_f32(const GemmArgs& g) {
  if (g.batch == 0 || g.m == 0 || g.n == 0) return;
  const int m = blas_int(g.m, "M"), n = blas_int(g.n, "N"), k = blas_int(g.k, "K"), batch = blas_int(g.batch, "batch");
  const int lda = blas_int(g.lda, "lda"), ldb = blas_int(g.ldb, "ldb"), ldc = blas_int(g.ldc, "ldc");
  if (g.k == 0) {
    for (int64_t b = 0; b < g.batch; ++b)
      check(cudaMemset2D(g.c + b * g.batch_stride_c, static_cast<size_t>(g.ldc) * 4, 0, static_cast<size_t>(g.n) * 4,
                         static_cast<size_t>(g.m)), "gemm zero fill");
    return;
  }
  const float one = 1.0f, zero = 0.0f;
  check_blas(cublasSgemmStridedBatched(blas_handle(), g.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                       g.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &one, g.b, ldb, g.batch_stride_b,
                                       g.a, lda, g.batch_stride_a, &zero, g.c, ldc, g.batch_stride_c, batch),
             "cublasSgemmStridedBatched");
}

}  // namespace ivl::cuda
