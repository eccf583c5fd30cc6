#include "data/judge.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numbers>

#include "data/python_text.h"

namespace ivl {

namespace {

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) { return s.size() >= p.size() && s.substr(s.size() - p.size()) == p; }

}  // namespace

// ---------------------------------------------------------------- prompt versions and extraction

PromptVersion prompt_version_from(std::string_view name) {
  static const std::pair<const char*, PromptVersion> versions[] = {
      {"en", PromptVersion::en},       {"zh", PromptVersion::zh},       {"en_v2", PromptVersion::en_v2},
      {"zh_v2", PromptVersion::zh_v2}, {"en_r1", PromptVersion::en_r1}, {"zh_r1", PromptVersion::zh_r1}};
  for (const auto& [n, v] : versions)
    if (name == n) return v;
  throw std::invalid_argument("unknown prompt version '" + std::string(name) + "' (en, zh, en_v2, zh_v2, en_r1, zh_r1)");
}

std::string extract_answer_from_box(std::string_view text) {
  const size_t at = text.rfind("\\boxed{");
  if (at == std::string_view::npos) return std::string(text);
  const size_t start = at + 7;
  int level = 1;
  size_t i = start;
  for (; i < text.size(); ++i) {
    if (text[i] == '{') ++level;
    else if (text[i] == '}' && --level == 0) break;
  }
  if (level != 0) return std::string(text);  // unbalanced
  return std::string(text.substr(start, i - start));
}

namespace {

// extract_answer_from_mpo: whatever the version, the trigger is "Final answer:" if present, else
// "Final Answer:", else "答案:".
ParsedAnswer parse_trigger(std::string_view response) {
  ParsedAnswer out;
  std::string_view trigger = "Final answer:";
  if (py::count(response, trigger) == 0) trigger = "Final Answer:";
  if (py::count(response, trigger) == 0) trigger = "\xE7\xAD\x94\xE6\xA1\x88:";  // 答案:
  if (py::count(response, trigger) > 2) return out.reason = "too_many_triggers", out;
  if (py::count(response, "\n") < 2) return out.reason = "fewer_than_2_newlines", out;
  const size_t at = response.rfind(trigger);
  if (at == std::string_view::npos) return out.reason = "no_trigger", out;
  out.rationale = py::strip(response.substr(0, at));
  const std::string answer = py::strip(response.substr(at + trigger.size()));
  if (out.rationale.empty()) return out.rationale.clear(), out.reason = "empty_rationale", out;
  if (py::contains(answer, "\n")) return out.rationale.clear(), out.reason = "multi_line_answer", out;
  out.ok = true, out.answer_pred = answer;
  return out;
}

bool check_cot_format(std::string_view response) { return py::length(response) > 20; }

// check_r1_format: the full match of <think>.*?</think>\s*.+ (DOTALL), one of each tag, a \boxed{}
// after </think>, and more than 20 code points before it (the <think> tag included).
bool check_r1_format(std::string_view response) {
  bool full_match = false;
  if (starts_with(response, "<think>"))
    for (size_t at = response.find("</think>", 7); at != std::string_view::npos; at = response.find("</think>", at + 1))
      if (at + 8 < response.size()) full_match = true;
  const bool counts = py::count(response, "<think>") == 1 && py::count(response, "</think>") == 1;
  bool answer = false, think = true;
  if (const size_t last = response.rfind("</think>"); last != std::string_view::npos) {
    const std::string tail = py::strip(response.substr(last + 8));
    answer = extract_answer_from_box(tail) != tail;
    think = check_cot_format(py::strip(response.substr(0, response.find("</think>"))));
  }
  return full_match && counts && answer && think;
}

}  // namespace

ParsedAnswer parse_answer(std::string_view response, PromptVersion version) {
  ParsedAnswer out;
  switch (version) {
    case PromptVersion::en:
    case PromptVersion::zh:
      return parse_trigger(response);
    case PromptVersion::en_v2:
    case PromptVersion::zh_v2:
      if (!check_cot_format(response)) return out.reason = "too_short", out;
      break;
    case PromptVersion::en_r1:
    case PromptVersion::zh_r1:
      if (!check_r1_format(response)) return out.reason = "invalid_r1_format", out;
      break;
  }
  out.ok = true, out.answer_pred = extract_answer_from_box(response);
  return out;
}

