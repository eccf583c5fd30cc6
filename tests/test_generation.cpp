// Generation: the logits processors and warpers against their definitions, the counter-based draw,
// and batched generation with the KV cache (a left-padded batch gives each prompt's own tokens,
// greedy or sampled). Greedy parity with the official generate() is the ctest `check_generate_*`.
#include <cctype>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "internvl/generation.h"
#include "nn/safetensors.h"
#include "tests/catch.h"
#include "tests/test_support.h"

using namespace ivl;

namespace {

std::vector<float> log_probs(const std::vector<double>& p) {
  std::vector<float> out;
  for (const double x : p) out.push_back(static_cast<float>(std::log(x)));
  return out;
}

std::set<size_t> kept(const std::vector<float>& logits) {
  std::set<size_t> out;
  for (size_t i = 0; i < logits.size(); ++i)
    if (logits[i] != -INFINITY) out.insert(i);
  return out;
}

// The prompts of a fixture's golden batch: rows 0 and 2 up to their first response token, with
// their tiles.
struct FixturePrompts {
  LoadedModel model;
  int64_t image_context_id = 0;
  std::vector<GenerationPrompt> prompts;
};

FixturePrompts fixture_prompts(const std::string& name) {
  const std::string dir = std::string(IVL_SHARED_DIR) + "/fixtures/" + name;
  FixturePrompts out{load_internvl(dir), 0, {}};
  const SafetensorsFile golden(dir + "/golden.safetensors");
  const Tensor ids = golden.get("input.input_ids"), labels = golden.get("input.labels");
  const Tensor pixels = golden.get("input.pixel_values").to(DType::f32);
  const std::vector<double> id_values = ids.to_doubles(), label_values = labels.to_doubles();
  const std::vector<double> tiles = golden.get("input.tiles_per_seq").to_doubles();
  out.image_context_id = static_cast<int64_t>(golden.get("input.special_ids").to_doubles().at(2));
  const auto T = static_cast<size_t>(ids.size(1));
  int64_t first_tile = 0;
  for (size_t r = 0; r < tiles.size(); ++r) {
    const auto count = static_cast<int64_t>(tiles[r]);
    if (r == 0 || r == 2) {
      GenerationPrompt prompt;
      for (size_t t = 0; t < T && label_values[r * T + t] == -100; ++t) prompt.ids.push_back(static_cast<int64_t>(id_values[r * T + t]));
      if (count > 0) prompt.pixel_values = pixels.narrow(0, first_tile, count);
      prompt.sample_id = r;
      out.prompts.push_back(prompt);
    }
    first_tile += count;
  }
  return out;
}

}  // namespace

TEST_CASE("top-k keeps the k largest logits and their ties", "[generate]") {
  std::vector<float> x{0.5f, 2.0f, -1.0f, 2.0f, 1.0f, 0.0f};
  apply_top_k(x, 2);
  CHECK(kept(x) == std::set<size_t>{1, 3});
  std::vector<float> ties{1.0f, 3.0f, 2.0f, 2.0f, 0.0f};
  apply_top_k(ties, 2);  // the 2nd largest is 2, and both 2s stay
  CHECK(kept(ties) == std::set<size_t>{1, 2, 3});
  std::vector<float> all{1.0f, 2.0f};
  apply_top_k(all, 0), apply_top_k(all, 5);
  CHECK(kept(all).size() == 2);
}

