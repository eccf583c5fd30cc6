// The layers of nn/layers.h.
#include "nn/layers.h"

namespace ivl {

Linear::Linear(ParameterSet& params, const std::string& name, int64_t in, int64_t out, bool has_bias) {
  weight = params.declare(name + ".weight", {out, in}, false, ParameterModule::linear);
  if (has_bias) bias = params.declare(name + ".bias", {out}, false, ParameterModule::linear);
}

Tensor Linear::operator()(const Tensor& x) const { return linear(x, weight, bias.present() ? bias.tensor() : Tensor()); }

LayerNorm::LayerNorm(ParameterSet& params, const std::string& name, int64_t dim, double eps_) : eps(eps_) {
  weight = params.declare(name + ".weight", {dim}, false, ParameterModule::layer_norm);
  bias = params.declare(name + ".bias", {dim}, false, ParameterModule::layer_norm);
}

RMSNorm::RMSNorm(ParameterSet& params, const std::string& name, int64_t dim, double eps_) : eps(eps_) {
  weight = params.declare(name + ".weight", {dim}, false, ParameterModule::rms_norm);
}

Embedding::Embedding(ParameterSet& params, const std::string& name, int64_t vocab, int64_t dim) {
  weight = params.declare(name + ".weight", {vocab, dim}, false, ParameterModule::embedding);
}

GeluMLP::GeluMLP(ParameterSet& params, const std::string& fc1_name, const std::string& fc2_name, int64_t dim, int64_t hidden)
    : fc1(params, fc1_name, dim, hidden, true), fc2(params, fc2_name, hidden, dim, true) {}

SwiGLU::SwiGLU(ParameterSet& params, const std::string& gate_name, const std::string& up_name, const std::string& down_name,
               int64_t dim, int64_t hidden)
    : gate(params, gate_name, dim, hidden, false), up(params, up_name, dim, hidden, false), down(params, down_name, hidden, dim, false) {}

Tensor split_heads(const Tensor& x, int64_t heads) {
  const int64_t B = x.size(0), T = x.size(1);
  return x.reshape({B, T, heads, x.size(2) / heads}).transpose(1, 2);
}

Tensor merge_heads(const Tensor& x) {
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3);
  return x.transpose(1, 2).reshape({B, T, H * D});
}

}  // namespace ivl