// ---------------------------------------------------------------- modes

const char* scorer_name(Scorer scorer) {
  switch (scorer) {
    case Scorer::math_verify: return "math_verify";
    case Scorer::vqa: return "vqa";
    case Scorer::relaxed: return "relaxed";
    case Scorer::anls: return "anls";
    case Scorer::mc: return "mc";
    case Scorer::math: return "math";
    case Scorer::latex: return "latex";
  }
  return "?";
}

std::vector<Scorer> get_mode(std::string_view name) {
  auto any = [&](std::initializer_list<const char*> keys) {
    return std::any_of(keys.begin(), keys.end(), [&](const char* k) { return py::contains(name, k); });
  };
  if (any({"chartqa"})) return {Scorer::relaxed};
  if (any({"docvqa", "infographics"})) return {Scorer::anls};
  if (any({"SROIE", "CLEVR_math", "geos", "geometry"})) return {Scorer::relaxed, Scorer::vqa, Scorer::mc, Scorer::math_verify};
  if (any({"mavis"})) return {Scorer::vqa, Scorer::mc, Scorer::math, Scorer::latex, Scorer::math_verify};
  return {Scorer::vqa, Scorer::mc, Scorer::math, Scorer::math_verify};
}

// ---------------------------------------------------------------- the EvalAI normaliser (vqa)