TEST_CASE("top-p keeps the most likely tokens until their mass reaches p", "[generate]") {
  // p = 0.1, 0.2, 0.3, 0.4: ascending cumulative sums 0.1, 0.3, 0.6, 1.0; HF removes those <= 1 - p.
  auto run = [](double p) {
    std::vector<float> x = log_probs({0.1, 0.2, 0.3, 0.4});
    apply_top_p(x, p);
    return kept(x);
  };
  CHECK(run(0.7) == std::set<size_t>{2, 3});  // 1 - p = 0.3: 0.1 and 0.1 + 0.2 go
  CHECK(run(0.75) == std::set<size_t>{1, 2, 3});
  CHECK(run(0.3) == std::set<size_t>{3});
  CHECK(run(0.01) == std::set<size_t>{3});  // the most likely always stays
  CHECK(run(1.0) == std::set<size_t>{0, 1, 2, 3});
  // On random logits, the definition: the kept tokens are the most likely ones, their mass is at
  // least p, and without the least likely of them it would be below p (up to rounding at the edge).
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> x;
    for (int i = 0; i < 40; ++i) x.push_back(static_cast<float>(std::sin(trial * 37.0 + i * 11.0) * 3));
    std::vector<double> p(x.size());
    double total = 0;
    for (size_t i = 0; i < x.size(); ++i) total += (p[i] = std::exp(static_cast<double>(x[i])));
    for (double& v : p) v /= total;
    const double top_p = 0.2 + 0.015 * trial;
    std::vector<float> y = x;
    apply_top_p(y, top_p);
    const std::set<size_t> keep = kept(y);
    double mass = 0, least = 1;
    for (const size_t i : keep) mass += p[i], least = std::min(least, p[i]);
    for (size_t i = 0; i < x.size(); ++i)
      if (!keep.count(i)) CHECK(p[i] <= least);
    CHECK(mass >= top_p - 1e-6);
    CHECK(mass - least < top_p + 1e-6);
  }
}

TEST_CASE("the repetition penalty, the minimum length and temperature 0 act as HF's processors", "[generate]") {
  std::vector<float> x{2.0f, -2.0f, 1.0f};
  apply_repetition_penalty(x, {0, 1, 1}, 2.0);  // once per distinct token
  CHECK(x == std::vector<float>{1.0f, -4.0f, 1.0f});
  SamplingOptions greedy;
  CHECK(choose_token({0.0f, 3.0f, 1.0f}, {}, {}, greedy, 0, 0) == 1);
  CHECK(choose_token({0.0f, 3.0f, 1.0f}, {}, {1}, SamplingOptions{.min_new_tokens = 2}, 0, 1) == 2);  // eos held back
  CHECK(choose_token({0.0f, 3.0f, 1.0f}, {}, {1}, SamplingOptions{.min_new_tokens = 2}, 0, 2) == 1);
  SamplingOptions cold{.do_sample = true, .temperature = 0};
  CHECK(cold.greedy());
  for (uint64_t s = 0; s < 20; ++s) CHECK(choose_token({0.0f, 3.0f, 1.0f}, {}, {}, cold, s, 0) == 1);
  CHECK(SamplingOptions{.top_p = 0}.invalid() != "");
  CHECK(SamplingOptions{.temperature = -1}.invalid() != "");
  CHECK(SamplingOptions{}.invalid() == "");
}

TEST_CASE("sampling draws each token with its probability, from (seed, sample, step) alone", "[generate]") {
  const std::vector<double> p{0.1, 0.2, 0.3, 0.4};
  SamplingOptions options{.do_sample = true, .top_k = 0, .seed = 3};
  std::map<int64_t, int> counts;
  const int n = 20000;
  for (int s = 0; s < n; ++s) ++counts[choose_token(log_probs(p), {}, {}, options, static_cast<uint64_t>(s), 0)];
  for (size_t i = 0; i < p.size(); ++i) CHECK(std::abs(counts[static_cast<int64_t>(i)] / double(n) - p[i]) < 0.015);
  CHECK(sample_uniform(3, 7, 2) == sample_uniform(3, 7, 2));
  CHECK(sample_uniform(3, 7, 2) != sample_uniform(3, 7, 3));
  CHECK(sample_uniform(3, 7, 2) != sample_uniform(3, 8, 2));
  CHECK(sample_uniform(3, 7, 2) != sample_uniform(4, 7, 2));
}

