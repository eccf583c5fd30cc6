// Tensor: a handle on shared storage with a shape, strides (in elements), an offset, a dtype and a
// device, plus the autograd fields (requires_grad, grad, the node that produced it).
// Views (reshape of contiguous data, permute, transpose, slice, expand) share storage; everything
// else allocates. Ops live in tensor/ops.h; the members here are shortcuts to the common ones.
#pragma once
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace ivl {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& shape);  // "[2, 3]"
int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);

// Bytes on one device. `memory`'s deleter owns them (and may keep a file mapping alive), so a Storage
// never needs to know where its bytes came from.
struct Storage {
  std::shared_ptr<void> memory;
  size_t nbytes = 0;
  Device device = Device::cpu;
  // CPU bytes from an anonymous mapping: pages nobody has written cost no memory and read as zero,
  // and release_into_zeros hands the pages of a range back to the OS instead of writing zeros.
  bool zero_mapped = false;
  void* data() const { return memory.get(); }
  static std::shared_ptr<Storage> allocate(size_t nbytes, Device device);
  static std::shared_ptr<Storage> allocate_zeroed(size_t nbytes, Device device);  // zeros; mapped when large
};

struct Node;
struct TensorImpl;
class Generator;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- creation (contents of `empty` are unspecified) ----
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor scalar(double value, DType dtype = DType::f32, Device device = Device::cpu);  // 0-d
  static Tensor arange(int64_t n, DType dtype = DType::i64, Device device = Device::cpu);
  static Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::f32, Device device = Device::cpu);
  static Tensor rand(const Shape& shape, Generator& gen, DType dtype = DType::f32, Device device = Device::cpu);
  // Copies `values` (float, double, int32_t, int64_t, uint8_t) into a new CPU tensor of that dtype.
  template <class T> static Tensor from_vector(const std::vector<T>& values, const Shape& shape);
  // Wraps existing memory without copying; `keep_alive` owns it.
  static Tensor from_blob(std::shared_ptr<void> keep_alive, void* data, const Shape& shape, DType dtype,
                          Device device = Device::cpu);

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const;
  const Shape& strides() const;
  int64_t dim() const { return static_cast<int64_t>(shape().size()); }
  int64_t size(int64_t d) const;    // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t offset() const;           // in elements, into the storage
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  DType dtype() const;
  Device device() const;
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const;
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  std::string str() const;  // "f32[2, 3] cpu"

  // ---- data ----
  void* data_ptr() const;  // first element, on the tensor's device
  template <class T> T* data() const;  // CPU only; T must match dtype (uint16_t for bf16/f16)
  double item() const;                 // one element, any dtype or device
  std::vector<double> to_doubles() const;  // every element in logical (row-major) order

  // ---- autograd ----
  bool requires_grad() const;
  Tensor& set_requires_grad(bool on = true);  // leaves only
  const Tensor& grad() const;
  void set_grad(const Tensor& grad) const;
  void zero_grad() const { set_grad(Tensor()); }
  bool is_leaf() const;
  const std::shared_ptr<Node>& grad_fn() const;
  // Backpropagates from this tensor (a scalar unless `grad_output` is given) into every leaf that
  // requires grad. The graph's saved tensors are released unless retain_graph.
  void backward(const Tensor& grad_output = Tensor(), bool retain_graph = false) const;
  Tensor detach() const;  // same storage, no history

  // ---- shortcuts to ops in tensor/ops.h ----
  Tensor reshape(const Shape& shape) const;
  Tensor permute(const std::vector<int64_t>& order) const;
  Tensor transpose(int64_t dim0, int64_t dim1) const;
  Tensor mT() const { return transpose(-2, -1); }
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor expand(const Shape& shape) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor flatten() const { return reshape({numel()}); }
  Tensor contiguous() const;
  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor clone() const;

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;
  DType dtype = DType::f32;
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;            // the op that produced this tensor; null for leaves
  std::weak_ptr<Node> grad_accumulator;     // leaves: the node that adds into `grad`
};

// A new tensor sharing `base`'s storage (a view); it carries no autograd history.
Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset);

// Wraps a negative dimension index and checks its range; `what` names the op in the error.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* what);

// Throws std::invalid_argument with the message.
[[noreturn]] void fail(const std::string& message);

}  // namespace ivl
