// InternViT, as published (InternViT-300M and the InternViT-6B variant): patch embedding, CLS token,
// position embedding (bicubic-resized when the image grid differs from the checkpoint's), pre-norm
// blocks with layer scale (ls1, ls2) and exact-GELU MLPs. There is no final norm.
// Shapes: pixel_values [N, 3, H, W] -> hidden [N, 1 + (H/p)(W/p), C]; CLS first.
#pragma once
#include <string>
#include <vector>

#include "nn/config.h"
#include "nn/layers.h"

namespace ivl {

class Generator;

struct VisionConfig {
  int64_t hidden_size = 0, num_layers = 0, num_heads = 0, intermediate_size = 0;
  int64_t image_size = 0, patch_size = 0, num_channels = 3;
  bool qkv_bias = true, qk_normalization = false;
  bool rms_norm = false;  // norm_type "rms_norm" (InternViT-6B) instead of "layer_norm" (300M)
  double norm_eps = 1e-6;
  double drop_path_rate = 0;
  static VisionConfig from(const ConfigReader& config);  // the `vision_config` object
  int64_t head_dim() const { return hidden_size / num_heads; }
  int64_t grid() const { return image_size / patch_size; }  // patches per side of the checkpoint's image
};

// [out, in] weights of PyTorch's bicubic interpolation along one axis (align_corners=False,
// A = -0.75, border taps clamped): resized = M . original.
Tensor bicubic_resize_matrix(int64_t in, int64_t out);

class InternViT {
 public:
  InternViT() = default;
  InternViT(const VisionConfig& config, ParameterSet& params, const std::string& prefix = "vision_model.");
  // Runs the embeddings and the first `layers` encoder layers (all when -1) and returns their output.
  // With `drop_path` set (training), stochastic depth rises linearly to drop_path_rate over the layers.
  Tensor forward(const Tensor& pixel_values, int64_t layers = -1, Generator* drop_path = nullptr) const;
  const VisionConfig& config() const { return config_; }
  // Activation checkpointing per encoder layer when recording a graph (the official trainer's
  // --grad_checkpoint): each layer's inside is recomputed in backward. The same numbers either way.
  void set_checkpointing(bool on) { checkpointing_ = on; }

 private:
  struct Norm {  // LayerNorm (300M) or RMSNorm (6B), chosen by the config
    LayerNorm layer;
    RMSNorm rms;
    bool use_rms = false;
    Tensor operator()(const Tensor& x) const { return use_rms ? rms(x) : layer(x); }
  };
  struct Block {
    Norm norm1, norm2;
    Linear qkv, proj;
    RMSNorm q_norm, k_norm;  // InternViT-6B only: over all heads together
    Parameter ls1, ls2;      // layer scale, [C]
    GeluMLP mlp;
  };
  Tensor embed(const Tensor& pixel_values) const;
  Tensor attention(const Block& block, const Tensor& x) const;
  Tensor layer(const Block& block, const Tensor& x, double drop_rate, Generator* drop_path) const;

  VisionConfig config_;
  Parameter class_embedding, position_embedding;  // [1, 1, C], [1, 1 + grid^2, C]
  Parameter patch_weight_, patch_bias_;            // [C, 3, p, p], [C]
  std::vector<Block> blocks_;
  bool checkpointing_ = false;
};

}  // namespace ivl