namespace {

const std::map<std::string, std::string, std::less<>>& contractions() {
  static const std::map<std::string, std::string, std::less<>> table = {
    {"aint", "ain't"},
    {"arent", "aren't"},
    {"cant", "can't"},
    {"couldve", "could've"},
    {"couldnt", "couldn't"},
    {"couldn'tve", "couldn't've"},
    {"couldnt've", "couldn't've"},
    {"didnt", "didn't"},
    {"doesnt", "doesn't"},
    {"dont", "don't"},
    {"hadnt", "hadn't"},
    {"hadnt've", "hadn't've"},
    {"hadn'tve", "hadn't've"},
    {"hasnt", "hasn't"},
    {"havent", "haven't"},
    {"hed", "he'd"},
    {"hed've", "he'd've"},
    {"he'dve", "he'd've"},
    {"hes", "he's"},
    {"howd", "how'd"},
    {"howll", "how'll"},
    {"hows", "how's"},
    {"Id've", "I'd've"},
    {"I'dve", "I'd've"},
    {"Im", "I'm"},
    {"Ive", "I've"},
    {"isnt", "isn't"},
    {"itd", "it'd"},
    {"itd've", "it'd've"},
    {"it'dve", "it'd've"},
    {"itll", "it'll"},
    {"let's", "let's"},
    {"maam", "ma'am"},
    {"mightnt", "mightn't"},
    {"mightnt've", "mightn't've"},
    {"mightn'tve", "mightn't've"},
    {"mightve", "might've"},
    {"mustnt", "mustn't"},
    {"mustve", "must've"},
    {"neednt", "needn't"},
    {"notve", "not've"},
    {"oclock", "o'clock"},
    {"oughtnt", "oughtn't"},
    {"ow's'at", "'ow's'at"},
    {"'ows'at", "'ow's'at"},
    {"'ow'sat", "'ow's'at"},
    {"shant", "shan't"},
    {"shed've", "she'd've"},
    {"she'dve", "she'd've"},
    {"she's", "she's"},
    {"shouldve", "should've"},
    {"shouldnt", "shouldn't"},
    {"shouldnt've", "shouldn't've"},
    {"shouldn'tve", "shouldn't've"},
    {"somebody'd", "somebodyd"},
    {"somebodyd've", "somebody'd've"},
    {"somebody'dve", "somebody'd've"},
    {"somebodyll", "somebody'll"},
    {"somebodys", "somebody's"},
    {"someoned", "someone'd"},
    {"someoned've", "someone'd've"},
    {"someone'dve", "someone'd've"},
    {"someonell", "someone'll"},
    {"someones", "someone's"},
    {"somethingd", "something'd"},
    {"somethingd've", "something'd've"},
    {"something'dve", "something'd've"},
    {"somethingll", "something'll"},
    {"thats", "that's"},
    {"thered", "there'd"},
    {"thered've", "there'd've"},
    {"there'dve", "there'd've"},
    {"therere", "there're"},
    {"theres", "there's"},
    {"theyd", "they'd"},
    {"theyd've", "they'd've"},
    {"they'dve", "they'd've"},
    {"theyll", "they'll"},
    {"theyre", "they're"},
    {"theyve", "they've"},
    {"twas", "'twas"},
    {"wasnt", "wasn't"},
    {"wed've", "we'd've"},
    {"we'dve", "we'd've"},
    {"weve", "we've"},
    {"werent", "weren't"},
    {"whatll", "what'll"},
    {"whatre", "what're"},
    {"whats", "what's"},
    {"whatve", "what've"},
    {"whens", "when's"},
    {"whered", "where'd"},
    {"wheres", "where's"},
    {"whereve", "where've"},
    {"whod", "who'd"},
    {"whod've", "who'd've"},
    {"who'dve", "who'd've"},
    {"wholl", "who'll"},
    {"whos", "who's"},
    {"whove", "who've"},
    {"whyll", "why'll"},
    {"whyre", "why're"},
    {"whys", "why's"},
    {"wont", "won't"},
    {"wouldve", "would've"},
    {"wouldnt", "wouldn't"},
    {"wouldnt've", "wouldn't've"},
    {"wouldn'tve", "wouldn't've"},
    {"yall", "y'all"},
    {"yall'll", "y'all'll"},
    {"y'allll", "y'all'll"},
    {"yall'd've", "y'all'd've"},
    {"y'alld've", "y'all'd've"},
    {"y'all'dve", "y'all'd've"},
    {"youd", "you'd"},
    {"youd've", "you'd've"},
    {"you'dve", "you'd've"},
    {"youll", "you'll"},
    {"youre", "you're"},
    {"youve", "you've"}
  };
  return table;
}

const char* const kPunctuations[] = {";", "/", "[", "]", "\"", "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"};

std::string process_punctuation(const std::string& in) {
  std::string out = in;
  for (const char* p : kPunctuations) {
    // (COMMA_STRIP, digit-commas-digit, never matches here: word_tokenize removed every comma.)
    const bool touches_space = py::contains(in, std::string(p) + " ") || py::contains(in, std::string(" ") + p);
    out = py::replace(out, p, touches_space ? "" : " ");
  }
  // PERIOD_STRIP: a '.' not followed by a digit goes, at most 32 times (re.UNICODE as the count).
  const std::u32string s = py::code_points(out);
  std::u32string kept;
  int removed = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == U'.' && removed < 32 && !(i + 1 < s.size() && py::is_decimal(s[i + 1]))) {
      ++removed;
      continue;
    }
    kept.push_back(s[i]);
  }
  return py::utf8(kept);
}

std::string process_digit_article(const std::string& in) {
  static const std::map<std::string, std::string, std::less<>> numbers = {
      {"none", "0"}, {"zero", "0"}, {"one", "1"}, {"two", "2"},   {"three", "3"}, {"four", "4"},
      {"five", "5"}, {"six", "6"},  {"seven", "7"}, {"eight", "8"}, {"nine", "9"},  {"ten", "10"}};
  std::vector<std::string> words;
  for (std::string word : py::split(py::lower(in))) {
    if (auto it = numbers.find(word); it != numbers.end()) word = it->second;
    if (word != "a" && word != "an" && word != "the") words.push_back(word);
  }
  std::string out;
  for (size_t i = 0; i < words.size(); ++i) {
    if (auto it = contractions().find(words[i]); it != contractions().end()) words[i] = it->second;
    if (i > 0) out += ' ';
    out += words[i];
  }
  return out;
}

}  // namespace

