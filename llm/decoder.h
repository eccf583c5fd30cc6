// The decoder LLMs of InternVL2: Qwen2 (InternVL2-1B; q/k/v biases) and InternLM2 (2B, 8B; one
// packed `wqkv` grouped per key/value head). Pre-norm blocks: RMSNorm, rotary embedding
// (rotate-half, with InternLM2's dynamic NTK scaling beyond max_position_embeddings), grouped-query
// causal attention, SwiGLU; final RMSNorm; an untied output head, or the input embedding when the
// config ties them or the checkpoint has no head.
// Shapes: ids [B, T]; embeddings [B, T, H]; logits [B, T, V].
#pragma once
#include <string>
#include <vector>

#include "nn/config.h"
#include "nn/layers.h"

namespace ivl {

enum class LlmFamily { qwen2, internlm2 };

struct LlmConfig {
  LlmFamily family = LlmFamily::qwen2;
  std::string architecture;  // "Qwen2ForCausalLM", "InternLM2ForCausalLM"
  int64_t hidden_size = 0, intermediate_size = 0, num_layers = 0, num_heads = 0, num_kv_heads = 0, head_dim = 0;
  int64_t vocab_size = 0, max_position_embeddings = 0;
  double rms_norm_eps = 1e-6, rope_theta = 10000;
  double dynamic_ntk_factor = 0;  // > 0: InternLM2 rope_scaling {type: dynamic, factor}
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // Qwen2: q/k/v biases; InternLM2: `bias` (wqkv and wo)
  static LlmConfig from(const ConfigReader& config);  // the `llm_config` object
};

// InternLM2's packed projection: qkv [..., (nh + 2 nkv) d] holds nkv groups of (g + 2) heads
// (g = nh / nkv): g query heads, then the group's key head, then its value head. Returns q, k, v as
// [..., nh d], [..., nkv d], [..., nkv d], query heads in (group, member) order.
struct QKV {
  Tensor q, k, v;
};
QKV split_packed_qkv(const Tensor& qkv, int64_t heads, int64_t kv_heads, int64_t head_dim);

// The rope base InternLM2's dynamic NTK uses once the cache grows to `length` > max positions:
// theta * (factor * length / max - (factor - 1))^(d / (d - 2)).
double dynamic_ntk_theta(double theta, double factor, int64_t length, int64_t max_positions, int64_t head_dim);

class Decoder {
 public:
  Decoder() = default;
  Decoder(const LlmConfig& config, ParameterSet& params, const std::string& prefix = "language_model.");
  Tensor embed(const Tensor& ids) const;
  // Logits for embeddings [B, T, H]. attention_mask [B, T] (1 = token, 0 = padding; any int or bool
  // dtype) hides padded keys; positions (int [T] or [B, T]) default to 0..T-1.
  Tensor forward(const Tensor& embeddings, const Tensor& attention_mask = Tensor(), const Tensor& positions = Tensor());
  const LlmConfig& config() const { return config_; }
  // The rope base used for the next call; grows (and stays grown) with InternLM2's dynamic NTK.
  double rope_theta(int64_t length);

 private:
  struct Block {
    RMSNorm attention_norm, mlp_norm;
    Linear q, k, v;  // Qwen2
    Linear wqkv;     // InternLM2
    Linear out;
    SwiGLU mlp;
  };
  Tensor attention(const Block& b, const Tensor& x, const Tensor& positions, const Tensor& key_mask, double theta) const;

  LlmConfig config_;
  Embedding embed_tokens_;
  std::vector<Block> blocks_;
  RMSNorm final_norm_;
  Parameter head_;                  // absent when tied (or missing from the checkpoint)
  int64_t rope_cached_length_ = 0;  // InternLM2: the longest length the rotary cache was built for
  double rope_cached_theta_ = 0;
};

}  // namespace ivl
