// Every tensor op of the engine. Each differentiable op is one autograd node with a hand-written
// backward next to its forward (see the op-family .cpp files); ops dispatch on the device of their
// inputs to a CPU kernel (always there: the readable oracle) or a CUDA kernel (where one exists; the
// others say so in their error). Inputs of one op must share a device and, for arithmetic, a dtype.
// On the CPU, bf16/f16 inputs are computed in f32 and the result is returned in the input dtype.
#pragma once
#include <optional>
#include <vector>

#include "tensor/tensor.h"

namespace ivl {

class Generator;

// ---- elementwise (broadcasting, NumPy rules) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);  // a^b elementwise; the gradient in b needs a > 0
Tensor pow(const Tensor& a, double exponent);
Tensor maximum(const Tensor& a, const Tensor& b);  // ties send the gradient to a
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor log_sigmoid(const Tensor& x);  // log(sigmoid(x)) without overflow
Tensor silu(const Tensor& x);         // x * sigmoid(x)
Tensor gelu(const Tensor& x);         // exact: x * Phi(x), Phi the normal CDF (erf)
Tensor gelu_tanh(const Tensor& x);    // the tanh approximation
Tensor relu(const Tensor& x);
Tensor abs(const Tensor& x);
// Comparisons and logic: no gradient; results are bool.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_not(const Tensor& x);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& x);
// A double operand becomes a 0-d tensor of the other operand's dtype and device.
Tensor operator+(const Tensor& a, double b);
Tensor operator-(const Tensor& a, double b);
Tensor operator*(const Tensor& a, double b);
Tensor operator/(const Tensor& a, double b);
Tensor operator+(double a, const Tensor& b);
Tensor operator-(double a, const Tensor& b);
Tensor operator*(double a, const Tensor& b);
Tensor operator/(double a, const Tensor& b);

// ---- conversions ----
// Copies src's elements into dst (same shape; dtype and device converted). Not recorded by autograd:
// for loading weights and for optimizer updates, on tensors that are not part of a graph.
void copy_into(const Tensor& dst, const Tensor& src);
// dst += src in place (same shape; src converted to dst's dtype and device). Not recorded: for
// accumulating gradients into a flat buffer's views.
void add_into(const Tensor& dst, const Tensor& src);
void fill_into(const Tensor& dst, double value);  // every element of dst = value; not recorded
// dst = 0, not recorded; on storage from Tensor::zeros (mapped when large) the whole pages dst covers
// go back to the OS instead, and read as zeros again. For memory that will stay unwritten a while
// (frozen parameters' gradients); fill_into(dst, 0) is faster for memory about to be rewritten.
void release_into_zeros(const Tensor& dst);
Tensor to_dtype(const Tensor& x, DType dtype);     // differentiable between float dtypes
Tensor to_device(const Tensor& x, Device device);  // differentiable
Tensor contiguous(const Tensor& x);                // x itself when already contiguous
Tensor clone(const Tensor& x);                     // always a fresh copy

// ---- reductions ----
// Over `dims` (all dims when empty). Sums of f32 accumulate in f64 on the CPU.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);  // gradient to the first maximum
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // i64, first maximum, no gradient
Tensor softmax(const Tensor& x, int64_t dim = -1);
Tensor log_softmax(const Tensor& x, int64_t dim = -1);

// ---- matrix products ----
// a [..., M, K] @ b [..., K, N] -> [..., M, N]; batch dims broadcast; both at least 2-D. Transposed
// views (x.mT()) go to BLAS as transpose flags, not copies.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [..., in] . weight [out, in]^T + bias [out] -> [..., out], one node.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---- normalisation (over the last dim, fused nodes) ----
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);  // weight/bias optional
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps);                       // weight optional

// ---- lookups ----
Tensor embedding(const Tensor& weight, const Tensor& ids);  // weight [V, D], ids int [...] -> [..., D]
// Conv2d whose stride equals its kernel and that has no padding (a ViT patch embedding):
// x [B, C, H, W], weight [O, C, k, k], bias [O] (optional) -> [B, O, H/k, W/k] (floor, as PyTorch).
Tensor conv2d_patch(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---- shape and indexing ----
Tensor reshape(const Tensor& x, const Shape& shape);  // one dim may be -1; a view when x is contiguous
Tensor permute(const Tensor& x, const std::vector<int64_t>& order);
Tensor transpose(const Tensor& x, int64_t dim0, int64_t dim1);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1);  // Python rules
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor expand(const Tensor& x, const Shape& shape);  // broadcast view; -1 keeps a dim
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor cat(const std::vector<Tensor>& tensors, int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, int64_t dim);
Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index);  // index: 1-D int
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);        // torch.gather
Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);   // mask: bool, broadcasts
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b);  // condition: bool

// ---- transformer pieces ----
// Rotary position embedding, rotate-half form (GPT-NeoX / Llama / Qwen2 / InternLM2):
// x [B, H, T, D] (D even), positions int [T] or [B, T]; angle(p, i) = p * theta^(-2i/D), computed
// in f32 for f32 inputs as the official code does.
Tensor rotary_embedding(const Tensor& x, const Tensor& positions, double theta);

struct AttentionOptions {
  double scale = 0;                 // 0 means 1/sqrt(head_dim)
  bool causal = false;              // query t sees keys s <= t + (S - T) (aligned at the end)
  Tensor key_padding_mask;          // optional bool [B, S]: true = attend, false = padding
};
// Scaled-dot-product attention as one node: q [B, Hq, T, D], k [B, Hkv, S, D], v [B, Hkv, S, Dv],
// Hq a multiple of Hkv (grouped-query heads) -> [B, Hq, T, Dv]. A query that may see no key
// gets zeros. Backward recomputes the probabilities from the saved log-sum-exp.
Tensor scaled_dot_product_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                                    const AttentionOptions& options = {});

// log p(target) under softmax(logits) per position: logits [..., V], targets int [...] -> [...];
// positions whose target equals ignore_index give 0 (and no gradient). One fused node.
Tensor token_logprobs(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);
// Mean negative log-likelihood over the positions not ignored (PyTorch's cross_entropy).
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);
// token_logprobs(linear(hidden, weight), targets) without ever holding the [N, V] logits: hidden
// [N, H], weight [V, H] (an output head), targets int [N] (every one counts) -> [N]. One fused node
// that makes the logits `chunk` rows at a time in forward and again in backward: memory chunk x V.
Tensor linear_token_logprobs(const Tensor& hidden, const Tensor& weight, const Tensor& targets, int64_t chunk = 256);

// Zeroes each element with probability p and scales the rest by 1/(1-p); identity when !training.
Tensor dropout(const Tensor& x, double p, Generator& gen, bool training = true);
// Stochastic depth: zeroes whole samples (dim 0) with probability p, scales the rest by 1/(1-p).
Tensor drop_path(const Tensor& x, double p, Generator& gen, bool training = true);

// Reduces a broadcast gradient back to `shape` (sums the broadcast dims). Used by backward rules.
Tensor sum_to(const Tensor& x, const Shape& shape);
// The shape two shapes broadcast to; throws naming `what` when they do not.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* what);

}  // namespace ivl