std::string vqa_normalize(std::string_view answer) {
  std::string item = py::lower(answer);  // word_tokenize
  item = py::replace(py::replace(py::replace(item, ",", ""), "?", ""), "'s", " 's");
  item = py::strip(item);
  item = py::strip(py::replace(py::replace(item, "\n", " "), "\t", " "));
  return process_digit_article(process_punctuation(item));
}

double vqa_score(std::string_view pred, std::string_view gt) {
  // Ten copies of the ground truth: its own soft score is min(1, 9 / 3) = 1; any other answer 0.
  return vqa_normalize(pred) == vqa_normalize(gt) ? 1.0 : 0.0;
}

// ---------------------------------------------------------------- the numeric scorers

namespace {

// `if prediction_float is not None and target_float:` then the relative change, else equality.
bool relative_match(std::optional<double> prediction, std::optional<double> target, double tolerance, std::string_view p,
                    std::string_view t) {
  if (prediction && target && *target != 0) return std::fabs(*prediction - *target) / std::fabs(*target) <= tolerance;
  return py::lower(p) == py::lower(t);
}

}  // namespace

bool relaxed_correctness(std::string_view target, std::string_view prediction) {
  auto to_float = [](std::string_view text) { return ends_with(text, "%") ? py::to_float(py::rstrip(text, "%")) : py::to_float(text); };
  if (py::length(target) == 4 && starts_with(target, "20")) return py::lower(prediction) == py::lower(target);
  return relative_match(to_float(prediction), to_float(target), 0.05, prediction, target);
}

bool math_score(std::string_view prediction, std::string_view target) {
  auto to_float = [](std::string_view text) {
    std::string s(text);
    for (const char* unit : {"degrees", "degree", "\\angle", "degrees", "\xC2\xB0", "%", "cm"}) s = py::replace(s, unit, "");
    return py::to_float(s);
  };
  return relative_match(to_float(prediction), to_float(target), 1e-3, prediction, target);
}

size_t levenshtein(std::u32string_view a, std::u32string_view b) {
  if (a.size() > b.size()) std::swap(a, b);
  std::vector<size_t> row(a.size() + 1), next(a.size() + 1);
  for (size_t i = 0; i <= a.size(); ++i) row[i] = i;
  for (size_t j = 0; j < b.size(); ++j) {
    next[0] = j + 1;
    for (size_t i = 0; i < a.size(); ++i)
      next[i + 1] = a[i] == b[j] ? row[i] : 1 + std::min({row[i], row[i + 1], next[i]});
    std::swap(row, next);
  }
  return row[a.size()];
}

double anls_value(std::string_view gt, std::string_view pred) {
  auto squeeze = [](std::string_view s) {
    std::string out;
    for (const std::string& w : py::split(py::lower(py::strip(s)))) out += (out.empty() ? "" : " ") + w;
    return out;
  };
  const size_t distance = levenshtein(py::code_points(squeeze(gt)), py::code_points(squeeze(pred)));
  const size_t length = std::max(py::length(py::upper(gt)), py::length(py::upper(pred)));
  return static_cast<double>(distance) / static_cast<double>(length);
}

bool multi_choice_score(std::string_view pred_in, std::string_view gt_in) {
  std::u32string pred = py::code_points(py::strip(pred_in));
  const std::string gt = py::strip(gt_in);
  if (py::lower(py::utf8(pred)) == py::lower(gt)) return true;
  if (pred.size() >= 2 && pred[1] == U'.') pred = pred.substr(0, 1);
  if (pred.size() >= 3 && pred[0] == U'(' && pred[2] == U')') pred = pred.substr(1, 1);
  return py::lower(py::utf8(pred)) == py::lower(gt);
}

bool use_latex_score(std::string_view text) {
  if (py::contains(text, "\\")) return true;
  // ^\s*\d+\s*/\s*\d+\s*$
  const std::u32string s = py::code_points(text);
  size_t i = 0;
  auto spaces = [&] { while (i < s.size() && py::is_space(s[i])) ++i; };
  auto digits = [&] {
    const size_t start = i;
    while (i < s.size() && py::is_decimal(s[i])) ++i;
    return i > start;
  };
  spaces();
  if (!digits()) return false;
  spaces();
  if (i >= s.size() || s[i] != U'/') return false;
  ++i;
  spaces();
  if (!digits()) return false;
  spaces();
  return i == s.size();
}

