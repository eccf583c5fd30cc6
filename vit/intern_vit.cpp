// InternViT forward (see intern_vit.h). Follows the official modeling_intern_vit.py step by step.
#include "vit/intern_vit.h"

#include <cmath>

#include "tensor/autograd.h"
#include "tensor/random.h"

namespace ivl {

VisionConfig VisionConfig::from(const ConfigReader& c) {
  VisionConfig v;
  v.hidden_size = c.integer("hidden_size");
  v.num_layers = c.integer("num_hidden_layers");
  v.num_heads = c.integer("num_attention_heads");
  v.intermediate_size = c.integer("intermediate_size");
  v.image_size = c.integer("image_size");
  v.patch_size = c.integer("patch_size");
  v.num_channels = c.integer("num_channels", 3);
  v.qkv_bias = c.boolean("qkv_bias", false);
  v.qk_normalization = c.boolean("qk_normalization", true);
  const std::string norm = c.string("norm_type", "rms_norm");  // the class defaults are the 6B ones
  if (norm != "rms_norm" && norm != "layer_norm") c.fail_at("norm_type", "expected \"layer_norm\" or \"rms_norm\", found \"" + norm + "\"");
  v.rms_norm = norm == "rms_norm";
  v.norm_eps = c.number("layer_norm_eps", 1e-6);
  v.drop_path_rate = c.number("drop_path_rate", 0.0);
  const std::string act = c.string("hidden_act", "gelu");
  if (act != "gelu") c.fail_at("hidden_act", "only \"gelu\" (exact) is supported, found \"" + act + "\"");
  if (v.num_heads <= 0 || v.hidden_size % v.num_heads != 0)
    c.fail_at("num_attention_heads", "must divide hidden_size " + std::to_string(v.hidden_size));
  if (v.patch_size <= 0 || v.image_size % v.patch_size != 0)
    c.fail_at("patch_size", "must divide image_size " + std::to_string(v.image_size));
  return v;
}

Tensor bicubic_resize_matrix(int64_t in, int64_t out) {
  // PyTorch computes these in the input's dtype (f32 here): source = scale * (dst + 0.5) - 0.5.
  const float A = -0.75f, scale = static_cast<float>(in) / static_cast<float>(out);
  auto near = [A](float x) { return ((A + 2) * x - (A + 3)) * x * x + 1; };        // |x| <= 1
  auto far = [A](float x) { return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; };  // 1 < |x| < 2
  std::vector<float> m(static_cast<size_t>(out * in), 0.0f);
  for (int64_t o = 0; o < out; ++o) {
    const float source = scale * (static_cast<float>(o) + 0.5f) - 0.5f;
    const float floor_source = std::floor(source);
    const float t = source - floor_source;
    const float weights[4] = {far(t + 1), near(t), near(1 - t), far(2 - t)};
    for (int k = 0; k < 4; ++k) {
      const int64_t tap = std::clamp<int64_t>(static_cast<int64_t>(floor_source) - 1 + k, 0, in - 1);
      m[static_cast<size_t>(o * in + tap)] += weights[k];
    }
  }
  return Tensor::from_vector(m, {out, in});
}

InternViT::InternViT(const VisionConfig& config, ParameterSet& params, const std::string& prefix) : config_(config) {
  const int64_t C = config.hidden_size, p = config.patch_size, grid = config.grid();
  const std::string e = prefix + "embeddings.";
  class_embedding = params.declare(e + "class_embedding", {1, 1, C});
  patch_weight_ = params.declare(e + "patch_embedding.weight", {C, config.num_channels, p, p}, false, ParameterModule::convolution);
  patch_bias_ = params.declare(e + "patch_embedding.bias", {C}, false, ParameterModule::convolution);
  position_embedding = params.declare(e + "position_embedding", {1, 1 + grid * grid, C});
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const std::string l = prefix + "encoder.layers." + std::to_string(i) + ".";
    Block b;
    for (auto [norm, name] : {std::pair{&b.norm1, "norm1"}, std::pair{&b.norm2, "norm2"}}) {
      norm->use_rms = config.rms_norm;
      if (config.rms_norm) norm->rms = RMSNorm(params, l + name, C, config.norm_eps);
      else norm->layer = LayerNorm(params, l + name, C, config.norm_eps);
    }
    b.qkv = Linear(params, l + "attn.qkv", C, 3 * C, config.qkv_bias);
    if (config.qk_normalization) {
      b.q_norm = RMSNorm(params, l + "attn.q_norm", C, config.norm_eps);
      b.k_norm = RMSNorm(params, l + "attn.k_norm", C, config.norm_eps);
    }
    b.proj = Linear(params, l + "attn.proj", C, C, true);
    b.ls1 = params.declare(l + "ls1", {C});
    b.ls2 = params.declare(l + "ls2", {C});
    b.mlp = GeluMLP(params, l + "mlp.fc1", l + "mlp.fc2", C, config.intermediate_size);
    blocks_.push_back(std::move(b));
  }
}

