// The MMPR preference data as the official MPO trainer reads it (internvl_chat_mpo.py build_datasets
// and LazySupervisedDataset.__init__): the meta JSON that lists the datasets, and each dataset's JSONL
// annotation of {image, question, chosen, rejected} records. Text and paths only; no model, no pixels.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ivl {

// One entry of the meta file. Relative paths are used as given, i.e. against the current working
// directory, as the official script opens them (not against the meta file's folder).
struct MmprDatasetSpec {
  std::string name, root, annotation;
  double repeat_time = 1;            // absent in the file: 1 (the official script requires the key)
  int64_t length = 0;                // read for completeness; the official trainer never uses it here
  bool data_augment = false;
  int64_t max_dynamic_patch = 0;     // 0: not given (the --max_dynamic_patch flag applies)
};
// The datasets in file order; errors name the meta file, the dataset and the key.
std::vector<MmprDatasetSpec> read_mmpr_meta(const std::string& meta_path);

struct PreferenceRecord {
  std::vector<std::string> images;  // resolved paths (root joined), in order
  bool image_list = false;          // "image" was a JSON list (the multi-image path, even with one element)
  std::string question, chosen, rejected;
  size_t dataset = 0;               // index into the meta's datasets
  std::string source;               // the annotation file as given
  int64_t line = 0;                 // 1-based line number in that file
  int64_t copy = 0;                 // which repeat_time copy this is (0 for the first)
  std::string where() const;        // "file:line"
  bool text_only() const { return images.empty(); }
};

struct MmprReadOptions {
  bool skip_bad_records = false;    // count and skip bad lines instead of stopping
  uint64_t seed = 42;               // for repeat_time < 1
  bool check_images_exist = true;   // a missing image file is a bad record
};

// At most this many skip messages are kept; the count of skipped lines is always exact.
inline constexpr size_t kMaxSkipMessages = 100;

struct MmprData {
  std::vector<MmprDatasetSpec> datasets;
  std::vector<PreferenceRecord> records;   // datasets in meta order, lines in file order (after repeat_time)
  int64_t skipped = 0;
  std::vector<std::string> skip_messages;  // "file:line: what is wrong": the first kMaxSkipMessages, then one
                                           // line with the count of the rest
};
// Every dataset of the meta file; throws std::invalid_argument when no record is left at all.
MmprData read_mmpr(const std::string& meta_path, const MmprReadOptions& options = {});

// One dataset's annotation file alone (the same rules), for tests and tools. `skipped` is set to
// this file's count of skipped lines; `messages` gets theirs appended (while it holds fewer than
// kMaxSkipMessages).
std::vector<PreferenceRecord> read_mmpr_annotation(const MmprDatasetSpec& spec, size_t dataset_index,
                                                   const MmprReadOptions& options, int64_t* skipped = nullptr,
                                                   std::vector<std::string>* messages = nullptr);

// The repeat_time rule applied to `count` usable records: the indices kept, in output order.
//   < 1: floor(count * repeat_time) of them (Python's int(len * r)), chosen by our own seeded draw
//        (not Python's random.sample: selection sampling over Philox4x32 keyed by `seed`, counter by
//        dataset index and record), kept in file order;
//   >= 1: int(repeat_time) copies of all of them back to back (a fraction is dropped: 1.5 is one copy).
std::vector<size_t> repeat_time_selection(size_t count, double repeat_time, uint64_t seed, size_t dataset_index);

// The official get_image_path: an "s3://" path is appended to the root as a string; any other path
// is joined as os.path.join does (an absolute path stands alone).
std::string join_image_path(const std::string& root, const std::string& image);

}  // namespace ivl
