// Reading MMPR meta files and annotation JSONL as the official MPO trainer does, with every bad line
// reported by file:line. The official loader finds a bad line only when it is sampled (and then
// silently trains on a random other line); here each line is checked once, up front.
#include "data/mmpr.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace ivl {

namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;
namespace fs = std::filesystem;

[[noreturn]] void meta_fail(const std::string& meta_path, const std::string& dataset, const std::string& message) {
  fail(meta_path + ": dataset '" + dataset + "': " + message);
}

// nlohmann's reason without its "[json.exception.parse_error.101] " tag, and short: the "last read"
// part can quote a whole long line.
std::string short_parse_reason(const json::exception& error) {
  std::string reason = error.what();
  if (!reason.empty() && reason.front() == '[') {
    const size_t close = reason.find("] ");
    if (close != std::string::npos) reason.erase(0, close + 2);
  }
  constexpr size_t kMaxReason = 160;
  if (reason.size() > kMaxReason) reason = reason.substr(0, kMaxReason) + "...";
  return reason;
}

bool is_blank(const std::string& line) { return line.find_first_not_of(" \t\r\n\f\v") == std::string::npos; }

// A bad line: the reason, thrown out of check_record and caught by the line loop, which adds file:line.
struct BadRecord : std::runtime_error {
  using std::runtime_error::runtime_error;
};

const std::string& required_string(const json& record, const char* key) {
  const auto it = record.find(key);
  if (it == record.end()) throw BadRecord(std::string("missing \"") + key + "\"");
  if (!it->is_string()) throw BadRecord(std::string("\"") + key + "\" must be a string, got " + it->type_name());
  return it->get_ref<const std::string&>();
}

// One parsed line -> a record, or BadRecord with the reason. The sample path follows the official
// __getitem__: a non-empty "image" decides (a list is multi-image even with one element), else a
// non-empty "video" (which we cannot load), else text only.
PreferenceRecord check_record(const json& record, const MmprDatasetSpec& spec, const MmprReadOptions& options) {
  if (!record.is_object()) throw BadRecord(std::string("record is not a JSON object (got ") + record.type_name() + ")");
  PreferenceRecord out;
  out.question = required_string(record, "question");
  out.chosen = required_string(record, "chosen");
  out.rejected = required_string(record, "rejected");

  std::vector<std::string> names;
  const auto image = record.find("image");
  if (image != record.end() && !image->is_null()) {
    if (image->is_string()) {
      if (!image->get_ref<const std::string&>().empty()) names.push_back(image->get<std::string>());
    } else if (image->is_array()) {
      out.image_list = !image->empty();
      for (size_t i = 0; i < image->size(); ++i) {
        const json& name = (*image)[i];
        if (!name.is_string()) throw BadRecord("\"image\"[" + std::to_string(i) + "] must be a string, got " + name.type_name());
        if (name.get_ref<const std::string&>().empty()) throw BadRecord("\"image\"[" + std::to_string(i) + "] is empty");
        names.push_back(name.get<std::string>());
      }
    } else {
      throw BadRecord(std::string("\"image\" must be a string or a list of strings, got ") + image->type_name());
    }
  }
  if (names.empty()) {
    const auto video = record.find("video");
    if (video != record.end() && !video->is_null() && !(video->is_string() && video->get_ref<const std::string&>().empty()))
      throw BadRecord("video samples are not supported (the record has \"video\" and no \"image\")");
  }
  for (const std::string& name : names) {
    std::string path = join_image_path(spec.root, name);
    // s3:// paths go through the official petrel loader; there is no file here to look for.
    if (options.check_images_exist && path.find("s3://") == std::string::npos) {
      std::error_code error;
      if (!fs::exists(path, error)) throw BadRecord("image file '" + path + "' does not exist");
      if (!fs::is_regular_file(path, error)) throw BadRecord("image '" + path + "' is not a regular file");
    }
    out.images.push_back(std::move(path));
  }
  // An empty response leaves nothing to score: its log-prob is a sum over no tokens.
  if (out.chosen.empty()) throw BadRecord("\"chosen\" is empty");
  if (out.rejected.empty()) throw BadRecord("\"rejected\" is empty");
  return out;
}

// A 53-bit uniform in [0, 1) from two Philox words.
double uniform53(const std::array<uint32_t, 4>& words) {
  const uint64_t bits = (static_cast<uint64_t>(words[0]) << 32 | words[1]) >> 11;
  return static_cast<double>(bits) * 0x1.0p-53;
}

}  // namespace

