// The MPO trainer loop (see trainer.h).
#include "mpo/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>

#include "llm/tokenizer.h"
#include "mpo/reference_cache.h"
#include "nn/lr_schedule.h"
#include "nn/optimizer.h"
#include "nn/safetensors.h"
#include "tensor/autograd.h"
#include "tensor/random.h"

namespace ivl {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

std::vector<int64_t> epoch_order(int64_t n, bool shuffle, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  if (!shuffle) return order;
  // Fisher-Yates with Philox words keyed by (seed, epoch): the order of an epoch depends on nothing
  // else, so a resumed run walks the same pairs.
  const uint64_t key = seed * 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(epoch) + 1;
  for (int64_t i = n - 1; i > 0; --i) {
    const auto words = philox4x32(key, static_cast<uint64_t>(i));
    const uint64_t r = (static_cast<uint64_t>(words[0]) << 32) | words[1];
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(r % static_cast<uint64_t>(i + 1))]);
  }
  return order;
}

namespace {

// Where the trainer is: what a checkpoint must hold to continue bit for bit.
struct TrainerState {
  int64_t global_step = 0, epoch = 0, position = 0;  // the next pair is order(epoch)[position]
  int64_t micro_batches = 0, pairs = 0, skipped_records = 0, skipped_pairs = 0;
  RewardShift shift;
  Generator drop_path;  // the vision tower's stochastic depth, (seed, offset)
};

json state_to_json(const TrainerState& s) {
  return {{"global_step", s.global_step},
          {"epoch", s.epoch},
          {"position_in_epoch", s.position},
          {"micro_batches", s.micro_batches},
          {"pairs", s.pairs},
          {"skipped_records", s.skipped_records},
          {"skipped_pairs", s.skipped_pairs},
          {"reward_shift", {{"mean", s.shift.mean}, {"var", s.shift.var}, {"count", s.shift.count}}},
          {"drop_path_rng", {{"seed", s.drop_path.seed()}, {"offset", s.drop_path.offset()}}}};
}

TrainerState state_from_json(const json& j, const std::string& path) {
  try {
    TrainerState s;
    s.global_step = j.at("global_step").get<int64_t>();
    s.epoch = j.at("epoch").get<int64_t>();
    s.position = j.at("position_in_epoch").get<int64_t>();
    s.micro_batches = j.at("micro_batches").get<int64_t>();
    s.pairs = j.at("pairs").get<int64_t>();
    s.skipped_records = j.at("skipped_records").get<int64_t>();
    s.skipped_pairs = j.at("skipped_pairs").get<int64_t>();
    s.shift.mean = j.at("reward_shift").at("mean").get<double>();
    s.shift.var = j.at("reward_shift").at("var").get<double>();
    s.shift.count = j.at("reward_shift").at("count").get<double>();
    s.drop_path.set_state(j.at("drop_path_rng").at("seed").get<uint64_t>(), j.at("drop_path_rng").at("offset").get<uint64_t>());
    return s;
  } catch (const json::exception& e) {
    throw std::invalid_argument(path + ": not a trainer state of this version (" + e.what() + ")");
  }
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char text[32];
  if (s >= 3600) std::snprintf(text, sizeof text, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600), static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else std::snprintf(text, sizeof text, "%lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  return text;
}

std::vector<double> values_of(const Tensor& t) { return t.defined() ? t.to_doubles() : std::vector<double>{}; }

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

// The checkpoint folders of an output folder, by step.
std::vector<std::pair<int64_t, fs::path>> checkpoints_in(const std::string& output_dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(output_dir, error)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || name.rfind("checkpoint-", 0) != 0) continue;
    const std::string number = name.substr(11);
    if (number.empty() || number.find_first_not_of("0123456789") != std::string::npos) continue;
    if (!fs::exists(entry.path() / "trainer_state.json")) continue;  // not finished
    found.emplace_back(std::stoll(number), entry.path());
  }
  std::sort(found.begin(), found.end());
  return found;
}

class Trainer {
 public:
  Trainer(const MpoTrainingOptions& options, const std::function<void(const std::string&)>& log) : o_(options), log_(log) {}