Tensor InternViT::embed(const Tensor& pixel_values) const {
  if (pixel_values.dim() != 4 || pixel_values.size(1) != config_.num_channels)
    fail("InternViT: pixel_values must be [N, " + std::to_string(config_.num_channels) + ", H, W], got " + pixel_values.str());
  const int64_t N = pixel_values.size(0), C = config_.hidden_size;
  Tensor patches = conv2d_patch(pixel_values, patch_weight_, patch_bias_);  // [N, C, h, w]
  const int64_t h = patches.size(2), w = patches.size(3), grid = config_.grid();
  patches = patches.reshape({N, C, h * w}).transpose(1, 2);                 // [N, h*w, C], token = row * w + col
  const Tensor cls = expand(class_embedding.tensor(), {N, 1, C});
  const Tensor& pos = position_embedding;
  Tensor pos_grid = pos.narrow(1, 1, grid * grid);
  if (h != grid || w != grid) {  // the official code resizes with bicubic interpolation (a no-op at equal size)
    const Tensor as_image = pos_grid.reshape({grid, grid, C}).permute({2, 0, 1});  // [C, grid, grid]
    const Tensor rows = bicubic_resize_matrix(grid, h).to(pos.dtype()), cols = bicubic_resize_matrix(grid, w).to(pos.dtype());
    const Tensor resized = matmul(matmul(rows, as_image), cols.mT());
    pos_grid = resized.reshape({1, C, h * w}).transpose(1, 2);
  }
  return cat({cls, patches}, 1) + cat({pos.narrow(1, 0, 1), pos_grid}, 1);
}

Tensor InternViT::attention(const Block& b, const Tensor& x) const {
  const int64_t C = config_.hidden_size, H = config_.num_heads;
  const Tensor qkv = b.qkv(x);  // [N, L, 3C]: q | k | v, each head-major
  Tensor q = qkv.narrow(-1, 0, C), k = qkv.narrow(-1, C, C), v = qkv.narrow(-1, 2 * C, C);
  if (config_.qk_normalization) q = b.q_norm(q), k = b.k_norm(k);
  AttentionOptions bidirectional;  // scale head_dim^-0.5, no mask
  return b.proj(merge_heads(scaled_dot_product_attention(split_heads(q, H), split_heads(k, H), split_heads(v, H), bidirectional)));
}

Tensor InternViT::layer(const Block& b, const Tensor& x_in, double rate, Generator* drop_path_gen) const {
  auto residual = [&](const Tensor& branch) { return drop_path_gen && rate > 0 ? drop_path(branch, rate, *drop_path_gen) : branch; };
  const Tensor x = x_in + residual(attention(b, b.norm1(x_in)) * b.ls1.tensor());
  return x + residual(b.mlp(b.norm2(x)) * b.ls2.tensor());
}

Tensor InternViT::forward(const Tensor& pixel_values, int64_t layers, Generator* drop_path_gen) const {
  if (layers < 0) layers = config_.num_layers;
  if (layers > config_.num_layers) fail("InternViT: asked for " + std::to_string(layers) + " layers of " + std::to_string(config_.num_layers));
  Tensor x = embed(pixel_values);
  for (int64_t i = 0; i < layers; ++i) {
    const Block& b = blocks_[static_cast<size_t>(i)];
    // Stochastic depth rate of layer i: linspace(0, drop_path_rate, num_layers)[i], as the official code.
    const double rate = config_.num_layers > 1 ? config_.drop_path_rate * static_cast<double>(i) / static_cast<double>(config_.num_layers - 1) : 0.0;
    if (!checkpointing_ || !grad_enabled()) {
      x = layer(b, x, rate, drop_path_gen);
      continue;
    }
    // The recompute must draw the same drop-path masks: each run starts from the generator's state
    // before the layer, and the caller's generator then moves on as far as one run took it.
    const Generator start = drop_path_gen ? *drop_path_gen : Generator();
    auto after = std::make_shared<Generator>(start);
    const bool drops = drop_path_gen != nullptr;
    x = checkpoint([this, &b, rate, start, after, drops](const std::vector<Tensor>& in) {
      Generator replay = start;
      const Tensor out = layer(b, in[0], rate, drops ? &replay : nullptr);
      *after = replay;
      return out;
    }, {x});
    if (drop_path_gen) *drop_path_gen = *after;
  }
  return x;
}

}  // namespace ivl