std::string PreferenceRecord::where() const { return source + ":" + std::to_string(line); }

std::string join_image_path(const std::string& root, const std::string& image) {
  if (image.rfind("s3://", 0) == 0) return root + image;
  // posixpath.join(root, image)
  if (!image.empty() && image.front() == '/') return image;
  if (root.empty() || root.back() == '/') return root + image;
  return root + "/" + image;
}

std::vector<MmprDatasetSpec> read_mmpr_meta(const std::string& meta_path) {
  std::ifstream in(meta_path, std::ios::binary);
  if (!in) fail("cannot open MMPR meta file '" + meta_path + "'");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ordered_json meta;
  try {
    meta = ordered_json::parse(text);
  } catch (const json::exception& error) {
    fail("MMPR meta file '" + meta_path + "' is not valid JSON: " + short_parse_reason(error));
  }
  if (!meta.is_object())
    fail("MMPR meta file '" + meta_path + "' must hold a JSON object of datasets, got " + meta.type_name());
  if (meta.empty()) fail("MMPR meta file '" + meta_path + "' lists no datasets");

  std::vector<MmprDatasetSpec> datasets;
  // ordered_json keeps the file's order, which is the official order (Python dicts keep insertion order).
  for (const auto& [name, entry] : meta.items()) {
    if (!entry.is_object()) meta_fail(meta_path, name, std::string("must be a JSON object, got ") + entry.type_name());
    MmprDatasetSpec spec;
    spec.name = name;
    const auto text_key = [&](const char* key) -> std::string {
      const auto it = entry.find(key);
      if (it == entry.end()) meta_fail(meta_path, name, std::string("missing \"") + key + "\"");
      if (!it->is_string()) meta_fail(meta_path, name, std::string("\"") + key + "\" must be a string, got " + it->type_name());
      return it->get<std::string>();
    };
    spec.root = text_key("root");
    spec.annotation = text_key("annotation");
    const std::string suffix = ".jsonl";
    if (spec.annotation.size() < suffix.size() || spec.annotation.compare(spec.annotation.size() - suffix.size(), suffix.size(), suffix) != 0)
      meta_fail(meta_path, name, "\"annotation\" must be a .jsonl file, got '" + spec.annotation + "'");
    std::error_code error;
    if (!fs::is_regular_file(spec.annotation, error))
      meta_fail(meta_path, name, "annotation file '" + spec.annotation + "' does not exist (relative paths are taken from the working directory " +
                                     fs::current_path(error).string() + ")");

    if (const auto it = entry.find("repeat_time"); it != entry.end()) {
      if (!it->is_number()) meta_fail(meta_path, name, std::string("\"repeat_time\" must be a number, got ") + it->type_name());
      spec.repeat_time = it->get<double>();
      if (!std::isfinite(spec.repeat_time) || spec.repeat_time <= 0)
        meta_fail(meta_path, name, "\"repeat_time\" must be a positive number, got " + it->dump());
    }
    if (const auto it = entry.find("length"); it != entry.end() && !it->is_null()) {
      if (!it->is_number_integer() || it->get<int64_t>() < 0)
        meta_fail(meta_path, name, "\"length\" must be a non-negative integer, got " + it->dump());
      spec.length = it->get<int64_t>();
    }
    if (const auto it = entry.find("data_augment"); it != entry.end() && !it->is_null()) {
      if (!it->is_boolean()) meta_fail(meta_path, name, std::string("\"data_augment\" must be true or false, got ") + it->dump());
      spec.data_augment = it->get<bool>();
    }
    if (const auto it = entry.find("max_dynamic_patch"); it != entry.end()) {
      if (!it->is_number_integer() || it->get<int64_t>() < 1)
        meta_fail(meta_path, name, "\"max_dynamic_patch\" must be a positive integer, got " + it->dump());
      spec.max_dynamic_patch = it->get<int64_t>();
    }
    datasets.push_back(std::move(spec));
  }
  return datasets;
}

