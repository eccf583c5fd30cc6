// ParameterSet: declaration, the flat buffer, checkpoint loading with one complete error report,
// per-parameter trainability.
#include "nn/parameters.h"

#include <algorithm>

#include "nn/safetensors.h"
#include "tensor/autograd.h"
#include "tensor/ops.h"
#include "tensor/random.h"

namespace ivl {

const Tensor& Parameter::tensor() const {
  if (!slot_) fail("use of an undeclared parameter");
  if (!slot_->tensor.defined()) fail("parameter '" + slot_->name + "' has not been loaded or allocated");
  return slot_->tensor;
}

Parameter ParameterSet::declare(const std::string& name, const Shape& shape, bool optional, ParameterModule module) {
  if (index_.count(name)) fail("parameter '" + name + "' is declared twice");
  for (int64_t d : shape)
    if (d <= 0) fail("parameter '" + name + "' has an invalid shape " + shape_str(shape));
  Parameter p;
  p.slot_ = std::make_shared<Parameter::Slot>();
  p.slot_->name = name, p.slot_->shape = shape, p.slot_->optional = optional, p.slot_->module = module;
  index_[name] = parameters_.size();
  parameters_.push_back(p);
  return p;
}

const Parameter& ParameterSet::find(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) fail("no parameter named '" + name + "'");
  return parameters_[it->second];
}

int64_t ParameterSet::numel(const std::string& prefix) const {
  int64_t n = 0;
  for (const Parameter& p : parameters_)
    if (p.name().rfind(prefix, 0) == 0) n += shape_numel(p.shape());
  return n;
}

// One f32 buffer for the present parameters; each parameter is a leaf view into it.
void ParameterSet::allocate(const std::vector<bool>& present) {
  int64_t total = 0;
  for (size_t i = 0; i < parameters_.size(); ++i)
    if (present[i]) total += shape_numel(parameters_[i].shape());
  flat_ = Tensor::zeros({total}, dtype_);
  flat_grad_ = Tensor();
  requires_grad_ = false;  // the new leaves do not require grad yet
  int64_t offset = 0;
  for (size_t i = 0; i < parameters_.size(); ++i) {
    Parameter::Slot& slot = *parameters_[i].slot_;
    slot.tensor = Tensor(), slot.offset = -1;
    if (!present[i]) continue;
    slot.tensor = make_view(flat_, slot.shape, contiguous_strides(slot.shape), offset);
    slot.offset = offset;
    offset += shape_numel(slot.shape);
  }
}

// Trainable parameters get their view of the gradient buffer; frozen ones none (PyTorch's grad None).
void ParameterSet::attach_grads() const {
  for (const Parameter& p : parameters_) {
    if (!p.present()) continue;
    if (p.trainable()) p.tensor().set_grad(make_view(flat_grad_, p.shape(), contiguous_strides(p.shape()), p.offset()));
    else p.tensor().set_grad(Tensor());
  }
}

void ParameterSet::allocate_zeros() { allocate(std::vector<bool>(parameters_.size(), true)); }

void ParameterSet::allocate_uniform(Generator& gen, double scale) {
  allocate_zeros();
  const int64_t n = flat_.numel();
  const Tensor values = dtype_ == DType::f32 ? flat_ : Tensor::empty({n});
  philox_fill_uniform(values.data<float>(), n, gen.seed(), gen.reserve(static_cast<uint64_t>(n + 3) / 4),
                      static_cast<float>(-scale), static_cast<float>(scale));
  if (dtype_ != DType::f32) copy_into(flat_, values);
}

