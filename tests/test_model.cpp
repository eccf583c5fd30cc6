// The InternVL2 pieces: parameter counts of the published configs, pixel shuffle, the wqkv split,
// the bicubic position-embedding resize, rope, masks, sequence log-probs, the MPO loss, loading
// errors, and a finite-difference check of a whole random model of sizes unlike the fixtures.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "internvl/internvl_chat.h"
#include "mpo/step.h"
#include "nn/layers.h"
#include "nn/safetensors.h"
#include "tensor/autograd.h"
#include "tensor/gradcheck.h"
#include "tensor/random.h"
#include "tests/catch.h"
#include "tests/test_support.h"

using namespace ivl;
using json = nlohmann::json;

namespace {

// A small InternVL2 config of the published construction with sizes unlike the fixtures'.
json tiny_config(const std::string& llm, bool vit6b) {
  json vision = {{"hidden_size", 24}, {"num_hidden_layers", 3}, {"num_attention_heads", 3}, {"intermediate_size", 40},
                 {"image_size", 28}, {"patch_size", 7}, {"qkv_bias", !vit6b}, {"qk_normalization", vit6b},
                 {"norm_type", vit6b ? "rms_norm" : "layer_norm"}, {"layer_norm_eps", 1e-6}, {"hidden_act", "gelu"}};
  json lm = {{"architectures", {llm}}, {"hidden_size", 32}, {"intermediate_size", 48}, {"num_hidden_layers", 2},
             {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"vocab_size", 50}, {"rms_norm_eps", 1e-5},
             {"rope_theta", 10000.0}, {"max_position_embeddings", 64}, {"tie_word_embeddings", false}};
  if (llm == "InternLM2ForCausalLM") lm["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}}, lm["bias"] = false;
  return {{"vision_config", vision}, {"llm_config", lm}, {"downsample_ratio", 0.5}, {"ps_version", "v2"},
          {"select_layer", -1}, {"force_image_size", 28}, {"template", "Hermes-2"}};
}

InternVLChatConfig parse(const json& j) { return InternVLChatConfig::from(ConfigReader(j, "test config")); }

}  // namespace

TEST_CASE("the published configs declare the published parameter counts", "[model]") {
  struct Expected { const char* dir; int64_t vision, mlp1, llm, total; };
  for (const Expected& e : {Expected{"internvl2-1b", 304012288, 4482816, 629663872, 938158976},
                            Expected{"internvl2-2b", 304012288, 12595200, 1889146880, 2205754368},
                            Expected{"internvl2-8b", 304012288, 33570816, 7737782272, 8075365376}}) {
    INFO(e.dir);
    ParameterSet params;
    const InternVLChat model(InternVLChatConfig::from_file(std::string("tests/data/") + e.dir + "/config.json"), params);
    CHECK(params.numel("vision_model.") == e.vision);
    CHECK(params.numel("mlp1.") == e.mlp1);
    CHECK(params.numel("language_model.") == e.llm);
    CHECK(params.numel() == e.total);
    CHECK(model.config().num_image_token() == 256);
  }
}

TEST_CASE("pixel_shuffle v1 and v2 on a hand-built grid, and its gradient", "[model]") {
  std::vector<float> v(32);
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);  // value = (row * 4 + col) * 2 + channel
  const Tensor x = Tensor::from_vector(v, {1, 4, 4, 2});
  const Tensor v2 = pixel_shuffle(x, 0.5, PixelShuffleVersion::v2);
  REQUIRE(v2.shape() == Shape{1, 2, 2, 8});
  // v2 token (p, q) = patches (2p, 2q), (2p, 2q+1), (2p+1, 2q), (2p+1, 2q+1), each with its 2 channels.
  CHECK(v2.to_doubles() == std::vector<double>{0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15,
                                               16, 17, 18, 19, 24, 25, 26, 27, 20, 21, 22, 23, 28, 29, 30, 31});
  // v1: the same tokens with rows and columns of the token grid swapped.
  CHECK(pixel_shuffle(x, 0.5, PixelShuffleVersion::v1).to_doubles() ==
        std::vector<double>{0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27,
                            4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31});
  CHECK_THROWS_WITH(pixel_shuffle(Tensor::zeros({1, 3, 3, 2}), 0.5, PixelShuffleVersion::v2), HasSubstr("whole number"));
  for (auto version : {PixelShuffleVersion::v1, PixelShuffleVersion::v2}) {
    const GradcheckCase c{"permute", "pixel_shuffle [2,4,6,3]",
                          [](Generator& g) { return std::vector<Tensor>{Tensor::randn({2, 4, 6, 3}, g, DType::f64)}; },
                          [version](const std::vector<Tensor>& in) { return pixel_shuffle(in[0], 0.5, version); }};
    const GradcheckResult r = run_gradcheck(c);
    CHECK(r.passed);
    CHECK(r.max_rel_error < 1e-6);
  }
}