  MpoTrainingSummary run();
  int64_t precompute(const std::string& cache_path);

 private:
  void say(const std::string& line) const {
    if (log_) log_(line);
  }
  void setup(bool for_training);
  std::optional<PreferencePair> pair_at(int64_t record_index);
  std::vector<PreferencePair> next_micro_batch();
  Tensor reference_of(const PreferencePair& pair);
  void save_checkpoint();
  void resume(const fs::path& checkpoint);
  void export_model() const;
  ReferenceKey key_of(const ParameterSet& reference) const;
  ReferenceKey reference_key();

  const MpoTrainingOptions& o_;
  std::function<void(const std::string&)> log_;
  std::unique_ptr<Tokenizer> tokenizer_;
  MmprData data_;
  LoadedModel policy_, reference_;
  std::optional<ReferenceCache> cache_;
  std::unique_ptr<AdamW> optimizer_;
  CollateOptions collate_;
  TrainerState state_;
  std::vector<int64_t> order_;
  int64_t order_epoch_ = -1;
  int64_t max_steps_ = 0;
  LrSchedule schedule_;
  std::string metrics_path_;
};

void Trainer::setup(bool for_training) {
  tokenizer_ = load_tokenizer(o_.model_dir);
  collate_.pad_id = tokenizer_->pad_id();
  collate_.image_context_id = tokenizer_->token_id("<IMG_CONTEXT>");
  MmprReadOptions read;
  read.skip_bad_records = o_.skip_bad_records, read.seed = o_.seed;
  data_ = read_mmpr(o_.meta_path, read);
  state_.skipped_records = data_.skipped;
  for (const std::string& message : data_.skip_messages) say("skipped: " + message);
  say("data: " + std::to_string(data_.records.size()) + " pairs from " + std::to_string(data_.datasets.size()) + " datasets (" +
      o_.meta_path + ")" + (data_.skipped ? ", " + std::to_string(data_.skipped) + " bad records skipped" : ""));
  if (!for_training) return;
  policy_ = load_internvl(o_.config, o_.model_dir);
  say("model: " + o_.model_dir + " (" + o_.config.llm.architecture + ", " + std::to_string(policy_.params->numel()) + " parameters, template " +
      o_.encoding.template_name + ")");
}

std::optional<PreferencePair> Trainer::pair_at(int64_t record_index) {
  const PreferenceRecord& record = data_.records[static_cast<size_t>(record_index)];
  PreferencePair pair;
  try {
    pair = encode_preference_pair(record, data_.datasets[record.dataset], *tokenizer_, o_.encoding);
  } catch (const std::invalid_argument& e) {
    if (!o_.skip_bad_records) throw;
    ++state_.skipped_records;
    say(std::string("skipped: ") + e.what());
    return std::nullopt;
  }
  const std::string reason = untrainable_reason(pair);
  if (!reason.empty()) {
    ++state_.skipped_pairs;
    say("warning: skipping " + pair.where + ": " + reason);
    return std::nullopt;
  }
  return pair;
}

// The next per_device_train_batch_size trainable pairs of the epoch; fewer at the epoch's end (the
// last batch of the HF data loader), after which the next epoch begins.
std::vector<PreferencePair> Trainer::next_micro_batch() {
  const auto n = static_cast<int64_t>(data_.records.size());
  std::vector<PreferencePair> pairs;
  int64_t epochs_without_a_pair = 0;
  while (static_cast<int64_t>(pairs.size()) < o_.per_device_train_batch_size) {
    if (state_.position >= n) {
      ++state_.epoch, state_.position = 0;
      if (!pairs.empty()) break;
      if (++epochs_without_a_pair > 1) throw std::invalid_argument("no pair of " + o_.meta_path + " can be trained on (see the warnings above)");
    }
    if (order_epoch_ != state_.epoch) order_ = epoch_order(n, o_.shuffle, o_.seed, state_.epoch), order_epoch_ = state_.epoch;
    std::optional<PreferencePair> pair = pair_at(order_[static_cast<size_t>(state_.position++)]);
    if (pair) pairs.push_back(std::move(*pair));
  }
  return pairs;
}