void ParameterSet::load(const SafetensorsCheckpoint& checkpoint) {
  std::vector<std::string> missing, misshaped, unexpected, wrong_dtype;
  std::vector<bool> present(parameters_.size(), false);
  for (size_t i = 0; i < parameters_.size(); ++i) {
    const Parameter& p = parameters_[i];
    if (!checkpoint.contains(p.name())) {
      if (!p.optional()) missing.push_back(p.name() + " " + shape_str(p.shape()));
      continue;
    }
    const SafetensorsEntry& entry = checkpoint.entry(p.name());
    if (entry.shape != p.shape())
      misshaped.push_back(p.name() + ": expected " + shape_str(p.shape()) + ", found " + shape_str(entry.shape));
    else if (!is_floating(entry.dtype))
      wrong_dtype.push_back(p.name() + ": " + dtype_name(entry.dtype) + " is not a float dtype");
    present[i] = true;
  }
  for (const std::string& name : checkpoint.names())
    if (!index_.count(name)) unexpected.push_back(name);

  if (!missing.empty() || !misshaped.empty() || !unexpected.empty() || !wrong_dtype.empty()) {
    std::string message = "checkpoint '" + checkpoint.path() + "' does not match the model built from its config:";
    auto list = [&message](const char* what, const std::vector<std::string>& items) {
      if (items.empty()) return;
      message += "\n  " + std::to_string(items.size()) + " " + what + ":";
      for (const std::string& item : items) message += "\n    " + item;
    };
    list("missing", missing);
    list("with the wrong shape", misshaped);
    list("with a non-float dtype", wrong_dtype);
    list("unexpected", unexpected);
    fail(message);
  }
  allocate(present);
  for (size_t i = 0; i < parameters_.size(); ++i)
    if (present[i]) copy_into(parameters_[i].slot_->tensor, checkpoint.get(parameters_[i].name()));
}

void ParameterSet::set_requires_grad(bool on) {
  if (!flat_.defined()) fail("set_requires_grad: the parameters have not been loaded or allocated");
  requires_grad_ = on;
  for (Parameter& p : parameters_)
    if (p.present()) p.slot_->tensor.set_requires_grad(on && p.trainable());
  if (!on) return;
  if (!flat_grad_.defined()) flat_grad_ = Tensor::zeros(flat_.shape(), dtype_, flat_.device());
  attach_grads();
}

void ParameterSet::zero_grad() {
  if (!flat_grad_.defined()) return;
  // A trainable parameter's gradient is rewritten by the next backward: zeros are written over the
  // resident pages (faulting them in again after handing them back costs more). The rest go back to
  // the OS, so frozen parameters' gradients take no memory.
  for (const Parameter& p : parameters_) {
    if (!p.present()) continue;
    const Tensor range = flat_grad_.narrow(0, p.offset(), shape_numel(p.shape()));
    if (requires_grad_ && p.trainable()) fill_into(range, 0.0);
    else release_into_zeros(range);
  }
  attach_grads();
}

void ParameterSet::set_trainable(const std::function<bool(const Parameter&)>& which) {
  for (Parameter& p : parameters_) p.slot_->trainable = which(p);
  if (requires_grad_) set_requires_grad(true);  // frozen ones stop requiring grad and lose their .grad
}

void ParameterSet::set_trainable_by_prefix(const std::string& prefix, bool trainable, const char* what) {
  bool matched = false;
  for (const Parameter& p : parameters_) matched = matched || p.name().rfind(prefix, 0) == 0;
  if (!matched) fail(std::string(what) + ": no parameter name starts with '" + prefix + "' (" + std::to_string(parameters_.size()) +
                     " parameters, the first '" + (parameters_.empty() ? std::string() : parameters_[0].name()) + "')");
  set_trainable([&](const Parameter& p) { return p.name().rfind(prefix, 0) == 0 ? trainable : p.trainable(); });
}

void ParameterSet::freeze(const std::string& prefix) { set_trainable_by_prefix(prefix, false, "freeze"); }
void ParameterSet::unfreeze(const std::string& prefix) { set_trainable_by_prefix(prefix, true, "unfreeze"); }

int64_t ParameterSet::trainable_numel() const {
  int64_t n = 0;
  for (const Parameter& p : parameters_)
    if (p.present() && p.trainable()) n += shape_numel(p.shape());
  return n;
}

}  // namespace ivl