TEST_CASE("the packed wqkv splits per key/value group: g query heads, then k, then v", "[model]") {
  const int64_t nh = 4, nkv = 2, d = 2, g = nh / nkv;
  // Column value = 100 * kind (0 q, 1 k, 2 v) + 10 * head + dim, laid out as the checkpoint does.
  std::vector<double> row;
  for (int64_t j = 0; j < nkv; ++j) {
    for (int64_t s = 0; s < g; ++s)
      for (int64_t i = 0; i < d; ++i) row.push_back(static_cast<double>(10 * (j * g + s) + i));
    for (int64_t i = 0; i < d; ++i) row.push_back(static_cast<double>(100 + 10 * j + i));
    for (int64_t i = 0; i < d; ++i) row.push_back(static_cast<double>(200 + 10 * j + i));
  }
  const Tensor qkv = Tensor::from_vector(row, {1, 1, static_cast<int64_t>(row.size())});
  const QKV parts = split_packed_qkv(qkv, nh, nkv, d);
  CHECK(parts.q.to_doubles() == std::vector<double>{0, 1, 10, 11, 20, 21, 30, 31});
  CHECK(parts.k.to_doubles() == std::vector<double>{100, 101, 110, 111});
  CHECK(parts.v.to_doubles() == std::vector<double>{200, 201, 210, 211});
  const GradcheckCase c{"reshape", "split_packed_qkv, 6 heads over 2 groups",
                        [](Generator& gen) { return std::vector<Tensor>{Tensor::randn({2, 3, (6 + 4) * 2}, gen, DType::f64)}; },
                        [](const std::vector<Tensor>& in) {
                          const QKV p = split_packed_qkv(in[0], 6, 2, 2);
                          return cat({p.q, p.k * 2.0, p.v * 3.0}, -1);
                        }};
  CHECK(run_gradcheck(c).passed);
}

TEST_CASE("bicubic position-embedding resize matches PyTorch's F.interpolate", "[model]") {
  // Columns of F.interpolate(mode='bicubic', align_corners=False) applied to unit vectors (torch 2.15).
  const std::vector<float> four_to_six = {1.0868058f, -0.086805582f, 0, 0, 0.5f, 0.59375f, -0.09375f, 0,
                                          -0.086805344f, 0.94328701f, 0.16087961f, -0.017361164f,
                                          -0.017360926f, 0.16087961f, 0.94328707f, -0.086805582f,
                                          0, -0.09375f, 0.59375f, 0.5f, 0, 0, -0.086805344f, 1.0868055f};
  const std::vector<float> five_to_three = {0.68518513f, 0.37037039f, -0.055555344f, 0, 0, 0, 0, 1, 0, 0,
                                            0, 0, -0.05555582f, 0.37037057f, 0.68518496f};
  CHECK(max_abs_diff(bicubic_resize_matrix(4, 6), Tensor::from_vector(four_to_six, {6, 4})) < 1e-6);
  CHECK(max_abs_diff(bicubic_resize_matrix(5, 3), Tensor::from_vector(five_to_three, {3, 5})) < 1e-6);
  const std::vector<double> identity = bicubic_resize_matrix(7, 7).to_doubles();
  for (size_t i = 0; i < identity.size(); ++i) CHECK(identity[i] == (i % 8 == 0 ? 1.0 : 0.0));
}

TEST_CASE("InternLM2's dynamic NTK base grows past max positions and never shrinks back", "[model]") {
  CHECK(std::abs(dynamic_ntk_theta(1e6, 2.0, 65536, 32768, 128) / (1e6 * std::pow(3.0, 128.0 / 126.0)) - 1) < 1e-15);
  const LlmConfig llm = parse(tiny_config("InternLM2ForCausalLM", false)).llm;  // max positions 64, head_dim 8
  RopeState state;
  CHECK(rope_theta(llm, 10, state) == 10000.0);
  CHECK(rope_theta(llm, 64, state) == 10000.0);
  const double grown = rope_theta(llm, 100, state);
  CHECK(std::abs(grown / (10000.0 * std::pow(2.0 * 100 / 64 - 1, 8.0 / 6.0)) - 1) < 1e-15);
  CHECK(rope_theta(llm, 10, state) == grown);  // the state remembers, as the official cache
  RopeState fresh;
  CHECK(rope_theta(llm, 10, fresh) == 10000.0);  // a call without history sees only its own length
  RopeState qwen_state;
  CHECK(rope_theta(parse(tiny_config("Qwen2ForCausalLM", false)).llm, 1000, qwen_state) == 10000.0);

  // The decoder keeps no hidden state: the same call twice gives the same numbers, unless the caller
  // passes a history that has seen a longer sequence.
  ParameterSet params;
  Decoder decoder(llm, params);
  Generator gen(9);
  params.allocate_uniform(gen, 0.2);
  NoGrad no_grad;
  const Tensor short_ids = Tensor::from_vector<int64_t>({1, 2, 3, 4}, {1, 4});
  const Tensor before = decoder.forward(decoder.embed(short_ids));
  std::vector<int64_t> long_ids(100);
  for (size_t i = 0; i < long_ids.size(); ++i) long_ids[i] = static_cast<int64_t>(i % 50);
  const Tensor long_t = Tensor::from_vector(long_ids, {1, 100});
  decoder.hidden(decoder.embed(long_t));
  CHECK(max_abs_diff(decoder.forward(decoder.embed(short_ids)), before) == 0);
  RopeState history;
  decoder.hidden(decoder.embed(long_t), Tensor(), Tensor(), nullptr, &history);
  CHECK(history.theta == grown);
  CHECK(max_abs_diff(decoder.logits(decoder.hidden(decoder.embed(short_ids), Tensor(), Tensor(), nullptr, &history)), before) > 0);
}

