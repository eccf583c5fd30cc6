// The parameter registry: every weight of a model by its checkpoint name. Models declare their
// parameters (name and shape) when they are built; the registry then fills them all at once, from a
// checkpoint or with random values, into one flat f32 buffer (one allocation, one optimizer loop).
// Declaring without filling gives exact parameter counts for configs whose weights are not at hand.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tensor/tensor.h"

namespace ivl {

class Generator;
class SafetensorsCheckpoint;

// The kind of layer that declared a parameter, as the official PyTorch module holding it: the HF
// Trainer's weight-decay groups depend on it (every parameter of an nn.LayerNorm is exempt, while
// RMSNorm weights are decayed). `other` is a bare nn.Parameter (class_embedding, ls1, ...).
enum class ParameterModule { other, linear, convolution, embedding, layer_norm, rms_norm };

// A handle on one declared weight. Layers keep these; `tensor()` is valid once the set is filled.
class Parameter {
 public:
  Parameter() = default;
  const std::string& name() const { return slot_->name; }
  const Shape& shape() const { return slot_->shape; }
  bool optional() const { return slot_->optional; }
  ParameterModule module() const { return slot_->module; }
  // False when frozen (ParameterSet::set_trainable / freeze): then it never requires grad, has no
  // .grad, and clipping and AdamW skip it, as PyTorch skips a parameter whose grad is None.
  bool trainable() const { return slot_->trainable; }
  // Where the values start in ParameterSet::flat() and the gradient in flat_grad(); -1 when absent.
  int64_t offset() const { return slot_->offset; }
  bool present() const { return slot_ && slot_->tensor.defined(); }
  const Tensor& tensor() const;
  operator const Tensor&() const { return tensor(); }  // so that linear(x, weight_) reads naturally

 private:
  friend class ParameterSet;
  struct Slot {
    std::string name;
    Shape shape;
    bool optional = false;  // may be absent from a checkpoint (the model then falls back)
    ParameterModule module = ParameterModule::other;
    bool trainable = true;
    int64_t offset = -1;
    Tensor tensor;
  };
  std::shared_ptr<Slot> slot_;
};

class ParameterSet {
 public:
  // Parameters live in `dtype` (f32 for models; f64 lets tests check a whole model's gradients).
  explicit ParameterSet(DType dtype = DType::f32) : dtype_(dtype) {}
  // `module`: the kind of layer declaring it (the weight-decay groups read it).
  Parameter declare(const std::string& name, const Shape& shape, bool optional = false,
                    ParameterModule module = ParameterModule::other);
  const std::vector<Parameter>& parameters() const { return parameters_; }
  const Parameter& find(const std::string& name) const;
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // Elements of the declared parameters whose names start with `prefix` (all when empty).
  int64_t numel(const std::string& prefix = "") const;

  DType dtype() const { return dtype_; }
  // Fill every parameter: zeros, or uniform in [-scale, scale] from a seeded generator.
  void allocate_zeros();
  void allocate_uniform(Generator& gen, double scale);
  // Fill from a checkpoint (any float dtype on disk, f32 in memory). Every missing, unexpected or
  // mis-shaped tensor is listed in one error; optional parameters may be absent (left empty).
  void load(const SafetensorsCheckpoint& checkpoint);

  // Gradients live in one flat buffer laid out as flat() (each parameter at its offset); every present
  // trainable parameter's .grad is a view into it, so backward accumulates in place and AdamW,
  // clipping, an all-reduce or a checkpoint is one loop or one call over flat_grad(). Turning
  // requires_grad on allocates the buffer (zeros) and marks the trainable parameters (frozen ones get
  // requires_grad false and no .grad, and backward never writes their range); off turns it off for all
  // and leaves the buffer as it is.
  void set_requires_grad(bool on);
  // Fills the gradient buffer with zeros (and points each trainable parameter's .grad back at its
  // view, should a caller have replaced one).
  void zero_grad();

  // Per-parameter trainability (the official --freeze_* flags; every parameter starts trainable).
  // set_trainable sets each parameter's flag to which(parameter); freeze / unfreeze change those whose
  // names start with `prefix` and fail when none does (a misspelt prefix would otherwise train
  // everything). They take effect at once when requires_grad is on.
  void set_trainable(const std::function<bool(const Parameter&)>& which);
  void freeze(const std::string& prefix);
  void unfreeze(const std::string& prefix);
  int64_t trainable_numel() const;  // elements of the present trainable parameters

  const Tensor& flat() const { return flat_; }            // all filled parameters, back to back
  const Tensor& flat_grad() const { return flat_grad_; }  // undefined until set_requires_grad(true)

 private:
  void allocate(const std::vector<bool>& present);
  void attach_grads() const;
  void set_trainable_by_prefix(const std::string& prefix, bool trainable, const char* what);
  std::vector<Parameter> parameters_;
  std::unordered_map<std::string, size_t> index_;
  DType dtype_;
  bool requires_grad_ = false;
  Tensor flat_, flat_grad_;
};

}  // namespace ivl
