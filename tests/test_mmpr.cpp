// The MMPR readers: the train-qwen2 meta + JSONL against the golden's 16 pairs (read from the
// fixture's folder, as the official script is run), every kind of bad line and bad meta entry with
// its file:line message, skipping, the image path rules, and the repeat_time rules.
#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/mmpr.h"
#include "tests/catch.h"
#include "tests/test_support.h"

using namespace ivl;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const std::string kTrainDir = std::string(IVL_SHARED_DIR) + "/fixtures/train-qwen2";

// The working directory set for one scope and restored after it (relative meta paths resolve
// against it).
struct WorkingDirectory {
  fs::path saved = fs::current_path();
  explicit WorkingDirectory(const fs::path& path) { fs::current_path(path); }
  ~WorkingDirectory() {
    std::error_code error;
    fs::current_path(saved, error);
  }
  WorkingDirectory(const WorkingDirectory&) = delete;
  WorkingDirectory& operator=(const WorkingDirectory&) = delete;
};

std::string join_lines(const std::vector<std::string>& lines) {
  std::string text;
  for (const std::string& line : lines) text += line + "\n";
  return text;
}

// A one-dataset meta in `dir` over `lines` (absolute paths), with an existing image a.jpg beside it.
std::string write_dataset(const TemporaryDirectory& dir, const std::vector<std::string>& lines, double repeat_time = 1,
                          const std::string& name = "ds") {
  dir.write("a.jpg", "not really a jpeg; only its existence is read");
  dir.write(name + ".jsonl", join_lines(lines));
  json meta;
  meta[name] = {{"root", dir.str()}, {"annotation", dir.file(name + ".jsonl")}, {"data_augment", false},
                {"repeat_time", repeat_time}, {"length", lines.size()}};
  dir.write("meta.json", meta.dump(2));
  return dir.file("meta.json");
}

std::string pair_line(int i) {
  const std::string n = std::to_string(i);
  return json({{"question", "q" + n}, {"chosen", "c" + n}, {"rejected", "r" + n}}).dump();
}

std::string error_of(const std::string& meta, const MmprReadOptions& options = {}) {
  try {
    read_mmpr(meta, options);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  FAIL("read_mmpr did not throw for " << meta);
  return "";
}

std::vector<int64_t> lines_of(const std::vector<PreferenceRecord>& records) {
  std::vector<int64_t> lines;
  for (const PreferenceRecord& record : records) lines.push_back(record.line);
  return lines;
}

}  // namespace

