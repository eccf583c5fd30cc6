// Learning-rate schedules as transformers 4.37.2 `get_scheduler` builds them: a LambdaLR whose lr at
// optimizer step k is learning_rate * lambda(k), with the warmup length of
// TrainingArguments.get_warmup_steps. Every formula is the Python one, operation for operation.
#pragma once
#include <cstdint>
#include <string>

namespace ivl {

enum class LrScheduleType { linear, cosine, constant, constant_with_warmup };
// The HF names (--lr_scheduler_type): "linear", "cosine", "constant", "constant_with_warmup". The
// other HF types (cosine_with_restarts, polynomial, inverse_sqrt, reduce_lr_on_plateau) and unknown
// names fail, listing the known ones.
LrScheduleType parse_lr_schedule_type(const std::string& name);
const char* lr_schedule_type_name(LrScheduleType type);

struct LrSchedule {
  LrScheduleType type = LrScheduleType::linear;  // TrainingArguments' default
  double learning_rate = 5e-5;                   // the peak (the optimizer's initial lr)
  int64_t total_steps = 0;                       // num_training_steps: optimizer steps of the whole run
  int64_t warmup_steps = 0;                      // as resolved by hf_warmup_steps
};

// TrainingArguments.get_warmup_steps: warmup_steps when > 0, else ceil(total_steps * warmup_ratio).
int64_t hf_warmup_steps(int64_t warmup_steps, double warmup_ratio, int64_t total_steps);
// The schedule of --lr_scheduler_type name --learning_rate --warmup_steps --warmup_ratio over
// total_steps optimizer steps.
LrSchedule make_lr_schedule(const std::string& name, double learning_rate, int64_t total_steps, int64_t warmup_steps = 0,
                            double warmup_ratio = 0.0);

// The lr of optimizer step `step` (0-based: the number of scheduler.step() calls before it). With
// warmup, step 0 has lr 0 (it still advances Adam's moments). Linear and cosine clamp at 0 past the
// end; "constant" ignores the warmup, as get_scheduler does.
double hf_learning_rate(const LrSchedule& schedule, int64_t step);

}  // namespace ivl
