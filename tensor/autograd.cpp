// The backward engine: topological walk over the recorded nodes, gradient accumulation where paths
// meet, accumulation into leaves, and release of saved tensors.
#include "tensor/autograd.h"

#include <algorithm>
#include <set>
#include <unordered_map>

#include "tensor/ops.h"

namespace ivl {

static std::set<std::string>& op_registry() {
  static std::set<std::string> names;  // function-local: safe during static initialisation
  return names;
}

OpName::OpName(const char* n) : name(n) { op_registry().insert(n); }

std::vector<std::string> registered_ops() { return {op_registry().begin(), op_registry().end()}; }

Node::~Node() {
  std::vector<std::shared_ptr<Node>> pending = std::move(next);
  while (!pending.empty()) {
    std::shared_ptr<Node> node = std::move(pending.back());
    pending.pop_back();
    if (node && node.use_count() == 1) {  // we hold the last reference: adopt its edges before it dies
      for (auto& edge : node->next) pending.push_back(std::move(edge));
      node->next.clear();
    }
  }
}

static thread_local bool g_grad_enabled = true;
bool grad_enabled() { return g_grad_enabled; }
NoGrad::NoGrad() : previous_(g_grad_enabled) { g_grad_enabled = false; }
NoGrad::~NoGrad() { g_grad_enabled = previous_; }

EnableGrad::EnableGrad() : previous_(g_grad_enabled) { g_grad_enabled = true; }
EnableGrad::~EnableGrad() { g_grad_enabled = previous_; }

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}
bool needs_grad(std::initializer_list<Tensor> inputs) {
  if (!g_grad_enabled) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

// A leaf's accumulator is created on first use and shared by every node that consumes the leaf.
static std::shared_ptr<Node> edge_to(const Tensor& input) {
  if (!input.defined() || !input.requires_grad()) return nullptr;
  if (input.grad_fn()) return input.grad_fn();
  TensorImpl* impl = input.impl();
  if (auto existing = impl->grad_accumulator.lock()) return existing;
  auto accumulator = std::make_shared<Node>();
  accumulator->name = "accumulate_grad";
  accumulator->leaf = input.impl_ptr();
  impl->grad_accumulator = accumulator;
  return accumulator;
}

Tensor record(const OpName& op, Tensor output, const std::vector<Tensor>& inputs, BackwardFn backward) {
  if (!needs_grad(inputs)) return output;
  auto node = std::make_shared<Node>();
  node->name = op.name;
  node->backward = std::move(backward);
  node->next.reserve(inputs.size());
  node->input_shapes.reserve(inputs.size());
  for (const Tensor& input : inputs) {
    node->next.push_back(edge_to(input));
    node->input_shapes.push_back(input.defined() ? input.shape() : Shape{});
  }
  TensorImpl* out = output.impl();
  out->grad_fn = std::move(node);
  out->requires_grad = true;
  return output;
}

static const OpName kCheckpoint("checkpoint");

Tensor checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs) {
  if (!g_grad_enabled) return fn(inputs);
  Tensor output;
  {
    NoGrad no_grad;
    output = fn(inputs);
  }
  if (!is_floating(output.dtype())) return output;
  output = output.detach();  // its own handle, even when fn returned one of its inputs
  std::vector<Tensor> saved;  // values only: the inputs' graphs stay reachable through the node's edges
  for (const Tensor& t : inputs) saved.push_back(t.defined() ? t.detach() : t);
  std::vector<bool> wants;
  for (const Tensor& t : inputs) wants.push_back(t.defined() && t.requires_grad());
  // Recorded even when no input requires grad: the parameters fn captures may, and only this node's
  // backward can reach them.
  auto node = std::make_shared<Node>();
  node->name = kCheckpoint.name;
  for (const Tensor& t : inputs) {
    node->next.push_back(edge_to(t));
    node->input_shapes.push_back(t.defined() ? t.shape() : Shape{});
  }
  node->backward = [fn, saved, wants](const Tensor& grad) {
    EnableGrad enable;
    std::vector<Tensor> leaves;
    for (size_t i = 0; i < saved.size(); ++i) {
      Tensor leaf = saved[i].defined() ? saved[i].detach() : saved[i];
      if (wants[i]) leaf.set_requires_grad(true);
      leaves.push_back(leaf);
    }
    const Tensor recomputed = fn(leaves);
    if (recomputed.requires_grad()) recomputed.backward(grad);
    std::vector<Tensor> grads;
    for (size_t i = 0; i < leaves.size(); ++i) grads.push_back(wants[i] ? leaves[i].grad() : Tensor());
    return grads;
  };
  output.impl()->grad_fn = std::move(node);
  output.impl()->requires_grad = true;
  return output;
}