TEST_CASE("MMPR: the train-qwen2 meta and annotations give the golden's 16 pairs", "[mmpr]") {
  const json golden = json::parse(read_file(kTrainDir + "/golden.json"));
  const json& pairs = golden.at("pairs");
  const WorkingDirectory cwd(kTrainDir);  // the official script resolves the meta's paths from here
  const MmprData data = read_mmpr("data/meta.json");

  REQUIRE(data.datasets.size() == 2);
  CHECK(data.datasets[0].name == "mathv_testmini_pairs_vqa_correctness_rules");
  CHECK(data.datasets[0].root == "data/images/mathv");
  CHECK(data.datasets[0].annotation == "data/annotations/mathv_testmini_pairs_vqa_correctness_rules.jsonl");
  CHECK(data.datasets[0].repeat_time == 1);
  CHECK(data.datasets[0].length == 9);
  CHECK_FALSE(data.datasets[0].data_augment);
  CHECK(data.datasets[0].max_dynamic_patch == 0);
  CHECK(data.datasets[1].name == "photo_qa_pairs_vqa_format_rules");
  CHECK(data.datasets[1].length == 7);
  CHECK(data.datasets[1].max_dynamic_patch == 2);
  CHECK(data.skipped == 0);
  CHECK(data.skip_messages.empty());

  REQUIRE(data.records.size() == 16);
  REQUIRE(pairs.size() == 16);
  for (size_t i = 0; i < data.records.size(); ++i) {
    const PreferenceRecord& record = data.records[i];
    const json& expected = pairs[i];
    INFO("pair " << i << " at " << record.where());
    CHECK(record.dataset == (i < 9 ? 0u : 1u));
    CHECK(record.dataset == expected.at("dataset_index").get<size_t>());
    CHECK(record.source == data.datasets[record.dataset].annotation);
    CHECK(record.line == expected.at("line").get<int64_t>() + 1);  // the golden counts from 0
    CHECK(record.where() == record.source + ":" + std::to_string(record.line));
    CHECK(record.copy == 0);
    CHECK(record.question == expected.at("question").get<std::string>());
    CHECK(record.chosen == expected.at("chosen").get<std::string>());
    CHECK(record.rejected == expected.at("rejected").get<std::string>());

    const std::string kind = expected.at("kind").get<std::string>();
    CHECK(record.image_list == (kind == "multi-image"));
    CHECK(record.text_only() == (kind == "text-only"));
    std::vector<std::string> names;
    if (expected.at("image").is_array()) names = expected.at("image").get<std::vector<std::string>>();
    else if (expected.at("image").is_string()) names.push_back(expected.at("image").get<std::string>());
    REQUIRE(record.images.size() == names.size());
    for (size_t k = 0; k < names.size(); ++k) {
      CHECK(record.images[k] == data.datasets[record.dataset].root + "/" + names[k]);
      CHECK(fs::is_regular_file(record.images[k]));
    }
  }
  CHECK(data.records[3].image_list);
  CHECK(data.records[3].images.size() == 2);
  CHECK(data.records[11].text_only());
  CHECK_FALSE(data.records[11].image_list);
}

TEST_CASE("MMPR: relative paths resolve against the working directory, not the meta's folder", "[mmpr]") {
  const TemporaryDirectory dir("ivl_mmpr");
  fs::create_directories(dir.path / "meta");
  fs::create_directories(dir.path / "annotations");
  fs::create_directories(dir.path / "images");
  dir.write("images/a.jpg", "x");
  dir.write("annotations/pairs.jsonl", R"({"image": "a.jpg", "question": "q", "chosen": "c", "rejected": "r"})" "\n");
  dir.write("meta/meta.json", R"({"pairs": {"root": "images", "annotation": "annotations/pairs.jsonl", "repeat_time": 1}})");
  {
    const WorkingDirectory cwd(dir.path);
    const MmprData data = read_mmpr("meta/meta.json");
    REQUIRE(data.records.size() == 1);
    CHECK(data.records[0].images == std::vector<std::string>{"images/a.jpg"});
    CHECK(data.records[0].where() == "annotations/pairs.jsonl:1");
  }
  {
    // From the meta's own folder the annotation is not found: it is not resolved against that folder.
    const WorkingDirectory cwd(dir.path / "meta");
    const std::string message = error_of("meta.json");
    CHECK_THAT(message, HasSubstr("meta.json: dataset 'pairs': annotation file 'annotations/pairs.jsonl' does not exist"));
  }
  // The golden fixture's meta read from elsewhere fails the same way.
  const WorkingDirectory cwd(dir.path);
  CHECK_THAT(error_of(kTrainDir + "/data/meta.json"), HasSubstr("dataset 'mathv_testmini_pairs_vqa_correctness_rules': annotation file"));
}