TEST_CASE("a KV cache gives the full forward's logits, prefill then one position at a time", "[model]") {
  for (const char* llm : {"Qwen2ForCausalLM", "InternLM2ForCausalLM"}) {  // both with 4 query heads over 2 kv heads
    INFO(llm);
    const LlmConfig config = parse(tiny_config(llm, false)).llm;
    ParameterSet params;
    Decoder decoder(config, params);
    Generator gen(10);
    params.allocate_uniform(gen, 0.2);
    NoGrad no_grad;
    const int64_t T = 12, prefill = 5;
    std::vector<int64_t> ids, mask(2 * T, 1);
    for (int64_t i = 0; i < 2 * T; ++i) ids.push_back((i * 7 + 3) % 50);
    mask[0] = mask[1] = 0;  // row 0 is left-padded by two positions
    const Tensor token_ids = Tensor::from_vector(ids, {2, T}), mask_t = Tensor::from_vector(mask, {2, T});
    const Tensor full = decoder.forward(decoder.embed(token_ids), mask_t);
    KvCache cache = KvCache::allocate(config, 2, T);
    const Tensor first = decoder.logits(decoder.hidden(decoder.embed(token_ids.narrow(1, 0, prefill)), mask_t.narrow(1, 0, prefill),
                                                       Tensor(), &cache));
    CHECK(cache.length == prefill);
    CHECK(max_abs_diff(first.narrow(1, 2, prefill - 2).narrow(0, 0, 1), full.narrow(1, 2, prefill - 2).narrow(0, 0, 1)) < 1e-5);
    CHECK(max_abs_diff(first.narrow(0, 1, 1), full.narrow(1, 0, prefill).narrow(0, 1, 1)) < 1e-5);
    for (int64_t t = prefill; t < T; ++t) {
      const Tensor step = decoder.logits(decoder.hidden(decoder.embed(token_ids.narrow(1, t, 1)), mask_t.narrow(1, 0, t + 1), Tensor(), &cache));
      CHECK(max_abs_diff(step, full.narrow(1, t, 1)) < 1e-5);
    }
    CHECK_THROWS_WITH(decoder.hidden(decoder.embed(token_ids.narrow(1, 0, 1)), Tensor(), Tensor(), &cache), HasSubstr("do not fit"));
  }
  ParameterSet params;
  const LlmConfig config = parse(tiny_config("Qwen2ForCausalLM", false)).llm;
  Decoder decoder(config, params);
  Generator gen(11);
  params.allocate_uniform(gen, 0.2);
  KvCache cache = KvCache::allocate(config, 1, 4);
  CHECK_THROWS_WITH(decoder.hidden(decoder.embed(Tensor::from_vector<int64_t>({1, 2}, {1, 2})), Tensor(), Tensor(), &cache),
                    HasSubstr("NoGrad"));
}

TEST_CASE("a KV cache past InternLM2's max positions grows the rope base as the official cache does", "[model]") {
  const LlmConfig config = parse(tiny_config("InternLM2ForCausalLM", false)).llm;  // max positions 64, dynamic NTK
  REQUIRE(config.dynamic_ntk_factor > 0);
  ParameterSet params;
  Decoder decoder(config, params);
  Generator gen(12);
  params.allocate_uniform(gen, 0.2);
  NoGrad no_grad;
  const int64_t T = 80, prefill = 60;
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < T; ++i) ids.push_back((i * 5 + 1) % 50);
  const Tensor token_ids = Tensor::from_vector(ids, {1, T});
  // One prefill of all 80 positions: the grown base for every position, as the full forward.
  KvCache whole = KvCache::allocate(config, 1, T);
  const Tensor full = decoder.forward(decoder.embed(token_ids));
  CHECK(max_abs_diff(decoder.logits(decoder.hidden(decoder.embed(token_ids), Tensor(), Tensor(), &whole)), full) < 1e-5);
  CHECK(whole.rope.theta == dynamic_ntk_theta(config.rope_theta, config.dynamic_ntk_factor, T, config.max_position_embeddings,
                                              config.head_dim));
  // Prefill 60, then one position at a time: up to 64 positions the plain base (the full forward of
  // those positions); beyond, each step's base grows with the length and the keys already cached keep
  // the rotation they were stored with (post-rope keys), as in the official generate().
  KvCache cache = KvCache::allocate(config, 1, T);
  const Tensor first = decoder.logits(decoder.hidden(decoder.embed(token_ids.narrow(1, 0, prefill)), Tensor(), Tensor(), &cache));
  const Tensor plain = decoder.forward(decoder.embed(token_ids.narrow(1, 0, config.max_position_embeddings)));
  CHECK(max_abs_diff(first, plain.narrow(1, 0, prefill)) < 1e-5);
  double previous = cache.rope.theta;
  for (int64_t t = prefill; t < T; ++t) {
    const Tensor step = decoder.logits(decoder.hidden(decoder.embed(token_ids.narrow(1, t, 1)), Tensor(), Tensor(), &cache));
    const int64_t length = t + 1;
    if (length <= config.max_position_embeddings) {
      CHECK(max_abs_diff(step, plain.narrow(1, t, 1)) < 1e-5);
      CHECK(cache.rope.theta == config.rope_theta);
    } else {
      CHECK(cache.rope.theta == dynamic_ntk_theta(config.rope_theta, config.dynamic_ntk_factor, length,
                                                  config.max_position_embeddings, config.head_dim));
      CHECK(cache.rope.theta > previous);
      CHECK(std::isfinite(step.to_doubles()[0]));
    }
    previous = cache.rope.theta;
  }
  CHECK(cache.rope.cached_length == T);
}

