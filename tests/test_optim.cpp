// The optimisation pieces of the HF Trainer: LR schedules against their Python formulas and the
// golden's four lrs, gradient clipping against a hand computation, freezing, the weight-decay groups
// against golden.json, and AdamW replayed on the train-qwen2 golden's own gradients for its 4 steps.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "internvl/internvl_chat.h"
#include "nn/layers.h"
#include "nn/lr_schedule.h"
#include "nn/optimizer.h"
#include "nn/safetensors.h"
#include "tensor/autograd.h"
#include "tensor/random.h"
#include "tests/catch.h"
#include "tests/test_support.h"

using namespace ivl;
using json = nlohmann::json;

namespace {

const std::string kTrainDir = std::string(IVL_SHARED_DIR) + "/fixtures/train-qwen2";

// Elements [at, at + n) of a flat buffer.
std::vector<float> range_of(const Tensor& flat, int64_t at, int64_t n) {
  const float* x = flat.data<float>() + at;
  return std::vector<float>(x, x + n);
}

double max_abs(const std::vector<float>& x) {
  double m = 0;
  for (float v : x) m = std::max(m, std::abs(static_cast<double>(v)));
  return m;
}

// A Linear a(3 -> 2, bias) then b(2 -> 1, no bias), in f32, seeded.
struct TwoLayers {
  ParameterSet params;
  Linear a, b;
  TwoLayers() : a(params, "a", 3, 2, true), b(params, "b", 2, 1, false) {
    Generator gen(3);
    params.allocate_uniform(gen, 0.5);
  }
};

}  // namespace

// ---- LR schedules ----

TEST_CASE("the HF schedules give the lr of their Python formulas at every step", "[optim]") {
  auto lrs = [](const std::string& name, double lr, int64_t total, int64_t warmup_steps, double ratio, int64_t steps) {
    const LrSchedule s = make_lr_schedule(name, lr, total, warmup_steps, ratio);
    std::vector<double> out;
    for (int64_t k = 0; k < steps; ++k) out.push_back(hf_learning_rate(s, k));
    return out;
  };
  auto near = [](const std::vector<double>& got, const std::vector<double>& want) {
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) CHECK(std::abs(got[i] - want[i]) <= 1e-15 * std::max(1.0, std::abs(want[i])));
  };
  // linear: warmup k/W, then (N - k) / (N - W), clamped at 0 past the end.
  near(lrs("linear", 1.0, 10, 2, 0.0, 13), {0, 0.5, 1, 7.0 / 8, 6.0 / 8, 5.0 / 8, 0.5, 3.0 / 8, 2.0 / 8, 1.0 / 8, 0, 0, 0});
  // cosine, no warmup: 0.5 (1 + cos(pi k / N)); the formula has no clamp on progress, so past the end
  // it rises again (HF's behaviour; a trainer never asks for those steps).
  const double pi = std::acos(-1.0);
  near(lrs("cosine", 2.0, 4, 0, 0.0, 6),
       {2, 1 + std::cos(pi / 4), 1, 1 + std::cos(3 * pi / 4), 0, 1 + std::cos(5 * pi / 4)});
  // cosine with 2 warmup steps of 10: k/2, then progress (k - 2) / 8.
  near(lrs("cosine", 1.0, 10, 2, 0.0, 4), {0, 0.5, 1, 0.5 * (1 + std::cos(pi / 8))});
  near(lrs("constant_with_warmup", 3.0, 100, 3, 0.0, 5), {0, 1, 2, 3, 3});
  near(lrs("constant", 3.0, 100, 3, 0.0, 3), {3, 3, 3});  // get_scheduler gives "constant" no warmup

  // The golden run: cosine, lr 2e-3, warmup_ratio 0.25 of 4 steps = 1 warmup step. Python's doubles,
  // bit for bit (the last is 0.0005000000000000002).
  const json golden = json::parse(read_file(kTrainDir + "/golden.json"));
  const json& flags = golden.at("flags");
  const LrSchedule s = make_lr_schedule(flags.at("--lr_scheduler_type").get<std::string>(), flags.at("--learning_rate").get<double>(),
                                        flags.at("--max_steps").get<int64_t>(), 0, flags.at("--warmup_ratio").get<double>());
  CHECK(s.warmup_steps == 1);
  for (int64_t k = 0; k < 4; ++k) CHECK(hf_learning_rate(s, k) == golden.at("steps")[static_cast<size_t>(k)].at("lr").get<double>());
}