// [chosen, rejected] of one pair, as its piece's rows.
Tensor Trainer::reference_of(const PreferencePair& pair) {
  ReferenceEntry entry;
  if (cache_) {
    const ReferenceEntry* found = cache_->find(fingerprint_pair(pair));
    if (!found)
      throw std::invalid_argument("the reference cache has no entry for " + pair.where +
                                  ": it was made for other data or other encoding flags; make it again (ivl ref-logps or --precompute_ref_log_probs)");
    entry = *found;
  } else {
    entry = pair_reference_logps(*reference_.model, pair, collate_);
  }
  return Tensor::from_vector(std::vector<double>{entry.chosen, entry.rejected}, {2}).to(policy_.params->dtype());
}

// The reference's identity: its weights, the tokenizer files and the template. The encoding flags
// change the pairs' tokens and pixels, which each pair's own fingerprint holds.
ReferenceKey Trainer::key_of(const ParameterSet& reference) const {
  ReferenceKey key;
  key.template_name = o_.encoding.template_name;
  key.tokenizer = fingerprint_tokenizer_files(o_.model_dir);
  key.weights = fingerprint_bytes(reference.flat().data_ptr(), reference.flat().nbytes());
  return key;
}

ReferenceKey Trainer::reference_key() {
  // The start weights are the policy's before any resume: no second copy needed.
  if (o_.ref_model_dir.empty() && policy_.params) return key_of(*policy_.params);
  return key_of(*load_internvl(o_.config, o_.ref_model_dir.empty() ? o_.model_dir : o_.ref_model_dir).params);
}

int64_t Trainer::precompute(const std::string& cache_path) {
  if (!tokenizer_) setup(false);
  const LoadedModel reference = load_internvl(o_.config, o_.ref_model_dir.empty() ? o_.model_dir : o_.ref_model_dir);
  const ReferenceKey key = key_of(*reference.params);
  ReferenceCache cache(key);
  const auto n = static_cast<int64_t>(data_.records.size());
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < n; ++i) {
    std::optional<PreferencePair> pair = pair_at(i);
    if (pair) cache.put(fingerprint_pair(*pair), pair_reference_logps(*reference.model, *pair, collate_));
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (i + 1 == n || (i + 1) % 10 == 0)
      say("reference log-probs: " + std::to_string(i + 1) + "/" + std::to_string(n) + " pairs, " + format_duration(elapsed) + " elapsed, ETA " +
          format_duration(elapsed / static_cast<double>(i + 1) * static_cast<double>(n - i - 1)));
  }
  cache.save(cache_path);
  say("reference log-probs of " + std::to_string(cache.size()) + " pairs written to " + cache_path + " (" + key.str() + ")");
  return static_cast<int64_t>(cache.size());
}

void Trainer::save_checkpoint() {
  const fs::path final_dir = fs::path(o_.output_dir) / ("checkpoint-" + std::to_string(state_.global_step));
  const fs::path temporary = fs::path(o_.output_dir) / ("checkpoint-" + std::to_string(state_.global_step) + ".tmp");
  fs::remove_all(temporary);
  fs::create_directories(temporary);
  std::vector<std::pair<std::string, Tensor>> weights, moments;
  for (const Parameter& p : policy_.params->parameters())
    if (p.present()) weights.emplace_back(p.name(), p.tensor());
  save_safetensors((temporary / "model.safetensors").string(), weights, {{"format", "pt"}});
  const AdamW& adam = *optimizer_;
  for (const Parameter& p : policy_.params->parameters()) {
    if (!p.present()) continue;
    const int64_t numel = p.tensor().numel();
    moments.emplace_back("exp_avg." + p.name(), adam.exp_avg().narrow(0, p.offset(), numel).reshape(p.shape()));
    moments.emplace_back("exp_avg_sq." + p.name(), adam.exp_avg_sq().narrow(0, p.offset(), numel).reshape(p.shape()));
  }
  save_safetensors((temporary / "optimizer.safetensors").string(), moments, {{"adam_steps", std::to_string(adam.steps())}});
  json state = state_to_json(state_);
  state["adam_steps"] = adam.steps();
  state["max_steps"] = max_steps_;
  write_file_atomically((temporary / "trainer_state.json").string(), state.dump(2) + "\n");
  fs::remove_all(final_dir);
  fs::rename(temporary, final_dir);
  say("checkpoint: " + final_dir.string());
  if (o_.save_total_limit > 0) {
    auto all = checkpoints_in(o_.output_dir);
    while (static_cast<int64_t>(all.size()) > o_.save_total_limit) {
      fs::remove_all(all.front().second);
      all.erase(all.begin());
    }
  }
}