TEST_CASE("select_layer picks the hidden state of the official rule", "[model]") {
  json j = tiny_config("Qwen2ForCausalLM", false);
  for (const auto& [select, layers] : {std::pair{-1, 3}, std::pair{-2, 2}, std::pair{0, 0}, std::pair{2, 2}}) {
    j["select_layer"] = select;
    CHECK(parse(j).vit_layers_to_run() == layers);
  }
  j["select_layer"] = -5;
  CHECK_THROWS_WITH(parse(j), HasSubstr("select_layer"));
  j["select_layer"] = -2;
  ParameterSet params;
  const InternVLChat model(parse(j), params);
  Generator gen(7);
  params.allocate_uniform(gen, 0.2);
  NoGrad no_grad;
  const Tensor pixels = Tensor::randn({1, 3, 28, 28}, gen);
  const Tensor two_layers = vit_to_llm_tokens(model.vision().forward(pixels, 2), 0.5, PixelShuffleVersion::v2, model.projector());
  CHECK(max_abs_diff(model.extract_feature(pixels), two_layers) == 0);
  CHECK(max_abs_diff(model.vision().forward(pixels, 2), model.vision().forward(pixels, 3)) > 0);
}

TEST_CASE("the decoder is causal and padded keys change nothing", "[model]") {
  ParameterSet params;
  const InternVLChatConfig cfg = parse(tiny_config("Qwen2ForCausalLM", false));
  Decoder decoder(cfg.llm, params);
  Generator gen(3);
  params.allocate_uniform(gen, 0.2);
  NoGrad no_grad;
  const Tensor a = Tensor::from_vector<int64_t>({5, 9, 13, 2, 0, 0}, {1, 6});
  const Tensor b = Tensor::from_vector<int64_t>({5, 9, 13, 2, 31, 44}, {1, 6});  // same 4 tokens, other padding
  const Tensor mask = Tensor::from_vector<int64_t>({1, 1, 1, 1, 0, 0}, {1, 6});
  const Tensor la = decoder.forward(decoder.embed(a), mask), lb = decoder.forward(decoder.embed(b), mask);
  const Tensor lb_full = decoder.forward(decoder.embed(b));
  CHECK(max_abs_diff(la.narrow(1, 0, 4), lb_full.narrow(1, 0, 4)) < 1e-6);  // causal: later tokens unseen
  CHECK(max_abs_diff(la.narrow(1, 0, 4), lb.narrow(1, 0, 4)) < 1e-6);       // padded keys hidden
  const Tensor batch = decoder.forward(decoder.embed(cat({a, b}, 0)), cat({mask, mask}, 0));
  CHECK(max_abs_diff(batch.narrow(0, 0, 1), la) < 1e-6);                   // rows are independent
}

TEST_CASE("sequence_logps sums the shifted label log-probs and skips -100", "[model]") {
  Generator gen(4);
  const Tensor logits = Tensor::randn({2, 5, 7}, gen, DType::f64);
  const Tensor labels = Tensor::from_vector<int64_t>({-100, -100, 3, 6, -100, -100, 1, 2, 0, 4}, {2, 5});
  const SequenceLogps s = sequence_logps(logits, labels);
  const Tensor ls = log_softmax(logits, -1);
  auto lp = [&](int64_t b, int64_t t, int64_t v) { return ls.narrow(0, b, 1).narrow(1, t, 1).narrow(2, v, 1).item(); };
  CHECK(std::abs(s.logps.to_doubles()[0] - (lp(0, 1, 3) + lp(0, 2, 6))) < 1e-12);
  CHECK(std::abs(s.logps.to_doubles()[1] - (lp(1, 0, 1) + lp(1, 1, 2) + lp(1, 2, 0) + lp(1, 3, 4))) < 1e-12);
  CHECK(s.tokens.to_doubles() == std::vector<double>{2, 4});
  const GradcheckCase c{"token_logprobs", "sequence_logps with prompt and padding masked",
                        [](Generator& g) { return std::vector<Tensor>{Tensor::randn({2, 5, 7}, g, DType::f64)}; },
                        [labels](const std::vector<Tensor>& in) { return sequence_logps(in[0], labels).logps; }};
  CHECK(run_gradcheck(c).passed);
}

TEST_CASE("log-probs from the scored rows equal those from full logits, values and gradients", "[model]") {
  Generator gen(12);
  const int64_t B = 3, T = 6, H = 4, V = 9;
  // Row 2 scores nothing; the last position's label is never scored (nothing follows it).
  const Tensor labels = Tensor::from_vector<int64_t>({-100, -100, 3, 6, 8, -100, -100, 0, 1, 2, 3, 4,
                                                      -100, -100, -100, -100, -100, -100}, {B, T});
  for (const int64_t chunk : {int64_t{1}, int64_t{2}, int64_t{256}}) {
    INFO("chunk " << chunk);
    Tensor hidden = Tensor::randn({B, T, H}, gen, DType::f64), head = Tensor::randn({V, H}, gen, DType::f64);
    hidden.set_requires_grad(), head.set_requires_grad();
    const SequenceLogps full = sequence_logps(linear(hidden, head), labels);
    const Tensor w = Tensor::from_vector<double>({0.3, -1.2, 0.7}, {B});
    sum(full.logps * w).backward();
    const Tensor g_hidden = hidden.grad().clone(), g_head = head.grad().clone();
    hidden.zero_grad(), head.zero_grad();
    const SequenceLogps scored = sequence_logps(hidden, head, labels, -100, chunk);
    sum(scored.logps * w).backward();
    CHECK(max_abs_diff(scored.logps, full.logps) < 1e-12);
    CHECK(scored.tokens.to_doubles() == full.tokens.to_doubles());
    CHECK(scored.tokens.to_doubles() == std::vector<double>{3, 5, 0});
    CHECK(max_abs_diff(hidden.grad(), g_hidden) < 1e-12);
    CHECK(max_abs_diff(head.grad(), g_head) < 1e-12);
  }
}

