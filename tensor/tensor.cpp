// Tensor creation, metadata, element access and the member shortcuts.
#include "tensor/tensor.h"

#include <cstdlib>
#include <cstring>
#include <numeric>
#include <sstream>

#include "tensor/autograd.h"
#include "tensor/cuda_backend.h"
#include "tensor/host_memory.h"
#include "tensor/ops.h"
#include "tensor/random.h"

namespace ivl {

void fail(const std::string& message) { throw std::invalid_argument(message); }

std::string shape_str(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) strides[i] = s, s *= shape[i];
  return strides;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* what) {
  const int64_t wrapped = dim < 0 ? dim + ndim : dim;
  if (wrapped < 0 || wrapped >= ndim)
    fail(std::string(what) + ": dim " + std::to_string(dim) + " is out of range for a " + std::to_string(ndim) +
         "-d tensor");
  return wrapped;
}

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  auto storage = std::make_shared<Storage>();
  storage->nbytes = nbytes;
  storage->device = device;
  if (device == Device::cuda) {
    storage->memory = cuda::allocate(nbytes);
  } else {
    void* p = host_memory::allocate(nbytes);  // 64-byte aligned for vector loads
    storage->memory = std::shared_ptr<void>(p, [nbytes](void* q) { host_memory::release(q, nbytes); });
  }
  return storage;
}

// Zero buffers this large come from the OS as untouched pages (a flat gradient buffer then grows in
// resident memory only as backward writes it, as per-tensor gradients would); smaller ones are
// written.
static constexpr size_t kZeroMappedBytes = size_t{64} << 20;

std::shared_ptr<Storage> Storage::allocate_zeroed(size_t nbytes, Device device) {
  if (device != Device::cpu) fail("Storage::allocate_zeroed: CPU only");
  if (nbytes < kZeroMappedBytes) {
    auto storage = allocate(nbytes, device);
    std::memset(storage->data(), 0, nbytes);
    return storage;
  }
  void* p = host_memory::map_zeroed(nbytes);
  auto storage = std::make_shared<Storage>();
  storage->nbytes = nbytes;
  storage->device = device;
  storage->zero_mapped = true;
  storage->memory = std::shared_ptr<void>(p, [nbytes](void* q) { host_memory::unmap_zeroed(q, nbytes); });
  return storage;
}

static Tensor new_tensor(const Shape& shape, DType dtype, std::shared_ptr<Storage> storage) {
  for (int64_t d : shape)
    if (d < 0) fail("tensor shape " + shape_str(shape) + " has a negative size");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

// The bytes of a tensor of `shape`, refusing negative sizes and sizes that do not fit.
static size_t checked_bytes(const Shape& shape, DType dtype) {
  uint64_t bytes = dtype_size(dtype);
  for (int64_t d : shape) {
    if (d < 0) fail("tensor shape " + shape_str(shape) + " has a negative size");
    if (__builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes) || bytes > (uint64_t{1} << 62))
      fail("tensor shape " + shape_str(shape) + " of " + dtype_name(dtype) + " is too large to allocate");
  }
  return static_cast<size_t>(bytes);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  return new_tensor(shape, dtype, Storage::allocate(checked_bytes(shape, dtype), device));
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  const int64_t n = t.numel();
  if (device == Device::cuda) {
    cuda::fill(t.data_ptr(), dtype, n, value);
    return t;
  }
  auto fill_as = [&](auto typed_value) {
    auto* p = static_cast<decltype(typed_value)*>(t.data_ptr());
    std::fill(p, p + n, typed_value);
  };
  switch (dtype) {
    case DType::f32: fill_as(static_cast<float>(value)); break;
    case DType::f64: fill_as(value); break;
    case DType::bf16: fill_as(f32_to_bf16(static_cast<float>(value))); break;
    case DType::f16: fill_as(f32_to_f16(static_cast<float>(value))); break;
    case DType::i32: fill_as(static_cast<int32_t>(value)); break;
    case DType::i64: fill_as(static_cast<int64_t>(value)); break;
    case DType::u8: fill_as(static_cast<uint8_t>(value)); break;
    case DType::boolean: fill_as(static_cast<uint8_t>(value != 0)); break;
  }
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  if (device != Device::cpu) return full(shape, 0.0, dtype, device);
  return new_tensor(shape, dtype, Storage::allocate_zeroed(checked_bytes(shape, dtype), device));  // all-zero bytes: 0 in every dtype
}
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }
Tensor Tensor::scalar(double value, DType dtype, Device device) { return full({}, value, dtype, device); }

Tensor Tensor::arange(int64_t n, DType dtype, Device device) {
  std::vector<int64_t> values(static_cast<size_t>(std::max<int64_t>(n, 0)));
  std::iota(values.begin(), values.end(), int64_t{0});
  return from_vector(values, {n}).to(dtype).to(device);
}

Tensor Tensor::rand(const Shape& shape, Generator& gen, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, DType::f32);
  const uint64_t base = gen.reserve((static_cast<uint64_t>(t.numel()) + 3) / 4);
  philox_fill_uniform(t.data<float>(), t.numel(), gen.seed(), base, 0.0f, 1.0f);
  return t.to(dtype).to(device);
}

Tensor Tensor::randn(const Shape& shape, Generator& gen, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, DType::f32);
  const int64_t n = t.numel();
  const uint64_t base = gen.reserve(static_cast<uint64_t>(n + 1) / 2);
  float* p = t.data<float>();
  for (int64_t i = 0; i < n; ++i) p[i] = philox_normal_at(gen.seed(), base, static_cast<uint64_t>(i));
  return t.to(dtype).to(device);
}