void Trainer::resume(const fs::path& checkpoint) {
  const std::string state_path = (checkpoint / "trainer_state.json").string();
  if (!fs::exists(state_path)) throw std::invalid_argument(checkpoint.string() + " is not a checkpoint (no trainer_state.json)");
  std::ifstream in(state_path);
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw std::invalid_argument(state_path + " is not valid JSON: " + e.what());
  }
  state_ = state_from_json(j, state_path);
  const SafetensorsFile weights((checkpoint / "model.safetensors").string());
  const SafetensorsFile moments((checkpoint / "optimizer.safetensors").string());
  const Tensor exp_avg = Tensor::zeros(optimizer_->exp_avg().shape(), optimizer_->exp_avg().dtype());
  const Tensor exp_avg_sq = Tensor::zeros(exp_avg.shape(), exp_avg.dtype());
  for (const Parameter& p : policy_.params->parameters()) {
    if (!p.present()) continue;
    for (const std::string& name : {p.name(), "exp_avg." + p.name(), "exp_avg_sq." + p.name()}) {
      const SafetensorsFile& file = name == p.name() ? weights : moments;
      if (!file.contains(name) || file.entry(name).shape != p.shape())
        throw std::invalid_argument(file.path() + " has no '" + name + "' of shape " + shape_str(p.shape()) + ": a checkpoint of another model?");
    }
    copy_into(p.tensor(), weights.get(p.name()));
    const int64_t numel = p.tensor().numel();
    copy_into(exp_avg.narrow(0, p.offset(), numel).reshape(p.shape()), moments.get("exp_avg." + p.name()));
    copy_into(exp_avg_sq.narrow(0, p.offset(), numel).reshape(p.shape()), moments.get("exp_avg_sq." + p.name()));
  }
  optimizer_->load_state(exp_avg, exp_avg_sq, j.at("adam_steps").get<int64_t>());
  // metrics.jsonl keeps the steps up to the checkpoint; the rest will be written again.
  std::vector<std::string> kept;
  {
    std::ifstream metrics(metrics_path_);
    for (std::string line; std::getline(metrics, line);) {
      if (line.empty()) continue;
      try {
        if (json::parse(line).at("step").get<int64_t>() <= state_.global_step) kept.push_back(line);
      } catch (const json::exception&) {
      }
    }
  }
  std::string text;
  for (const std::string& line : kept) text += line + "\n";
  write_file_atomically(metrics_path_, text);
  say("resumed from " + checkpoint.string() + " at step " + std::to_string(state_.global_step) + " (epoch " + std::to_string(state_.epoch) +
      ", pair " + std::to_string(state_.position) + " of the epoch, reward shift " + std::to_string(state_.shift.mean) + ")");
}

