// Layers built only from tensor ops, each declaring its weights in a ParameterSet under the names the
// published checkpoints use (`<name>.weight`, `<name>.bias`). Shapes: x [..., in] -> [..., out].
#pragma once
#include <string>

#include "nn/parameters.h"
#include "tensor/ops.h"

namespace ivl {

class Linear {
 public:
  Linear() = default;
  Linear(ParameterSet& params, const std::string& name, int64_t in, int64_t out, bool bias);
  Tensor operator()(const Tensor& x) const;
  Parameter weight, bias;  // [out, in], [out] (absent without bias)
};

// Its parameters are tagged ParameterModule::layer_norm, which exempts them from the HF Trainer's
// weight decay: use it exactly where the official model has an nn.LayerNorm (RMSNorm's are decayed).
class LayerNorm {
 public:
  LayerNorm() = default;
  LayerNorm(ParameterSet& params, const std::string& name, int64_t dim, double eps);
  Tensor operator()(const Tensor& x) const { return layer_norm(x, weight, bias, eps); }
  Parameter weight, bias;
  double eps = 1e-5;
};

// y = x * rsqrt(mean(x^2) + eps) * weight (Qwen2, InternLM2 and InternViT-6B all use this form).
class RMSNorm {
 public:
  RMSNorm() = default;
  RMSNorm(ParameterSet& params, const std::string& name, int64_t dim, double eps);
  Tensor operator()(const Tensor& x) const { return rms_norm(x, weight, eps); }
  Parameter weight;
  double eps = 1e-6;
};

class Embedding {
 public:
  Embedding() = default;
  Embedding(ParameterSet& params, const std::string& name, int64_t vocab, int64_t dim);
  Tensor operator()(const Tensor& ids) const { return embedding(weight, ids); }
  Parameter weight;  // [vocab, dim]
};

// fc2(gelu(fc1(x))) with the exact (erf) GELU: the ViT MLP.
class GeluMLP {
 public:
  GeluMLP() = default;
  GeluMLP(ParameterSet& params, const std::string& fc1, const std::string& fc2, int64_t dim, int64_t hidden);
  Tensor operator()(const Tensor& x) const { return fc2(gelu(fc1(x))); }
  Linear fc1, fc2;
};

// down(silu(gate(x)) * up(x)), no biases: the decoder MLP of Qwen2 and InternLM2.
class SwiGLU {
 public:
  SwiGLU() = default;
  SwiGLU(ParameterSet& params, const std::string& gate, const std::string& up, const std::string& down, int64_t dim,
         int64_t hidden);
  Tensor operator()(const Tensor& x) const { return down(silu(gate(x)) * up(x)); }
  Linear gate, up, down;
};

// Attention head layout helpers: [B, T, H*D] <-> [B, H, T, D].
Tensor split_heads(const Tensor& x, int64_t heads);
Tensor merge_heads(const Tensor& x);

}  // namespace ivl