TEST_CASE("warmup steps are TrainingArguments.get_warmup_steps, Python's rounding included", "[optim]") {
  CHECK(hf_warmup_steps(0, 0.25, 4) == 1);
  CHECK(hf_warmup_steps(0, 0.03, 1000) == 30);
  CHECK(hf_warmup_steps(0, 0.07, 100) == 8);  // 100 * 0.07 = 7.000000000000001 in doubles, and ceil
  CHECK(hf_warmup_steps(0, 0.1, 3) == 1);
  CHECK(hf_warmup_steps(0, 0.0, 50) == 0);
  CHECK(hf_warmup_steps(5, 0.5, 100) == 5);  // warmup_steps > 0 wins over the ratio
  CHECK_THROWS_WITH(hf_warmup_steps(0, 1.5, 10), HasSubstr("warmup_ratio must lie in [0, 1]"));
  CHECK_THROWS_WITH(make_lr_schedule("cosine", 1e-3, 0), HasSubstr("total_steps must be > 0"));
  CHECK_THROWS_WITH(parse_lr_schedule_type("cosine_annealing"),
                    HasSubstr("unknown lr_scheduler_type 'cosine_annealing'; known: linear, cosine, constant, constant_with_warmup"));
  CHECK_THROWS_WITH(parse_lr_schedule_type("polynomial"), HasSubstr("not implemented here; known: linear"));
  for (const char* name : {"linear", "cosine", "constant", "constant_with_warmup"})
    CHECK(lr_schedule_type_name(parse_lr_schedule_type(name)) == std::string(name));
}

// ---- clipping ----

TEST_CASE("clip_grad_norm scales every trainable gradient by max_norm / (total + 1e-6)", "[optim]") {
  TwoLayers m;
  m.params.set_requires_grad(true);
  // a.weight, a.bias, b.weight = 6 + 2 + 2 elements; gradients 1..10.
  float* g = m.params.flat_grad().data<float>();
  for (int i = 0; i < 10; ++i) g[i] = static_cast<float>(i + 1);
  const std::vector<float> before = range_of(m.params.flat_grad(), 0, 10);
  // The norm of the per-tensor norms: sqrt(1+..+36), sqrt(49+64), sqrt(81+100), then their norm
  // = sqrt(385).
  const double total = std::sqrt(385.0);
  CHECK(std::abs(gradient_norm(m.params) - total) < 1e-5);
  CHECK(std::abs(clip_grad_norm(m.params, 100.0) - total) < 1e-5);  // under the limit: untouched
  CHECK(range_of(m.params.flat_grad(), 0, 10) == before);
  CHECK(std::abs(clip_grad_norm(m.params, 2.0) - total) < 1e-5);
  const float coefficient = (1.0f / (static_cast<float>(total) + 1e-6f)) * 2.0f;
  for (int i = 0; i < 10; ++i) CHECK(g[i] == before[static_cast<size_t>(i)] * coefficient);
  CHECK(std::abs(gradient_norm(m.params) - 2.0) < 1e-5);

  // A frozen parameter counts for nothing and is left alone.
  for (int i = 0; i < 10; ++i) g[i] = static_cast<float>(i + 1);
  m.params.freeze("a.");
  CHECK(std::abs(clip_grad_norm(m.params, 1.0) - std::sqrt(81.0 + 100.0)) < 1e-5);
  CHECK(range_of(m.params.flat_grad(), 0, 8) == std::vector<float>(before.begin(), before.begin() + 8));
  CHECK(std::abs(gradient_norm(m.params) - 1.0) < 1e-5);

  // A non-finite total is returned with the gradients untouched: the caller decides.
  g[9] = std::numeric_limits<float>::infinity();
  const std::vector<float> with_inf = range_of(m.params.flat_grad(), 0, 10);
  CHECK(std::isinf(clip_grad_norm(m.params, 1.0)));
  g[9] = std::numeric_limits<float>::quiet_NaN();
  CHECK(std::isnan(clip_grad_norm(m.params, 1.0)));
  CHECK(range_of(m.params.flat_grad(), 0, 9) == std::vector<float>(with_inf.begin(), with_inf.begin() + 9));
  CHECK_THROWS_WITH(clip_grad_norm(m.params, 0.0), HasSubstr("max_norm must be finite and > 0"));
  TwoLayers no_grads;
  CHECK_THROWS_WITH(clip_grad_norm(no_grads.params, 1.0), HasSubstr("call set_requires_grad(true) first"));
}

