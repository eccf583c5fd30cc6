// The lr lambdas of transformers/optimization.py (4.37.2), in double as Python computes them.
#include "nn/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "tensor/tensor.h"

namespace ivl {

LrScheduleType parse_lr_schedule_type(const std::string& name) {
  if (name == "linear") return LrScheduleType::linear;
  if (name == "cosine") return LrScheduleType::cosine;
  if (name == "constant") return LrScheduleType::constant;
  if (name == "constant_with_warmup") return LrScheduleType::constant_with_warmup;
  const char* known = "linear, cosine, constant, constant_with_warmup";
  for (const char* other : {"cosine_with_restarts", "polynomial", "inverse_sqrt", "reduce_lr_on_plateau"})
    if (name == other) fail("lr_scheduler_type '" + name + "' is a transformers schedule that is not implemented here; known: " + known);
  fail("unknown lr_scheduler_type '" + name + "'; known: " + known);
}

const char* lr_schedule_type_name(LrScheduleType type) {
  switch (type) {
    case LrScheduleType::linear: return "linear";
    case LrScheduleType::cosine: return "cosine";
    case LrScheduleType::constant: return "constant";
    case LrScheduleType::constant_with_warmup: return "constant_with_warmup";
  }
  return "?";
}

int64_t hf_warmup_steps(int64_t warmup_steps, double warmup_ratio, int64_t total_steps) {
  if (warmup_steps < 0) fail("warmup_steps must be >= 0, found " + std::to_string(warmup_steps));
  if (!(warmup_ratio >= 0 && warmup_ratio <= 1)) fail("warmup_ratio must lie in [0, 1], found " + std::to_string(warmup_ratio));
  if (warmup_steps > 0) return warmup_steps;
  return static_cast<int64_t>(std::ceil(static_cast<double>(total_steps) * warmup_ratio));
}

LrSchedule make_lr_schedule(const std::string& name, double learning_rate, int64_t total_steps, int64_t warmup_steps,
                            double warmup_ratio) {
  if (total_steps <= 0) fail("make_lr_schedule: total_steps must be > 0, found " + std::to_string(total_steps));
  if (!std::isfinite(learning_rate) || learning_rate < 0)
    fail("make_lr_schedule: learning_rate must be finite and >= 0, found " + std::to_string(learning_rate));
  return {parse_lr_schedule_type(name), learning_rate, total_steps, hf_warmup_steps(warmup_steps, warmup_ratio, total_steps)};
}

// The LambdaLR factor of each schedule; `max(1, ...)` guards are Python's.
static double lr_lambda(const LrSchedule& s, int64_t step) {
  const int64_t W = s.warmup_steps, N = s.total_steps;
  const auto d = [](int64_t x) { return static_cast<double>(x); };
  if (s.type == LrScheduleType::constant) return 1.0;
  if (step < W) return d(step) / d(std::max<int64_t>(1, W));  // _get_*_lr_lambda's warmup branch
  switch (s.type) {
    case LrScheduleType::constant_with_warmup: return 1.0;
    case LrScheduleType::linear: return std::max(0.0, d(N - step) / d(std::max<int64_t>(1, N - W)));
    case LrScheduleType::cosine: {
      const double num_cycles = 0.5;  // get_scheduler passes none, so the default
      const double progress = d(step - W) / d(std::max<int64_t>(1, N - W));
      return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * num_cycles * 2.0 * progress)));
    }
    case LrScheduleType::constant: break;
  }
  return 1.0;
}

double hf_learning_rate(const LrSchedule& schedule, int64_t step) {
  if (step < 0) fail("hf_learning_rate: step must be >= 0, found " + std::to_string(step));
  return schedule.learning_rate * lr_lambda(schedule, step);
}

}  // namespace ivl