TEST_CASE("MPO loss: step-0 values, the reward shift, and the gradient formulas of the spec", "[model]") {
  const Tensor pc = Tensor::from_vector<double>({-12, -30}, {2}), pr = Tensor::from_vector<double>({-15, -28}, {2});
  const Tensor tokens = Tensor::from_vector<int64_t>({6, 10}, {2});
  const MpoInputs at_start_inputs{pc, pr, pc, pr, tokens};
  CHECK(batch_reward_mean(at_start_inputs, MpoConfig{}) == 0);
  MpoLoss at_start = mpo_loss(at_start_inputs, MpoConfig{}, 0.0);
  const double nll = (12.0 + 30.0) / 16.0;  // pooled over both chosen responses
  CHECK(std::abs(at_start.loss.item() - (0.8 * std::log(2.0) + 0.2 * 2 * std::log(2.0) + nll)) < 1e-12);
  CHECK(at_start.delta == 0);
  CHECK(std::abs(at_start.sft_per_pair.to_doubles()[1] - 3.0) < 1e-12);

  // The shift is the cumulative mean of batch-mean rewards; its first update sets it.
  RewardShift s;
  s.update(0.3);
  CHECK(std::abs(s.mean - 0.3) < 1e-15);
  s.update(0.1);
  CHECK(std::abs(s.mean - 0.2) < 1e-15);
  // Several processes: one update with the mean, population variance and count of their batch means
  // (TRL's get_global_statistics) = the running moments of all of them.
  RewardShift ranks;
  ranks.update(0.2, 0.01, 2);  // batch means 0.1 and 0.3
  CHECK(std::abs(ranks.mean - 0.2) < 1e-15);
  CHECK(std::abs(ranks.var - 0.01) < 1e-15);
  ranks.update(0.5, 0.0, 2);  // 0.5 and 0.5: the mean of the four values
  CHECK(std::abs(ranks.mean - 0.35) < 1e-15);
  CHECK(std::abs(ranks.var - 0.0275) < 1e-15);  // the population variance of 0.1, 0.3, 0.5, 0.5
  CHECK(std::abs(ranks.count - 4) < 1e-12);

  Tensor policy_c = Tensor::from_vector<double>({-10, -25}, {2}), policy_r = Tensor::from_vector<double>({-14, -20}, {2});
  policy_c.set_requires_grad(), policy_r.set_requires_grad();
  const Tensor ref_c = Tensor::from_vector<double>({-11, -24}, {2}), ref_r = Tensor::from_vector<double>({-13, -22}, {2});
  const MpoInputs inputs{policy_c, policy_r, ref_c, ref_r, tokens};
  RewardShift running;
  running.update(0.05);  // an earlier batch
  const MpoConfig config;
  const double beta = 0.1, N = 16, B = 2;
  CHECK(std::abs(batch_reward_mean(inputs, config) - beta * (1 - 1 - 1 + 2) / 4) < 1e-15);
  running.update(batch_reward_mean(inputs, config));
  const MpoLoss loss = mpo_loss(inputs, config, running.mean);
  loss.loss.backward();
  const double delta = loss.delta;
  CHECK(std::abs(delta - (0.05 + (beta * (1 - 1 - 1 + 2)) / 4) / 2) < 1e-15);  // mean of 2 batch means
  auto s_ = [](double x) { return 1 / (1 + std::exp(-x)); };
  const std::vector<double> gc = policy_c.grad().to_doubles(), gr = policy_r.grad().to_doubles();
  const double pcv[] = {-10, -25}, prv[] = {-14, -20}, rcv[] = {-11, -24}, rrv[] = {-13, -22};
  for (size_t i = 0; i < 2; ++i) {
    const double rc = beta * (pcv[i] - rcv[i]), rr = beta * (prv[i] - rrv[i]), u = rc - rr, g = -s_(-u);
    CHECK(std::abs(gc[i] - ((0.8 / B) * beta * g + (0.2 / B) * (-beta * s_(-(rc - delta))) - 1.0 / N)) < 1e-12);
    CHECK(std::abs(gr[i] - (-(0.8 / B) * beta * g + (0.2 / B) * (beta * s_(rr - delta)))) < 1e-12);
  }
}

