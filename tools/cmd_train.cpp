// `ivl train-mpo`: the official MPO training script's command line (internvl_chat_mpo.py with the HF
// TrainingArguments and TRL's DPOConfig) on mpo/trainer.h; `ivl ref-logps`: the reference log-probs
// of a meta file into a cache that train-mpo reads. Flags keep the official names and spelling.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "mpo/trainer.h"
#include "tools/commands.h"

namespace ivl::cli {

namespace {

namespace fs = std::filesystem;

const char* const kNoEffect = "accepted for the official scripts; changes nothing here";

std::vector<Flag> training_flags() {
  auto boolean = [](const char* name, const char* fallback, const char* help) { return Flag{name, "BOOL", fallback, help, Flag::optional, "true"}; };
  auto inert = [&](const char* name, const char* value, const char* fallback) { return Flag{name, value, fallback, kNoEffect, Flag::optional, std::string(value) == "BOOL" ? "true" : ""}; };
  return {
      // ---- model ----
      {"--model_name_or_path", "DIR", "", "the start model (published InternVL2 format); also the reference unless --ref_model", Flag::required},
      {"--ref_model", "DIR", "", "another reference model (same architecture); default: the start weights"},
      boolean("--freeze_backbone", "false", "freeze the vision tower (its drop-path stays on, as officially)"),
      boolean("--freeze_mlp", "false", "freeze the mlp1 projector"),
      boolean("--freeze_llm", "false", "freeze the language model"),
      {"--unfreeze_vit_layers", "K", "0", "vision layers [K:] trainable again (Python slice; after --freeze_backbone)"},
      {"--vision_select_layer", "N", "", "the vision hidden state fed to mlp1 (default: the model's select_layer)"},
      boolean("--unfreeze_lm_head", "false", "accepted; the official flag sets an attribute that changes nothing, so it does nothing here either"),
      boolean("--grad_checkpoint", "false", "recompute activations in backward (less memory, one more forward; same numbers)"),
      {"--drop_path_rate", "R", "0.0", "stochastic depth of the vision tower while training (seeded by --seed)"},
      {"--ps_version", "v1|v2", "", "pixel shuffle version (default: the model's)"},
      // ---- data ----
      {"--meta_path", "FILE", "", "the datasets: {name: {root, annotation, repeat_time, length, data_augment[, max_dynamic_patch]}}", Flag::required},
      {"--conv_style", "NAME", "", "the chat template (default: the model's config.json template)"},
      {"--max_seq_length", "N", "8192", "tokens per sequence; longer ones are cut (as the official truncation)"},
      {"--force_image_size", "S", "", "the tile size (default: the model's; another size would need resized position embeddings, refused)"},
      {"--down_sample_ratio", "R", "", "pixel shuffle ratio (default: the model's)"},
      boolean("--dynamic_image_size", "true", "tile each image by its aspect ratio (false: one tile)"),
      boolean("--use_thumbnail", "true", "add the whole image as a last tile when there are several"),
      {"--min_dynamic_patch", "N", "1", "fewest tiles"},
      {"--max_dynamic_patch", "N", "12", "most tiles (a dataset's meta max_dynamic_patch overrides it)"},
      {"--normalize_type", "imagenet", "imagenet", "pixel normalisation (only imagenet, InternVL2's)"},
      boolean("--pad2square", "false", "pad images to squares first (not supported: true is refused)"),
      boolean("--use_data_resampling", "false", "not supported: true is refused"),
      boolean("--group_by_length", "false", "official: read by the multi-image padding path only (see --official_multi_image_padding)"),
      boolean("--official_multi_image_padding", "false", "pad multi-image sequences to --max_seq_length as the official dataset does (changes no number, only time)"),
      boolean("--shuffle", "true", "a seeded order of the pairs per epoch; false: meta order, then file order"),
      boolean("--skip_bad_records", "false", "count and skip malformed lines and unreadable images instead of stopping"),
      // ---- objective ----
      {"--loss_type", "LIST", "sigmoid,bco_pair", "preference terms, comma-separated: sigmoid, hinge, ipo, bco_pair"},
      {"--sigmoid_loss_weight", "W", "0.8", "weight of the sigmoid (DPO) term in a list"},
      {"--bco_pair_loss_weight", "W", "0.2", "weight of the bco_pair term in a list"},
      {"--hinge_loss_weight", "W", "1.0", "weight of the hinge term in a list (ours; the official code has none)"},
      {"--ipo_loss_weight", "W", "1.0", "weight of the ipo term in a list (ours; the official code has none)"},
      {"--rpo_alpha", "A", "1", "weight of the chosen responses' NLL (0: none; the official default None means 0)"},
      {"--beta", "B", "0.1", "the DPO beta"},
      {"--label_smoothing", "E", "0", "conservative DPO: label smoothing of the sigmoid term"},
      {"--bco_shift_update", "micro-batch|step", "micro-batch", "when the BCO reward shift takes a new mean: every micro-batch (official) or once per optimizer step"},
      // ---- optimisation ----
      {"--learning_rate", "LR", "5e-05", "peak learning rate"},
      {"--weight_decay", "WD", "0.0", "AdamW weight decay (biases and LayerNorm weights exempt, as the HF Trainer)"},
      {"--adam_beta1", "B1", "0.9", "AdamW beta1"},
      {"--adam_beta2", "B2", "0.999", "AdamW beta2"},
      {"--adam_epsilon", "EPS", "1e-08", "AdamW epsilon"},
      {"--optim", "adamw_torch", "adamw_torch", "the optimizer (adamw_torch; adamw_hf and adamw_torch_fused compute the same here)"},
      {"--deepspeed", "FILE", "", "a DeepSpeed config: with an \"optimizer\" block every parameter is decayed, as ZeRO-1 runs do"},
      {"--max_grad_norm", "N", "1.0", "clip the gradient's 2-norm (0: no clipping)"},
      {"--lr_scheduler_type", "NAME", "linear", "cosine, linear, constant or constant_with_warmup"},
      {"--warmup_ratio", "R", "0.0", "warmup steps as a fraction of the run (ceil)"},
      {"--warmup_steps", "N", "0", "warmup steps (wins over --warmup_ratio)"},
      {"--per_device_train_batch_size", "P", "8", "pairs per micro-batch"},
      {"--gradient_accumulation_steps", "G", "1", "micro-batches per optimizer step"},
      {"--max_steps", "N", "-1", "optimizer steps (> 0 wins over --num_train_epochs)"},
      {"--num_train_epochs", "E", "3", "epochs over the pairs"},
      {"--seed", "N", "42", "the seed of the data order, subsampling and drop-path"},
      // ---- reference ----
      boolean("--precompute_ref_log_probs", "false", "compute every pair's reference log-probs first (into --ref_cache), then train without the reference model"),
      {"--ref_cache", "FILE", "", "a reference log-prob cache (ivl ref-logps) to read; with --precompute_ref_log_probs, where to write it (default OUTPUT/reference_logps.safetensors)"},
      // ---- outputs ----
      {"--output_dir", "DIR", "", "metrics.jsonl, checkpoint-N/ folders and the final model", Flag::required},
      boolean("--overwrite_output_dir", "false", "train into an output folder that already has checkpoints (without it such a folder is refused, unless resuming)"),
      {"--logging_steps", "N", "1", "a progress line every N steps (metrics.jsonl records every step)"},
      {"--save_strategy", "steps|epoch|no", "steps", "when to write checkpoints (one is always written at the end unless no)"},
      {"--save_steps", "N", "500", "a checkpoint every N steps"},
      {"--save_total_limit", "N", "0", "keep only the newest N checkpoints (0: all)"},
      {"--resume_from_checkpoint", "DIR|latest", "", "continue from a checkpoint of this output folder, bit for bit"},
      {"--max_shard_size", "BYTES", "5000000000", "the exported model is sharded above this size"},
      // ---- accepted, no effect here ----
      inert("--do_train", "BOOL", "true"), inert("--do_eval", "BOOL", "false"), inert("--evaluation_strategy", "S", "no"),
      inert("--use_cpu", "BOOL", "true"), inert("--bf16", "BOOL", "false"), inert("--fp16", "BOOL", "false"), inert("--tf32", "BOOL", "false"),
      inert("--dataloader_num_workers", "N", "0"), inert("--dataloader_pin_memory", "BOOL", "true"), inert("--report_to", "S", "none"),
      inert("--logging_dir", "DIR", ""), inert("--run_name", "S", ""), inert("--remove_unused_columns", "BOOL", "false"),
      inert("--use_fast_tokenizer", "BOOL", "false"), inert("--use_liger", "BOOL", "false"), inert("--min_num_frame", "N", "8"),
      inert("--max_num_frame", "N", "32"), inert("--use_backbone_lora", "N", "0"), inert("--use_llm_lora", "N", "0"),
      inert("--gradient_checkpointing", "BOOL", "false"), inert("--ddp_find_unused_parameters", "BOOL", "false"),
  };
}

// The model's config with the flags' changes, as the official script edits it before training.
InternVLChatConfig configured_model(const ParsedFlags& flags, const std::string& model_dir) {
  const std::string path = (fs::path(model_dir) / "config.json").string();
  if (!fs::exists(path)) throw std::invalid_argument("--model_name_or_path " + model_dir + " has no config.json");
  InternVLChatConfig config = InternVLChatConfig::from_file(path);
  if (flags.given("--force_image_size")) {
    const int64_t size = flags.integer<int64_t>("--force_image_size", 14);
    if (size != config.image_size)
      throw std::invalid_argument("--force_image_size " + std::to_string(size) + " differs from the model's " + std::to_string(config.image_size) +
                                  ": that needs resized position embeddings, which are not supported");
  }
  if (flags.given("--down_sample_ratio")) config.downsample_ratio = flags.real("--down_sample_ratio");
  if (flags.given("--ps_version")) {
    const std::string v = flags.text("--ps_version");
    if (v != "v1" && v != "v2") throw FlagError("--ps_version must be v1 or v2, got \"" + v + "\"");
    config.ps_version = v == "v1" ? PixelShuffleVersion::v1 : PixelShuffleVersion::v2;
  }
  if (flags.given("--vision_select_layer")) config.select_layer = flags.integer<int64_t>("--vision_select_layer", -1000);
  config.vision.drop_path_rate = flags.real("--drop_path_rate");
  if (config.vision.drop_path_rate < 0 || config.vision.drop_path_rate >= 1) throw FlagError("--drop_path_rate must be in [0, 1)");
  return config;
}

MpoTrainingOptions training_options(const ParsedFlags& flags) {
  for (const char* unsupported : {"--pad2square", "--use_data_resampling"})
    if (flags.boolean(unsupported)) throw FlagError(std::string(unsupported) + " true is not supported");
  for (const char* lora : {"--use_backbone_lora", "--use_llm_lora"})
    if (flags.integer<int64_t>(lora, 0) != 0) throw FlagError(std::string(lora) + ": LoRA is not supported; train the full model or freeze parts of it");
  if (flags.text("--normalize_type") != "imagenet") throw FlagError("--normalize_type: only imagenet (InternVL2's) is supported");
  const std::string optim = flags.text("--optim");
  if (optim != "adamw_torch" && optim != "adamw_hf" && optim != "adamw_torch_fused")
    throw FlagError("--optim " + optim + " is not supported (adamw_torch)");

  MpoTrainingOptions o;
  o.model_dir = flags.text("--model_name_or_path");
  o.ref_model_dir = flags.text("--ref_model");
  o.config = configured_model(flags, o.model_dir);
  o.meta_path = flags.text("--meta_path");
  o.encoding.template_name = flags.given("--conv_style") ? flags.text("--conv_style") : o.config.template_name;
  if (o.encoding.template_name.empty()) throw FlagError("the model's config.json names no template; give --conv_style");
  o.encoding.num_image_token = o.config.num_image_token();
  o.encoding.max_seq_length = flags.integer<int64_t>("--max_seq_length", 8);
  o.encoding.tiles.image_size = static_cast<int>(o.config.image_size);
  o.encoding.tiles.min_tiles = flags.integer<int>("--min_dynamic_patch", 1);
  o.encoding.tiles.max_tiles = flags.boolean("--dynamic_image_size") ? flags.integer<int>("--max_dynamic_patch", 1) : 1;
  if (!flags.boolean("--dynamic_image_size")) o.encoding.tiles.min_tiles = 1;
  o.encoding.tiles.use_thumbnail = flags.boolean("--use_thumbnail");
  o.encoding.official_multi_image_padding = flags.boolean("--official_multi_image_padding");
  o.encoding.group_by_length = flags.boolean("--group_by_length");
  o.shuffle = flags.boolean("--shuffle");
  o.skip_bad_records = flags.boolean("--skip_bad_records");

  o.loss.beta = flags.real("--beta");
  if (!(o.loss.beta > 0)) throw FlagError("--beta must be > 0");
  o.loss.label_smoothing = flags.real("--label_smoothing");
  if (o.loss.label_smoothing < 0 || o.loss.label_smoothing >= 0.5) throw FlagError("--label_smoothing must be in [0, 0.5)");
  o.loss.weight_sft = flags.real("--rpo_alpha");
  try {
    o.loss.terms = parse_loss_types(flags.text("--loss_type"), [&](const std::string& name) { return flags.real("--" + name + "_loss_weight"); });
  } catch (const std::exception& e) {
    throw FlagError(std::string("--loss_type: ") + e.what());
  }
  o.loss.length_normalized = flags.text("--loss_type") == "ipo";
  const std::string shift = flags.text("--bco_shift_update");
  if (shift != "micro-batch" && shift != "step") throw FlagError("--bco_shift_update must be micro-batch or step, got \"" + shift + "\"");
  o.shift_per_step = shift == "step";

  o.learning_rate = flags.real("--learning_rate");
  o.weight_decay = flags.real("--weight_decay");
  o.adam_beta1 = flags.real("--adam_beta1"), o.adam_beta2 = flags.real("--adam_beta2"), o.adam_epsilon = flags.real("--adam_epsilon");
  if (flags.given("--deepspeed")) {
    const std::string path = flags.text("--deepspeed");
    std::ifstream in(path);
    if (!in) throw FlagError("--deepspeed: cannot read " + path);
    nlohmann::json config;
    try {
      config = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw FlagError("--deepspeed " + path + " is not valid JSON: " + e.what());
    }
    o.decay_all = config.is_object() && config.contains("optimizer");
  }
  o.max_grad_norm = flags.real("--max_grad_norm");
  o.lr_scheduler_type = flags.text("--lr_scheduler_type");
  o.warmup_ratio = flags.real("--warmup_ratio");
  o.warmup_steps = flags.integer<int64_t>("--warmup_steps", 0);
  o.per_device_train_batch_size = flags.integer<int64_t>("--per_device_train_batch_size", 1);
  o.gradient_accumulation_steps = flags.integer<int64_t>("--gradient_accumulation_steps", 1);
  o.max_steps = flags.integer<int64_t>("--max_steps", -1);
  o.num_train_epochs = flags.real("--num_train_epochs");
  if (o.max_steps <= 0 && !(o.num_train_epochs > 0)) throw FlagError("needs --max_steps > 0 or --num_train_epochs > 0");
  o.freeze_backbone = flags.boolean("--freeze_backbone");
  o.freeze_mlp = flags.boolean("--freeze_mlp");
  o.freeze_llm = flags.boolean("--freeze_llm");
  o.unfreeze_vit_layers = flags.integer<int64_t>("--unfreeze_vit_layers", -1000000);
  o.seed = static_cast<uint64_t>(flags.integer<int64_t>("--seed", 0));
  o.activation_checkpointing = flags.boolean("--grad_checkpoint");

  o.precompute_ref_log_probs = flags.boolean("--precompute_ref_log_probs");
  o.ref_cache_path = flags.text("--ref_cache");
  o.output_dir = flags.text("--output_dir");
  o.logging_steps = flags.integer<int64_t>("--logging_steps", 1);
  o.save_strategy = flags.text("--save_strategy");
  if (o.save_strategy != "steps" && o.save_strategy != "epoch" && o.save_strategy != "no")
    throw FlagError("--save_strategy must be steps, epoch or no, got \"" + o.save_strategy + "\"");
  o.save_steps = flags.integer<int64_t>("--save_steps", 1);
  o.save_total_limit = flags.integer<int64_t>("--save_total_limit", 0);
  o.resume_from_checkpoint = flags.text("--resume_from_checkpoint");
  o.max_shard_bytes = static_cast<uint64_t>(flags.integer<int64_t>("--max_shard_size", 1));
  return o;
}

void print_line(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

int cmd_train_mpo(const ParsedFlags& flags) {
  const MpoTrainingOptions options = training_options(flags);
  if (options.resume_from_checkpoint.empty() && !flags.boolean("--overwrite_output_dir") && fs::exists(options.output_dir)) {
    for (const auto& entry : fs::directory_iterator(options.output_dir))
      if (entry.path().filename().string().rfind("checkpoint-", 0) == 0)
        throw FlagError("--output_dir " + options.output_dir + " already holds checkpoints; give --overwrite_output_dir to train over them, or --resume_from_checkpoint latest");
  }
  const MpoTrainingSummary summary = train_mpo(options, print_line);
  std::printf("trained %lld steps (%lld micro-batches, %lld pairs) in %.1f s; loss %.6f -> %.6f\n", static_cast<long long>(summary.steps),
              static_cast<long long>(summary.micro_batches), static_cast<long long>(summary.pairs), summary.seconds, summary.first_loss,
              summary.last_loss);
  if (summary.skipped_records || summary.skipped_pairs)
    std::printf("skipped: %lld bad records, %lld pairs without a scored token\n", static_cast<long long>(summary.skipped_records),
                static_cast<long long>(summary.skipped_pairs));
  std::printf("metrics: %s\n", (fs::path(options.output_dir) / "metrics.jsonl").c_str());
  if (!summary.final_checkpoint.empty()) std::printf("last checkpoint: %s\n", summary.final_checkpoint.c_str());
  if (!summary.exported_dir.empty()) std::printf("model: %s\n", summary.exported_dir.c_str());
  return 0;
}

int cmd_ref_logps(const ParsedFlags& flags) {
  MpoTrainingOptions options = training_options(flags);
  const std::string out = flags.text("--output");
  const int64_t pairs = precompute_reference_logps(options, out, print_line);
  std::printf("%lld pairs: %s\n", static_cast<long long>(pairs), out.c_str());
  return 0;
}

}  // namespace

std::vector<Command> train_commands() {
  FlagTable train{"train-mpo", "train with Mixed Preference Optimization on MMPR pairs (the official trainer's flags and numbers)", {}, training_flags(),
                  "Flags keep the official script's names (internvl_chat_mpo.py + HF TrainingArguments + TRL DPOConfig); booleans take\n"
                  "true/false (or True/False), and a bare boolean flag means true. Defaults follow the MPO recipe for the objective\n"
                  "(sigmoid,bco_pair 0.8/0.2, rpo_alpha 1, beta 0.1) and the HF Trainer for the rest; the template, tile size, pixel\n"
                  "shuffle and select layer default to the model's config.json (the official script overwrites them with its own\n"
                  "defaults). OUTPUT gets metrics.jsonl (one record per optimizer step), checkpoint-N/ (f32 weights, AdamW moments,\n"
                  "trainer_state.json with the data position, RNG and BCO shift) and the final model (bf16, published format)."};
  std::vector<Flag> ref_flags = training_flags();
  for (Flag& flag : ref_flags)
    if (flag.name == "--output_dir") flag.need = Flag::optional;
  ref_flags.push_back({"--output", "FILE", "", "the cache file to write (a .safetensors)", Flag::required});
  FlagTable ref{"ref-logps", "the reference log-probs of every pair of a meta file, into a cache for train-mpo --ref_cache", {}, ref_flags,
                "Takes train-mpo's flags (those that change the pairs matter: the template, tiles, max_seq_length)."};
  return {{train, cmd_train_mpo}, {ref, cmd_ref_logps}};
}

}  // namespace ivl::cli
