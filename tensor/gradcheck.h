// Finite-difference gradient checks: one registry of cases (one or more per op) that ctest and
// `ivl gradcheck` both run. Each case builds f64 inputs of awkward shapes, runs a function of them,
// and compares the backward of <f(x), w> (w random) with central differences of the same scalar.
#pragma once
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace ivl {

class Generator;

struct GradcheckCase {
  std::string op;           // the registered op this case checks (see registered_ops())
  std::string description;  // what is awkward about it: "broadcast [3,1,5] with [4,1]"
  std::function<std::vector<Tensor>(Generator&)> inputs;  // f64 inputs get requires_grad; the rest are constants
  std::function<Tensor(const std::vector<Tensor>&)> fn;
  double tolerance = 1e-6;  // max relative error; looser only with a reason
  std::string why_looser;
  double step = 1e-6;       // central-difference step
  bool needs_cuda = false;  // skipped (and reported as such) without a GPU
};

struct GradcheckResult {
  std::string op, description;
  bool skipped = false;
  bool passed = false;
  double max_rel_error = 0;  // max |analytic - numeric| / max |numeric| over the checked elements
  double tolerance = 0;
  int64_t checked_elements = 0;
  std::set<std::string> nodes;  // the op names recorded in the case's graph
  std::string error;            // an exception's message, if one was thrown
};

const std::vector<GradcheckCase>& gradcheck_cases();
GradcheckResult run_gradcheck(const GradcheckCase& c, int64_t max_elements_per_input = 96);

}  // namespace ivl