TEST_CASE("MPO loss family: hinge, ipo on per-token log-probs, label-smoothed sigmoid, and --loss_type lists", "[model]") {
  const Tensor pc = Tensor::from_vector<double>({-10, -25}, {2}), pr = Tensor::from_vector<double>({-14, -20}, {2});
  const Tensor rc = Tensor::from_vector<double>({-11, -24}, {2}), rr = Tensor::from_vector<double>({-13, -22}, {2});
  const Tensor chosen_tokens = Tensor::from_vector<int64_t>({4, 5}, {2}), rejected_tokens = Tensor::from_vector<int64_t>({8, 2}, {2});
  const MpoInputs inputs{pc, pr, rc, rr, chosen_tokens, rejected_tokens};
  const double beta = 0.2, c[] = {-10, -25}, r[] = {-14, -20}, c0[] = {-11, -24}, r0[] = {-13, -22}, nc[] = {4, 5}, nr[] = {8, 2};
  auto log_sigmoid = [](double x) { return -std::log1p(std::exp(-x)); };
  MpoConfig config;
  config.beta = beta, config.weight_sft = 0;

  config.terms = {{PreferenceLoss::hinge, 1}};
  std::vector<double> got = mpo_loss(inputs, config, 0).hinge.to_doubles();
  for (size_t i = 0; i < 2; ++i) CHECK(std::abs(got[i] - std::max(0.0, 1 - beta * ((c[i] - c0[i]) - (r[i] - r0[i])))) < 1e-12);

  config.terms = {{PreferenceLoss::ipo, 1}};
  config.length_normalized = true;  // what --loss_type ipo alone does
  got = mpo_loss(inputs, config, 0).ipo.to_doubles();
  for (size_t i = 0; i < 2; ++i) {
    const double u = (c[i] - c0[i]) / nc[i] - (r[i] - r0[i]) / nr[i];
    CHECK(std::abs(got[i] - (u - 1 / (2 * beta)) * (u - 1 / (2 * beta))) < 1e-12);
  }
  config.length_normalized = false;

  config.terms = {{PreferenceLoss::sigmoid, 1}};
  config.label_smoothing = 0.1;
  const MpoLoss smoothed = mpo_loss(inputs, config, 0);
  got = smoothed.dpo.to_doubles();
  for (size_t i = 0; i < 2; ++i) {
    const double u = beta * ((c[i] - c0[i]) - (r[i] - r0[i]));
    CHECK(std::abs(got[i] - (-(1 - 0.1) * log_sigmoid(u) - 0.1 * log_sigmoid(-u))) < 1e-12);
  }
  CHECK(std::abs(smoothed.loss.item() - (got[0] + got[1]) / 2) < 1e-12);  // no SFT term with rpo_alpha 0

  // --loss_type: one name has weight 1 whatever its weight flag says (the official single-type path);
  // a list takes each <type>_loss_weight; unknown and repeated names are errors.
  const auto weights = [](const std::string& name) { return name == "sigmoid" ? 0.8 : name == "bco_pair" ? 0.2 : 0.5; };
  const std::vector<PreferenceTerm> one = parse_loss_types("sigmoid", weights);
  REQUIRE(one.size() == 1);
  CHECK(one[0].weight == 1);
  const std::vector<PreferenceTerm> mpo = parse_loss_types("sigmoid,bco_pair", weights);
  REQUIRE(mpo.size() == 2);
  CHECK((mpo[0].type == PreferenceLoss::sigmoid && mpo[0].weight == 0.8 && mpo[1].type == PreferenceLoss::bco_pair && mpo[1].weight == 0.2));
  CHECK_THROWS_WITH(parse_loss_types("sigmoid,kto", weights), HasSubstr("'kto'"));
  CHECK_THROWS_WITH(parse_loss_types("hinge,hinge", weights), HasSubstr("twice"));
}

TEST_CASE("loading lists every missing, unexpected and mis-shaped tensor in one error", "[model]") {
  const TemporaryDirectory temp("ivl_test_loader");
  const std::string dir = temp.str();
  const json config = tiny_config("InternLM2ForCausalLM", false);
  std::ofstream(dir + "/config.json") << config.dump();
  ParameterSet params;
  InternVLChat model(parse(config), params);
  Generator gen(5);
  params.allocate_uniform(gen, 0.1);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const Parameter& p : params.parameters()) {
    if (p.name() == "mlp1.1.bias") continue;                                                        // missing
    if (p.name() == "mlp1.3.weight") { tensors.emplace_back(p.name(), Tensor::zeros({3, 3})); continue; }  // mis-shaped
    tensors.emplace_back(p.name(), p.tensor().to(DType::bf16));
  }
  tensors.emplace_back("language_model.model.extra.weight", Tensor::zeros({2}));                  // unexpected
  save_safetensors(dir + "/model.safetensors", tensors);
  try {
    load_internvl(dir);
    FAIL("loading should fail");
  } catch (const std::exception& e) {
    const std::string m = e.what();
    CHECK(m.find("1 missing:\n    mlp1.1.bias [32]") != std::string::npos);
    CHECK(m.find("mlp1.3.weight: expected [32, 32], found [3, 3]") != std::string::npos);
    CHECK(m.find("1 unexpected:\n    language_model.model.extra.weight") != std::string::npos);
  }
  // Shards through an index, f16 and f32 on disk, and no output head: the decoder then falls back to
  // the input embedding.
  std::filesystem::remove(dir + "/model.safetensors");
  std::vector<std::pair<std::string, Tensor>> shard[2];
  json weight_map;
  int n = 0;
  for (const Parameter& p : params.parameters()) {
    if (p.name() == "language_model.output.weight") continue;
    const int which = n++ % 2;
    shard[which].emplace_back(p.name(), p.tensor().to(which ? DType::f16 : DType::f32));
    weight_map[p.name()] = which ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors";
  }
  save_safetensors(dir + "/model-00001-of-00002.safetensors", shard[0]);
  save_safetensors(dir + "/model-00002-of-00002.safetensors", shard[1]);
  std::ofstream(dir + "/model.safetensors.index.json") << json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump();
  LoadedModel loaded = load_internvl(dir);
  CHECK_FALSE(loaded.params->find("language_model.output.weight").present());
  for (const auto& [name, stored] : shard[1])
    CHECK(max_abs_diff(loaded.params->find(name).tensor(), stored.to(DType::f32)) == 0);
  NoGrad no_grad;
  const Tensor logits = loaded.model->forward(Tensor(), Tensor::from_vector<int64_t>({1, 2, 3}, {1, 3}), Tensor(), 49);
  CHECK(logits.shape() == Shape{1, 3, 50});
}

