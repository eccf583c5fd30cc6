// From ViT tokens to LLM embeddings: drop CLS, pixel shuffle (merges each 2x2 patch block into one
// token of 4x the channels), then `mlp1` = LayerNorm (eps 1e-5), Linear, GELU, Linear.
// Shapes: vit [N, 1 + h*w, C] -> [N, (h*s)(w*s), C/s^2] -> [N, tokens, H_llm] (s = downsample ratio).
#pragma once
#include <string>

#include "nn/layers.h"

namespace ivl {

enum class PixelShuffleVersion { v1, v2 };
PixelShuffleVersion parse_ps_version(const std::string& text);  // "v1" or "v2"

// x [N, rows, cols, C] -> [N, rows*s, cols*s, C/s^2], the official view/permute sequence. v2 keeps
// tokens row-major (token (p, q) = patches (2p, 2q), (2p, 2q+1), (2p+1, 2q), (2p+1, 2q+1)); v1
// leaves rows and columns transposed, as the older checkpoints were trained.
Tensor pixel_shuffle(const Tensor& x, double scale, PixelShuffleVersion version);

class Projector {
 public:
  Projector() = default;
  Projector(ParameterSet& params, int64_t in, int64_t out, const std::string& prefix = "mlp1.");
  Tensor operator()(const Tensor& x) const { return fc2(gelu(fc1(norm(x)))); }
  LayerNorm norm;  // mlp1.0
  Linear fc1, fc2; // mlp1.1, mlp1.3 (mlp1.2 is the GELU)
};

// ViT hidden states -> LLM-width image tokens: drop CLS, pixel shuffle, projector.
Tensor vit_to_llm_tokens(const Tensor& vit_hidden, double downsample_ratio, PixelShuffleVersion version,
                         const Projector& projector);

}  // namespace ivl
