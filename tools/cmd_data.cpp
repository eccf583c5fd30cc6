// `ivl judge`: the official MMPR judge on JSONL records {response, answer, prompt_version, source}
// (data/judge.h): each record out with its extracted answer (or format error), mode, verdict,
// answer-fixed response and bucket, and counts at the end.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "data/judge.h"
#include "tools/commands.h"

namespace ivl::cli {

namespace {

namespace fs = std::filesystem;

// Python's repr of a float: the shortest digits that read back, fixed notation for exponents in
// [-4, 16), else d.ddde+XX.
std::string python_float(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buffer[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buffer, sizeof buffer, "%.*e", precision - 1, v);
    if (std::strtod(buffer, nullptr) == v) break;
  }
  const std::string e = buffer;
  const size_t at = e.find('e');
  std::string digits = e.substr(0, at);
  const int exponent = std::stoi(e.substr(at + 1));
  const bool negative = digits[0] == '-';
  if (negative) digits.erase(0, 1);
  digits.erase(std::remove(digits.begin(), digits.end(), '.'), digits.end());
  std::string out;
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out.append("0.").append(static_cast<size_t>(-exponent - 1), '0').append(digits);
    } else {
      const auto point = static_cast<size_t>(exponent) + 1;
      if (digits.size() <= point) out.append(digits).append(point - digits.size(), '0').append(".0");
      else out.append(digits, 0, point).append(".").append(digits, point);
    }
  } else {
    out.append(digits, 0, 1);
    if (digits.size() > 1) out.append(".").append(digits, 1);
    char exp[16];
    std::snprintf(exp, sizeof exp, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += exp;
  }
  if (negative) out.insert(0, 1, '-');
  return out;
}

// str(value) in Python for a JSON value (the official code str()-s the ground truth).
std::string python_str(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_boolean()) return value.get<bool>() ? "True" : "False";
  if (value.is_null()) return "None";
  if (value.is_number_integer() || value.is_number_unsigned()) return value.dump();
  if (value.is_number_float()) return python_float(value.get<double>());
  if (value.is_array()) {
    std::string out = "[";
    for (size_t i = 0; i < value.size(); ++i) {
      const nlohmann::json& v = value[i];
      if (i > 0) out += ", ";
      if (v.is_string()) out.append("'").append(v.get<std::string>()).append("'");
      else out += python_str(v);
    }
    return out + "]";
  }
  return value.dump();
}

int cmd_judge(const ParsedFlags& flags) {
  const std::string input = flags.text("--input"), output = flags.text("--output", "");
  const bool skip_bad = flags.boolean("--skip-bad-records");
  std::ifstream in(input);
  if (!in) throw std::invalid_argument("--input: cannot open '" + input + "'");
  const std::string default_source = fs::path(input).filename().string();
  std::string out_text, line;
  size_t records = 0, skipped = 0, parsed = 0, correct = 0, buckets[3] = {0, 0, 0};
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    const std::string where = input + ":" + std::to_string(number);
    nlohmann::json record;
    try {
      record = nlohmann::json::parse(line);
      if (!record.is_object()) throw std::invalid_argument("a record must be a JSON object");
      if (!record.contains("response") || !record.at("response").is_string())
        throw std::invalid_argument("a record needs a \"response\" string");
      if (!record.contains("answer")) throw std::invalid_argument("a record needs an \"answer\"");
      const std::string version_name = record.value("prompt_version", std::string("en"));
      const PromptVersion version = prompt_version_from(version_name);
      const std::string source = record.contains("source") ? record.at("source").get<std::string>() : default_source;
      const Judged j = judge_response(record.at("response").get<std::string>(), python_str(record.at("answer")), version, source, true);
      nlohmann::json mode = nlohmann::json::array();
      for (Scorer s : j.mode) mode.push_back(scorer_name(s));
      record["mode"] = mode;
      if (!j.parsed.ok) {
        record["format_error"] = j.parsed.reason;
      } else {
        ++parsed;
        record["answer_pred"] = j.parsed.answer_pred;
        if (j.fix_raised) {
          record["format_error"] = "fix_answer raised (no newline left in the response)";
        } else {
          record["correct"] = j.verdict.correct ? 1 : 0;
          correct += j.verdict.correct;
          if (version == PromptVersion::en || version == PromptVersion::zh) record["fixed_response"] = j.response;
        }
      }
      record["bucket"] = bucket_name(j.bucket);
      ++buckets[static_cast<int>(j.bucket)];
    } catch (const std::exception& e) {
      if (!skip_bad) throw std::invalid_argument(where + ": " + e.what());
      std::fprintf(stderr, "skipped %s: %s\n", where.c_str(), e.what());
      ++skipped;
      continue;
    }
    ++records;
    out_text += record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  if (output.empty()) {
    std::fwrite(out_text.data(), 1, out_text.size(), stdout);
  } else {  // whole or not at all
    const std::string partial = output + ".partial";
    {
      std::ofstream out(partial, std::ios::binary);
      out << out_text;
      if (!out.flush()) throw std::runtime_error("writing '" + partial + "' failed");
    }
    fs::rename(partial, output);
  }
  std::fprintf(stderr, "%zu records judged%s: %zu parsed, %zu correct; pos %zu, neg %zu, format_neg %zu\n", records,
               skipped ? (" (" + std::to_string(skipped) + " bad ones skipped)").c_str() : "", parsed, correct, buckets[0],
               buckets[1], buckets[2]);
  return 0;
}

}  // namespace

std::vector<Command> data_commands() {
  return {{{"judge",
            "score responses as the official MMPR judge: JSONL {response, answer, prompt_version, source} in, verdicts out",
            {},
            {{"--input", "FILE", "", "JSONL records: response, answer, prompt_version (default en), source (default: the file name)",
              Flag::required},
             {"--output", "FILE", "", "where the judged records go (default: stdout)"},
             {"--skip-bad-records", "", "", "count and skip a bad record instead of stopping at it"}},
            "Each record comes back with mode, answer_pred (or format_error), correct, fixed_response (en/zh: the answer\n"
            "fix) and bucket (pos, neg, format_neg), as the official correctness postprocess with --answer-fix. Where\n"
            "the official code calls math_verify or sympy, ivl uses its own math-equivalence scorer (data/judge.h)."},
           cmd_judge}};
}

}  // namespace ivl::cli