void Trainer::export_model() const {
  const fs::path out(o_.output_dir);
  std::vector<std::pair<std::string, Tensor>> weights;
  for (const Parameter& p : policy_.params->parameters())
    if (p.present()) weights.emplace_back(p.name(), p.tensor().to(DType::bf16));
  save_safetensors_sharded(out.string(), weights, o_.max_shard_bytes, {{"format", "pt"}});
  // config.json with what the flags changed, as save_pretrained writes the trained config.
  std::ifstream in(fs::path(o_.model_dir) / "config.json");
  json config = json::parse(in);
  const InternVLChatConfig& c = o_.config;
  config["template"] = o_.encoding.template_name;
  config["select_layer"] = c.select_layer;
  config["ps_version"] = c.ps_version == PixelShuffleVersion::v1 ? "v1" : "v2";
  config["force_image_size"] = c.image_size;
  config["downsample_ratio"] = c.downsample_ratio;
  config["min_dynamic_patch"] = o_.encoding.tiles.min_tiles;
  config["max_dynamic_patch"] = o_.encoding.tiles.max_tiles;
  config["use_thumbnail"] = o_.encoding.tiles.use_thumbnail;
  if (config.contains("vision_config")) config["vision_config"]["drop_path_rate"] = c.vision.drop_path_rate;
  write_file_atomically((out / "config.json").string(), config.dump(2) + "\n");
  // Everything else of the model folder but its weights: tokenizer files, generation config, code.
  for (const auto& entry : fs::directory_iterator(o_.model_dir)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || name == "config.json" || entry.path().extension() == ".safetensors" ||
        name == "model.safetensors.index.json" || entry.path().extension() == ".bin")
      continue;
    fs::copy_file(entry.path(), out / name, fs::copy_options::overwrite_existing);
  }
  say("model: exported to " + out.string() + " (bf16 safetensors, config.json, tokenizer files)");
}