TEST_CASE("a left-padded batch generates each prompt's own tokens, greedy and sampled", "[generate]") {
  for (const char* fixture : {"tiny-qwen2", "tiny-internlm2"}) {
    INFO(fixture);
    FixturePrompts f = fixture_prompts(fixture);
    REQUIRE(f.prompts.size() == 2);
    f.prompts[1].ids.resize(f.prompts[1].ids.size() - 3);  // unequal lengths: row 1 is padded by 3 more
    f.prompts.push_back({{f.prompts[0].ids.back(), 5, 6, 7}, Tensor(), 9});  // and a text-only prompt
    for (const bool sample : {false, true}) {
      INFO((sample ? "sampled" : "greedy"));
      GenerationOptions options;
      options.sampling = {.do_sample = sample, .temperature = 0.9, .top_k = 40, .top_p = 0.95, .max_new_tokens = 10, .seed = 17};
      std::vector<std::vector<int64_t>> alone;
      for (const GenerationPrompt& p : f.prompts) alone.push_back(generate(*f.model.model, f.image_context_id, {p}, options).at(0));
      GenerationStats stats;
      const auto batched = generate(*f.model.model, f.image_context_id, f.prompts, options, {}, &stats);
      CHECK(batched == alone);
      CHECK(stats.new_tokens == 30);
      CHECK(stats.decode_steps == 9);  // the first token comes from the prefill
      // The same seed repeats itself; another seed samples another text.
      CHECK(generate(*f.model.model, f.image_context_id, f.prompts, options) == batched);
      options.sampling.seed = 18;
      if (sample) CHECK(generate(*f.model.model, f.image_context_id, f.prompts, options) != batched);
    }
  }
}

TEST_CASE("generation stops a row at an eos id or when the callback says so, and refuses bad input", "[generate]") {
  FixturePrompts f = fixture_prompts("tiny-qwen2");
  GenerationOptions options;
  options.sampling.max_new_tokens = 8;
  const auto free_run = generate(*f.model.model, f.image_context_id, f.prompts, options);
  REQUIRE(free_run[0].size() == 8);
  options.eos_ids = {free_run[0][2]};  // row 0's third token ends row 0 (row 1 stops where it meets it, if it does)
  const auto stopped = generate(*f.model.model, f.image_context_id, f.prompts, options);
  CHECK(stopped[0] == std::vector<int64_t>(free_run[0].begin(), free_run[0].begin() + 3));
  options.eos_ids.clear();
  std::vector<int64_t> streamed;
  const auto by_callback = generate(*f.model.model, f.image_context_id, f.prompts, options, [&](size_t row, int64_t token) {
    if (row == 1) streamed.push_back(token);
    return row == 1 && streamed.size() == 4;
  });
  CHECK(by_callback[0] == free_run[0]);
  CHECK(by_callback[1] == std::vector<int64_t>(free_run[1].begin(), free_run[1].begin() + 4));
  CHECK(streamed == by_callback[1]);
  CHECK_THROWS_WITH(generate(*f.model.model, f.image_context_id, {GenerationPrompt{}}, options), HasSubstr("empty"));
  CHECK_THROWS_WITH(generate(*f.model.model, f.image_context_id, {GenerationPrompt{{1, 999999}}}, options),
                    HasSubstr("outside the vocabulary"));
  options.sampling.top_p = 2;
  CHECK_THROWS_WITH(generate(*f.model.model, f.image_context_id, f.prompts, options), HasSubstr("top_p"));
}

// ---- the commands ----