std::vector<size_t> repeat_time_selection(size_t count, double repeat_time, uint64_t seed, size_t dataset_index) {
  if (!std::isfinite(repeat_time) || repeat_time <= 0)
    fail("repeat_time must be a positive number, got " + std::to_string(repeat_time));
  std::vector<size_t> kept;
  if (repeat_time < 1) {
    // Official: random.sample(raw_data, k=int(len(raw_data) * repeat_time)). The count is the same
    // double product truncated; which records is our own draw. Selection sampling (Knuth's
    // Algorithm S) takes exactly `wanted` of `count`, each subset equally likely, already in order.
    const auto wanted = static_cast<size_t>(static_cast<double>(count) * repeat_time);
    kept.reserve(wanted);
    for (size_t i = 0; i < count && kept.size() < wanted; ++i) {
      const uint64_t counter = static_cast<uint64_t>(dataset_index) << 40 | static_cast<uint64_t>(i);
      const double u = uniform53(philox4x32(seed, counter));
      if (u * static_cast<double>(count - i) < static_cast<double>(wanted - kept.size())) kept.push_back(i);
    }
    return kept;
  }
  // Official: repeat_time > 1 becomes int(repeat_time) copies (raw_data * n); exactly 1 keeps the list.
  const auto copies = static_cast<size_t>(repeat_time);
  kept.reserve(copies * count);
  for (size_t c = 0; c < copies; ++c)
    for (size_t i = 0; i < count; ++i) kept.push_back(i);
  return kept;
}

std::vector<PreferenceRecord> read_mmpr_annotation(const MmprDatasetSpec& spec, size_t dataset_index,
                                                   const MmprReadOptions& options, int64_t* skipped,
                                                   std::vector<std::string>* messages) {
  std::ifstream in(spec.annotation, std::ios::binary);
  if (!in) fail("cannot open annotation file '" + spec.annotation + "' of MMPR dataset '" + spec.name + "'");
  std::vector<PreferenceRecord> usable;
  int64_t bad = 0;
  std::string text;
  for (int64_t line = 1; std::getline(in, text); ++line) {
    if (!text.empty() && text.back() == '\r') text.pop_back();  // CRLF files (Python's text mode reads them too)
    if (is_blank(text)) continue;
    const std::string where = spec.annotation + ":" + std::to_string(line);
    try {
      json parsed;
      try {
        parsed = json::parse(text);
      } catch (const json::exception& error) {
        throw BadRecord("not valid JSON: " + short_parse_reason(error));
      }
      PreferenceRecord record = check_record(parsed, spec, options);
      record.dataset = dataset_index;
      record.source = spec.annotation;
      record.line = line;
      usable.push_back(std::move(record));
    } catch (const BadRecord& error) {
      if (!options.skip_bad_records) fail(where + ": " + error.what());
      ++bad;
      if (messages && messages->size() < kMaxSkipMessages) messages->push_back(where + ": " + error.what());
    }
  }
  if (in.bad()) fail("error while reading annotation file '" + spec.annotation + "'");
  if (skipped) *skipped = bad;

  // The official code then shuffles the lines (numpy, seed = dataset index); we keep file order, and
  // the trainer's sampler does the shuffling.
  std::vector<PreferenceRecord> records;
  const std::vector<size_t> kept = repeat_time_selection(usable.size(), spec.repeat_time, options.seed, dataset_index);
  records.reserve(kept.size());
  for (size_t k = 0; k < kept.size(); ++k) {
    records.push_back(usable[kept[k]]);
    if (spec.repeat_time >= 1) records.back().copy = static_cast<int64_t>(k / std::max<size_t>(usable.size(), 1));
  }
  return records;
}

MmprData read_mmpr(const std::string& meta_path, const MmprReadOptions& options) {
  MmprData data;
  data.datasets = read_mmpr_meta(meta_path);
  for (size_t d = 0; d < data.datasets.size(); ++d) {
    int64_t skipped = 0;
    std::vector<PreferenceRecord> records = read_mmpr_annotation(data.datasets[d], d, options, &skipped, &data.skip_messages);
    data.skipped += skipped;
    data.records.insert(data.records.end(), std::make_move_iterator(records.begin()), std::make_move_iterator(records.end()));
  }
  const auto listed = static_cast<int64_t>(data.skip_messages.size());
  if (data.skipped > listed)  // append, not "(" + ...: GCC 12 reports a false -Wrestrict on that
    data.skip_messages.push_back(std::string("(").append(std::to_string(data.skipped - listed)).append(" more skipped lines not listed)"));
  if (data.records.empty())
    fail("no usable records in " + meta_path + " (" + std::to_string(data.skipped) + " bad lines skipped)");
  return data;
}

}  // namespace ivl