TEST_CASE("MMPR: image paths join the root as os.path.join does, s3:// paths are appended", "[mmpr]") {
  CHECK(join_image_path("data/images", "a.jpg") == "data/images/a.jpg");
  CHECK(join_image_path("data/images/", "a.jpg") == "data/images/a.jpg");
  CHECK(join_image_path("", "a.jpg") == "a.jpg");
  CHECK(join_image_path("data/images", "/abs/a.jpg") == "/abs/a.jpg");
  CHECK(join_image_path("data/images", "sub/a.jpg") == "data/images/sub/a.jpg");
  CHECK(join_image_path("cluster:", "s3://bucket/a.jpg") == "cluster:s3://bucket/a.jpg");  // get_image_path's string concatenation
  CHECK(join_image_path("s3://bucket/images", "a.jpg") == "s3://bucket/images/a.jpg");

  // An s3:// path has no local file to check; it is kept as is.
  const TemporaryDirectory dir("ivl_mmpr");
  const std::string meta = write_dataset(dir, {R"({"image": "s3://bucket/a.jpg", "question": "q", "chosen": "c", "rejected": "r"})"});
  const MmprData data = read_mmpr(meta);
  REQUIRE(data.records.size() == 1);
  CHECK(data.records[0].images == std::vector<std::string>{dir.str() + "s3://bucket/a.jpg"});
}

TEST_CASE("MMPR: sample kinds, blank lines, CRLF and extra keys", "[mmpr]") {
  const TemporaryDirectory dir("ivl_mmpr");
  const std::vector<std::string> lines = {
      R"({"image": "a.jpg", "question": "<image>\nq", "chosen": "c", "rejected": "r", "answer_gt": "x", "chosen_meta": {"k": 1}})",
      R"({"image": ["a.jpg"], "question": "q", "chosen": "c", "rejected": "r"})",
      "",
      "   \t",
      R"({"image": ["a.jpg", "a.jpg"], "question": "q", "chosen": "c", "rejected": "r"})",
      R"({"question": "q", "chosen": "c", "rejected": "r"})",
      R"({"image": null, "question": "q", "chosen": "c", "rejected": "r"})",
      R"({"image": "", "question": "q", "chosen": "c", "rejected": "r"})",
      R"({"image": [], "question": "q", "chosen": "c", "rejected": "r", "video": null})",
      R"({"image": "a.jpg", "question": "", "chosen": "c", "rejected": "r"})" "\r",  // a CRLF line; an empty question is allowed
  };
  const std::string meta = write_dataset(dir, lines);
  const MmprData data = read_mmpr(meta);
  CHECK(data.skipped == 0);
  REQUIRE(data.records.size() == 8);
  CHECK(lines_of(data.records) == std::vector<int64_t>{1, 2, 5, 6, 7, 8, 9, 10});  // blank lines counted, not kept
  const std::string image = dir.str() + "/a.jpg";
  CHECK(data.records[0].images == std::vector<std::string>{image});
  CHECK_FALSE(data.records[0].image_list);
  CHECK(data.records[0].question == "<image>\nq");
  CHECK(data.records[1].images == std::vector<std::string>{image});
  CHECK(data.records[1].image_list);  // a one-element list is still the multi-image path
  CHECK(data.records[2].images == std::vector<std::string>{image, image});
  CHECK(data.records[2].image_list);
  for (size_t i = 3; i < 7; ++i) {
    INFO("record " << i);
    CHECK(data.records[i].text_only());
    CHECK_FALSE(data.records[i].image_list);
  }
  CHECK(data.records[7].question.empty());
  CHECK(data.records[7].rejected == "r");  // the \r of CRLF is not part of the line
}

TEST_CASE("MMPR: every bad line names file:line and the reason, and is skipped on request", "[mmpr]") {
  struct Case {
    std::string line, reason;
    std::string detail = "";  // a second part of the message, later in it
  };
  const std::vector<Case> cases = {
      {R"({"question": "q", "chosen": "c")", "not valid JSON: parse error"},
      {R"({"question": "q"} {"chosen": "c"})", "not valid JSON"},
      {R"([1, 2])", "record is not a JSON object (got array)"},
      {R"("just text")", "record is not a JSON object (got string)"},
      {R"({"chosen": "c", "rejected": "r"})", "missing \"question\""},
      {R"({"question": 3, "chosen": "c", "rejected": "r"})", "\"question\" must be a string, got number"},
      {R"({"question": "q", "rejected": "r"})", "missing \"chosen\""},
      {R"({"question": "q", "chosen": "c", "rejected": null})", "\"rejected\" must be a string, got null"},
      {R"({"image": 5, "question": "q", "chosen": "c", "rejected": "r"})", "\"image\" must be a string or a list of strings, got number"},
      {R"({"image": {"path": "a.jpg"}, "question": "q", "chosen": "c", "rejected": "r"})", "\"image\" must be a string or a list of strings, got object"},
      {R"({"image": ["a.jpg", 7], "question": "q", "chosen": "c", "rejected": "r"})", "\"image\"[1] must be a string, got number"},
      {R"({"image": ["a.jpg", ""], "question": "q", "chosen": "c", "rejected": "r"})", "\"image\"[1] is empty"},
      {R"({"image": "missing.jpg", "question": "q", "chosen": "c", "rejected": "r"})", "image file '", "/missing.jpg' does not exist"},
      {R"({"image": ["a.jpg", "gone.jpg"], "question": "q", "chosen": "c", "rejected": "r"})", "image file '", "/gone.jpg' does not exist"},
      {R"({"question": "q", "chosen": "", "rejected": "r"})", "\"chosen\" is empty"},
      {R"({"question": "q", "chosen": "c", "rejected": ""})", "\"rejected\" is empty"},
      {R"({"video": "clip.mp4", "question": "q", "chosen": "c", "rejected": "r"})", "video samples are not supported"},
  };
  for (const Case& bad : cases) {
    INFO(bad.line);
    const TemporaryDirectory dir("ivl_mmpr");
    const std::string meta = write_dataset(dir, {pair_line(1), "", bad.line, pair_line(4)});
    const std::string where = dir.file("ds.jsonl") + ":3: ";
    const std::string message = error_of(meta);
    CHECK_THAT(message, HasSubstr(where + bad.reason));
    CHECK_THAT(message, HasSubstr(bad.detail));

    MmprReadOptions skip;
    skip.skip_bad_records = true;
    const MmprData data = read_mmpr(meta, skip);
    CHECK(data.skipped == 1);
    REQUIRE(data.skip_messages.size() == 1);
    CHECK_THAT(data.skip_messages[0], HasSubstr(where + bad.reason));
    CHECK_THAT(data.skip_messages[0], HasSubstr(bad.detail));
    CHECK(lines_of(data.records) == std::vector<int64_t>{1, 4});
    CHECK(data.records[1].question == "q4");
  }

  // All of them in one file: each counted once with its own line number; the good lines survive.
  const TemporaryDirectory dir("ivl_mmpr");
  std::vector<std::string> lines = {pair_line(1)};
  for (const Case& bad : cases) lines.push_back(bad.line);
  lines.push_back(pair_line(static_cast<int>(lines.size()) + 1));
  const std::string meta = write_dataset(dir, lines);
  MmprReadOptions skip;
  skip.skip_bad_records = true;
  const MmprData data = read_mmpr(meta, skip);
  CHECK(data.skipped == static_cast<int64_t>(cases.size()));
  REQUIRE(data.skip_messages.size() == cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    CHECK_THAT(data.skip_messages[i], HasSubstr(dir.file("ds.jsonl") + ":" + std::to_string(i + 2) + ": " + cases[i].reason));
    CHECK_THAT(data.skip_messages[i], HasSubstr(cases[i].detail));
  }
  CHECK(lines_of(data.records) == std::vector<int64_t>{1, static_cast<int64_t>(lines.size())});

  // The same through read_mmpr_annotation alone.
  const std::vector<MmprDatasetSpec> specs = read_mmpr_meta(meta);
  int64_t skipped = -1;
  std::vector<std::string> messages;
  const std::vector<PreferenceRecord> records = read_mmpr_annotation(specs[0], 3, skip, &skipped, &messages);
  CHECK(skipped == static_cast<int64_t>(cases.size()));
  CHECK(messages == data.skip_messages);
  REQUIRE(records.size() == 2);
  CHECK(records[0].dataset == 3);
  CHECK(records[0].source == specs[0].annotation);
  CHECK_THROWS_WITH(read_mmpr_annotation(specs[0], 0, {}), HasSubstr(dir.file("ds.jsonl") + ":2: not valid JSON"));
}

TEST_CASE("MMPR: missing images are accepted when not checked", "[mmpr]") {
  const TemporaryDirectory dir("ivl_mmpr");
  const std::string meta = write_dataset(dir, {R"({"image": ["a.jpg", "gone.jpg"], "question": "q", "chosen": "c", "rejected": "r"})"});
  MmprReadOptions options;
  options.check_images_exist = false;
  const MmprData data = read_mmpr(meta, options);
  REQUIRE(data.records.size() == 1);
  CHECK(data.records[0].images == std::vector<std::string>{dir.str() + "/a.jpg", dir.str() + "/gone.jpg"});
  CHECK_THAT(error_of(meta), HasSubstr("ds.jsonl:1: image file '" + dir.str() + "/gone.jpg' does not exist"));
}

TEST_CASE("MMPR: skip messages stop at 100 and end with the count of the rest", "[mmpr]") {
  const TemporaryDirectory dir("ivl_mmpr");
  std::vector<std::string> lines = {pair_line(1)};
  for (int i = 0; i < 150; ++i) lines.push_back("{bad");
  const std::string meta = write_dataset(dir, lines);
  MmprReadOptions skip;
  skip.skip_bad_records = true;
  const MmprData data = read_mmpr(meta, skip);
  CHECK(data.records.size() == 1);
  CHECK(data.skipped == 150);
  REQUIRE(data.skip_messages.size() == kMaxSkipMessages + 1);
  CHECK_THAT(data.skip_messages[0], HasSubstr("ds.jsonl:2: not valid JSON"));
  CHECK_THAT(data.skip_messages[99], HasSubstr("ds.jsonl:101: not valid JSON"));
  CHECK(data.skip_messages[100] == "(50 more skipped lines not listed)");
}

TEST_CASE("MMPR: no usable record at all is an error, one empty dataset is not", "[mmpr]") {
  MmprReadOptions skip;
  skip.skip_bad_records = true;
  const TemporaryDirectory dir("ivl_mmpr");
  const std::string meta = write_dataset(dir, {"{bad", R"({"question": "q", "chosen": "", "rejected": "r"})"});
  CHECK_THAT(error_of(meta, skip), HasSubstr("no usable records in " + meta + " (2 bad lines skipped)"));
  dir.write("empty.jsonl", "\n  \n");
  dir.write("meta.json", json({{"empty", {{"root", dir.str()}, {"annotation", dir.file("empty.jsonl")}, {"repeat_time", 1}}}}).dump());
  CHECK_THAT(error_of(meta), HasSubstr("no usable records in " + meta + " (0 bad lines skipped)"));

  // A first dataset whose every line is skipped, and a good second one.
  dir.write("good.jsonl", join_lines({pair_line(1), pair_line(2)}));
  dir.write("bad.jsonl", "{bad\n");
  json two;
  two["bad"] = {{"root", dir.str()}, {"annotation", dir.file("bad.jsonl")}, {"repeat_time", 1}};
  two["good"] = {{"root", dir.str()}, {"annotation", dir.file("good.jsonl")}, {"repeat_time", 1}};
  dir.write("meta.json", two.dump());
  const MmprData data = read_mmpr(meta, skip);
  CHECK(data.skipped == 1);
  REQUIRE(data.records.size() == 2);
  CHECK(data.records[0].dataset == 1);
  CHECK(data.datasets[0].name == "bad");
}

TEST_CASE("MMPR: a bad meta file always stops, naming the file and the dataset", "[mmpr]") {
  const TemporaryDirectory dir("ivl_mmpr");
  dir.write("a.jsonl", pair_line(1) + "\n");
  const std::string meta = dir.file("meta.json");
  const std::string annotation = dir.file("a.jsonl");
  const auto entry = [&](json fields) {
    json value = {{"root", dir.str()}, {"annotation", annotation}, {"repeat_time", 1}};
    for (const auto& [key, field] : fields.items()) {
      if (field.is_null()) value.erase(key);
      else value[key] = field;
    }
    return json({{"first", {{"root", dir.str()}, {"annotation", annotation}, {"repeat_time", 1}}}, {"broken", value}}).dump();
  };
  MmprReadOptions skip;
  skip.skip_bad_records = true;  // meta errors are never skipped
  const auto check = [&](const std::string& text, const std::string& reason) {
    INFO(text);
    dir.write("meta.json", text);
    CHECK_THAT(error_of(meta, skip), HasSubstr(reason));
    CHECK_THROWS_AS(read_mmpr_meta(meta), std::invalid_argument);
  };
  const std::string in_broken = meta + ": dataset 'broken': ";

  CHECK_THAT(error_of(dir.file("none.json")), HasSubstr("cannot open MMPR meta file '" + dir.file("none.json") + "'"));
  check("{\"first\": ", "MMPR meta file '" + meta + "' is not valid JSON: parse error");
  check("[1, 2]", "MMPR meta file '" + meta + "' must hold a JSON object of datasets, got array");
  check("{}", "MMPR meta file '" + meta + "' lists no datasets");
  check(R"({"broken": 3})", in_broken + "must be a JSON object, got number");
  check(entry({{"root", nullptr}}), in_broken + "missing \"root\"");
  check(entry({{"annotation", nullptr}}), in_broken + "missing \"annotation\"");
  check(entry({{"root", 5}}), in_broken + "\"root\" must be a string, got number");
  check(entry({{"annotation", dir.file("a.json")}}), in_broken + "\"annotation\" must be a .jsonl file, got '" + dir.file("a.json") + "'");
  check(entry({{"annotation", dir.file("gone.jsonl")}}), in_broken + "annotation file '" + dir.file("gone.jsonl") + "' does not exist");
  check(entry({{"repeat_time", 0}}), in_broken + "\"repeat_time\" must be a positive number, got 0");
  check(entry({{"repeat_time", -0.5}}), in_broken + "\"repeat_time\" must be a positive number, got -0.5");
  check(entry({{"repeat_time", "2"}}), in_broken + "\"repeat_time\" must be a number, got string");
  check(entry({{"length", -1}}), in_broken + "\"length\" must be a non-negative integer, got -1");
  check(entry({{"data_augment", "yes"}}), in_broken + "\"data_augment\" must be true or false, got \"yes\"");
  check(entry({{"max_dynamic_patch", 0}}), in_broken + "\"max_dynamic_patch\" must be a positive integer, got 0");
  check(entry({{"max_dynamic_patch", 2.5}}), in_broken + "\"max_dynamic_patch\" must be a positive integer, got 2.5");

  // Optional keys absent: the defaults; datasets in file order, not sorted.
  dir.write("meta.json", R"({"zeta": {"root": "r", "annotation": ")" + annotation + R"("}, "alpha": {"root": "", "annotation": ")" + annotation +
                             R"(", "data_augment": true, "repeat_time": 2.5, "max_dynamic_patch": 6}})");
  const std::vector<MmprDatasetSpec> specs = read_mmpr_meta(meta);
  REQUIRE(specs.size() == 2);
  CHECK(specs[0].name == "zeta");
  CHECK(specs[0].repeat_time == 1);
  CHECK(specs[0].length == 0);
  CHECK_FALSE(specs[0].data_augment);
  CHECK(specs[0].max_dynamic_patch == 0);
  CHECK(specs[1].name == "alpha");
  CHECK(specs[1].data_augment);
  CHECK(specs[1].repeat_time == 2.5);
  CHECK(specs[1].max_dynamic_patch == 6);
}

