// Every gradient-check case in the registry, and the rule that every registered op has one.
#include <cstdio>

#include "tensor/autograd.h"
#include "tensor/gradcheck.h"
#include "tensor/ops.h"
#include "tests/catch.h"

using namespace ivl;

TEST_CASE("every op's backward matches central finite differences in f64", "[gradcheck]") {
  int skipped = 0;
  for (const GradcheckCase& c : gradcheck_cases()) {
    const GradcheckResult r = run_gradcheck(c);
    INFO(c.op << ": " << c.description << " -> max rel error " << r.max_rel_error << " (bound " << r.tolerance << ") "
              << r.error);
    if (r.skipped) {
      ++skipped;
      WARN("skipped " << c.op << " (" << c.description << "): " << r.error);
      continue;
    }
    CHECK(r.passed);
    CHECK(r.checked_elements > 0);
  }
  CHECK(skipped <= 1);  // only the device copy needs a GPU
}

TEST_CASE("every registered op has a gradient check", "[gradcheck]") {
  std::set<std::string> covered;
  for (const GradcheckCase& c : gradcheck_cases()) {
    const GradcheckResult r = run_gradcheck(c);
    if (r.skipped) covered.insert(c.op);  // its node is only observable on a GPU machine
    covered.insert(r.nodes.begin(), r.nodes.end());
  }
  for (const std::string& op : registered_ops()) {
    INFO("op '" << op << "' has no case in tensor/gradcheck_cases.cpp");
    CHECK(covered.count(op) == 1);
  }
}

TEST_CASE("the harness catches a wrong backward", "[gradcheck]") {
  // x^2 + x * x.detach(): the detach hides one path (analytic 3x, true 4x); the check must fail.
  GradcheckCase wrong{"pow_scalar", "a gradient path hidden by detach",
                      [](Generator&) { return std::vector<Tensor>{Tensor::from_vector<double>({0.5, 1.5}, {2})}; },
                      [](const std::vector<Tensor>& x) { return pow(x[0], 2.0) + x[0] * x[0].detach(); }};
  const GradcheckResult r = run_gradcheck(wrong);
  CHECK_FALSE(r.passed);
  CHECK(r.max_rel_error > 0.1);
}