static void accumulate(Tensor& slot, const Tensor& grad) { slot = slot.defined() ? add(slot, grad) : grad; }

// A leaf's .grad is its own contiguous tensor: a gradient that is a view, or that another handle
// still refers to (an identity backward passes its input through; the seed is the caller's), is
// copied, so that updating one .grad in place never changes another tensor.
static Tensor owned(Tensor grad) {
  const bool exclusive = grad.impl_ptr().use_count() == 1 && grad.storage().use_count() == 1 &&
                         grad.offset() == 0 && grad.is_contiguous() && grad.nbytes() == grad.storage()->nbytes;
  return exclusive ? grad : clone(grad);
}

void run_backward(const Tensor& root, const Tensor& grad_output, bool retain_graph) {
  if (!root.requires_grad()) fail("backward: the tensor does not require grad (no input had requires_grad set)");
  Tensor seed = grad_output.defined() ? grad_output.detach() : Tensor();  // no history: the seed is a constant
  if (!seed.defined()) {
    if (root.numel() != 1) fail("backward: a gradient must be given for a non-scalar output " + root.str());
    seed = Tensor::ones(root.shape(), root.dtype(), root.device());
  } else if (seed.shape() != root.shape() || seed.dtype() != root.dtype() || seed.device() != root.device()) {
    fail("backward: the gradient " + seed.str() + " does not match the output " + root.str());
  }
  NoGrad no_grad;
  std::shared_ptr<Node> start = root.is_leaf() ? edge_to(root) : root.grad_fn();

  // Count, for every reachable node, how many edges point at it; a node is ready once all arrived.
  std::unordered_map<Node*, int> pending;
  std::vector<Node*> stack{start.get()};
  pending[start.get()] = 0;
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const auto& next : node->next) {
      if (!next) continue;
      auto [it, inserted] = pending.try_emplace(next.get(), 0);
      ++it->second;
      if (inserted) stack.push_back(next.get());
    }
  }

  std::unordered_map<Node*, Tensor> grads;
  grads[start.get()] = seed;
  std::vector<std::shared_ptr<Node>> ready{start};
  while (!ready.empty()) {
    std::shared_ptr<Node> node = std::move(ready.back());
    ready.pop_back();
    Tensor grad;
    if (auto it = grads.find(node.get()); it != grads.end()) grad = std::move(it->second), grads.erase(it);
    if (node->leaf) {
      if (grad.defined()) {
        Tensor& slot = node->leaf->grad;
        if (grad.dtype() != node->leaf->dtype) grad = grad.to(node->leaf->dtype);
        // Into an existing .grad in place: a parameter's .grad may be a view into one flat gradient
        // buffer (nn/parameters.h), which must stay that view.
        if (slot.defined()) add_into(slot, grad);
        else slot = owned(std::move(grad));
      }
      continue;
    }
    // A node that no gradient reached still runs through, so that the nodes below it get released.
    std::vector<Tensor> input_grads(node->next.size());
    if (grad.defined()) {
      if (!node->backward)
        fail(std::string("backward: the graph through '") + node->name +
             "' was already freed; pass retain_graph=true to backpropagate through it twice");
      input_grads = node->backward(grad);
      if (input_grads.size() != node->next.size())
        fail(std::string("internal error: backward of '") + node->name + "' returned the wrong number of gradients");
    }
    for (size_t i = 0; i < node->next.size(); ++i) {
      Node* next = node->next[i].get();
      if (!next) continue;
      if (input_grads[i].defined()) {
        if (input_grads[i].shape() != node->input_shapes[i])
          fail(std::string("internal error: backward of '") + node->name + "' returned a gradient of shape " +
               shape_str(input_grads[i].shape()) + " for an input of shape " + shape_str(node->input_shapes[i]));
        accumulate(grads[next], input_grads[i]);
      }
      if (--pending[next] == 0) ready.push_back(node->next[i]);
    }
    if (!retain_graph) node->backward = nullptr;  // frees the tensors saved in the closure
  }
}

}  // namespace ivl