// ---------------------------------------------------------------- our math-equivalence scorer

namespace {

// A recursive-descent reader of the numbers and the simple LaTeX of answers: + - * / ^, \cdot,
// \times, \div, implicit products (2\sqrt{2}), \frac{a}{b} (and \frac12), \sqrt[n]{x}, \pi,
// parentheses and braces, thousands separators, a trailing %. Anything else: no value.
class MathReader {
 public:
  // compact: \frac12 and \sqrt2 (single-character arguments without braces), as sympy reads them.
  MathReader(std::string text, bool compact) : s_(std::move(text)), compact_(compact) {}

  // The value of the whole text, which may end in unit words (12 mm, 5 apples, 12\text{ cm}).
  std::optional<double> whole() {
    i_ = 0;
    std::optional<double> v = expr();
    if (!v) return std::nullopt;
    skip_units();
    return i_ == s_.size() ? v : std::nullopt;
  }
  bool percent() const { return percent_; }

 private:
  std::string s_;
  bool compact_ = false;
  size_t i_ = 0;
  bool percent_ = false;

  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  bool word(std::string_view w) {
    skip();
    if (s_.compare(i_, w.size(), w) != 0) return false;
    // a command must not run on into letters (\pi vs \pix)
    if (w[0] == '\\' && std::isalpha(static_cast<unsigned char>(w.back())) && i_ + w.size() < s_.size() &&
        std::isalpha(static_cast<unsigned char>(s_[i_ + w.size()])))
      return false;
    i_ += w.size();
    return true;
  }
  void skip() {
    for (;;) {
      while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
      bool more = false;
      for (std::string_view space : {"\\,", "\\;", "\\!", "\\ ", "\\quad", "\\left", "\\right", "\\displaystyle"})
        if (s_.compare(i_, space.size(), space) == 0) i_ += space.size(), more = true;
      if (!more) return;
    }
  }
  void skip_units() {
    for (;;) {
      skip();
      if (s_.compare(i_, 6, "\\text{") == 0 || s_.compare(i_, 8, "\\mathrm{") == 0) {
        const size_t close = s_.find('}', i_);
        if (close == std::string::npos) return;
        const std::string inside = s_.substr(s_.find('{', i_) + 1, close - s_.find('{', i_) - 1);
        if (std::any_of(inside.begin(), inside.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) return;
        i_ = close + 1;
        continue;
      }
      const size_t start = i_;
      while (i_ < s_.size() && (std::isalpha(static_cast<unsigned char>(s_[i_])) || static_cast<unsigned char>(s_[i_]) >= 0x80)) ++i_;
      if (i_ > start) continue;
      if (i_ < s_.size() && s_[i_] == '.' && i_ + 1 == s_.size()) ++i_;  // a closing full stop
      return;
    }
  }
  std::optional<double> expr() {
    std::optional<double> v = term();
    while (v) {
      skip();
      if (peek() == '+') ++i_, v = add(v, term(), 1);
      else if (peek() == '-') ++i_, v = add(v, term(), -1);
      else break;
    }
    return v;
  }
  static std::optional<double> add(std::optional<double> a, std::optional<double> b, double sign) {
    if (!a || !b) return std::nullopt;
    return *a + sign * *b;
  }
  std::optional<double> term() {
    std::optional<double> v = unary();
    while (v) {
      skip();
      if (peek() == '*' || word("\\cdot") || word("\\times")) {
        if (peek() == '*') ++i_;
        const auto r = unary();
        if (!r) return std::nullopt;
        v = *v * *r;
      } else if (peek() == '/' || word("\\div")) {
        if (peek() == '/') ++i_;
        const auto r = unary();
        if (!r || *r == 0) return std::nullopt;
        v = *v / *r;
      } else if (starts_atom()) {  // 2\sqrt{2}, 3\pi, 2(1+1)
        const auto r = power();
        if (!r) return std::nullopt;
        v = *v * *r;
      } else {
        break;
      }
    }
    return v;
  }
  bool starts_atom() {
    skip();
    const char c = peek();
    return c == '(' || c == '{' || word_ahead("\\sqrt") || word_ahead("\\frac") || word_ahead("\\pi");
  }
  bool word_ahead(std::string_view w) const { return s_.compare(i_, w.size(), w) == 0; }
  std::optional<double> unary() {
    skip();
    if (peek() == '-') return ++i_, negate(unary());
    if (peek() == '+') return ++i_, unary();
    return power();
  }
  static std::optional<double> negate(std::optional<double> v) { return v ? std::optional<double>(-*v) : std::nullopt; }
  std::optional<double> power() {
    std::optional<double> base = atom();
    skip();
    if (base && peek() == '^') {
      ++i_;
      skip();
      std::optional<double> e = peek() == '{' ? (++i_, braced_rest()) : digit_or_atom();
      if (!e) return std::nullopt;
      return std::pow(*base, *e);
    }
    return base;
  }
  std::optional<double> braced_rest() {  // after '{': expr '}'
    std::optional<double> v = expr();
    skip();
    if (!v || peek() != '}') return std::nullopt;
    ++i_;
    return v;
  }
  std::optional<double> group() {  // {expr}, or one digit when compact (\frac12)
    skip();
    if (peek() == '{') return ++i_, braced_rest();
    return compact_ ? digit_or_atom() : std::nullopt;
  }
  std::optional<double> digit_or_atom() {
    skip();
    if (std::isdigit(static_cast<unsigned char>(peek()))) return static_cast<double>(s_[i_++] - '0');
    return atom();
  }
  std::optional<double> atom() {
    skip();
    const char c = peek();
    if (c == '(' || c == '{') {
      ++i_;
      std::optional<double> v = expr();
      skip();
      if (!v || peek() != (c == '(' ? ')' : '}')) return std::nullopt;
      ++i_;
      return v;
    }
    if (word("\\pi")) return std::numbers::pi;
    if (word("\\frac")) {
      const auto a = group(), b = group();
      if (!a || !b || *b == 0) return std::nullopt;
      return *a / *b;
    }
    if (word("\\sqrt")) {
      double degree = 2;
      skip();
      if (peek() == '[') {
        ++i_;
        const auto d = expr();
        skip();
        if (!d || peek() != ']') return std::nullopt;
        ++i_, degree = *d;
      }
      const auto x = group();
      if (!x || *x < 0) return std::nullopt;
      return degree == 2 ? std::sqrt(*x) : std::pow(*x, 1 / degree);
    }
    return number();
  }
  std::optional<double> number() {
    std::string digits;
    auto is_digit = [&](size_t j) { return j < s_.size() && std::isdigit(static_cast<unsigned char>(s_[j])); };
    while (is_digit(i_)) {
      digits.push_back(s_[i_++]);
      // a thousands separator: a comma and exactly three digits
      if (peek() == ',' && is_digit(i_ + 1) && is_digit(i_ + 2) && is_digit(i_ + 3) && !is_digit(i_ + 4)) ++i_;
    }
    if (peek() == '.' && is_digit(i_ + 1)) {
      digits.push_back(s_[i_++]);
      while (is_digit(i_)) digits.push_back(s_[i_++]);
    }
    if (digits.empty()) return std::nullopt;
    double v = std::strtod(digits.c_str(), nullptr);
    skip();
    if (peek() == '%') ++i_, v /= 100, percent_ = true;
    return v;
  }
};

// The text math_equivalent reads: the last balanced \boxed{} (or an unclosed last one, closed), no
// dollar signs, degree marks or \dfrac spellings, and only what follows the last '='.
std::string math_text(std::string_view text) {
  std::string s(text);
  size_t box = s.rfind("\\boxed{");
  if (box != std::string::npos) {
    std::string inside;
    for (size_t at = box; at != std::string::npos; at = at == 0 ? std::string::npos : s.rfind("\\boxed{", at - 1)) {
      const std::string content = extract_answer_from_box(s.substr(at));
      if (content != s.substr(at)) {
        inside = content;
        break;
      }
    }
    if (inside.empty()) {  // an unclosed last box: closed at the end
      const std::string rest = s.substr(box);
      const auto open = std::count(rest.begin(), rest.end(), '{'), close = std::count(rest.begin(), rest.end(), '}');
      inside = rest.substr(7) + std::string(static_cast<size_t>(std::max<std::ptrdiff_t>(0, open - close)), '}');
    }
    s = inside;
  }
  for (const char* gone : {"$", "^\\circ", "^{\\circ}", "\\circ", "\xC2\xB0", "\\degree"}) s = py::replace(s, gone, "");
  for (const char* frac : {"\\dfrac", "\\tfrac"}) s = py::replace(s, frac, "\\frac");
  s = py::replace(s, "\\%", "%");
  if (const size_t eq = s.rfind('='); eq != std::string::npos) s = s.substr(eq + 1);
  return py::strip(s);
}

bool same_number(double a, double b) { return std::fabs(a - b) <= 1e-9 * std::max({1.0, std::fabs(a), std::fabs(b)}); }

}  // namespace

std::optional<double> math_value(std::string_view text, bool search_text, bool compact) {
  const std::string s = math_text(text);
  MathReader reader(s, compact);
  if (std::optional<double> v = reader.whole()) return v;
  if (!search_text) return std::nullopt;
  // A sentence: its last number that stands as a word ("the total is 42 apples."; not the 5 of
  // "\boxed {5}" or of "x2").
  std::optional<double> last;
  auto digit = [&](size_t j) { return j < s.size() && std::isdigit(static_cast<unsigned char>(s[j])); };
  for (size_t i = 0; i < s.size();) {
    if (!digit(i)) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && (digit(j) || ((s[j] == ',' || s[j] == '.') && digit(j + 1)))) ++j;
    const bool negative = i > 0 && s[i - 1] == '-';
    const size_t before = negative ? i - 1 : i;
    const bool starts_word = before == 0 || s[before - 1] == ' ' || s[before - 1] == '\n' || s[before - 1] == '(' || s[before - 1] == '$';
    const bool percent = j < s.size() && s[j] == '%';
    const size_t after = percent ? j + 1 : j;
    const bool ends_word = after == s.size() || std::string_view(" \n\r\t.,;:!?)$").find(s[after]) != std::string_view::npos;
    if (starts_word && ends_word) {
      MathReader piece((negative ? "-" : "") + s.substr(i, j - i) + (percent ? "%" : ""), false);
      if (auto v = piece.whole()) last = v;
    }
    i = after;
  }
  return last;
}

