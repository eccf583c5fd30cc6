// `ivl check --model DIR [--golden FILE] [--ref FILE] [--meta FILE] [--keys]`: runs the vision
// tower, policy and reference logits, log-probs, the MPO loss and its backward on a golden file's
// inputs, and compares every golden key (vit.*, out.*, mpo.*, grad.*) with what this code computes.
// One line per group: the worst relative error max|a-b| / max|b| over its keys, PASS or FAIL.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "internvl/generation.h"
#include "internvl/internvl_chat.h"
#include "llm/tokenizer_files.h"
#include "mpo/step.h"
#include "nn/safetensors.h"
#include "tensor/autograd.h"
#include "tools/commands.h"

namespace ivl::cli {

namespace {

namespace fs = std::filesystem;

struct Comparison {
  double error = 0;
  std::string note;
};

// max|a - b| / max|b| over the positions where `keep` (same count as the values) is nonzero.
Comparison relative_error(const Tensor& got, const Tensor& want, const std::vector<uint8_t>* keep = nullptr) {
  if (got.numel() != want.numel())
    return {INFINITY, "shape " + shape_str(got.shape()) + " vs golden " + shape_str(want.shape())};
  const std::vector<double> a = got.to_doubles(), b = want.to_doubles();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (keep && !(*keep)[i]) continue;
    if (std::isnan(a[i]) != std::isnan(b[i])) return {INFINITY, "NaN mismatch"};
    diff = std::max(diff, std::abs(a[i] - b[i]));
    scale = std::max(scale, std::abs(b[i]));
  }
  return {scale > 0 ? diff / scale : diff, ""};
}

struct Meta {
  MpoConfig mpo;
  std::vector<int64_t> chosen_rows, rejected_rows;
};

Meta read_meta(const std::string& path, int64_t batch) {
  Meta meta;
  if (!fs::exists(path)) {
    for (int64_t i = 0; i + 1 < batch; i += 2) meta.chosen_rows.push_back(i), meta.rejected_rows.push_back(i + 1);
    std::printf("note: no %s; using beta 0.1, weights 0.8/0.2/1.0, pairs (0,1), (2,3), ...\n", path.c_str());
    return meta;
  }
  const ConfigReader c = ConfigReader::from_file(path);
  meta.mpo.beta = c.number("beta", 0.1);
  if (c.has("loss_weights")) {
    const ConfigReader w = c.child("loss_weights");
    meta.mpo.terms = {{PreferenceLoss::sigmoid, w.number("dpo_sigmoid", 0.8)}, {PreferenceLoss::bco_pair, w.number("bco_pair", 0.2)}};
    meta.mpo.weight_sft = w.number("sft", 1.0);
  }
  for (const auto* key : {"chosen_rows", "rejected_rows"}) {
    std::vector<int64_t>& rows = std::string(key) == "chosen_rows" ? meta.chosen_rows : meta.rejected_rows;
    for (const auto& v : c.json().at(key)) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= batch)
        c.fail_at(key, "expected row numbers below the batch size " + std::to_string(batch));
      rows.push_back(v.get<int64_t>());
    }
  }
  if (meta.chosen_rows.size() != meta.rejected_rows.size() || meta.chosen_rows.empty())
    c.fail_at("chosen_rows", "needs as many chosen as rejected rows, at least one");
  return meta;
}

// delta is the mean of the 2P rewards beta * (policy - reference), which have both signs: it can be
// arbitrarily close to 0 (exactly 0 at step 0), so, like every other tensor here, it is judged against
// the magnitude of the values it summarises: max |golden reward|. (Relative to delta itself, the
// golden's own f32 rounding of log-probs near 50 already amounts to about 1e-5.)
Comparison delta_error(const Tensor& got, const SafetensorsFile& golden, const Meta& meta) {
  const Tensor want = golden.get("mpo.delta");
  const std::vector<double> policy = golden.get("out.policy_logps").to_doubles(), ref = golden.get("out.ref_logps").to_doubles();
  double scale = std::abs(want.item());
  for (size_t i = 0; i < policy.size(); ++i) scale = std::max(scale, std::abs(meta.mpo.beta * (policy[i] - ref[i])));
  const double diff = std::abs(got.item() - want.item());
  char note[96];
  std::snprintf(note, sizeof note, "(relative to max|reward| %.3g; to delta itself %.2e)", scale, diff / std::abs(want.item()));
  return {diff / scale, note};
}

