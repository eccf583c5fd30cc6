// The MMPR judge against ../shared/fixtures/mmpr/judge_cases.json (made by running the official
// accuracy_reward.py): extraction, mode, each deterministic scorer, the verdict, the answer fix and
// the bucket; then Python's string semantics on their own.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/judge.h"
#include "data/mmpr_prompts.h"
#include "data/python_text.h"
#include "tests/catch.h"
#include "tests/test_support.h"

using namespace ivl;

namespace {

nlohmann::json judge_cases() {
  std::ifstream in(std::string(IVL_SHARED_DIR) + "/fixtures/mmpr/judge_cases.json");
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

const char* official_mode_name(Scorer s) {
  switch (s) {
    case Scorer::math_verify: return "math_verify_score";
    case Scorer::vqa: return "vqa_score";
    case Scorer::relaxed: return "relaxed_accuracy";
    case Scorer::anls: return "anls";
    case Scorer::mc: return "mc_score";
    case Scorer::math: return "math_score";
    case Scorer::latex: return "latex_score";
  }
  return "?";
}

}  // namespace

TEST_CASE("judge: every golden case parses, scores, fixes and lands in its bucket as the official code", "[judge]") {
  const nlohmann::json cases = judge_cases().at("cases");
  REQUIRE(cases.size() == 164);
  int decided_by_sympy = 0, agreed = 0;
  for (const nlohmann::json& c : cases) {
    const std::string id = c.at("id"), response = c.at("response"), gt = c.at("answer_gt"), source = c.at("source_file");
    INFO("case " << id << ": " << response);
    const PromptVersion version = prompt_version_from(c.at("prompt_version").get<std::string>());
    CHECK(py::length(response) == c.at("response_len_codepoints").get<size_t>());
    // mode
    std::vector<std::string> mode;
    for (Scorer s : get_mode(source)) mode.push_back(official_mode_name(s));
    CHECK(mode == c.at("mode").get<std::vector<std::string>>());
    // extraction
    const nlohmann::json& parse = c.at("parse");
    const ParsedAnswer parsed = parse_answer(response, version);
    REQUIRE(parsed.ok == parse.at("ok").get<bool>());
    if (parsed.ok) {
      CHECK(parsed.answer_pred == parse.at("answer_pred").get<std::string>());
      if (!parse.at("rationale").is_null()) CHECK(parsed.rationale == parse.at("rationale").get<std::string>());
    } else {
      CHECK(parsed.reason == parse.at("reason").get<std::string>());
    }
    // the scorers on their own, and the verdict
    if (parsed.ok) {
      const std::string& pred = parsed.answer_pred;
      const nlohmann::json& scores = c.at("scores");
      if (scores.contains("vqa")) {
        CHECK(vqa_score(pred, gt) == scores.at("vqa").get<double>());
        CHECK(vqa_normalize(pred) == scores.at("vqa_detail").at("pred_normalized").get<std::string>());
        CHECK(vqa_normalize(gt) == scores.at("vqa_detail").at("gt_normalized").get<std::string>());
      }
      if (scores.contains("relaxed")) CHECK(relaxed_correctness(gt, pred) == (scores.at("relaxed").get<int>() == 1));
      if (scores.contains("anls")) CHECK(anls_value(gt, pred) == scores.at("anls").get<double>());
      if (scores.contains("mc")) CHECK(multi_choice_score(pred, gt) == (scores.at("mc").get<int>() == 1));
      if (scores.contains("math")) CHECK(math_score(pred, gt) == (scores.at("math").get<int>() == 1));
      if (scores.contains("latex_gate"))
        CHECK((use_latex_score(pred) || use_latex_score(gt)) == scores.at("latex_gate").get<bool>());
      const Verdict verdict = check_answer(pred, gt, get_mode(source));
      CHECK(verdict.exact_match == c.at("exact_match").get<bool>());
      const bool correct = c.at("correct").get<int>() == 1;
      const bool without = c.at("correct_without_math_verify_and_latex").get<int>() == 1;
      if (c.at("decided_only_by").is_null()) {
        CHECK(verdict.correct == correct);
      } else {  // decided by math_verify or sympy: ours may agree, or fall back to the verdict without them
        ++decided_by_sympy;
        agreed += verdict.correct == correct;
        CHECK((verdict.correct == correct || verdict.correct == without));
      }
    }
    // the answer fix (en/zh) and the stored item
    const nlohmann::json& fix = c.at("answer_fix");
    if (parsed.ok && fix.at("applied").get<bool>()) {
      if (!fix.at("raised").is_null()) CHECK_THROWS_AS(fix_answer(response, parsed.answer_pred, gt), FixAnswerError);
      else CHECK(fix_answer(response, parsed.answer_pred, gt) == fix.at("fixed_response").get<std::string>());
    }
    const Judged judged = judge_response(response, gt, version, source, true);
    const nlohmann::json& pipeline = c.at("pipeline");
    const std::string bucket = pipeline.at("bucket");
    if (c.at("decided_only_by").is_null()) CHECK(bucket_name(judged.bucket) == bucket);
    CHECK(judged.answer_pred == pipeline.at("stored_answer_pred").get<std::string>());
    CHECK(judged.response == pipeline.at("stored_response").get<std::string>());
  }
  // Where only math_verify or sympy made a response correct, how often our scorer agrees.
  REQUIRE(decided_by_sympy == 26);
  WARN("math_equivalent agrees with math_verify/sympy on " << agreed << " of the " << decided_by_sympy
                                                           << " cases only they decide");
  CHECK(agreed >= 20);
}

TEST_CASE("judge: Python's strip, split, case mappings and float()", "[judge]") {
  CHECK(py::strip("\u3000 a b\u00a0\n") == "a b");
  CHECK(py::split(" a\u2003b  c ") == std::vector<std::string>{"a", "b", "c"});
  CHECK(py::upper("stra\u00dfe") == "STRASSE");
  CHECK(py::length(py::upper("\ufb01")) == 2);
  CHECK(py::lower("\u0130") == "i\u0307");
  CHECK(py::lower("\u039f\u0394\u039f\u03a3") == "\u03bf\u03b4\u03bf\u03c2");  // final sigma
  CHECK(py::lower("\u03a3\u0391") == "\u03c3\u03b1");
  CHECK(py::to_float("1_000") == 1000.0);
  CHECK(py::to_float(" .5 ") == 0.5);
  CHECK(py::to_float("1e3") == 1000.0);
  CHECK(py::to_float("-Infinity") == -HUGE_VAL);
  CHECK(std::isnan(*py::to_float("nan")));
  CHECK(py::to_float("\u0663") == 3.0);  // ARABIC-INDIC DIGIT THREE
  CHECK(py::to_float("1e400") == HUGE_VAL);
  for (const char* bad : {"", "1__0", "_1", "1_", "1e", ".", "\u22125", "1,000", "0x10", "5."}) {
    INFO(bad);
    if (std::string(bad) == "5.") CHECK(py::to_float(bad) == 5.0);
    else CHECK(!py::to_float(bad));
  }
  CHECK(py::count("aaaa", "aa") == 2);
  CHECK(py::count("ab", "") == 3);
  CHECK_THROWS_WITH(prompt_version_from("fr"), HasSubstr("en, zh, en_v2"));
}

TEST_CASE("judge: our math-equivalence scorer reads numbers, fractions, roots and boxes", "[judge]") {
  CHECK(math_equivalent("\\frac{1}{2}", "0.5"));
  CHECK(math_equivalent("\\dfrac{3}{4}", "0.75"));
  CHECK(math_equivalent("2\\sqrt{2}", "\\sqrt{8}"));
  CHECK(math_equivalent("\\frac12", "0.5", true));  // sympy reads it; math_verify does not
  CHECK(!math_equivalent("\\frac12", "0.5"));
  CHECK(math_equivalent("30,594", "30594"));
  CHECK(math_equivalent("45%", "0.45"));
  CHECK(math_equivalent("$2\\pi$", "6.283185307179586"));
  CHECK(math_equivalent("x = 5", "5"));
  CHECK(math_equivalent("12\\text{ cm}", "12"));
  CHECK(math_equivalent("The answer is \\boxed{7}.", "7"));
  CHECK(!math_equivalent("15", "5"));
  CHECK(!math_equivalent("1/3", "0.33"));
  CHECK(!math_equivalent("blue", "5"));
  CHECK(!math_equivalent("5", "blue"));
}

TEST_CASE("ivl judge adds the verdict to each record and names a bad line", "[judge][cli]") {
  TemporaryDirectory dir("ivl_judge");
  dir.write("chartqa_demo.jsonl",
            "{\"response\": \"The bar for 2019 reads 41.\\nIt is the tallest.\\nFinal answer: 41\", \"answer\": 40}\n"
            "{\"response\": \"no trigger here\", \"answer\": \"B\", \"id\": 7}\n"
            "{\"response\": \"The froglet.\\nIt has legs.\\n\\nFinal answer: **B**\", \"answer\": \"B\", \"source\": \"ai2d_en.jsonl\"}\n");
  const std::string binary = IVL_BINARY;
  const auto [log, code] = run_command("'" + binary + "' judge --input '" + dir.file("chartqa_demo.jsonl") + "' --output '" +
                                       dir.file("out.jsonl") + "'");
  INFO(log);
  REQUIRE(code == 0);
  CHECK_THAT(log, HasSubstr("3 records judged: 2 parsed, 1 correct; pos 1, neg 1, format_neg 1"));
  std::ifstream in(dir.file("out.jsonl"));
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  REQUIRE(out.size() == 3);
  // chartqa (from the file name): relaxed accuracy, 41 is within 5% of 40
  CHECK(out[0].at("mode") == nlohmann::json::array({"relaxed"}));
  CHECK(out[0].at("answer_pred") == "41");
  CHECK(out[0].at("correct") == 1);
  CHECK(out[0].at("bucket") == "pos");
  CHECK(out[1].at("format_error") == "fewer_than_2_newlines");
  CHECK(out[1].at("id") == 7);  // other keys pass through
  CHECK(out[2].at("answer_pred") == "**B**");  // judged wrong, as the official code does
  CHECK(out[2].at("correct") == 0);
  CHECK(out[2].at("fixed_response") == "The froglet.\nIt has legs.\n\nFinal answer: B");  // and its text fixed
  dir.write("bad.jsonl", "{\"response\": \"a\\nb\\nFinal answer: 1\", \"answer\": 1}\n{\"answer\": 2}\n"
                         "{\"response\": \"x\", \"answer\": 1, \"prompt_version\": \"fr\"}\n");
  const auto [bad, bad_code] = run_command("'" + binary + "' judge --input '" + dir.file("bad.jsonl") + "' --output '" +
                                           dir.file("bad_out.jsonl") + "'");
  CHECK(bad_code == 1);
  CHECK_THAT(bad, HasSubstr("bad.jsonl:2: a record needs a \"response\" string"));
  CHECK(!std::filesystem::exists(dir.file("bad_out.jsonl")));  // nothing half-written
  const auto [skipped, skipped_code] = run_command("'" + binary + "' judge --skip-bad-records --input '" + dir.file("bad.jsonl") + "'");
  CHECK(skipped_code == 0);
  CHECK_THAT(skipped, HasSubstr("unknown prompt version 'fr'"));
  CHECK_THAT(skipped, HasSubstr("1 records judged (2 bad ones skipped)"));
}

TEST_CASE("sampling prompts: the official suffix stripping, CoT templates and <image> rules", "[judge]") {
  std::ifstream in(std::string(IVL_SHARED_DIR) + "/fixtures/mmpr/prompts.json");
  REQUIRE(in);
  const nlohmann::json prompts = nlohmann::json::parse(in);
  for (const auto& [name, t] : prompts.at("templates").items())
    CHECK(cot_template(prompt_version_from(name)) == t.at("template").get<std::string>());
  for (const nlohmann::json& e : prompts.at("examples")) {
    INFO(e.at("name").get<std::string>());
    const nlohmann::json& item = e.at("input_item");
    const bool has_image = item.contains("image") && !item.at("image").empty();
    const SamplingPrompt p = sampling_prompt(item.at("question").get<std::string>(),
                                             prompt_version_from(e.at("prompt_version").get<std::string>()), has_image);
    CHECK(p.stored_question == e.at("stored_question").get<std::string>());
    CHECK(py::replace(p.model_input, "<image>", "<IMAGE_TOKEN>") == e.at("model_input_with_lmdeploy_image_token").get<std::string>());
  }
  // Two suffixes: we strip both, one of the two outcomes the official set order gives.
  const nlohmann::json& twice = prompts.at("order_dependent_example");
  const SamplingPrompt p = sampling_prompt(twice.at("input_item").at("question").get<std::string>(), PromptVersion::en, true);
  CHECK(twice.at("stored_question_by_PYTHONHASHSEED").contains(p.stored_question));
  CHECK(version_for_path(PromptVersion::en_v2, "prompts/geo_zh_train.jsonl") == PromptVersion::zh_v2);
  CHECK(version_for_path(PromptVersion::en, "prompts/geo_en.jsonl") == PromptVersion::en);
}