bool math_equivalent(std::string_view pred, std::string_view gt, bool latex) {
  const std::optional<double> g = math_value(gt, false, latex);
  if (!g) return false;
  const std::string ps = math_text(pred);
  MathReader reader(ps, latex);
  std::optional<double> p = reader.whole();
  const bool percent = p && reader.percent();
  if (!p && !latex) p = math_value(pred, true, false);
  return p && (same_number(*p, *g) || (percent && same_number(*p * 100, *g)));
}

// ---------------------------------------------------------------- the verdict, the answer fix

Verdict check_answer(std::string_view pred, std::string_view gt, const std::vector<Scorer>& mode) {
  Verdict v;
  if (py::lower(pred) == py::lower(gt)) {
    v.exact_match = v.correct = true, v.accuracy = 1;
    return v;
  }
  auto has = [&](Scorer s) { return std::find(mode.begin(), mode.end(), s) != mode.end(); };
  double acc = 0;
  auto note = [&](Scorer s) { v.trace.emplace_back(s, acc); };
  if (has(Scorer::math_verify)) acc = std::max(acc, math_equivalent(pred, gt) ? 1.0 : 0.0), note(Scorer::math_verify);
  if (has(Scorer::vqa)) {
    acc = std::max(acc, vqa_score(pred, gt));
    if (vqa_normalize(pred).empty() || vqa_normalize(gt).empty()) acc = 0;
    note(Scorer::vqa);
  }
  if (has(Scorer::relaxed)) acc = std::max(acc, relaxed_correctness(gt, pred) ? 1.0 : 0.0), note(Scorer::relaxed);
  if (has(Scorer::anls)) acc = std::max(acc, anls_value(gt, pred)), note(Scorer::anls);
  if (has(Scorer::mc)) acc = std::max(acc, multi_choice_score(pred, gt) ? 1.0 : 0.0), note(Scorer::mc);
  if (has(Scorer::math)) acc = std::max(acc, math_score(pred, gt) ? 1.0 : 0.0), note(Scorer::math);
  if (has(Scorer::latex) && (use_latex_score(pred) || use_latex_score(gt)))
    acc = std::max(acc, math_equivalent(pred, gt, true) ? 1.0 : 0.0), note(Scorer::latex);
  v.accuracy = acc;
  v.correct = acc > 0.9;
  return v;
}

