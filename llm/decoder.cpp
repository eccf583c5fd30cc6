// Qwen2 and InternLM2 decoders (see decoder.h). Weight names follow transformers' Qwen2ForCausalLM
// and the official modeling_internlm2.py.
#include "llm/decoder.h"

#include <cmath>

#include "tensor/autograd.h"

namespace ivl {

LlmConfig LlmConfig::from(const ConfigReader& c) {
  LlmConfig l;
  const std::vector<std::string> architectures = c.strings("architectures");
  l.architecture = architectures.empty() ? "" : architectures[0];
  if (l.architecture == "Qwen2ForCausalLM") l.family = LlmFamily::qwen2;
  else if (l.architecture == "InternLM2ForCausalLM") l.family = LlmFamily::internlm2;
  else c.fail_at("architectures", "unsupported decoder \"" + l.architecture + "\" (supported: Qwen2ForCausalLM, InternLM2ForCausalLM)");
  l.hidden_size = c.integer("hidden_size");
  l.intermediate_size = c.integer("intermediate_size");
  l.num_layers = c.integer("num_hidden_layers");
  l.num_heads = c.integer("num_attention_heads");
  l.num_kv_heads = c.integer("num_key_value_heads", l.num_heads);
  if (l.num_heads <= 0 || l.hidden_size % l.num_heads != 0) c.fail_at("num_attention_heads", "must divide hidden_size");
  l.head_dim = c.integer("head_dim", l.hidden_size / l.num_heads);
  if (l.num_kv_heads <= 0 || l.num_heads % l.num_kv_heads != 0)
    c.fail_at("num_key_value_heads", "must divide num_attention_heads " + std::to_string(l.num_heads));
  if (l.head_dim % 2 != 0) c.fail_at("head_dim", "must be even for the rotary embedding");
  l.vocab_size = c.integer("vocab_size");
  l.max_position_embeddings = c.integer("max_position_embeddings", 32768);
  l.rms_norm_eps = c.number("rms_norm_eps", 1e-6);
  l.rope_theta = c.number("rope_theta", 10000.0);
  l.tie_word_embeddings = c.boolean("tie_word_embeddings", false);
  l.attention_bias = l.family == LlmFamily::qwen2 ? true : c.boolean("bias", false);
  const std::string act = c.string("hidden_act", "silu");
  if (act != "silu") c.fail_at("hidden_act", "only \"silu\" is supported, found \"" + act + "\"");
  if (c.has("rope_scaling")) {
    const ConfigReader scaling = c.child("rope_scaling");
    const std::string type = scaling.string("type", scaling.string("rope_type", ""));
    if (l.family != LlmFamily::internlm2 || type != "dynamic")
      c.fail_at("rope_scaling", "only InternLM2's {\"type\": \"dynamic\"} is supported, found " + scaling.json().dump());
    l.dynamic_ntk_factor = scaling.number("factor");
  }
  return l;
}

QKV split_packed_qkv(const Tensor& qkv, int64_t heads, int64_t kv_heads, int64_t head_dim) {
  const int64_t group = heads / kv_heads;
  Shape grouped(qkv.shape().begin(), qkv.shape().end() - 1);
  const Shape lead = grouped;
  if (qkv.size(-1) != (heads + 2 * kv_heads) * head_dim)
    fail("split_packed_qkv: last dim " + std::to_string(qkv.size(-1)) + " is not (heads + 2 kv_heads) * head_dim");
  grouped.insert(grouped.end(), {kv_heads, group + 2, head_dim});
  const Tensor g = qkv.reshape(grouped);
  const int64_t member = static_cast<int64_t>(lead.size()) + 1;  // the (group + 2) axis
  auto flat = [&lead](const Tensor& t, int64_t width) {
    Shape s = lead;
    s.push_back(width);
    return t.reshape(s);
  };
  return {flat(g.narrow(member, 0, group), heads * head_dim), flat(g.narrow(member, group, 1), kv_heads * head_dim),
          flat(g.narrow(member, group + 1, 1), kv_heads * head_dim)};
}

double dynamic_ntk_theta(double theta, double factor, int64_t length, int64_t max_positions, int64_t head_dim) {
  const double d = static_cast<double>(head_dim);
  return theta * std::pow(factor * static_cast<double>(length) / static_cast<double>(max_positions) - (factor - 1), d / (d - 2));
}

Decoder::Decoder(const LlmConfig& config, ParameterSet& params, const std::string& prefix) : config_(config) {
  const int64_t H = config.hidden_size, D = config.head_dim, nh = config.num_heads, nkv = config.num_kv_heads;
  const bool qwen = config.family == LlmFamily::qwen2;
  embed_tokens_ = Embedding(params, prefix + (qwen ? "model.embed_tokens" : "model.tok_embeddings"), config.vocab_size, H);
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const std::string l = prefix + "model.layers." + std::to_string(i) + ".";
    Block b;
    if (qwen) {
      b.attention_norm = RMSNorm(params, l + "input_layernorm", H, config.rms_norm_eps);
      b.q = Linear(params, l + "self_attn.q_proj", H, nh * D, config.attention_bias);
      b.k = Linear(params, l + "self_attn.k_proj", H, nkv * D, config.attention_bias);
      b.v = Linear(params, l + "self_attn.v_proj", H, nkv * D, config.attention_bias);
      b.out = Linear(params, l + "self_attn.o_proj", nh * D, H, false);
      b.mlp_norm = RMSNorm(params, l + "post_attention_layernorm", H, config.rms_norm_eps);
      b.mlp = SwiGLU(params, l + "mlp.gate_proj", l + "mlp.up_proj", l + "mlp.down_proj", H, config.intermediate_size);
    } else {
      b.attention_norm = RMSNorm(params, l + "attention_norm", H, config.rms_norm_eps);
      b.wqkv = Linear(params, l + "attention.wqkv", H, (nh + 2 * nkv) * D, config.attention_bias);
      b.out = Linear(params, l + "attention.wo", nh * D, H, config.attention_bias);
      b.mlp_norm = RMSNorm(params, l + "ffn_norm", H, config.rms_norm_eps);
      b.mlp = SwiGLU(params, l + "feed_forward.w1", l + "feed_forward.w3", l + "feed_forward.w2", H, config.intermediate_size);
    }
    blocks_.push_back(std::move(b));
  }
  final_norm_ = RMSNorm(params, prefix + "model.norm", H, config.rms_norm_eps);
  if (!config.tie_word_embeddings)  // optional: a checkpoint without it falls back to the embedding
    head_ = params.declare(prefix + (qwen ? "lm_head.weight" : "output.weight"), {config.vocab_size, H}, /*optional=*/true,
                           ParameterModule::linear);
}