namespace {

// A chosen and a rejected row over one prompt with `tokens` image positions, the rejected one
// shorter and padded; labels on the response only.
struct PairRows {
  Tensor input_ids, labels, attention_mask;
};
PairRows pair_rows(int64_t image_context, int64_t tokens) {
  std::vector<int64_t> ids = {3, 7}, labels = {-100, -100};
  for (int64_t i = 0; i < tokens; ++i) ids.push_back(image_context), labels.push_back(-100);
  for (int64_t t : {11, 12, 13, 14}) ids.push_back(t), labels.push_back(t);
  const size_t T = ids.size();
  std::vector<int64_t> rejected = ids, rejected_labels = labels;
  rejected[T - 3] = 20, rejected_labels[T - 3] = 20, rejected[T - 2] = 0, rejected_labels[T - 2] = -100;
  std::vector<int64_t> all_ids = ids, all_labels = labels, mask(T * 2, 1);
  all_ids.insert(all_ids.end(), rejected.begin(), rejected.end());
  all_labels.insert(all_labels.end(), rejected_labels.begin(), rejected_labels.end());
  mask[2 * T - 1] = 0;
  const auto t = static_cast<int64_t>(T);
  return {Tensor::from_vector(all_ids, {2, t}), Tensor::from_vector(all_labels, {2, t}), Tensor::from_vector(mask, {2, t})};
}

// The step with a fixed shift: delta = 0.05 whatever the batch, so the gradient treats it as a constant.
MpoStepOptions fixed_shift_options() {
  MpoStepOptions options;
  options.update_shift = [](RewardShift& shift, double) { shift.mean = 0.05; };
  return options;
}

}  // namespace

// A whole random model (sizes unlike the fixtures; images larger than the config's, so the position
// embedding goes through the bicubic resize), in f64, the pair's two rows spliced from one encoding of
// its image: the MPO loss's gradient with respect to a sample of every parameter tensor against
// central finite differences.
TEST_CASE("a whole random model's MPO gradient matches finite differences", "[model]") {
  for (const auto& [llm, vit6b] : {std::pair{"Qwen2ForCausalLM", false}, std::pair{"InternLM2ForCausalLM", true}}) {
    INFO(llm << (vit6b ? " with the InternViT-6B tower" : ""));
    ParameterSet params(DType::f64);
    InternVLChat model(parse(tiny_config(llm, vit6b)), params);
    Generator gen(6);
    params.allocate_uniform(gen, 0.3);
    params.set_requires_grad(true);
    const int64_t image_context = 49;
    const PairRows rows = pair_rows(image_context, 18);
    MpoBatch batch{Tensor::randn({2, 3, 42, 42}, gen, DType::f64),  // grid 6, checkpoint grid 4: 9 tokens a tile
                   {{0, 2}, {0, 2}}, rows.input_ids, rows.attention_mask, rows.labels, {0}, {1}, image_context};
    const Tensor ref_logps = Tensor::from_vector<double>({-30, -31}, {2});
    auto loss_value = [&]() {
      RewardShift shift;
      return mpo_step(model, batch, ref_logps, shift, fixed_shift_options()).loss.loss.item();
    };
    RewardShift shift;
    mpo_step(model, batch, ref_logps, shift, fixed_shift_options());
    double worst = 0;
    int checked = 0;
    for (const Parameter& p : params.parameters()) {
      const Tensor& t = p.tensor();
      const std::vector<double> analytic = t.grad().to_doubles();
      double* data = static_cast<double*>(t.data_ptr());
      for (int64_t i : {int64_t{0}, t.numel() / 2, t.numel() - 1}) {  // three elements of every tensor
        const double original = data[i], h = 1e-5;
        NoGrad no_grad;
        data[i] = original + h;
        const double plus = loss_value();
        data[i] = original - h;
        const double minus = loss_value();
        data[i] = original;
        const double numeric = (plus - minus) / (2 * h), a = analytic[static_cast<size_t>(i)];
        worst = std::max(worst, std::abs(numeric - a) / std::max(1e-3, std::abs(numeric)));
        ++checked;
      }
    }
    INFO("checked " << checked << " elements, worst relative error " << worst);
    CHECK(worst < 1e-6);
  }
}

TEST_CASE("one image encoding per pair gives the numbers of the official repeated-tiles batch", "[model]") {
  ParameterSet params(DType::f64);
  InternVLChat model(parse(tiny_config("Qwen2ForCausalLM", false)), params);
  Generator gen(13);
  params.allocate_uniform(gen, 0.3);
  params.set_requires_grad(true);
  const int64_t image_context = 49;
  const Tensor tiles = Tensor::randn({2, 3, 28, 28}, gen, DType::f64);  // 2 tiles of 16 patches: 4 tokens each
  const PairRows small = pair_rows(image_context, 8);
  const Tensor ref_logps = Tensor::from_vector<double>({-30, -31}, {2});
  const MpoBatch repeated{cat({tiles, tiles}, 0), {}, small.input_ids, small.attention_mask, small.labels, {0}, {1}, image_context};
  const MpoBatch shared{tiles, {{0, 2}, {0, 2}}, small.input_ids, small.attention_mask, small.labels, {0}, {1}, image_context};
  RewardShift shift_a, shift_b;
  const MpoStepResult a = mpo_step(model, repeated, ref_logps, shift_a);
  const Tensor grads_a = params.flat_grad().clone();
  params.zero_grad();
  const MpoStepResult b = mpo_step(model, shared, ref_logps, shift_b);
  CHECK(max_abs_diff(a.loss.loss, b.loss.loss) < 1e-14);
  CHECK(max_abs_diff(a.policy.logps, b.policy.logps) < 1e-12);
  CHECK(shift_a.mean == shift_b.mean);
  CHECK(max_abs_diff(grads_a, params.flat_grad()) < 1e-12);
  CHECK(max_abs_diff(params.flat_grad(), Tensor::zeros(params.flat_grad().shape(), DType::f64)) > 0);
  // A span that does not match a row's image positions, or reaches past the tiles, is refused.
  MpoBatch wrong = shared;
  wrong.row_tiles = {{0, 2}, {1, 1}};
  CHECK_THROWS_WITH(mpo_step(model, wrong, ref_logps, shift_b), HasSubstr("row 1 has 8 image-context positions"));
  wrong.row_tiles = {{0, 2}, {1, 2}};
  CHECK_THROWS_WITH(mpo_step(model, wrong, ref_logps, shift_b), HasSubstr("asks for tiles [1, 3) of 2"));
}