template <class T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape) {
  if (static_cast<int64_t>(values.size()) != shape_numel(shape))
    fail("from_vector: " + std::to_string(values.size()) + " values do not fill shape " + shape_str(shape));
  Tensor t = empty(shape, dtype_of<T>());
  std::copy(values.begin(), values.end(), t.data<T>());
  return t;
}
template Tensor Tensor::from_vector(const std::vector<float>&, const Shape&);
template Tensor Tensor::from_vector(const std::vector<double>&, const Shape&);
template Tensor Tensor::from_vector(const std::vector<int32_t>&, const Shape&);
template Tensor Tensor::from_vector(const std::vector<int64_t>&, const Shape&);
template Tensor Tensor::from_vector(const std::vector<uint8_t>&, const Shape&);

Tensor Tensor::from_blob(std::shared_ptr<void> keep_alive, void* data, const Shape& shape, DType dtype,
                         Device device) {
  auto storage = std::make_shared<Storage>();
  storage->memory = std::shared_ptr<void>(std::move(keep_alive), data);  // aliasing: owns keep_alive
  storage->nbytes = static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype);
  storage->device = device;
  return new_tensor(shape, dtype, std::move(storage));
}

static const TensorImpl& checked(const std::shared_ptr<TensorImpl>& impl) {
  if (!impl) fail("use of an undefined tensor");
  return *impl;
}

const Shape& Tensor::shape() const { return checked(impl_).shape; }
const Shape& Tensor::strides() const { return checked(impl_).strides; }
int64_t Tensor::size(int64_t d) const { return shape()[static_cast<size_t>(wrap_dim(d, dim(), "size"))]; }
int64_t Tensor::stride(int64_t d) const { return strides()[static_cast<size_t>(wrap_dim(d, dim(), "stride"))]; }
int64_t Tensor::offset() const { return checked(impl_).offset; }
int64_t Tensor::numel() const { return shape_numel(shape()); }
DType Tensor::dtype() const { return checked(impl_).dtype; }
Device Tensor::device() const { return checked(impl_).storage->device; }
const std::shared_ptr<Storage>& Tensor::storage() const { return checked(impl_).storage; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = shape().size(); i-- > 0;) {
    if (shape()[i] == 1) continue;  // the stride of a size-1 dim never matters
    if (strides()[i] != expected) return false;
    expected *= shape()[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype())) + shape_str(shape()) + " " + device_name(device());
}

void* Tensor::data_ptr() const {
  return static_cast<char*>(storage()->data()) + offset() * static_cast<int64_t>(dtype_size(dtype()));
}

template <class T>
T* Tensor::data() const {
  if (device() != Device::cpu) fail("data<T>() needs a CPU tensor; this one is " + str());
  bool ok;
  if constexpr (std::is_same_v<T, uint16_t>) ok = is_half(dtype());
  else ok = dtype() == dtype_of<T>() || (std::is_same_v<T, uint8_t> && dtype() == DType::boolean);
  if (!ok) fail("data<T>(): element type does not match the tensor's dtype " + std::string(dtype_name(dtype())));
  return static_cast<T*>(data_ptr());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template int32_t* Tensor::data<int32_t>() const;
template int64_t* Tensor::data<int64_t>() const;
template uint8_t* Tensor::data<uint8_t>() const;
template uint16_t* Tensor::data<uint16_t>() const;

std::vector<double> Tensor::to_doubles() const {
  const Tensor t = (device() == Device::cpu ? *this : to(Device::cpu)).to(DType::f64).contiguous();
  const double* p = t.data<double>();
  return std::vector<double>(p, p + t.numel());
}

double Tensor::item() const {
  if (numel() != 1) fail("item() needs exactly one element; the tensor is " + str());
  return to_doubles()[0];
}

bool Tensor::requires_grad() const { return checked(impl_).requires_grad; }

Tensor& Tensor::set_requires_grad(bool on) {
  if (!is_leaf()) fail("set_requires_grad: only leaf tensors can change requires_grad (detach() first)");
  if (on && !is_floating(dtype())) fail("set_requires_grad: a " + std::string(dtype_name(dtype())) + " tensor cannot have gradients");
  impl_->requires_grad = on;
  return *this;
}

const Tensor& Tensor::grad() const { return checked(impl_).grad; }
void Tensor::set_grad(const Tensor& grad) const {
  checked(impl_);
  impl_->grad = grad;
}
bool Tensor::is_leaf() const { return checked(impl_).grad_fn == nullptr; }
const std::shared_ptr<Node>& Tensor::grad_fn() const { return checked(impl_).grad_fn; }

void Tensor::backward(const Tensor& grad_output, bool retain_graph) const {
  run_backward(*this, grad_output, retain_graph);
}

Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

Tensor Tensor::detach() const { return make_view(*this, shape(), strides(), offset()); }

Tensor Tensor::reshape(const Shape& s) const { return ivl::reshape(*this, s); }
Tensor Tensor::permute(const std::vector<int64_t>& order) const { return ivl::permute(*this, order); }
Tensor Tensor::transpose(int64_t d0, int64_t d1) const { return ivl::transpose(*this, d0, d1); }
Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const { return ivl::slice(*this, d, start, end, step); }
Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const { return ivl::narrow(*this, d, start, length); }
Tensor Tensor::expand(const Shape& s) const { return ivl::expand(*this, s); }
Tensor Tensor::unsqueeze(int64_t d) const { return ivl::unsqueeze(*this, d); }
Tensor Tensor::squeeze(int64_t d) const { return ivl::squeeze(*this, d); }
Tensor Tensor::contiguous() const { return ivl::contiguous(*this); }
Tensor Tensor::to(DType dtype) const { return to_dtype(*this, dtype); }
Tensor Tensor::to(Device device) const { return to_device(*this, device); }
Tensor Tensor::clone() const { return ivl::clone(*this); }

}  // namespace ivl