// ---- freezing ----

TEST_CASE("a frozen parameter gets no gradient and AdamW and clipping leave it alone", "[optim]") {
  TwoLayers m;
  m.params.set_requires_grad(true);
  m.params.freeze("a.");
  CHECK(!m.a.weight.trainable());
  CHECK(m.b.weight.trainable());
  CHECK(!m.a.weight.tensor().requires_grad());
  CHECK(!m.a.weight.tensor().grad().defined());  // PyTorch's grad None
  CHECK(m.b.weight.tensor().requires_grad());
  CHECK(m.params.trainable_numel() == 2);
  Generator gen(5);
  const Tensor x = Tensor::randn({4, 3}, gen);
  sum(m.b(m.a(x))).backward();
  CHECK(!m.a.weight.tensor().grad().defined());
  CHECK(range_of(m.params.flat_grad(), 0, 8) == std::vector<float>(8, 0.0f));  // backward never wrote a's range
  CHECK(max_abs(range_of(m.params.flat_grad(), 8, 2)) > 0);

  const std::vector<float> a_before = range_of(m.params.flat(), 0, 8), b_before = range_of(m.params.flat(), 8, 2);
  float* g = m.params.flat_grad().data<float>();
  g[0] = 5.0f;  // even a value in a frozen range is neither read nor scaled
  clip_grad_norm(m.params, 1e-3);
  CHECK(g[0] == 5.0f);
  AdamW adam(m.params, {.weight_decay = 0.1});
  adam.step(1e-2);
  CHECK(range_of(m.params.flat(), 0, 8) == a_before);
  CHECK(range_of(adam.exp_avg(), 0, 8) == std::vector<float>(8, 0.0f));
  CHECK(range_of(adam.exp_avg_sq(), 0, 8) == std::vector<float>(8, 0.0f));
  CHECK(range_of(m.params.flat(), 8, 2) != b_before);

  // Unfreezing brings requires_grad and the view back; set_requires_grad(false) still turns all off.
  m.params.unfreeze("a.");
  CHECK(m.a.weight.tensor().requires_grad());
  CHECK(m.a.weight.tensor().grad().storage() == m.params.flat_grad().storage());
  m.params.set_trainable([](const Parameter& p) { return p.name() != "b.weight"; });
  CHECK(m.a.bias.tensor().requires_grad());
  CHECK(!m.b.weight.tensor().requires_grad());
  m.params.set_requires_grad(false);
  for (const Parameter& p : m.params.parameters()) CHECK(!p.tensor().requires_grad());
  CHECK_THROWS_WITH(m.params.freeze("vision_model."), HasSubstr("freeze: no parameter name starts with 'vision_model.'"));
}