TEST_CASE("MMPR: repeat_time below 1 keeps a seeded subset in file order", "[mmpr]") {
  const TemporaryDirectory dir("ivl_mmpr");
  std::vector<std::string> lines;
  for (int i = 1; i <= 10; ++i) lines.push_back(pair_line(i));
  const std::string meta = write_dataset(dir, lines, 0.5);

  std::set<std::vector<int64_t>> subsets;
  std::vector<int> times_chosen(11, 0);
  constexpr uint64_t kSeeds = 200;
  for (uint64_t seed = 0; seed < kSeeds; ++seed) {
    MmprReadOptions options;
    options.seed = seed;
    const std::vector<int64_t> chosen = lines_of(read_mmpr(meta, options).records);
    INFO("seed " << seed);
    REQUIRE(chosen.size() == 5);  // int(10 * 0.5)
    CHECK(std::is_sorted(chosen.begin(), chosen.end()));
    CHECK(std::adjacent_find(chosen.begin(), chosen.end()) == chosen.end());
    CHECK(lines_of(read_mmpr(meta, options).records) == chosen);  // the same seed, the same subset
    for (int64_t line : chosen) ++times_chosen[static_cast<size_t>(line)];
    subsets.insert(chosen);
  }
  // Seeds give different subsets, and every line is about as likely (100 of 200 expected; the
  // binomial spread is ~7, so 60..140 is far beyond chance).
  CHECK(subsets.size() > 100);
  for (size_t line = 1; line <= 10; ++line) {
    INFO("line " << line);
    CHECK(times_chosen[line] > 60);
    CHECK(times_chosen[line] < 140);
  }
  // The count is Python's int(len * r) on the same double product: 100 * 0.29 = 28.999999999999996 -> 28.
  CHECK(repeat_time_selection(100, 0.29, 42, 0).size() == 28);
  CHECK(repeat_time_selection(10, 0.3, 42, 0).size() == 3);
  CHECK(repeat_time_selection(7, 0.5, 42, 0).size() == 3);
  CHECK(repeat_time_selection(3, 0.2, 42, 0).empty());
  // The dataset index is part of the draw: two datasets with one seed do not share a pattern.
  std::set<std::vector<size_t>> by_dataset;
  for (size_t d = 0; d < 8; ++d) by_dataset.insert(repeat_time_selection(20, 0.5, 42, d));
  CHECK(by_dataset.size() > 1);
  CHECK_THROWS_WITH(repeat_time_selection(10, 0, 42, 0), HasSubstr("repeat_time must be a positive number"));
}

