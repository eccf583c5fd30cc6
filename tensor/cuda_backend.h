// The CUDA side of op dispatch: what the device-generic code calls when a tensor lives on the GPU.
// Implemented in tensor/cuda/*.cu when the build found nvcc, and by tensor/cuda_disabled.cpp (every
// call throws, naming the reason) when it did not. Kernels take raw pointers and plain metadata so
// that no CUDA header leaks into the rest of the engine.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "tensor/dtype.h"

namespace ivl::cuda {

bool built();              // compiled with CUDA
bool available();          // built and a device can be used now
std::string device_summary();  // "NVIDIA H100 80GB HBM3, 79 GiB, sm_90" or why none

void synchronize();  // waits for every kernel launched so far (for timing)

std::shared_ptr<void> allocate(size_t nbytes);
void copy_host_to_device(void* dst, const void* src, size_t nbytes);
void copy_device_to_host(void* dst, const void* src, size_t nbytes);
void copy_device_to_device(void* dst, const void* src, size_t nbytes);

// A strided view for kernels: at most kMaxDims dims; strides in elements.
constexpr int kMaxDims = 8;
struct StridedLayout {
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
};

// dst[i] = value for a contiguous dst of n elements (f32, f64, bf16, f16, i32, i64, u8, bool).
void fill(void* dst, DType dtype, int64_t n, double value);
// Gathers a strided source into a contiguous destination (any dtype, by element size).
void strided_copy(void* dst, const void* src, size_t element_size, const StridedLayout& src_layout);

enum class BinaryOp { add, sub, mul, div };
// out (contiguous, layout.shape) = a op b, with a and b given by broadcast strides. f32 only for now.
void binary(BinaryOp op, float* out, const float* a, const StridedLayout& a_layout, const float* b,
            const StridedLayout& b_layout);

// Row-major batched C[b] = op(A[b]) . op(B[b]) with per-operand batch strides (0 = shared), f32.
struct GemmArgs {
  int64_t batch, m, n, k;
  const float* a; int64_t lda, batch_stride_a; bool transpose_a;
  const float* b; int64_t ldb, batch_stride_b; bool transpose_b;
  float* c; int64_t ldc, batch_stride_c;
};
void gemm_f32(const GemmArgs& args);

}  // namespace ivl::cuda