// The tiles of input row `row`: the rows before it use the first ones (tiles_per_seq), as the
// official batch lays them out.
Tensor row_pixels(const Tensor& pixel_values, const std::vector<double>& tiles_per_row, size_t row) {
  int64_t first = 0;
  for (size_t r = 0; r < row; ++r) first += static_cast<int64_t>(tiles_per_row[r]);
  const auto count = static_cast<int64_t>(tiles_per_row[row]);
  return count == 0 ? Tensor() : pixel_values.narrow(0, first, count);
}

// `--generate FILE`: greedy generations against the official generate(), one line per case. The file
// holds, under the model folder's name, prompts (`single`: prompt_ids, tiles, new_ids; and
// `batch_left_padded`: input_ids, attention_mask, new_ids); each prompt's pixels are the tiles of
// the golden input row that starts with it.
int check_generation(const std::string& dir, const std::string& golden_path, const std::string& generate_path) {
  const nlohmann::json all = nlohmann::json::parse(read_text_file(generate_path));
  const std::string key = fs::path(dir).lexically_normal().filename().string().empty()
                              ? fs::path(dir).lexically_normal().parent_path().filename().string()
                              : fs::path(dir).lexically_normal().filename().string();
  if (!all.contains(key))
    throw std::invalid_argument("'" + generate_path + "' has no cases for the model folder '" + key + "' (it has: " + [&] {
      std::string names;
      for (const auto& [name, value] : all.items()) names += (names.empty() ? "" : ", ") + name;
      return names;
    }() + ")");
  const nlohmann::json& cases = all.at(key);
  LoadedModel loaded = load_internvl(dir);
  const SafetensorsFile golden(golden_path);
  for (const char* name : {"input.input_ids", "input.tiles_per_seq", "input.pixel_values", "input.special_ids"})
    if (!golden.contains(name)) throw std::invalid_argument("golden file '" + golden_path + "' has no '" + name + "'");
  const Tensor ids = golden.get("input.input_ids"), pixel_values = golden.get("input.pixel_values").to(DType::f32);
  const std::vector<double> id_values = ids.to_doubles(), tiles_per_row = golden.get("input.tiles_per_seq").to_doubles();
  const auto image_context_id = static_cast<int64_t>(golden.get("input.special_ids").to_doubles().at(2));
  const int64_t T = ids.size(1);
  // The prompt's pixels: those of the first golden row that begins with its ids.
  auto prompt_for = [&](const std::vector<int64_t>& prompt, const std::string& where) {
    for (size_t r = 0; r < tiles_per_row.size(); ++r) {
      bool match = static_cast<int64_t>(prompt.size()) <= T;
      for (size_t t = 0; match && t < prompt.size(); ++t)
        match = static_cast<int64_t>(id_values[r * static_cast<size_t>(T) + t]) == prompt[t];
      if (match) return GenerationPrompt{prompt, row_pixels(pixel_values, tiles_per_row, r), r};
    }
    throw std::invalid_argument(where + ": no row of " + golden_path + " begins with this prompt");
  };
  GenerationOptions options;
  options.sampling.max_new_tokens = cases.at("max_new_tokens").get<int64_t>();
  options.eos_ids = {cases.at("eos_id").get<int64_t>()};
  std::printf("model: %s (%s)\ngenerations: %s\n", dir.c_str(), loaded.config.llm.architecture.c_str(), generate_path.c_str());
  std::printf("%-22s %6s %8s %10s  %s\n", "case", "rows", "tokens", "matching", "status");
  bool ok = true;
  auto report = [&](const std::string& name, const std::vector<std::vector<int64_t>>& want,
                    const std::vector<std::vector<int64_t>>& got) {
    int64_t tokens = 0, matching = 0;
    bool same = want.size() == got.size();
    for (size_t r = 0; r < want.size(); ++r) {
      tokens += static_cast<int64_t>(want[r].size());
      const std::vector<int64_t> row = r < got.size() ? got[r] : std::vector<int64_t>{};
      size_t k = 0;
      while (k < want[r].size() && k < row.size() && want[r][k] == row[k]) ++k;
      matching += static_cast<int64_t>(k);
      same = same && row == want[r];
    }
    ok = ok && same;
    std::printf("%-22s %6zu %8lld %10lld  %s\n", name.c_str(), want.size(), static_cast<long long>(tokens),
                static_cast<long long>(matching), same ? "PASS" : "FAIL");
  };
  if (cases.contains("single")) {
    const nlohmann::json& single = cases.at("single");
    for (size_t i = 0; i < single.size(); ++i) {
      const std::string name = "single[" + std::to_string(i) + "]";
      GenerationPrompt prompt = prompt_for(single[i].at("prompt_ids").get<std::vector<int64_t>>(), name);
      const int64_t tiles = prompt.pixel_values.defined() ? prompt.pixel_values.size(0) : 0;
      if (single[i].contains("tiles") && single[i].at("tiles").get<int64_t>() != tiles)
        throw std::invalid_argument(name + ": the matching golden row has " + std::to_string(tiles) + " tiles, the case says " +
                                    single[i].at("tiles").dump());
      report(name, {single[i].at("new_ids").get<std::vector<int64_t>>()},
             generate(*loaded.model, image_context_id, {prompt}, options));
    }
  }
  if (cases.contains("batch_left_padded")) {
    const nlohmann::json& batch = cases.at("batch_left_padded");
    const auto rows = batch.at("input_ids").get<std::vector<std::vector<int64_t>>>();
    const auto masks = batch.at("attention_mask").get<std::vector<std::vector<int64_t>>>();
    std::vector<GenerationPrompt> prompts;
    for (size_t r = 0; r < rows.size(); ++r) {
      std::vector<int64_t> prompt;  // the row without its left padding
      for (size_t t = 0; t < rows[r].size(); ++t)
        if (masks.at(r).at(t) != 0) prompt.push_back(rows[r][t]);
      prompts.push_back(prompt_for(prompt, "batch_left_padded row " + std::to_string(r)));
      prompts.back().sample_id = r;
    }
    report("batch_left_padded", batch.at("new_ids").get<std::vector<std::vector<int64_t>>>(),
           generate(*loaded.model, image_context_id, prompts, options));
  }
  std::printf("check: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}

}  // namespace

int cmd_check(const ParsedFlags& flags) {
  const std::string dir = flags.text("--model");
  if (flags.given("--generate"))
    return check_generation(dir, flags.text("--golden", (fs::path(dir) / "golden.safetensors").string()), flags.text("--generate"));
  const std::string golden_path = flags.text("--golden", (fs::path(dir) / "golden.safetensors").string());
  const std::string ref_path = flags.text("--ref", (fs::path(dir) / "ref_model.safetensors").string());
  const bool per_key = flags.boolean("--keys");

  LoadedModel policy = load_internvl(dir);
  LoadedModel reference = load_internvl(dir, ref_path);
  const SafetensorsFile golden(golden_path);
  auto input = [&](const std::string& name) {
    if (!golden.contains(name)) throw std::invalid_argument("golden file '" + golden_path + "' has no '" + name + "'");
    return golden.get(name);
  };
  const Tensor pixel_values = input("input.pixel_values").to(DType::f32), ids = input("input.input_ids"),
               mask = input("input.attention_mask"), labels = input("input.labels");
  const std::vector<double> special = input("input.special_ids").to_doubles();
  if (special.size() < 3) throw std::invalid_argument("input.special_ids must list <img>, </img>, <IMG_CONTEXT>[, pad]");
  const auto image_context_id = static_cast<int64_t>(special[2]);
  const Meta meta = read_meta(flags.text("--meta", (fs::path(dir) / "meta.json").string()), ids.size(0));
  std::printf("model: %s (%s, %s, %lld parameters)\ngolden: %s\n", dir.c_str(), policy.config.llm.architecture.c_str(),
              policy.config.vision.rms_norm ? "InternViT-6B style" : "InternViT-300M style",
              static_cast<long long>(policy.params->numel()), golden_path.c_str());

  // The golden batch repeats each pair's tiles for its chosen and its rejected row, as the official
  // trainer does; the step encodes each distinct tile sequence once and splices it into both rows.
  const SharedTiles shared = share_identical_tiles(pixel_values, ids, image_context_id, policy.config.num_image_token());
  std::printf("vision: %lld distinct tiles of the %lld in the batch, each encoded once\n",
              static_cast<long long>(shared.pixel_values.defined() ? shared.pixel_values.size(0) : 0),
              static_cast<long long>(pixel_values.size(0)));
  MpoBatch batch{shared.pixel_values, shared.row_tiles, ids, mask, labels, meta.chosen_rows, meta.rejected_rows, image_context_id};

  std::map<std::string, Tensor> got;
  const Tensor ref_logps = reference_logps(*reference.model, batch);
  {
    NoGrad no_grad;
    got["vit.last_hidden_state"] = policy.model->vision().forward(pixel_values);
    got["out.ref_logits"] = reference.model->forward(batch.pixel_values, ids, mask, image_context_id, batch.row_tiles);
  }
  policy.params->set_requires_grad(true);
  RewardShift shift;
  MpoStepOptions options;
  options.loss = meta.mpo, options.keep_activations = true;
  const MpoStepResult step = mpo_step(*policy.model, batch, ref_logps, shift, options);
  {
    NoGrad no_grad;
    if (step.image_tokens.defined()) got["vit.embeds_after_mlp1"] = index_select(step.image_tokens, 0, shared.batch_tile_source);
    got["out.logits"] = policy.model->llm().logits(step.hidden);
  }
  const Tensor& logits = got["out.logits"];
  got["out.policy_logps"] = step.policy.logps, got["out.ref_logps"] = ref_logps, got["out.response_tokens"] = step.policy.tokens;
  const MpoLoss& loss = step.loss;
  got["mpo.loss"] = loss.loss, got["mpo.loss_dpo"] = loss.dpo, got["mpo.loss_bco"] = loss.bco;
  got["mpo.loss_sft_pooled"] = loss.sft_pooled, got["mpo.loss_sft_per_pair"] = loss.sft_per_pair;
  got["mpo.delta"] = Tensor::scalar(loss.delta, DType::f64);
  for (const Parameter& p : policy.params->parameters())
    if (p.present()) got["grad." + p.name()] = p.tensor().grad();

  // Logits are compared where the attention mask is 1 (padded positions are not defined).
  std::vector<uint8_t> keep_logits;
  const std::vector<double> mv = mask.to_doubles();
  const int64_t V = logits.size(-1);
  for (double m : mv) keep_logits.insert(keep_logits.end(), static_cast<size_t>(V), m != 0);

  struct Group {
    int keys = 0;
    double worst = 0;
    std::string worst_key, note;
  };
  std::map<std::string, Group> groups;
  const std::map<std::string, double> bounds = {{"vit", 1e-5}, {"out", 1e-5}, {"mpo", 1e-5}, {"grad", 1e-4}};
  std::set<std::string> compared;
  bool ok = true;
  for (const std::string& name : golden.names()) {
    const std::string group = name.substr(0, name.find('.'));
    if (group == "input") continue;
    Group& g = groups[group];
    ++g.keys;
    Comparison c;
    if (!bounds.count(group)) c = {INFINITY, "unknown group"};
    else if (!got.count(name)) c = {INFINITY, "not computed"};
    else if (name == "mpo.delta") c = delta_error(got.at(name), golden, meta);
    else c = relative_error(got.at(name), golden.get(name), name.find("logits") != std::string::npos ? &keep_logits : nullptr);
    compared.insert(name);
    if (per_key) std::printf("  %-62s %10.2e %s\n", name.c_str(), c.error, c.note.c_str());
    if (!(c.error <= g.worst)) g.worst = c.error, g.worst_key = name, g.note = c.note;
  }
  for (const auto& [name, tensor] : got)
    if (name.rfind("grad.", 0) == 0 && !compared.count(name)) {
      groups["grad"].note = "golden has no " + name;
      groups["grad"].worst = INFINITY;
    }

  std::printf("%-6s %5s %12s %8s  %-50s %s\n", "group", "keys", "max rel err", "bound", "worst key", "status");
  for (const auto& [name, g] : groups) {
    const double bound = bounds.count(name) ? bounds.at(name) : 0;
    const bool pass = g.worst <= bound;
    ok = ok && pass;
    std::printf("%-6s %5d %12.2e %8.0e  %-50s %s%s%s\n", name.c_str(), g.keys, g.worst, bound, g.worst_key.c_str(),
                pass ? "PASS" : "FAIL", g.note.empty() ? "" : "  ", g.note.c_str());
  }
  std::printf("check: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}

Command check_command() {
  return {{"check",
           "a model against golden tensors of the official code (forward, MPO loss, gradients)",
           {},
           {{"--model", "DIR", "", "a model directory (config.json and weights)", Flag::required},
            {"--golden", "FILE", "", "the golden tensors (default: DIR/golden.safetensors)"},
            {"--ref", "FILE", "", "the reference model's weights (default: DIR/ref_model.safetensors)"},
            {"--meta", "FILE", "", "beta, loss weights and pair rows (default: DIR/meta.json)"},
            {"--keys", "", "", "one line per golden key, not only per group"},
            {"--generate", "FILE", "", "check greedy generations instead (official generate() outputs keyed by the model folder's name)"}},
           ""},
          cmd_check};
}

}  // namespace ivl::cli