Tensor Decoder::embed(const Tensor& ids) const { return embed_tokens_(ids); }

const Tensor& Decoder::head() const { return head_.present() ? head_.tensor() : embed_tokens_.weight.tensor(); }

double rope_theta(const LlmConfig& config, int64_t length, RopeState& state) {
  if (config.dynamic_ntk_factor <= 0) return config.rope_theta;
  if (state.cached_length == 0) state.cached_length = config.max_position_embeddings, state.theta = config.rope_theta;
  if (length > state.cached_length) {
    state.theta = dynamic_ntk_theta(config.rope_theta, config.dynamic_ntk_factor, length, config.max_position_embeddings,
                                    config.head_dim);
    state.cached_length = length;
  }
  return state.theta;
}

KvCache KvCache::allocate(const LlmConfig& config, int64_t batch, int64_t capacity, DType dtype) {
  if (batch < 1 || capacity < 1) fail("KvCache: batch and capacity must be positive, got " + std::to_string(batch) + " and " + std::to_string(capacity));
  KvCache cache;
  for (int64_t i = 0; i < config.num_layers; ++i) {
    cache.keys.push_back(Tensor::zeros({batch, config.num_kv_heads, capacity, config.head_dim}, dtype));
    cache.values.push_back(Tensor::zeros({batch, config.num_kv_heads, capacity, config.head_dim}, dtype));
  }
  return cache;
}

