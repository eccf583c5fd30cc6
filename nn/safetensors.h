// Reading and writing the safetensors format (8-byte little-endian header length, a JSON header, the
// raw tensor bytes), single files and sharded checkpoints with a model.safetensors.index.json.
// Files are untrusted input: every malformed byte ends in an exception naming the file and tensor.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "tensor/tensor.h"

namespace ivl {

// The official library refuses headers above this size; so do we, before parsing a byte of them.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

// One tensor as the header describes it. `begin` and `end` are byte offsets into the data buffer,
// which starts right after the header.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  uint64_t begin = 0;
  uint64_t end = 0;
  uint64_t nbytes() const { return end - begin; }
};

struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // sorted by begin: the order of the bytes in the file
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + header length: where the data buffer begins in the file
};

// "F32", "BF16", ... as written in headers.
const char* safetensors_dtype_string(DType dtype);

// Validates the whole file image `bytes[0, size)` (header and the byte ranges it claims) and returns
// the header. `file_name` only goes into error messages. Throws std::invalid_argument on any defect.
SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t size, const std::string& file_name);

// A memory-mapped .safetensors file. Tensors returned by get() view the mapping directly when the
// bytes are aligned for their dtype (keeping the mapping alive as long as they live), else they are
// copies. Copies of a SafetensorsFile share the mapping. Writes into a view stay in private pages and
// never reach the file; as with any mapping, the file must not be truncated in place while mapped
// (save_safetensors replaces files by rename, which is safe).
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // in file order
  const std::vector<SafetensorsEntry>& entries() const { return header_.entries; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;
  Tensor get(const std::string& name) const;  // a CPU tensor with the stored dtype
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }

 private:
  std::string path_;
  std::shared_ptr<void> mapping_;  // the file's bytes; the deleter unmaps
  const uint8_t* bytes_ = nullptr;
  SafetensorsHeader header_;
  std::unordered_map<std::string, size_t> index_;  // name -> position in header_.entries
};

// Writes `tensors` (CPU, any layout; written row-major) in the given order, atomically: the bytes go
// to a temporary file next to `path`, are fsync'ed, then renamed over `path`.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// A model's weights into `directory` as save_pretrained lays them out: one model.safetensors when the
// bytes fit in max_shard_bytes, else model-0000k-of-0000n.safetensors shards (tensors in the given
// order, a new shard when the next would overflow) and model.safetensors.index.json ({"metadata":
// {"total_size"}, "weight_map"}). Every file is written atomically; stale shards of an earlier save
// with another count are removed. Returns the files written.
std::vector<std::string> save_safetensors_sharded(const std::string& directory, const std::vector<std::pair<std::string, Tensor>>& tensors,
                                                  uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata = {});

// `text` into `path` atomically (temporary file, fsync, rename), as save_safetensors does.
void write_file_atomically(const std::string& path, const std::string& text);

// A model's weights: one .safetensors file, or a directory holding model.safetensors or shards listed
// by model.safetensors.index.json. Each shard is opened once; every tensor lives in exactly one shard.
class SafetensorsCheckpoint {
 public:
  explicit SafetensorsCheckpoint(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<std::string>& names() const { return names_; }  // sorted
  bool contains(const std::string& name) const { return shard_of_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;
  Tensor get(const std::string& name) const;
  const std::string& shard_of(const std::string& name) const;  // the shard's path
  std::vector<std::string> shard_paths() const;                // in name order
  const SafetensorsFile& shard(const std::string& shard_path) const;

 private:
  const SafetensorsFile& file_of(const std::string& name) const;
  void open_index(const std::string& directory, const std::string& index_path);

  std::string path_;
  std::map<std::string, SafetensorsFile> shards_;  // shard path -> file
  std::map<std::string, std::string> shard_of_;    // tensor name -> shard path
  std::vector<std::string> names_;
};

}  // namespace ivl