MpoTrainingSummary Trainer::run() {
  const auto start = std::chrono::steady_clock::now();
  if (o_.output_dir.empty()) throw std::invalid_argument("an output folder is needed (--output_dir)");
  fs::create_directories(o_.output_dir);
  metrics_path_ = (fs::path(o_.output_dir) / "metrics.jsonl").string();
  setup(true);
  ParameterSet& params = *policy_.params;
  policy_.model->set_checkpointing(o_.activation_checkpointing);

  // The reference: a cache, or the frozen model run on the fly.
  const std::string cache_path = o_.ref_cache_path.empty() ? (fs::path(o_.output_dir) / "reference_logps.safetensors").string() : o_.ref_cache_path;
  if (o_.precompute_ref_log_probs || !o_.ref_cache_path.empty()) {
    const ReferenceKey key = reference_key();
    if (o_.precompute_ref_log_probs && !fs::exists(cache_path)) precompute(cache_path);
    cache_ = ReferenceCache::load(cache_path, key);
    say("reference: " + std::to_string(cache_->size()) + " cached pairs from " + cache_path);
  } else {
    reference_ = load_internvl(o_.config, o_.ref_model_dir.empty() ? o_.model_dir : o_.ref_model_dir);
    say("reference: " + (o_.ref_model_dir.empty() ? o_.model_dir : o_.ref_model_dir) + ", frozen, on the fly");
  }

  // What trains.
  params.set_requires_grad(true);
  FreezeOptions freezing;
  freezing.freeze_backbone = o_.freeze_backbone, freezing.freeze_llm = o_.freeze_llm, freezing.freeze_mlp = o_.freeze_mlp;
  freezing.unfreeze_vit_layers = o_.unfreeze_vit_layers;
  apply_freezing(o_.config, params, freezing);
  say("trainable: " + std::to_string(params.trainable_numel()) + " of " + std::to_string(params.numel()) + " parameters");

  AdamWOptions adam;
  adam.beta1 = o_.adam_beta1, adam.beta2 = o_.adam_beta2, adam.eps = o_.adam_epsilon, adam.weight_decay = o_.weight_decay;
  adam.decay_all = o_.decay_all;
  optimizer_ = std::make_unique<AdamW>(params, adam);

  // The length of the run as the HF Trainer computes it.
  const auto n = static_cast<int64_t>(data_.records.size());
  const int64_t loader_batches = (n + o_.per_device_train_batch_size - 1) / o_.per_device_train_batch_size;
  const int64_t steps_per_epoch = std::max<int64_t>(loader_batches / o_.gradient_accumulation_steps, 1);
  max_steps_ = o_.max_steps > 0 ? o_.max_steps : static_cast<int64_t>(std::ceil(o_.num_train_epochs * static_cast<double>(steps_per_epoch)));
  schedule_ = make_lr_schedule(o_.lr_scheduler_type, o_.learning_rate, max_steps_, o_.warmup_steps, o_.warmup_ratio);

  state_.drop_path.set_state(o_.seed ^ 0x64726f7070617468ULL, 0);  // "droppath"
  if (!o_.resume_from_checkpoint.empty()) {
    fs::path checkpoint(o_.resume_from_checkpoint);
    if (o_.resume_from_checkpoint == "latest") {
      const auto all = checkpoints_in(o_.output_dir);
      if (all.empty()) throw std::invalid_argument("--resume_from_checkpoint latest: no checkpoint-N folder in " + o_.output_dir);
      checkpoint = all.back().second;
    }
    resume(checkpoint);
  } else {
    write_file_atomically(metrics_path_, "");
  }
  say("training: " + std::to_string(max_steps_) + " steps of " + std::to_string(o_.gradient_accumulation_steps) + " x " +
      std::to_string(o_.per_device_train_batch_size) + " pairs, " + o_.lr_scheduler_type + " schedule from " + std::to_string(o_.learning_rate) +
      " with " + std::to_string(schedule_.warmup_steps) + " warmup steps");

  MpoTrainingSummary summary;
  const bool dropping = o_.config.vision.drop_path_rate > 0;
  const int64_t first_step = state_.global_step;
  const auto loop_start = std::chrono::steady_clock::now();
  std::ofstream metrics(metrics_path_, std::ios::app);
  while (state_.global_step < max_steps_) {
    const auto step_start = std::chrono::steady_clock::now();
    const double lr = hf_learning_rate(schedule_, state_.global_step);
    params.zero_grad();
    // Micro-batches of pairs, each pair its own piece (mpo/step.h): its log-probs then do not depend
    // on the batch it trains in.
    std::vector<std::vector<PreferencePair>> micro(static_cast<size_t>(o_.gradient_accumulation_steps));
    std::vector<std::vector<MpoBatch>> batches;
    std::vector<std::vector<Tensor>> references;
    for (auto& pairs : micro) {
      pairs = next_micro_batch();
      batches.emplace_back(), references.emplace_back();
      for (const PreferencePair& pair : pairs) {
        batches.back().push_back(collate_pairs({&pair}, collate_));
        references.back().push_back(reference_of(pair));
      }
    }
    MpoStepOptions step_options;
    step_options.loss = o_.loss;
    step_options.loss_scale = 1.0 / static_cast<double>(o_.gradient_accumulation_steps);
    step_options.drop_path = dropping ? &state_.drop_path : nullptr;
    step_options.logits_means = true;
    if (o_.shift_per_step && o_.loss.uses_shift()) {
      // The step's mean reward first (no gradient; the drop-path stream replayed so that the real
      // pass sees the same masks), then one update that every micro-batch reads.
      const Generator saved = state_.drop_path;
      double reward_sum = 0, weight = 0;
      for (size_t m = 0; m < batches.size(); ++m) {
        NoGrad no_grad;
        RewardShift scratch;
        MpoStepOptions probe = step_options;
        probe.backward = false, probe.logits_means = false;
        const MpoStepResult r = mpo_step(*policy_.model, batches[m], references[m], scratch, probe);
        reward_sum += r.batch_reward_mean * static_cast<double>(micro[m].size()), weight += static_cast<double>(micro[m].size());
      }
      state_.drop_path = saved;
      state_.shift.update(reward_sum / weight);
      step_options.update_shift = [](RewardShift&, double) {};
    }

    json micro_records = json::array();
    double loss_sum = 0, nll_sum = 0, tokens = 0;
    std::map<std::string, double> part_sums, metric_sums;
    for (size_t m = 0; m < batches.size(); ++m) {
      const MpoStepResult r = mpo_step(*policy_.model, batches[m], references[m], state_.shift, step_options);
      const double loss = r.loss.loss.item();
      std::vector<std::string> where;
      for (const PreferencePair& pair : micro[m]) where.push_back(pair.where);
      if (!std::isfinite(loss)) {
        std::string list;
        for (const std::string& w : where) list += (list.empty() ? "" : ", ") + w;
        throw std::runtime_error("the loss is " + std::to_string(loss) + " at step " + std::to_string(state_.global_step + 1) + ", micro-batch " +
                                 std::to_string(m + 1) + " (pairs " + list + "); stopped. The checkpoints written so far are intact.");
      }
      const auto P = static_cast<int64_t>(micro[m].size());

      const std::vector<double> chosen_rewards = values_of(r.loss.chosen_rewards), rejected_rewards = values_of(r.loss.rejected_rewards);
      const double w = o_.loss.reward_weight();
      double accuracy = 0, margin = 0, reward_chosen = 0, reward_rejected = 0;
      for (int64_t i = 0; i < P; ++i) {
        const double c = w * chosen_rewards[static_cast<size_t>(i)], rj = w * rejected_rewards[static_cast<size_t>(i)];
        accuracy += c > rj, margin += c - rj, reward_chosen += c, reward_rejected += rj;
      }
      const std::vector<double> policy_chosen = r.pairs.policy_chosen.to_doubles(), policy_rejected = r.pairs.policy_rejected.to_doubles();
      const std::vector<double> ref_chosen = r.pairs.ref_chosen.to_doubles(), ref_rejected = r.pairs.ref_rejected.to_doubles();
      const double nll = r.loss.sft_pooled.item();
      json record = {{"pairs", where},
                     {"policy_chosen_logps", policy_chosen},
                     {"policy_rejected_logps", policy_rejected},
                     {"reference_chosen_logps", ref_chosen},
                     {"reference_rejected_logps", ref_rejected},
                     {"loss", loss},
                     {"nll_loss", nll},
                     {"batch_reward_mean", r.batch_reward_mean},
                     {"delta", r.loss.delta}};
      const std::pair<const char*, const Tensor*> parts[] = {{"sigmoid", &r.loss.dpo}, {"hinge", &r.loss.hinge}, {"ipo", &r.loss.ipo}, {"bco_pair", &r.loss.bco}};
      for (const auto& [name, tensor] : parts) {
        if (!tensor->defined()) continue;
        const std::vector<double> v = tensor->to_doubles();
        record[std::string("loss_") + name] = v;
        part_sums[name] += mean_of(v);
      }
      micro_records.push_back(record);
      loss_sum += loss, nll_sum += nll;
      const double pairs_d = static_cast<double>(P);
      metric_sums["rewards/chosen"] += reward_chosen / pairs_d;
      metric_sums["rewards/rejected"] += reward_rejected / pairs_d;
      metric_sums["rewards/accuracies"] += accuracy / pairs_d;
      metric_sums["rewards/margins"] += margin / pairs_d;
      metric_sums["logps/chosen"] += mean_of(policy_chosen);
      metric_sums["logps/rejected"] += mean_of(policy_rejected);
      metric_sums["logits/chosen"] += r.logits_mean_chosen;
      metric_sums["logits/rejected"] += r.logits_mean_rejected;
      for (const MpoBatch& piece : batches[m]) tokens += sum(piece.attention_mask).item();
      ++state_.micro_batches, state_.pairs += P;
      if (state_.global_step == 0 && m == 0 && !dropping && o_.ref_model_dir.empty() && first_step == 0) {
        // Policy = reference: every reward is 0, so each term has its value at 0.
        double expected = 0;
        std::string terms;
        for (const PreferenceTerm& term : o_.loss.terms) {
          const double at_zero = term.type == PreferenceLoss::sigmoid ? std::log(2.0)
                                 : term.type == PreferenceLoss::hinge ? 1.0
                                 : term.type == PreferenceLoss::ipo   ? 1 / (4 * o_.loss.beta * o_.loss.beta)
                                                                      : 2 * std::log(2.0);
          expected += term.weight * at_zero;
          char part[96];
          std::snprintf(part, sizeof part, "%s%.4g x %s %.6f", terms.empty() ? "" : " + ", term.weight, preference_loss_name(term.type), at_zero);
          terms += part;
        }
        expected += o_.loss.weight_sft * nll;
        char line[512];
        std::snprintf(line, sizeof line, "check: policy = reference at the first micro-batch: expected loss %.6f (%s + %.4g x nll %.6f), measured %.6f",
                      expected, terms.c_str(), o_.loss.weight_sft, nll, loss);
        say(line);
      }
    }
    const double grad_norm = o_.max_grad_norm > 0 ? clip_grad_norm(params, o_.max_grad_norm) : gradient_norm(params);
    if (!std::isfinite(grad_norm))
      throw std::runtime_error("the gradient norm is " + std::to_string(grad_norm) + " at step " + std::to_string(state_.global_step + 1) +
                               "; stopped. The checkpoints written so far are intact.");
    optimizer_->step(lr);
    ++state_.global_step;

    const auto M = static_cast<double>(batches.size());
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
    json record = {{"step", state_.global_step}, {"epoch", state_.epoch + static_cast<double>(state_.position) / static_cast<double>(n)},
                   {"loss", loss_sum / M}};
    for (const auto& [name, value] : part_sums) record["loss_" + name] = value / M;
    record["nll_loss"] = nll_sum / M;
    record["delta"] = state_.shift.mean;
    record["grad_norm"] = grad_norm;
    record["lr"] = lr;
    record["learning_rate"] = hf_learning_rate(schedule_, state_.global_step);  // as the official log: after the scheduler's step
    for (const auto& [name, value] : metric_sums) record[name] = value / M;
    record["tokens"] = tokens;
    record["seconds"] = seconds;
    record["micro_batches"] = micro_records;
    metrics << record.dump() << "\n";
    metrics.flush();
    if (state_.global_step == 1) summary.first_loss = loss_sum / M;
    summary.last_loss = loss_sum / M;

    if (o_.logging_steps <= 1 || state_.global_step % o_.logging_steps == 0 || state_.global_step == max_steps_) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - loop_start).count();
      const double per_step = elapsed / static_cast<double>(state_.global_step - first_step);
      std::string parts;
      char part[64];
      for (const auto& [name, value] : part_sums) std::snprintf(part, sizeof part, " %s %.4f", name.c_str(), value / M), parts += part;
      char line[512];
      std::snprintf(line, sizeof line, "step %lld/%lld | loss %.4f (%s nll %.4f) | acc %.2f margin %.4f | lr %.3g | grad %.3g | %.0f tok/s | ETA %s",
                    static_cast<long long>(state_.global_step), static_cast<long long>(max_steps_), loss_sum / M, parts.c_str() + 1, nll_sum / M,
                    metric_sums["rewards/accuracies"] / M, metric_sums["rewards/margins"] / M, lr, grad_norm, tokens / seconds,
                    format_duration(per_step * static_cast<double>(max_steps_ - state_.global_step)).c_str());
      say(line);
    }
    const bool epoch_end = state_.position >= n;
    if ((o_.save_strategy == "steps" && o_.save_steps > 0 && state_.global_step % o_.save_steps == 0) ||
        (o_.save_strategy == "epoch" && epoch_end))
      save_checkpoint();
  }
  if (o_.save_strategy != "no") {
    const auto saved = checkpoints_in(o_.output_dir);
    if (saved.empty() || saved.back().first != state_.global_step) save_checkpoint();
  }
  if (o_.export_model) export_model();
  summary.steps = state_.global_step;
  summary.micro_batches = state_.micro_batches;
  summary.pairs = state_.pairs;
  summary.skipped_records = state_.skipped_records;
  summary.skipped_pairs = state_.skipped_pairs;
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto all = checkpoints_in(o_.output_dir);
  if (!all.empty()) summary.final_checkpoint = all.back().second.string();
  if (o_.export_model) summary.exported_dir = o_.output_dir;
  return summary;
}

}  // namespace

MpoTrainingSummary train_mpo(const MpoTrainingOptions& options, const std::function<void(const std::string&)>& log) {
  return Trainer(options, log).run();
}

int64_t precompute_reference_logps(const MpoTrainingOptions& options, const std::string& cache_path,
                                   const std::function<void(const std::string&)>& log) {
  return Trainer(options, log).precompute(cache_path);
}

}  // namespace ivl