TEST_CASE("the official freezing flags freeze and unfreeze the modules they name", "[optim]") {
  const InternVLChatConfig config = InternVLChatConfig::from_file(kTrainDir + "/model/config.json");
  auto trainable_after = [&config](const FreezeOptions& options) {
    ParameterSet params;
    InternVLChat model(config, params);
    apply_freezing(config, params, options);
    std::set<std::string> groups;  // the trainable parameters' coarse groups
    for (const Parameter& p : params.parameters()) {
      if (!p.trainable()) continue;
      const std::string& n = p.name();
      if (n.rfind("vision_model.encoder.layers.", 0) == 0) groups.insert("vit layer " + n.substr(28, 1));
      else if (n.rfind("vision_model.", 0) == 0) groups.insert("vit embeddings");
      else if (n.rfind("mlp1.", 0) == 0) groups.insert("mlp1");
      else if (n.rfind("language_model.", 0) == 0) groups.insert("llm");
      else groups.insert(n);
    }
    return groups;
  };
  using Set = std::set<std::string>;
  CHECK(trainable_after({}) == Set{"vit embeddings", "vit layer 0", "vit layer 1", "mlp1", "llm"});
  CHECK(trainable_after({.freeze_backbone = true}) == Set{"mlp1", "llm"});
  CHECK(trainable_after({.freeze_llm = true, .freeze_mlp = true}) == Set{"vit embeddings", "vit layer 0", "vit layer 1"});
  // unfreeze_vit_layers k: layers[k:] as Python slices them (2 layers here).
  CHECK(trainable_after({.freeze_backbone = true, .unfreeze_vit_layers = -1}) == Set{"vit layer 1", "mlp1", "llm"});
  CHECK(trainable_after({.freeze_backbone = true, .unfreeze_vit_layers = 1}) == Set{"vit layer 1", "mlp1", "llm"});
  CHECK(trainable_after({.freeze_backbone = true, .unfreeze_vit_layers = -5}) == Set{"vit layer 0", "vit layer 1", "mlp1", "llm"});
  CHECK(trainable_after({.freeze_backbone = true, .unfreeze_vit_layers = 5}) == Set{"mlp1", "llm"});
}

// ---- weight-decay groups ----

TEST_CASE("every nn.LayerNorm of the official models is tagged layer_norm, and nothing else", "[optim]") {
  for (const char* fixture : {"train-qwen2/model", "tiny-qwen2", "tiny-internlm2", "tiny-vit6b-qwen2"}) {
    INFO(fixture);
    const std::string dir = std::string(IVL_SHARED_DIR) + "/fixtures/" + fixture;
    const InternVLChatConfig config = InternVLChatConfig::from_file(dir + "/config.json");
    ParameterSet params;
    InternVLChat model(config, params);
    std::set<std::string> layer_norm, want;
    for (const Parameter& p : params.parameters())
      if (p.module() == ParameterModule::layer_norm) layer_norm.insert(p.name());
    // InternViT-300M's norm1 / norm2 are nn.LayerNorm (InternViT-6B's are InternRMSNorm); mlp1.0 always.
    for (int64_t i = 0; i < config.vision.num_layers && !config.vision.rms_norm; ++i)
      for (const char* n : {"norm1", "norm2"})
        for (const char* w : {".weight", ".bias"})
          want.insert("vision_model.encoder.layers." + std::to_string(i) + "." + n + w);
    want.insert("mlp1.0.weight"), want.insert("mlp1.0.bias");
    CHECK(layer_norm == want);
  }
}

TEST_CASE("the weight-decay groups are the HF Trainer's of the train-qwen2 golden", "[optim]") {
  const json golden = json::parse(read_file(kTrainDir + "/golden.json"));
  LoadedModel loaded = load_internvl(kTrainDir + "/model");
  const ParameterGroups groups = hf_parameter_groups(*loaded.params);
  const json& want = golden.at("param_groups");
  REQUIRE(want.size() == 2);
  CHECK(want[0].at("weight_decay").get<double>() == 0.05);
  CHECK(want[1].at("weight_decay").get<double>() == 0.0);
  auto sorted = [](std::vector<std::string> v) { return std::sort(v.begin(), v.end()), v; };
  CHECK(sorted(groups.decayed) == sorted(want[0].at("params").get<std::vector<std::string>>()));
  CHECK(sorted(groups.not_decayed) == sorted(want[1].at("params").get<std::vector<std::string>>()));
  CHECK(golden.at("frozen").empty());
  CHECK(groups.decayed.size() + groups.not_decayed.size() == golden.at("trainable").size());
  // decay_all (DeepSpeed with an optimizer block): one group, everything decayed.
  const ParameterGroups all = hf_parameter_groups(*loaded.params, true);
  CHECK(all.not_decayed.empty());
  CHECK(all.decayed.size() == golden.at("trainable").size());
  // Only trainable parameters are grouped.
  loaded.params->freeze("mlp1.");
  const ParameterGroups without_mlp = hf_parameter_groups(*loaded.params);
  CHECK(without_mlp.decayed.size() + without_mlp.not_decayed.size() == golden.at("trainable").size() - 6);
}

