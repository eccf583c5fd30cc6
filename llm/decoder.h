// The decoder LLMs of InternVL2: Qwen2 (InternVL2-1B; q/k/v biases) and InternLM2 (2B, 8B; one
// packed `wqkv` grouped per key/value head). Pre-norm blocks: RMSNorm, rotary embedding
// (rotate-half, with InternLM2's dynamic NTK scaling beyond max_position_embeddings), grouped-query
// causal attention, SwiGLU; final RMSNorm; an untied output head, or the input embedding when the
// config ties them or the checkpoint has no head.
// Shapes: ids [B, T]; embeddings and hidden states [B, T, H]; logits [B, T, V].
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

// InternLM2's rotary cache, as explicit state. The official module builds cos/sin for
// max_position_embeddings at the plain base and rebuilds them, with a larger base, only when a
// longer sequence arrives; it never shrinks back, so what a sequence gets depends on what ran before
// on that module. A caller that wants that history (one state per model, as the official trainer
// has) keeps a RopeState; a call without one sees only its own length.
struct RopeState {
  int64_t cached_length = 0;  // 0: not built yet
  double theta = 0;
};
// The base for a sequence of `length` positions (past ones included), updating `state`.
double rope_theta(const LlmConfig& config, int64_t length, RopeState& state);

// Keys and values of the positions already seen, per layer, allocated once for a batch and a maximum
// length: [B, Hkv, capacity, D] each, the first `length` positions filled. A decoder call with a cache
// appends its positions' keys and values and attends over the stored prefix through views (no
// copies). For inference: a cache is filled outside the autograd graph.
struct KvCache {
  std::vector<Tensor> keys, values;
  int64_t length = 0;
  RopeState rope;  // the rotary cache of the model instance this cache belongs to
  int64_t capacity() const { return keys.empty() ? 0 : keys[0].size(2); }
  static KvCache allocate(const LlmConfig& config, int64_t batch, int64_t capacity, DType dtype = DType::f32);
};

class Decoder {
 public:
  Decoder() = default;
  Decoder(const LlmConfig& config, ParameterSet& params, const std::string& prefix = "language_model.");
  Tensor embed(const Tensor& ids) const;
  // The final-norm hidden states [B, T, H] for embeddings [B, T, H]. attention_mask [B, T] (or
  // [B, past + T] with a cache; 1 = token, 0 = padding; any int or bool dtype) hides padded keys;
  // positions (int [T] or [B, T]) default to past..past+T-1. With `cache`, the T new positions
  // follow the cache's `length` earlier ones, which the call then extends. `rope` (ignored with a
  // cache, which has its own) carries InternLM2's rotary-cache history across calls.
  Tensor hidden(const Tensor& embeddings, const Tensor& attention_mask = Tensor(), const Tensor& positions = Tensor(),
                KvCache* cache = nullptr, RopeState* rope = nullptr) const;
  // The output head [V, H]: lm_head / output, or the input embedding when tied or absent.
  const Tensor& head() const;
  Tensor logits(const Tensor& hidden_states) const { return linear(hidden_states, head()); }
  // logits(hidden(...)): [B, T, V].
  Tensor forward(const Tensor& embeddings, const Tensor& attention_mask = Tensor(), const Tensor& positions = Tensor()) const {
    return logits(hidden(embeddings, attention_mask, positions));
  }
  const LlmConfig& config() const { return config_; }
  // Activation checkpointing per block when recording a graph (the official trainer's
  // --grad_checkpoint): each block's inside is recomputed in backward. The same numbers either way.
  void set_checkpointing(bool on) { checkpointing_ = on; }

 private:
  struct Block {
    RMSNorm attention_norm, mlp_norm;
    Linear q, k, v;  // Qwen2
    Linear wqkv;     // InternLM2
    Linear out;
    SwiGLU mlp;
  };
  Tensor attention(const Block& b, const Tensor& x, const Tensor& positions, const Tensor& key_mask, double theta,
                   KvCache* cache, size_t layer) const;
  Tensor block(const Block& b, const Tensor& x, const Tensor& positions, const Tensor& key_mask, double theta, KvCache* cache,
               size_t layer) const;

  LlmConfig config_;
  Embedding embed_tokens_;
  std::vector<Block> blocks_;
  RMSNorm final_norm_;
  Parameter head_;  // absent when tied (or missing from the checkpoint)
  bool checkpointing_ = false;
};

}  // namespace ivl
