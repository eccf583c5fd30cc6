// `ivl gradcheck [--op NAME] [--cases]`: runs the gradient-check registry (tensor/gradcheck.h) and
// prints one line per op (the worst of its cases), or one per case with --cases. Exit 1 on any
// failure, or when a registered op has no case.
#include <cstdio>
#include <map>

#include "tensor/autograd.h"
#include "tensor/gradcheck.h"
#include "tools/commands.h"

namespace ivl::cli {

namespace {

int cmd_gradcheck(const ParsedFlags& flags) {
  const std::string only = flags.text("--op");
  const bool per_case = flags.boolean("--cases");
  struct Summary {
    int cases = 0, skipped = 0;
    double worst = 0, bound = 0;
    bool passed = true;
    std::string note;
  };
  std::map<std::string, Summary> ops;
  for (const std::string& name : registered_ops())
    if (only.empty() || name == only) ops[name];
  if (!only.empty() && ops.empty()) throw std::invalid_argument("no registered op named '" + only + "'");

  int failures = 0;
  if (per_case) std::printf("%-30s %-62s %12s %8s  %s\n", "op", "case", "max rel err", "bound", "status");
  for (const GradcheckCase& c : gradcheck_cases()) {
    if (!only.empty() && c.op != only) continue;
    const GradcheckResult r = run_gradcheck(c);
    Summary& s = ops[c.op];
    ++s.cases;
    if (r.skipped) {
      ++s.skipped;
      s.note = r.error;
    } else {
      s.worst = std::max(s.worst, r.max_rel_error);
      s.bound = std::max(s.bound, r.tolerance);
      if (!r.passed) s.passed = false, s.note = r.error, ++failures;
      if (!c.why_looser.empty()) s.note = "bound " + std::to_string(c.tolerance) + ": " + c.why_looser;
    }
    if (per_case)
      std::printf("%-30s %-62s %12.2e %8.0e  %s%s%s\n", c.op.c_str(), c.description.c_str(), r.max_rel_error, r.tolerance,
                  r.skipped ? "SKIP" : r.passed ? "PASS" : "FAIL", r.error.empty() ? "" : "  ", r.error.c_str());
  }
  if (!per_case) {
    std::printf("%-30s %5s %12s %8s  %s\n", "op", "cases", "max rel err", "bound", "status");
    for (const auto& [name, s] : ops) {
      const char* status = s.cases == 0 ? "NO CHECK" : s.skipped == s.cases ? "SKIP" : s.passed ? "PASS" : "FAIL";
      if (s.cases == 0) ++failures;
      std::printf("%-30s %5d %12.2e %8.0e  %s%s%s\n", name.c_str(), s.cases, s.worst, s.bound, status,
                  s.note.empty() ? "" : "  ", s.note.c_str());
    }
  }
  std::printf("%s\n", failures ? "gradcheck: FAILED" : "gradcheck: all ops within bounds");
  return failures ? 1 : 0;
}

}  // namespace

Command gradcheck_command() {
  return {{"gradcheck",
           "every op's backward against central finite differences (f64)",
           {},
           {{"--op", "NAME", "", "only this op (default: every registered op)"},
            {"--cases", "", "", "one line per case instead of one per op"}},
           ""},
          cmd_gradcheck};
}

}  // namespace ivl::cli
