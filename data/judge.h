// The MMPR judge, as the official reasoning_data_pipeline/utils/accuracy_reward.py decides: the
// answer extraction of each prompt version (parse_answer), the scorers of a data file's mode
// (get_mode), the verdict (check_answer), the answer fix (fix_answer) and the bucket a sampled
// response lands in (pos / neg / format_neg, as the correctness postprocess with --answer-fix).
// Python's string semantics throughout (data/python_text.h), quirks included: see
// ../shared/fixtures/mmpr/README.md, "Quirks a reimplementation must copy".
//
// Where the official code calls math_verify or sympy's parse_latex, we run math_equivalent(), our
// own: both sides read as numbers (decimals, thousands separators, percentages, \frac, \dfrac,
// \sqrt, \pi, \boxed, $...$, a trailing unit word) and compared in double precision.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ivl {

// The CoT prompt versions of the official sampler; throws naming the valid ones for another.
enum class PromptVersion { en, zh, en_v2, zh_v2, en_r1, zh_r1 };
PromptVersion prompt_version_from(std::string_view name);

struct ParsedAnswer {
  bool ok = false;
  std::string answer_pred;  // the extracted answer (en/zh: stripped)
  std::string rationale;    // en/zh: the text before the trigger, stripped; empty for v2/r1
  // Why the format check failed: too_many_triggers, fewer_than_2_newlines, no_trigger,
  // empty_rationale, multi_line_answer (en/zh), too_short (v2), invalid_r1_format (r1).
  std::string reason;
};
ParsedAnswer parse_answer(std::string_view response, PromptVersion version);
// The content of the last `\boxed{`, brace-matched; the whole text when there is none or it is
// unbalanced (extract_answer_from_box).
std::string extract_answer_from_box(std::string_view text);

// The scorers of a data file (get_mode on its name; substrings, case-sensitive).
enum class Scorer { math_verify, vqa, relaxed, anls, mc, math, latex };
const char* scorer_name(Scorer scorer);
std::vector<Scorer> get_mode(std::string_view source_file);

// The scorers, each on its own, as the official functions compute them.
std::string vqa_normalize(std::string_view answer);  // EvalAIAnswerProcessor
double vqa_score(std::string_view pred, std::string_view gt);
bool relaxed_correctness(std::string_view target, std::string_view prediction);
double anls_value(std::string_view gt, std::string_view pred);  // levenshtein / length, as the official code
bool multi_choice_score(std::string_view pred, std::string_view gt);
bool math_score(std::string_view prediction, std::string_view target);
bool use_latex_score(std::string_view text);  // the gate of the latex scorer
size_t levenshtein(std::u32string_view a, std::u32string_view b);
// Ours, in place of math_verify (latex false: the prediction may be a sentence, whose last number
// counts) and of sympy's parse_latex (latex true: the whole text is one expression, and \frac12
// and \sqrt2 read as sympy reads them).
std::optional<double> math_value(std::string_view text, bool search_text, bool compact);
bool math_equivalent(std::string_view pred, std::string_view gt, bool latex = false);

struct Verdict {
  bool correct = false;
  bool exact_match = false;  // pred.lower() == gt.lower(): correct before any scorer
  double accuracy = 0;       // the running value after the last scorer
  std::vector<std::pair<Scorer, double>> trace;  // the running value after each scorer, in order
};
// check_answer(answer_pred, answer_gt, mode); math_verify and latex run math_equivalent().
Verdict check_answer(std::string_view pred, std::string_view gt, const std::vector<Scorer>& mode);

// fix_answer(response, answer_pred, answer_gt); throws FixAnswerError where the official raises
// (no newline left in the response; an empty prediction to replace).
struct FixAnswerError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
std::string fix_answer(std::string_view response, std::string_view pred, std::string_view gt);
// post_process(pred): the option letter of a prediction; nothing where the official raises.
std::optional<std::string> option_letter(std::string_view pred);

// Where one sampled response goes in the correctness postprocess.
enum class Bucket { pos, neg, format_neg };
const char* bucket_name(Bucket bucket);
struct Judged {
  Bucket bucket = Bucket::format_neg;
  ParsedAnswer parsed;
  std::string answer_pred;  // stored: the prediction, or "None" for a format negative
  std::string response;     // stored: answer-fixed with answer_fix (en/zh)
  std::vector<Scorer> mode;
  Verdict verdict;           // set unless a format negative
  bool fix_raised = false;   // fix_answer raised: a format negative
};
Judged judge_response(std::string_view response, std::string_view answer_gt, PromptVersion version,
                      std::string_view source_file, bool answer_fix);

}  // namespace ivl