// ---- AdamW ----

TEST_CASE("AdamW with a zero gradient only decays the decayed group, and its state round-trips", "[optim]") {
  ParameterSet params;
  Linear fc(params, "fc", 3, 2, true);
  LayerNorm norm(params, "norm", 2, 1e-5);
  Generator gen(8);
  params.allocate_uniform(gen, 1.0);
  params.set_requires_grad(true);
  const std::vector<float> before = floats(params.flat());
  AdamW adam(params, {.weight_decay = 0.05});
  const double lr = 1e-2;
  adam.step(lr);  // g = 0: m = v = 0, so the Adam part adds (-s * 0) / eps = 0
  const std::vector<float> after = floats(params.flat());
  const auto factor = static_cast<float>(1 - lr * 0.05);
  for (size_t i = 0; i < 6; ++i) CHECK(after[i] == before[i] * factor);  // fc.weight
  for (size_t i = 6; i < before.size(); ++i) CHECK(after[i] == before[i]);  // fc.bias, norm.weight, norm.bias
  CHECK(adam.steps() == 1);

  // A saved state restores the same trajectory bit for bit.
  float* g = params.flat_grad().data<float>();
  for (int64_t i = 0; i < params.flat().numel(); ++i) g[i] = 0.1f * static_cast<float>(i) - 0.3f;
  adam.step(lr);
  const Tensor m = adam.exp_avg().clone(), v = adam.exp_avg_sq().clone(), p = params.flat().clone();
  adam.step(lr);
  const std::vector<float> continued = floats(params.flat());
  copy_into(params.flat(), p);
  AdamW resumed(params, {.weight_decay = 0.05});
  resumed.load_state(m, v, 2);
  resumed.step(lr);
  CHECK(floats(params.flat()) == continued);
  CHECK(floats(resumed.exp_avg()) == floats(adam.exp_avg()));
  CHECK_THROWS_WITH(resumed.load_state(Tensor::zeros({3}), v, 2), HasSubstr("exp_avg must have the shape of the flat parameters [12]"));
}

TEST_CASE("AdamW matches torch's update formula over several steps", "[optim]") {
  // One decayed weight, by the formula of torch.optim.AdamW in double: the f32 path must agree to
  // f32 rounding.
  ParameterSet params;
  const Parameter w = params.declare("w", {4});
  params.allocate_zeros();
  params.set_requires_grad(true);
  const std::vector<double> p0 = {0.5, -1.25, 2.0, 1e-3};
  for (size_t i = 0; i < 4; ++i) params.flat().data<float>()[i] = static_cast<float>(p0[i]);
  std::vector<double> p = p0, m(4, 0), v(4, 0);
  const double b1 = 0.8, b2 = 0.99, eps = 1e-6, wd = 0.1;
  AdamW adam(params, {.beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd});
  for (int step = 1; step <= 5; ++step) {
    const double lr = 0.01 * step;
    for (size_t i = 0; i < 4; ++i) {
      const double grad = std::sin(static_cast<double>(step * 4 + static_cast<int>(i)));
      params.flat_grad().data<float>()[i] = static_cast<float>(grad);
      const double gf = static_cast<float>(grad);
      p[i] *= 1 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * gf;
      v[i] = b2 * v[i] + (1 - b2) * gf * gf;
      const double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(b2, step)) + eps;
      p[i] -= lr / (1 - std::pow(b1, step)) * m[i] / denom;
    }
    adam.step(lr);
  }
  for (size_t i = 0; i < 4; ++i) CHECK(std::abs(params.flat().data<float>()[i] - p[i]) < 1e-6 * std::max(1.0, std::abs(p[i])));
  CHECK(w.tensor().numel() == 4);
}