TEST_CASE("parameter gradients live in one flat buffer and accumulate in place", "[model]") {
  ParameterSet params(DType::f64);
  Linear first(params, "a", 3, 2, true), second(params, "b", 2, 1, false);
  Generator gen(14);
  params.allocate_uniform(gen, 0.5);
  params.set_requires_grad(true);
  int64_t offset = 0;
  for (const Parameter& p : params.parameters()) {
    CHECK(p.offset() == offset);
    CHECK(p.tensor().grad().storage() == params.flat_grad().storage());
    CHECK(p.tensor().grad().offset() == offset);
    offset += p.tensor().numel();
  }
  CHECK(params.flat_grad().numel() == offset);
  const Tensor x = Tensor::randn({4, 3}, gen, DType::f64);
  sum(second(first(x))).backward();
  const Tensor once = params.flat_grad().clone();
  sum(second(first(x))).backward();
  CHECK(max_abs_diff(params.flat_grad(), once * 2.0) < 1e-12);
  CHECK(first.weight.tensor().grad().storage() == params.flat_grad().storage());  // still the view
  params.zero_grad();
  CHECK(params.flat_grad().to_doubles() == std::vector<double>(static_cast<size_t>(offset), 0.0));
  first.bias.tensor().zero_grad();  // a caller drops one .grad: zero_grad puts the view back
  params.zero_grad();
  CHECK(first.bias.tensor().grad().storage() == params.flat_grad().storage());
}

TEST_CASE("activation checkpointing changes no number, with drop-path masks replayed", "[model]") {
  for (const char* llm : {"Qwen2ForCausalLM", "InternLM2ForCausalLM"}) {
    INFO(llm);
    json config = tiny_config(llm, false);
    config["vision_config"]["drop_path_rate"] = 0.4;
    ParameterSet params(DType::f64);
    InternVLChat model(parse(config), params);
    Generator gen(15);
    params.allocate_uniform(gen, 0.3);
    params.set_requires_grad(true);
    const int64_t image_context = 49;
    const PairRows rows = pair_rows(image_context, 8);
    const MpoBatch batch{Tensor::randn({2, 3, 28, 28}, gen, DType::f64), {{0, 2}, {0, 2}}, rows.input_ids, rows.attention_mask,
                         rows.labels, {0}, {1}, image_context};
    const Tensor ref_logps = Tensor::from_vector<double>({-30, -31}, {2});
    auto run = [&](bool checkpointing) {
      model.set_checkpointing(checkpointing);
      params.zero_grad();
      Generator drops(77);
      RewardShift shift;
      MpoStepOptions options;
      options.drop_path = &drops;
      const MpoStepResult result = mpo_step(model, batch, ref_logps, shift, options);
      return std::pair{result.loss.loss.item(), params.flat_grad().clone()};
    };
    const auto [plain_loss, plain_grads] = run(false);
    const auto [recomputed_loss, recomputed_grads] = run(true);
    CHECK(plain_loss == recomputed_loss);
    CHECK(max_abs_diff(plain_grads, recomputed_grads) == 0);
    Generator other(78);  // the masks matter: another seed gives another loss
    RewardShift shift;
    MpoStepOptions options;
    options.drop_path = &other;
    CHECK(mpo_step(model, batch, ref_logps, shift, options).loss.loss.item() != plain_loss);
  }
}

TEST_CASE("a batch in the official layout shares the tiles its rows repeat", "[model]") {
  Generator gen(16);
  const Tensor a = Tensor::randn({2, 3, 4, 4}, gen), b = Tensor::randn({1, 3, 4, 4}, gen), c = Tensor::randn({1, 3, 4, 4}, gen);
  // Rows 0 and 1 repeat image a (2 tiles), row 2 has b, row 3 has c (one tile each), row 4 none.
  const int64_t ctx = 9;
  const Tensor ids = Tensor::from_vector<int64_t>({1, ctx, ctx, ctx, ctx, 1, ctx, ctx, ctx, ctx, 1, ctx, ctx, 2, 2,
                                                   1, ctx, ctx, 2, 2, 1, 2, 2, 2, 2}, {5, 5});
  const SharedTiles shared = share_identical_tiles(cat({a, a, b, c}, 0), ids, ctx, 2);
  REQUIRE(shared.pixel_values.size(0) == 4);  // a's two tiles, b, c
  CHECK(max_abs_diff(shared.pixel_values, cat({a, b, c}, 0)) == 0);
  const std::vector<std::pair<int64_t, int64_t>> spans = {{0, 2}, {0, 2}, {2, 1}, {3, 1}, {4, 0}};
  for (size_t r = 0; r < spans.size(); ++r) {
    CHECK(shared.row_tiles[r].first == spans[r].first);
    CHECK(shared.row_tiles[r].count == spans[r].second);
  }
  CHECK(shared.batch_tile_source.to_doubles() == std::vector<double>{0, 1, 0, 1, 2, 3});
  CHECK_THROWS_WITH(share_identical_tiles(cat({a, a, b}, 0), ids, ctx, 2), HasSubstr("ask for 6 tiles; the batch has 5"));
}