TEST_CASE("MMPR: repeat_time of 1 and above gives int(repeat_time) copies back to back", "[mmpr]") {
  const TemporaryDirectory dir("ivl_mmpr");
  std::vector<std::string> lines;
  std::vector<int64_t> one_pass;
  for (int i = 1; i <= 10; ++i) lines.push_back(pair_line(i)), one_pass.push_back(i);
  std::vector<int64_t> two_passes = one_pass;
  two_passes.insert(two_passes.end(), one_pass.begin(), one_pass.end());

  for (const double repeat_time : {1.0, 1.5, 1.99}) {
    INFO("repeat_time " << repeat_time);
    const MmprData data = read_mmpr(write_dataset(dir, lines, repeat_time));
    CHECK(lines_of(data.records) == one_pass);  // the fraction is dropped: int(1.5) == 1
  }
  for (const double repeat_time : {2.0, 2.7}) {
    INFO("repeat_time " << repeat_time);
    const MmprData data = read_mmpr(write_dataset(dir, lines, repeat_time));
    REQUIRE(data.records.size() == 20);
    CHECK(lines_of(data.records) == two_passes);
    CHECK(data.records[0].copy == 0);
    CHECK(data.records[9].copy == 0);
    CHECK(data.records[10].copy == 1);
    CHECK(data.records[19].copy == 1);
    CHECK(data.records[10].question == "q1");
  }
  CHECK(repeat_time_selection(3, 3.2, 0, 0) == std::vector<size_t>{0, 1, 2, 0, 1, 2, 0, 1, 2});
  CHECK(repeat_time_selection(0, 2, 0, 0).empty());
}