namespace {

// The golden values of one tensor `key` (`init.<name>`, `step.S.param.<name>`, `step.S.grad.<name>`)
// as (flat index, value) pairs: all of it when stored whole, else the 64 sampled indices and, for the
// vocab-sized tensors, the rows of every token that occurs.
std::vector<std::pair<int64_t, float>> golden_values(const SafetensorsFile& file, const json& golden, const std::string& prefix,
                                                     const Parameter& p, const std::vector<int64_t>& token_ids) {
  std::vector<std::pair<int64_t, float>> out;
  const std::string key = prefix + p.name();
  if (file.contains(key)) {
    const std::vector<float> all = floats(file.get(key));
    REQUIRE(static_cast<int64_t>(all.size()) == shape_numel(p.shape()));
    for (size_t i = 0; i < all.size(); ++i) out.emplace_back(static_cast<int64_t>(i), all[i]);
    return out;
  }
  const auto index = golden.at("param_index").at(p.name()).get<std::vector<int64_t>>();
  const std::vector<float> sampled = floats(file.get(key + "@idx"));
  REQUIRE(sampled.size() == index.size());
  for (size_t i = 0; i < index.size(); ++i) out.emplace_back(index[i], sampled[i]);
  if (file.contains(key + "@rows")) {
    const int64_t width = p.shape()[1];
    const std::vector<float> rows = floats(file.get(key + "@rows"));
    REQUIRE(rows.size() == token_ids.size() * static_cast<size_t>(width));
    for (size_t r = 0; r < token_ids.size(); ++r)
      for (int64_t c = 0; c < width; ++c) out.emplace_back(token_ids[r] * width + c, rows[r * static_cast<size_t>(width) + static_cast<size_t>(c)]);
  }
  return out;
}

// The sum, sum of squares and element count of x (for the golden's float64 statistics).
struct Stats {
  double sum = 0, sumsq = 0;
};
Stats stats_of(const float* x, int64_t n) {
  Stats s;
  for (int64_t i = 0; i < n; ++i) s.sum += x[i], s.sumsq += static_cast<double>(x[i]) * x[i];
  return s;
}

}  // namespace