namespace {

bool is_option(std::string_view letter) { return letter.size() == 1 && letter[0] >= 'A' && letter[0] <= 'N'; }

}  // namespace

std::optional<std::string> option_letter(std::string_view pred) {
  const std::u32string p = py::code_points(py::upper(py::strip(py::strip(py::strip(pred), "*"))));
  if (p.size() == 1) return py::utf8(p);
  if (p.size() > 1 && !py::is_alpha(p[1]) && p[0] >= U'A' && p[0] <= U'N') return py::utf8(p.substr(0, 1));
  if (p.size() > 2 && p[0] == U'(' && p[2] == U')' && p[1] >= U'A' && p[1] <= U'N') return py::utf8(p.substr(1, 1));
  return std::nullopt;
}

std::string fix_answer(std::string_view response_in, std::string_view pred, std::string_view gt) {
  std::string response(response_in);
  std::string p = py::lower(pred), g = py::lower(gt);
  if (is_option(py::upper(gt))) {
    const std::optional<std::string> letter = option_letter(pred);
    if (!letter) return response;  // post_process raised: the text as it is
    p = *letter, g = py::upper(gt);
  }
  auto squash = [](std::string_view s) { return py::replace(py::strip(s, "."), ",", ""); };
  if (py::contains(p, g) || py::contains(squash(p), squash(g))) {
    if (pred.empty()) throw FixAnswerError("fix_answer: empty separator");  // rsplit('') raises
    if (const size_t at = response.rfind(pred); at != std::string::npos) response.replace(at, pred.size(), gt);
    response = py::strip(py::strip(py::strip(response), "*"));
  }
  const size_t newline = response.rfind('\n');
  if (newline == std::string::npos) throw FixAnswerError("fix_answer: no newline left in the response");
  std::string last = response.substr(newline + 1);
  if (py::contains(last, "**Final")) response = py::strip(response.substr(0, newline) + "\n" + py::replace(last, "**Final", "Final"));
  return response;
}

const char* bucket_name(Bucket bucket) {
  switch (bucket) {
    case Bucket::pos: return "pos";
    case Bucket::neg: return "neg";
    case Bucket::format_neg: return "format_neg";
  }
  return "?";
}

Judged judge_response(std::string_view response, std::string_view answer_gt, PromptVersion version,
                      std::string_view source_file, bool answer_fix) {
  Judged j;
  j.mode = get_mode(source_file);
  j.response = std::string(response);
  j.parsed = parse_answer(response, version);
  if (!j.parsed.ok) return j.answer_pred = "None", j;
  j.answer_pred = j.parsed.answer_pred;
  if (answer_fix && (version == PromptVersion::en || version == PromptVersion::zh)) {
    try {
      j.response = fix_answer(response, j.answer_pred, answer_gt);
    } catch (const FixAnswerError&) {
      j.fix_raised = true, j.answer_pred = "None";
      return j;
    }
  }
  j.verdict = check_answer(j.answer_pred, answer_gt, j.mode);
  j.bucket = j.verdict.correct ? Bucket::pos : Bucket::neg;
  return j;
}

}  // namespace ivl
