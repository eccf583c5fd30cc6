// AdamW, the weight-decay groups and gradient clipping (see optimizer.h). The loops are written per
// element in the order of torch's CPU kernels, so that a run can be compared with the official one
// bit for bit wherever torch's own roundings allow.
#include "nn/optimizer.h"

#include <cmath>
#include <vector>

#include "tensor/ops.h"
#include "tensor/parallel.h"

namespace ivl {

bool hf_weight_decay_applies(const Parameter& parameter) {
  return parameter.module() != ParameterModule::layer_norm && parameter.name().find("bias") == std::string::npos;
}

ParameterGroups hf_parameter_groups(const ParameterSet& params, bool decay_all) {
  ParameterGroups groups;
  for (const Parameter& p : params.parameters()) {
    if (!p.present() || !p.trainable()) continue;
    (decay_all || hf_weight_decay_applies(p) ? groups.decayed : groups.not_decayed).push_back(p.name());
  }
  return groups;
}

// The buffers the optimizer and clipping read: on the CPU, f32 or f64, gradients allocated.
static void check_buffers(const ParameterSet& params, const char* what) {
  const Tensor& flat = params.flat();
  if (!flat.defined()) fail(std::string(what) + ": the parameters have not been loaded or allocated");
  if (!params.flat_grad().defined())
    fail(std::string(what) + ": the parameters have no gradient buffer (call set_requires_grad(true) first)");
  if (flat.device() != Device::cpu) fail(std::string(what) + ": only CPU parameter buffers are supported, found " + flat.str());
  if (flat.dtype() != DType::f32 && flat.dtype() != DType::f64)
    fail(std::string(what) + ": parameters must be f32 or f64, found " + flat.str());
}

AdamW::AdamW(ParameterSet& params, const AdamWOptions& options) : params_(&params), options_(options) {
  if (!(options.beta1 >= 0 && options.beta1 < 1) || !(options.beta2 >= 0 && options.beta2 < 1))
    fail("AdamW: betas must lie in [0, 1), found (" + std::to_string(options.beta1) + ", " + std::to_string(options.beta2) + ")");
  if (!(options.eps >= 0)) fail("AdamW: eps must be >= 0, found " + std::to_string(options.eps));
  if (!(options.weight_decay >= 0)) fail("AdamW: weight_decay must be >= 0, found " + std::to_string(options.weight_decay));
  const Tensor& flat = params.flat();
  if (!flat.defined()) fail("AdamW: the parameters have not been loaded or allocated");
  exp_avg_ = Tensor::zeros(flat.shape(), flat.dtype(), flat.device());
  exp_avg_sq_ = Tensor::zeros(flat.shape(), flat.dtype(), flat.device());
}

void AdamW::load_state(const Tensor& exp_avg, const Tensor& exp_avg_sq, int64_t steps) {
  for (const auto& [name, t] : {std::pair{"exp_avg", &exp_avg}, std::pair{"exp_avg_sq", &exp_avg_sq}})
    if (!t->defined() || t->shape() != exp_avg_.shape())
      fail(std::string("AdamW::load_state: ") + name + " must have the shape of the flat parameters " + shape_str(exp_avg_.shape()) +
           ", found " + (t->defined() ? t->str() : std::string("an undefined tensor")));
  if (steps < 0) fail("AdamW::load_state: the step count must be >= 0, found " + std::to_string(steps));
  copy_into(exp_avg_, exp_avg);
  copy_into(exp_avg_sq_, exp_avg_sq);
  steps_ = steps;
}

namespace {

// The per-step scalars of _single_tensor_adam, in double (Python floats), rounded once to T where a
// CPU kernel reads them.
template <class T>
struct AdamScalars {
  T lerp_weight, beta2, one_minus_beta2, bias_correction2_sqrt, eps, minus_step_size;
};

// One range of elements. torch's lerp_ kernel computes fmadd(weight, end - start, start) for
// |weight| < 0.5, else fmadd(weight - 1, end - start, end); addcmul_'s `v + (s*g)*g` compiles to an
// fma; addcdiv_ is `p + (s*m)/d`.
template <class T>
struct AdamRange {
  T* p;
  const T* g;
  T* m;
  T* v;
  T decay_factor;
  bool decay, small_weight;
  T lerp_coefficient;
  AdamScalars<T> s;
};

// The loop, with everything it reads in locals so that it vectorizes (stores through p, m, v could
// otherwise alias the scalars).
template <class T>
[[gnu::always_inline]] inline void adamw_elements(const AdamRange<T>& r, int64_t begin, int64_t end) {
  T* __restrict p = r.p;
  const T* __restrict g = r.g;
  T* __restrict m = r.m;
  T* __restrict v = r.v;
  const T decay_factor = r.decay_factor, lerp_coefficient = r.lerp_coefficient, one_minus_beta2 = r.s.one_minus_beta2,
          beta2 = r.s.beta2, bias_correction2_sqrt = r.s.bias_correction2_sqrt, eps = r.s.eps,
          minus_step_size = r.s.minus_step_size;
  const bool decay = r.decay, small_weight = r.small_weight;
  for (int64_t i = begin; i < end; ++i) {
    const T pi = decay ? p[i] * decay_factor : p[i];
    const T mi = std::fma(lerp_coefficient, g[i] - m[i], small_weight ? m[i] : g[i]);
    const T vi = std::fma(one_minus_beta2 * g[i], g[i], v[i] * beta2);
    const T denom = std::sqrt(vi) / bias_correction2_sqrt + eps;
    m[i] = mi, v[i] = vi;
    p[i] = pi + (minus_step_size * mi) / denom;
  }
}

// The same loop compiled twice: with FMA instructions (and AVX2 vectors) for the CPUs that have
// them, and for any x86-64; both give the same bits (an fma rounds once either way).
#if defined(__x86_64__) && defined(__GNUC__)
template <class T>
[[gnu::target("avx2,fma")]] void adamw_elements_fma(const AdamRange<T>& r, int64_t begin, int64_t end) {
  adamw_elements<T>(r, begin, end);
}
#endif

template <class T>
void adamw_range(const AdamRange<T>& r, int64_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool has_fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const bool fma = has_fma;
#else
  constexpr bool fma = false;
#endif
  parallel_for(n, kElementwiseGrain, [&r, fma](int64_t begin, int64_t end) {
#if defined(__x86_64__) && defined(__GNUC__)
    if (fma) return adamw_elements_fma<T>(r, begin, end);
#endif
    adamw_elements<T>(r, begin, end);
  });
}

template <class T>
void adamw_step(const ParameterSet& params, const AdamW& adam, const Tensor& exp_avg, const Tensor& exp_avg_sq, int64_t steps,
                double lr) {
  const AdamWOptions& o = adam.options();
  const double step = static_cast<double>(steps);
  // As torch: bias_correction1 = 1 - beta1**step, step_size = lr / bias_correction1,
  // bias_correction2_sqrt = (1 - beta2**step) ** 0.5, all Python floats.
  const double bias_correction1 = 1 - std::pow(o.beta1, step), bias_correction2 = 1 - std::pow(o.beta2, step);
  const double step_size = lr / bias_correction1;
  const AdamScalars<T> s{static_cast<T>(1 - o.beta1), static_cast<T>(o.beta2),       static_cast<T>(1 - o.beta2),
                         static_cast<T>(std::pow(bias_correction2, 0.5)), static_cast<T>(o.eps), static_cast<T>(-step_size)};
  T* const p = params.flat().data<T>();
  const T* const g = params.flat_grad().data<T>();
  T* const m = exp_avg.data<T>();
  T* const v = exp_avg_sq.data<T>();
  for (const Parameter& parameter : params.parameters()) {
    if (!parameter.present() || !parameter.trainable()) continue;
    const double weight_decay = adam.decays(parameter) ? o.weight_decay : 0.0;
    const int64_t at = parameter.offset(), n = shape_numel(parameter.shape());
    // torch skips the multiplication when the group's weight_decay is 0 (the same numbers as *1).
    const bool small_weight = std::abs(s.lerp_weight) < T(0.5);
    adamw_range<T>({p + at, g + at, m + at, v + at, static_cast<T>(1 - lr * weight_decay), weight_decay != 0, small_weight,
                    small_weight ? s.lerp_weight : s.lerp_weight - T(1), s},
                   n);
  }
}

}  // namespace

void AdamW::step(double lr) {
  check_buffers(*params_, "AdamW::step");
  if (params_->flat().shape() != exp_avg_.shape() || params_->flat().dtype() != exp_avg_.dtype())
    fail("AdamW::step: the parameters were reallocated (" + params_->flat().str() + ") since the optimizer was made for " +
         exp_avg_.str());
  if (!std::isfinite(lr) || lr < 0) fail("AdamW::step: the learning rate must be finite and >= 0, found " + std::to_string(lr));
  ++steps_;
  if (exp_avg_.dtype() == DType::f32) adamw_step<float>(*params_, *this, exp_avg_, exp_avg_sq_, steps_, lr);
  else adamw_step<double>(*params_, *this, exp_avg_, exp_avg_sq_, steps_, lr);
}

namespace {

// Each tensor's norm: the exact sum of squares in double (torch accumulates in the dtype; the two
// agree to a few units in the last place), rounded to T as torch's per-tensor norm is.
template <class T>
double total_norm(const ParameterSet& params) {
  const T* const g = params.flat_grad().data<T>();
  std::vector<const Parameter*> trainable;
  for (const Parameter& parameter : params.parameters())
    if (parameter.present() && parameter.trainable()) trainable.push_back(&parameter);
  // One parameter per task (each summed in order), combined in parameter order: the same bits on any
  // number of threads.
  std::vector<double> norms(trainable.size());
  parallel_for(static_cast<int64_t>(trainable.size()), 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const Parameter& parameter = *trainable[static_cast<size_t>(k)];
      const T* const x = g + parameter.offset();
      double sum = 0;
      for (int64_t i = 0, n = shape_numel(parameter.shape()); i < n; ++i) sum += static_cast<double>(x[i]) * static_cast<double>(x[i]);
      norms[static_cast<size_t>(k)] = static_cast<double>(static_cast<T>(std::sqrt(sum)));
    }
  });
  double sum_of_squared_norms = 0;
  for (const double norm : norms) sum_of_squared_norms += norm * norm;
  return static_cast<double>(static_cast<T>(std::sqrt(sum_of_squared_norms)));
}

