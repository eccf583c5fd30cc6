// The CUDA backend of a build without nvcc: every entry point says so. Compiled only then.
#include <string>

#include "tensor/cuda_backend.h"
#include "tensor/tensor.h"

namespace ivl::cuda {

static const char* kReason = "this build of ivl has no CUDA backend (nvcc was not found when it was configured)";

bool built() { return false; }
bool available() { return false; }
std::string device_summary() { return std::string("unavailable: ") + kReason; }
void synchronize() { fail(kReason); }
std::shared_ptr<void> allocate(size_t) { fail(kReason); }
void copy_host_to_device(void*, const void*, size_t) { fail(kReason); }
void copy_device_to_host(void*, const void*, size_t) { fail(kReason); }
void copy_device_to_device(void*, const void*, size_t) { fail(kReason); }
void fill(void*, DType, int64_t, double) { fail(kReason); }
void strided_copy(void*, const void*, size_t, const StridedLayout&) { fail(kReason); }
void binary(BinaryOp, float*, const float*, const StridedLayout&, const float*, const StridedLayout&) { fail(kReason); }
void gemm_f32(const GemmArgs&) { fail(kReason); }

}  // namespace ivl::cuda