Tensor Decoder::attention(const Block& b, const Tensor& x, const Tensor& positions, const Tensor& key_mask, double theta,
                          KvCache* cache, size_t layer) const {
  const int64_t nh = config_.num_heads, nkv = config_.num_kv_heads;
  Tensor q, k, v;
  if (config_.family == LlmFamily::qwen2) {
    q = b.q(x), k = b.k(x), v = b.v(x);
  } else {
    QKV parts = split_packed_qkv(b.wqkv(x), nh, nkv, config_.head_dim);
    q = parts.q, k = parts.k, v = parts.v;
  }
  q = rotary_embedding(split_heads(q, nh), positions, theta);
  k = rotary_embedding(split_heads(k, nkv), positions, theta);
  v = split_heads(v, nkv);
  if (cache) {  // store the new positions, then attend over everything stored so far
    const int64_t past = cache->length, T = x.size(1);
    copy_into(cache->keys[layer].narrow(2, past, T), k);
    copy_into(cache->values[layer].narrow(2, past, T), v);
    k = cache->keys[layer].narrow(2, 0, past + T), v = cache->values[layer].narrow(2, 0, past + T);
  }
  AttentionOptions options;
  options.causal = true;
  options.key_padding_mask = key_mask;
  return b.out(merge_heads(scaled_dot_product_attention(q, k, v, options)));
}

Tensor Decoder::block(const Block& b, const Tensor& x_in, const Tensor& positions, const Tensor& key_mask, double theta,
                      KvCache* cache, size_t layer) const {
  const Tensor x = x_in + attention(b, b.attention_norm(x_in), positions, key_mask, theta, cache, layer);
  return x + b.mlp(b.mlp_norm(x));
}

Tensor Decoder::hidden(const Tensor& embeddings, const Tensor& attention_mask, const Tensor& positions_in, KvCache* cache,
                       RopeState* rope) const {
  if (embeddings.dim() != 3 || embeddings.size(2) != config_.hidden_size)
    fail("decoder: embeddings must be [B, T, " + std::to_string(config_.hidden_size) + "], got " + embeddings.str());
  const int64_t B = embeddings.size(0), T = embeddings.size(1), past = cache ? cache->length : 0, S = past + T;
  if (cache) {
    if (grad_enabled()) fail("decoder: a KV cache is for inference; run under NoGrad");
    if (static_cast<int64_t>(cache->keys.size()) != config_.num_layers || cache->keys[0].size(0) != B ||
        cache->keys[0].dtype() != embeddings.dtype())
      fail("decoder: the KV cache was allocated for another model, batch or dtype (cache " + cache->keys[0].str() +
           ", embeddings " + embeddings.str() + ")");
    if (S > cache->capacity())
      fail("decoder: " + std::to_string(S) + " positions do not fit the KV cache's " + std::to_string(cache->capacity()));
  }
  Tensor key_mask;
  if (attention_mask.defined()) {
    if (attention_mask.shape() != Shape{B, S})
      fail("decoder: attention_mask must be [" + std::to_string(B) + ", " + std::to_string(S) + "], got " + attention_mask.str());
    key_mask = attention_mask.dtype() == DType::boolean ? attention_mask : ne(attention_mask, Tensor::scalar(0, attention_mask.dtype()));
  }
  Tensor positions = positions_in;
  if (!positions.defined()) positions = past == 0 ? Tensor::arange(T) : Tensor::arange(T) + Tensor::scalar(static_cast<double>(past), DType::i64);
  RopeState fresh;
  const double theta = rope_theta(config_, S, cache ? cache->rope : rope ? *rope : fresh);
  Tensor x = embeddings;
  for (size_t i = 0; i < blocks_.size(); ++i) {
    const Block& b = blocks_[i];
    if (checkpointing_ && !cache && grad_enabled())
      x = checkpoint([this, &b, positions, key_mask, theta, i](const std::vector<Tensor>& in) {
        return block(b, in[0], positions, key_mask, theta, nullptr, i);
      }, {x});
    else
      x = block(b, x, positions, key_mask, theta, cache, i);
  }
  if (cache) cache->length = S;
  return final_norm_(x);
}

}  // namespace ivl