// The strongest check: the golden's own (accumulated, clipped) gradients fed to our AdamW with the
// golden's groups and lrs, four steps in a row from the checkpoint's values, and every stored
// parameter value compared after each step. Elementwise, so the tensors stored only at sampled
// indices are exact wherever they are stored: the other elements get a zero gradient here and are
// not compared. (embed_tokens' gradient is zero outside the stored rows, so it is whole.)
TEST_CASE("AdamW on the golden's gradients reproduces the 4 optimizer steps of train-qwen2", "[optim]") {
  const json golden = json::parse(read_file(kTrainDir + "/golden.json"));
  const SafetensorsFile file(kTrainDir + "/golden.safetensors");
  const std::vector<int64_t> token_ids = [&] {
    const Tensor ids = file.get(golden.at("vocab_rows").at("token_ids_key").get<std::string>());
    return std::vector<int64_t>(ids.data<int64_t>(), ids.data<int64_t>() + ids.numel());
  }();
  LoadedModel loaded = load_internvl(kTrainDir + "/model");
  ParameterSet& params = *loaded.params;
  params.set_requires_grad(true);
  const json& flags = golden.at("flags");
  const AdamWOptions options{.beta1 = flags.at("--adam_beta1").get<double>(), .beta2 = flags.at("--adam_beta2").get<double>(),
                             .eps = flags.at("--adam_epsilon").get<double>(), .weight_decay = flags.at("--weight_decay").get<double>()};
  CHECK(options.weight_decay == 0.05);
  AdamW adam(params, options);

  // The checkpoint (bf16 -> f32) is the golden's starting point exactly.
  int64_t init_mismatches = 0;
  for (const Parameter& p : params.parameters()) {
    const float* x = params.flat().data<float>() + p.offset();
    for (const auto& [i, want] : golden_values(file, golden, "init.", p, token_ids)) init_mismatches += x[i] != want;
  }
  REQUIRE(init_mismatches == 0);

  const std::string embed = "language_model.model.embed_tokens.weight";
  double worst_rel = 0, worst_key_abs = 0, worst_stat = 0;
  int64_t compared = 0, identical = 0;
  std::string worst_rel_at, worst_stat_at;
  for (int S = 1; S <= 4; ++S) {
    const json& step = golden.at("steps")[static_cast<size_t>(S - 1)];
    const std::string s = "step." + std::to_string(S) + ".";
    params.zero_grad();
    for (const Parameter& p : params.parameters()) {
      float* g = params.flat_grad().data<float>() + p.offset();
      for (const auto& [i, value] : golden_values(file, golden, s + "grad.", p, token_ids)) g[i] = value;
    }
    adam.step(step.at("lr").get<double>());
    CHECK(adam.steps() == S);

    for (const Parameter& p : params.parameters()) {
      INFO("step " << S << ", " << p.name());
      const float* x = params.flat().data<float>() + p.offset();
      const auto want = golden_values(file, golden, s + "param.", p, token_ids);
      // The key part of an attn.qkv.bias (elements [C, 2C)) moves by rounding noise amplified by
      // Adam (README, Tolerances): absolute 1e-4 there, relative elsewhere.
      const bool qkv_bias = p.name().ends_with("attn.qkv.bias");
      const int64_t C = qkv_bias ? p.shape()[0] / 3 : 0;
      auto in_key_part = [&](int64_t i) { return qkv_bias && i >= C && i < 2 * C; };
      double scale = 0, diff = 0;
      for (const auto& [i, w] : want)
        if (!in_key_part(i)) scale = std::max(scale, std::abs(static_cast<double>(w)));
      for (const auto& [i, w] : want) {
        const double d = std::abs(static_cast<double>(x[i]) - w);
        ++compared, identical += x[i] == w;
        if (in_key_part(i)) {
          worst_key_abs = std::max(worst_key_abs, d);
          CHECK(d <= 1e-4);
        } else {
          diff = std::max(diff, d);
        }
      }
      const double rel = diff / std::max(scale, 1e-30);
      CHECK(rel <= 1e-5);
      if (rel > worst_rel) worst_rel = rel, worst_rel_at = "step " + std::to_string(S) + " " + p.name();

      // The golden's float64 statistics of the parameter and of Adam's moments, for every tensor
      // whose gradient is known whole (README: |d| <= 1e-5 sqrt(numel sumsq) and 2e-5 sumsq), the
      // key part of the qkv biases left out of the parameter's.
      const bool whole = file.contains(s + "grad." + p.name()) || p.name() == embed;
      if (!whole || qkv_bias) continue;
      const int64_t n = shape_numel(p.shape());
      // Each statistic's deviation as a fraction of its limit.
      auto note = [&](double fraction, const char* what) {
        CHECK(fraction <= 1);
        if (fraction > worst_stat) worst_stat = fraction, worst_stat_at = "step " + std::to_string(S) + " " + p.name() + " " + what;
      };
      auto check_stats = [&](const char* what, const Stats& got, const json& sum, const json& sumsq) {
        const double want_sum = sum.get<double>(), want_sumsq = sumsq.get<double>();
        INFO(what << ": sum " << got.sum << " vs " << want_sum << ", sumsq " << got.sumsq << " vs " << want_sumsq);
        note(std::abs(got.sum - want_sum) / std::max(1e-5 * std::sqrt(static_cast<double>(n) * want_sumsq), 1e-300), what);
        note(std::abs(got.sumsq - want_sumsq) / std::max(2e-5 * want_sumsq, 1e-300), what);
      };
      const json& ps = step.at("param_stats").at(p.name());
      check_stats("param", stats_of(x, n), ps.at("sum"), ps.at("sumsq"));
      const json& as = step.at("adam_state_stats").at(p.name());
      CHECK(as.at("step").get<double>() == S);
      const Stats m = stats_of(adam.exp_avg().data<float>() + p.offset(), n);
      const Stats v = stats_of(adam.exp_avg_sq().data<float>() + p.offset(), n);
      check_stats("exp_avg", m, as.at("exp_avg_sum"), as.at("exp_avg_sumsq"));
      // exp_avg_sq is >= 0, so its sum is its own scale.
      const double want_v = as.at("exp_avg_sq_sum").get<double>();
      note(std::abs(v.sum - want_v) / std::max(2e-5 * want_v, 1e-300), "exp_avg_sq");
    }
  }
  INFO(identical << " of " << compared << " compared values bit-identical");
  INFO("worst parameter deviation max|a-b|/max|b| " << worst_rel << " (" << worst_rel_at << "); key part of the qkv biases "
       << worst_key_abs << " absolute; worst statistic at " << worst_stat << " of its limit (" << worst_stat_at << ")");
  CHECK(worst_rel <= 1e-5);
}
