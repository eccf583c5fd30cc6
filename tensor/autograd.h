// Reverse-mode autograd on a tape. Each differentiable op records one Node holding a backward
// closure (its saved tensors live in the closure's captures); backward() walks the nodes in an order
// where every node runs after all of its consumers, sums the gradients that meet, and adds the
// leaf gradients into `.grad` (in place when a .grad exists, e.g. a view into a flat buffer).
// Backward closures run under NoGrad. Many are written with ops (linear, the shape ops, elementwise
// arithmetic) and run wherever those ops have kernels; the fused nodes' backwards (norms, rotary,
// attention, the log-prob gathers) are CPU loops like their forwards. On CUDA today, a backward
// that needs an op without a CUDA kernel (a broadcast add's sum, for one) fails naming that op.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace ivl {

// A differentiable op's name, registered at static-initialisation time so that the gradient-check
// test can prove every op has a check. One per op, at namespace scope: `const OpName kExp("exp");`
class OpName {
 public:
  explicit OpName(const char* name);
  const char* const name;
};
std::vector<std::string> registered_ops();  // sorted

using BackwardFn = std::function<std::vector<Tensor>(const Tensor& grad_output)>;

struct Node {
  const char* name = "";
  std::vector<std::shared_ptr<Node>> next;  // one per input; null where that input needs no gradient
  std::vector<Shape> input_shapes;           // to check what `backward` returns
  BackwardFn backward;                       // one gradient per input; undefined means zero
  std::shared_ptr<TensorImpl> leaf;          // set on a leaf's accumulator: the tensor whose grad grows

  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  ~Node();  // frees the chain below it with a loop, not recursion: graphs may be deeper than the stack
};

bool grad_enabled();

// Turns graph recording off for its lifetime (inference, the reference pass, optimizer updates).
class NoGrad {
 public:
  NoGrad();
  ~NoGrad();
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool previous_;
};

// Turns graph recording back on inside a NoGrad scope (a checkpoint's recompute, which runs during
// backward).
class EnableGrad {
 public:
  EnableGrad();
  ~EnableGrad();
  EnableGrad(const EnableGrad&) = delete;
  EnableGrad& operator=(const EnableGrad&) = delete;

 private:
  bool previous_;
};

// Activation checkpointing: runs fn(inputs) without recording and records one node whose backward
// runs fn again, recording, on detached copies of the inputs, and backpropagates its gradient
// through that graph. What fn computes inside then lives only while its backward runs: memory for
// one block instead of all of them, for one more forward. Leaves fn reaches through its captures
// (parameters) get their gradients from that inner backward; the node returns the inputs'. fn must
// compute the same values both times (a caller with random numbers inside replays its generator).
// With recording off it is just fn(inputs).
using CheckpointFn = std::function<Tensor(const std::vector<Tensor>&)>;
Tensor checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs);

// True when recording is on and any input requires grad: ops test this before saving anything.
bool needs_grad(std::initializer_list<Tensor> inputs);
bool needs_grad(const std::vector<Tensor>& inputs);

// Attaches a node for `op` to `output` when needs_grad(inputs); otherwise drops `backward`. Returns
// `output`. A closure that needs the output itself must capture `output.detach()`, never `output`
// (which would own its own node: a cycle).
Tensor record(const OpName& op, Tensor output, const std::vector<Tensor>& inputs, BackwardFn backward);

// The engine behind Tensor::backward.
void run_backward(const Tensor& root, const Tensor& grad_output, bool retain_graph);

}  // namespace ivl