namespace {

const std::string kBinary = IVL_BINARY;
const std::string kChatModel = std::string(IVL_SHARED_DIR) + "/fixtures/train-qwen2/model";  // real Qwen2 tokenizer files
const std::string kImages = std::string(IVL_SHARED_DIR) + "/assets/images";

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("ivl generate writes each record's responses, resumes after a torn line to the same file, and names bad records",
          "[generate][cli]") {
  TemporaryDirectory dir("ivl_generate");
  dir.write("in.jsonl", "{\"image\": \"internvl_image1_red_panda.jpg\", \"question\": \"What animal?\"}\n\n"
                        "{\"question\": \"Say hi.\"}\n"
                        "{\"image\": [\"internvl_image2_panda.jpg\", \"internvl_image3_cats.jpg\"], \"question\": \"<image>\\n<image>\\nCompare.\"}\n");
  const std::string command = "'" + kBinary + "' generate --model '" + kChatModel + "' --input '" + dir.file("in.jsonl") +
                              "' --image-root '" + kImages + "' --num-return-sequences 2 --do-sample --seed 4 --max-new-tokens 5 --output ";
  const auto [log, code] = run_command(command + "'" + dir.file("full.jsonl") + "'");
  INFO(log);
  REQUIRE(code == 0);
  const std::string full = read_all(dir.file("full.jsonl"));
  std::istringstream lines(full);
  std::string line;
  int records = 0;
  while (std::getline(lines, line)) {
    const nlohmann::json record = nlohmann::json::parse(line);
    CHECK(record.at("responses").size() == 2);
    CHECK(record.contains("question"));
    ++records;
  }
  CHECK(records == 3);
  CHECK_THAT(log, HasSubstr("[3/3 records]"));
  // An interrupted run: one record and half of the next; the rerun completes it to the same bytes.
  dir.write("part.jsonl", full.substr(0, full.find('\n') + 1) + "{\"image\": \"internvl_im");
  const auto [resumed, resumed_code] = run_command(command + "'" + dir.file("part.jsonl") + "'");
  INFO(resumed);
  CHECK(resumed_code == 0);
  CHECK_THAT(resumed, HasSubstr("resuming: 1 of 3"));
  CHECK(read_all(dir.file("part.jsonl")) == full);
  // Bad input names the line.
  dir.write("bad.jsonl", "{\"question\": \"ok\"}\n{\"image\": \"x.jpg\"}\n");
  const auto [bad, bad_code] = run_command("'" + kBinary + "' generate --model '" + kChatModel + "' --input '" + dir.file("bad.jsonl") +
                                           "' --output '" + dir.file("bad_out.jsonl") + "'");
  CHECK(bad_code == 1);
  CHECK_THAT(bad, HasSubstr("bad.jsonl:2: a record needs a \"question\" string"));
  dir.write("missing.jsonl", "{\"image\": \"no_such.jpg\", \"question\": \"?\"}\n");
  const auto [missing, missing_code] = run_command("'" + kBinary + "' generate --model '" + kChatModel + "' --input '" +
                                                   dir.file("missing.jsonl") + "' --output '" + dir.file("m.jsonl") + "'");
  CHECK(missing_code == 1);
  CHECK_THAT(missing, HasSubstr("missing.jsonl:1"));
  CHECK_THAT(missing, HasSubstr("no_such.jpg"));
}

TEST_CASE("ivl generate --stop ends an answer before its stop string", "[generate][cli]") {
  TemporaryDirectory dir("ivl_stop");
  dir.write("in.jsonl", "{\"question\": \"Say hi.\"}\n");
  const std::string command = "'" + kBinary + "' generate --model '" + kChatModel + "' --input '" + dir.file("in.jsonl") +
                              "' --max-new-tokens 16 --output ";
  const auto [log, code] = run_command(command + "'" + dir.file("free.jsonl") + "'");
  INFO(log);
  REQUIRE(code == 0);
  const std::string free = nlohmann::json::parse(read_all(dir.file("free.jsonl"))).at("responses").at(0).get<std::string>();
  INFO("greedy answer: " << free);
  REQUIRE(free.size() >= 6);
  // A stop string from the middle of the greedy answer (one whole UTF-8 character, seen there
  // first): the same answer, cut before it.
  auto is_lead = [&](size_t i) { return (static_cast<unsigned char>(free[i]) & 0xC0) != 0x80; };
  auto character = [&](size_t i) {
    size_t end = i + 1;
    while (end < free.size() && !is_lead(end)) ++end;
    return free.substr(i, end - i);
  };
  size_t at = free.size() / 2;
  while (at > 0 && (!is_lead(at) || free.find(character(at)) != at || free[at] == ' ' || free[at] == '\'')) --at;
  REQUIRE(at > 0);
  const std::string stop = character(at);
  std::string expected = free.substr(0, at);
  expected.erase(expected.find_last_not_of(" \t\r\n") + 1);
  const auto [cut_log, cut_code] = run_command(command + "'" + dir.file("cut.jsonl") + "' --stop 'never seen' --stop '" + stop + "'");
  INFO(cut_log);
  REQUIRE(cut_code == 0);
  CHECK(nlohmann::json::parse(read_all(dir.file("cut.jsonl"))).at("responses").at(0).get<std::string>() == expected);
  const auto [empty, empty_code] = run_command(command + "'" + dir.file("e.jsonl") + "' --stop ''");
  CHECK(empty_code == 1);
  CHECK_THAT(empty, HasSubstr("cannot be empty"));
  CHECK_THAT(empty, !HasSubstr("loading"));  // refused before the model loads
}

TEST_CASE("ivl chat answers a question about an image, then a second turn, and refuses what it cannot use", "[generate][cli]") {
  const std::string chat = "'" + kBinary + "' chat --model '" + kChatModel + "' --max-new-tokens 6 ";
  const auto [once, code] = run_command(chat + "--image '" + kImages + "/internvl_image1_red_panda.jpg' --prompt 'What is this?'");
  INFO(once);
  CHECK(code == 0);
  CHECK_THAT(once, HasSubstr("new at"));
  // Interactive: two turns (the second sees the first in its prompt: more prompt tokens), /reset.
  const auto [session, session_code] =
      run_command("printf 'Describe it.\\nAnd then?\\n/reset\\nHello\\n' | " + chat + "--image '" + kImages + "/internvl_image3_cats.jpg'");
  INFO(session);
  CHECK(session_code == 0);
  std::vector<long> prompt_tokens;
  for (size_t at = session.find("["); at != std::string::npos; at = session.find("[", at + 1))
    if (session.compare(at, 1, "[") == 0 && std::isdigit(static_cast<unsigned char>(session[at + 1])))
      prompt_tokens.push_back(std::stol(session.substr(at + 1)));
  REQUIRE(prompt_tokens.size() == 3);
  CHECK(prompt_tokens[1] > prompt_tokens[0] + 6);  // the first answer is in the second prompt
  CHECK(prompt_tokens[2] < prompt_tokens[0]);      // after /reset: no history, and "Hello" is short
  CHECK_THAT(session, HasSubstr("(a new conversation)"));
  const auto [no_tokenizer, nt_code] =
      run_command("'" + kBinary + "' chat --model '" + std::string(IVL_SHARED_DIR) + "/fixtures/tiny-qwen2' --prompt hi");
  CHECK(nt_code == 1);
  CHECK_THAT(no_tokenizer, HasSubstr("no tokenizer files"));
  TemporaryDirectory mismatched("ivl_chat");  // a tiny model (320 ids) with the real Qwen2 tokenizer files
  for (const char* name : {"config.json", "model.safetensors"})
    mismatched.link(name, std::string(IVL_SHARED_DIR) + "/fixtures/tiny-qwen2/" + name);
  for (const char* name : {"vocab.json", "merges.txt", "tokenizer_config.json", "added_tokens.json", "special_tokens_map.json"})
    mismatched.link(name, kChatModel + "/" + name);
  const auto [foreign, foreign_code] = run_command("'" + kBinary + "' chat --model '" + mismatched.str() + "' --prompt hi");
  CHECK(foreign_code == 1);
  CHECK_THAT(foreign, HasSubstr("belong to another model"));
  const auto [empty, empty_code] = run_command(chat + "--prompt '  '");
  CHECK(empty_code == 1);
  CHECK_THAT(empty, HasSubstr("the question is empty"));
  const auto [long_prompt, long_code] = run_command(chat.substr(0, chat.find("--max-new-tokens")) + "--max-new-tokens 40000 --prompt hi");
  CHECK(long_code == 1);
  CHECK_THAT(long_prompt, HasSubstr("exceeds the model's"));
}
