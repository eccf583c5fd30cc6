// The MPO trainer: the official InternVL MPO run (MultimodalDPOTrainer on TRL 0.9.6 inside the HF
// Trainer of transformers 4.37.2) on the CPU. Pairs from an MMPR meta file, micro-batches of
// per_device_train_batch_size pairs, gradient accumulation, the MPO step (mpo/step.h), HF clipping,
// AdamW with the HF parameter groups and LR schedule, metrics.jsonl, checkpoints with exact resume,
// and the trained model exported in the published format.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "internvl/internvl_chat.h"
#include "mpo/pairs.h"

namespace ivl {

struct MpoTrainingOptions {
  // Model and data.
  std::string model_dir;           // --model_name_or_path: the policy's start and (by default) the reference
  std::string ref_model_dir;       // --ref_model: another reference; "" = the start weights
  InternVLChatConfig config;       // the model's config.json with the flags' changes applied
  std::string meta_path;           // --meta_path
  PairEncoding encoding;           // template, tiles, max_seq_length
  bool shuffle = true;             // a seeded permutation of the pairs per epoch; false: meta order, file order
  bool skip_bad_records = false;   // count and skip bad lines and images instead of stopping

  // Objective.
  MpoConfig loss;
  // The BCO shift as the official trainer keeps it, one update per micro-batch; or one update per
  // optimizer step with the mean reward of all its micro-batches (every micro-batch then sees the
  // same delta, so that 1 x 4 pairs and 4 x 1 pair give the same update; costs one gradient-free
  // policy forward per micro-batch when accumulating).
  bool shift_per_step = false;

  // Optimisation (HF TrainingArguments names).
  double learning_rate = 5e-5, weight_decay = 0, adam_beta1 = 0.9, adam_beta2 = 0.999, adam_epsilon = 1e-8;
  bool decay_all = false;          // a DeepSpeed optimizer: one parameter list, every parameter decayed
  double max_grad_norm = 1.0;      // <= 0: no clipping
  std::string lr_scheduler_type = "linear";
  double warmup_ratio = 0;
  int64_t warmup_steps = 0;
  int64_t per_device_train_batch_size = 8, gradient_accumulation_steps = 1;
  int64_t max_steps = -1;          // > 0 wins over num_train_epochs
  double num_train_epochs = 3;
  bool freeze_backbone = false, freeze_mlp = false, freeze_llm = false;
  int64_t unfreeze_vit_layers = 0;
  uint64_t seed = 42;
  bool activation_checkpointing = false;  // --grad_checkpoint: recompute activations in backward

  // Reference log-probs.
  bool precompute_ref_log_probs = false;  // compute them all first into ref_cache_path, then train without the reference model
  std::string ref_cache_path;             // a cache to read (or, with precompute, to write); "" = OUTPUT/reference_logps.safetensors

  // Outputs.
  std::string output_dir;
  int64_t logging_steps = 1;              // the progress line every N steps (metrics.jsonl gets every step)
  std::string save_strategy = "steps";    // steps | epoch | no
  int64_t save_steps = 500, save_total_limit = 0;
  std::string resume_from_checkpoint;     // a checkpoint-N folder, "latest", or ""
  bool export_model = true;               // write the final model into output_dir
  uint64_t max_shard_bytes = 5000000000;  // save_pretrained's 5GB
};

struct MpoTrainingSummary {
  int64_t steps = 0, micro_batches = 0, pairs = 0, skipped_records = 0, skipped_pairs = 0;
  double first_loss = 0, last_loss = 0, seconds = 0;
  std::string final_checkpoint, exported_dir;
};

// Runs the whole training. Progress goes to `log` (one line per call); errors are exceptions
// (std::invalid_argument for bad input, std::runtime_error for a diverged run, which names the step
// and the pairs; the checkpoints already written stay).
MpoTrainingSummary train_mpo(const MpoTrainingOptions& options, const std::function<void(const std::string&)>& log);

// Precomputes the reference log-probs of every pair of the meta file into `cache_path` (what
// --precompute_ref_log_probs does before training, and `ivl ref-logps`). Returns the pairs written.
int64_t precompute_reference_logps(const MpoTrainingOptions& options, const std::string& cache_path,
                                   const std::function<void(const std::string&)>& log);

// The trainer's pair order of an epoch: 0..n-1, or a permutation drawn from (seed, epoch).
std::vector<int64_t> epoch_order(int64_t n, bool shuffle, uint64_t seed, int64_t epoch);

}  // namespace ivl