template <class T>
void scale_gradients(const ParameterSet& params, T coefficient) {
  T* const g = params.flat_grad().data<T>();
  for (const Parameter& parameter : params.parameters()) {
    if (!parameter.present() || !parameter.trainable()) continue;
    T* const x = g + parameter.offset();
    parallel_for(shape_numel(parameter.shape()), kElementwiseGrain, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) x[i] = x[i] * coefficient;
    });
  }
}

template <class T>
double clip(ParameterSet& params, double max_norm) {
  const double total = total_norm<T>(params);
  if (!std::isfinite(total)) return total;
  const T coefficient = (T(1) / (static_cast<T>(total) + static_cast<T>(1e-6))) * static_cast<T>(max_norm);
  if (coefficient < T(1)) scale_gradients<T>(params, coefficient);
  return total;
}

}  // namespace

double gradient_norm(const ParameterSet& params) {
  check_buffers(params, "gradient_norm");
  return params.flat().dtype() == DType::f32 ? total_norm<float>(params) : total_norm<double>(params);
}

double clip_grad_norm(ParameterSet& params, double max_norm) {
  check_buffers(params, "clip_grad_norm");
  if (!(max_norm > 0) || !std::isfinite(max_norm))
    fail("clip_grad_norm: max_norm must be finite and > 0, found " + std::to_string(max_norm) +
         " (the HF Trainer does not clip at all when max_grad_norm <= 0)");
  return params.flat().dtype() == DType::f32 ? clip<float>(params, max_norm) : clip<double>(params, max_norm);
}

}  // namespace ivl
