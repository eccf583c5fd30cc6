// Safetensors parsing and validation, mmap'd reading, atomic writing, and sharded checkpoints.
// The checks follow the official Rust library: sorted by offset, the tensors must tile the data
// buffer exactly, so every byte of the file is accounted for and no two tensors alias each other.
#include "nn/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>
#include <tuple>
#include <utility>

static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian numbers and data; big-endian hosts are not supported");

namespace ivl {
namespace {

using json = nlohmann::json;

// Names and values in messages come from untrusted files; keep messages readable whatever they hold.
std::string excerpt(const std::string& text, size_t limit = 200) {
  return text.size() <= limit ? text : text.substr(0, limit) + "...(" + std::to_string(text.size()) + " bytes)";
}

std::string excerpt(const json& value) {
  // Only flat, short containers are dumped: the dump could otherwise be as large as the header.
  if (value.is_structured() &&
      (value.size() > 16 || !std::all_of(value.begin(), value.end(), [](const json& e) { return e.is_primitive(); })))
    return value.is_array() ? "an array of " + std::to_string(value.size()) + " elements"
                            : "an object of " + std::to_string(value.size()) + " keys";
  try {
    return excerpt(value.dump());
  } catch (const json::exception&) {  // a string that is not UTF-8 cannot be dumped
    return std::string("a ") + value.type_name();
  }
}

[[noreturn]] void fail_file(const std::string& file, const std::string& message) {
  fail("safetensors file '" + file + "': " + message);
}

[[noreturn]] void fail_tensor(const std::string& file, const std::string& tensor, const std::string& message) {
  fail("safetensors file '" + file + "', tensor '" + excerpt(tensor) + "': " + message);
}

[[noreturn]] void fail_index(const std::string& index_path, const std::string& message) {
  fail("checkpoint index '" + index_path + "': " + message);
}

std::string system_error_text() { return std::strerror(errno); }

struct DTypeString {
  const char* text;
  DType dtype;
};
constexpr DTypeString kDTypeStrings[] = {
    {"F64", DType::f64}, {"F32", DType::f32}, {"F16", DType::f16}, {"BF16", DType::bf16},
    {"I64", DType::i64}, {"I32", DType::i32}, {"U8", DType::u8},   {"BOOL", DType::boolean},
};

std::string supported_dtypes() {
  std::string list;
  for (const auto& d : kDTypeStrings) list += (list.empty() ? "" : ", ") + std::string(d.text);
  return list;
}

// nlohmann::json keeps only the last of two equal keys, which would let a file hide a tensor; the
// parser callback sees every key, so duplicates are caught in every object. It also caps the nesting
// (a header is at most object > entry > shape): deeper input is not a header, and refusing it early
// bounds the memory and the recursion of everything that later walks the parsed value.
// `where` starts every message ("safetensors file 'x'"); `what` names the document ("header").
json parse_json_without_duplicate_keys(const char* first, const char* last, const std::string& where,
                                       const std::string& what, size_t max_depth, bool top_level_keys_are_tensors) {
  std::vector<std::set<std::string>> open_objects;
  size_t depth = 0;
  auto on_event = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (++depth > max_depth)
          fail(where + ": the " + what + " nests objects and arrays " + std::to_string(depth) + " deep; at most " +
               std::to_string(max_depth) + " make sense");
        if (event == json::parse_event_t::object_start) open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        open_objects.pop_back();
        --depth;
        break;
      case json::parse_event_t::array_end:
        --depth;
        break;
      case json::parse_event_t::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (!open_objects.back().insert(key).second) {
          if (open_objects.size() == 1 && top_level_keys_are_tensors)
            fail(where + ", tensor '" + excerpt(key) + "': the name appears twice in the " + what);
          fail(where + ": the key '" + excerpt(key) + "' appears twice in one object of the " + what);
        }
        break;
      }
      case json::parse_event_t::value:
        break;
    }
    return true;
  };
  try {
    return json::parse(first, last, on_event, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    // The message quotes the last token read, which can be as long as the input.
    fail(where + ": the " + what + " is not valid JSON: " + excerpt(e.what(), 400));
  }
}

// Shapes hold int64 sizes, so each dim and the element count must stay at or below INT64_MAX.
constexpr uint64_t kMaxElementCount = static_cast<uint64_t>(INT64_MAX);

SafetensorsEntry parse_entry(const std::string& name, const json& value, uint64_t buffer_size,
                             const std::string& file) {
  if (!value.is_object())
    fail_tensor(file, name, std::string("the header entry is ") + value.type_name() +
                                ", expected an object with dtype, shape and data_offsets");
  SafetensorsEntry entry;
  entry.name = name;

  const auto dtype_it = value.find("dtype");
  if (dtype_it == value.end()) fail_tensor(file, name, "the header entry has no 'dtype'");
  if (!dtype_it->is_string())
    fail_tensor(file, name, "'dtype' is " + excerpt(*dtype_it) + ", expected a string such as \"BF16\"");
  const auto& dtype_text = dtype_it->get_ref<const std::string&>();
  const auto known = std::find_if(std::begin(kDTypeStrings), std::end(kDTypeStrings),
                                  [&](const DTypeString& d) { return dtype_text == d.text; });
  if (known == std::end(kDTypeStrings))
    fail_tensor(file, name, "unsupported dtype '" + excerpt(dtype_text) + "' (supported: " + supported_dtypes() + ")");
  entry.dtype = known->dtype;

  const auto shape_it = value.find("shape");
  if (shape_it == value.end()) fail_tensor(file, name, "the header entry has no 'shape'");
  if (!shape_it->is_array())
    fail_tensor(file, name, "'shape' is " + excerpt(*shape_it) + ", expected an array of non-negative integers");
  uint64_t element_count = 1;
  for (const auto& size : *shape_it) {
    if (!size.is_number_unsigned())
      fail_tensor(file, name, "shape " + excerpt(*shape_it) + " has the element " + excerpt(size) +
                                  ", expected a non-negative integer");
    const uint64_t dim = size.get<uint64_t>();
    if (dim > kMaxElementCount || __builtin_mul_overflow(element_count, dim, &element_count) ||
        element_count > kMaxElementCount)
      fail_tensor(file, name, "shape " + excerpt(*shape_it) + " has more elements than fit in 63 bits");
    entry.shape.push_back(static_cast<int64_t>(dim));
  }

  const auto offsets_it = value.find("data_offsets");
  if (offsets_it == value.end()) fail_tensor(file, name, "the header entry has no 'data_offsets'");
  if (!offsets_it->is_array() || offsets_it->size() != 2 || !(*offsets_it)[0].is_number_unsigned() ||
      !(*offsets_it)[1].is_number_unsigned())
    fail_tensor(file, name, "'data_offsets' is " + excerpt(*offsets_it) +
                                ", expected [begin, end], two non-negative integers");
  entry.begin = (*offsets_it)[0].get<uint64_t>();
  entry.end = (*offsets_it)[1].get<uint64_t>();
  const std::string offsets_text = "data_offsets [" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) + "]";
  if (entry.begin > entry.end) fail_tensor(file, name, offsets_text + " begin after they end");
  if (entry.end > buffer_size)
    fail_tensor(file, name, offsets_text + " run past the end of the data buffer, which holds " +
                                std::to_string(buffer_size) + " bytes (is the file truncated?)");

  uint64_t expected_bytes = 0;
  if (__builtin_mul_overflow(element_count, static_cast<uint64_t>(dtype_size(entry.dtype)), &expected_bytes) ||
      expected_bytes != entry.nbytes())
    fail_tensor(file, name, "shape " + shape_str(entry.shape) + " of " + dtype_text + " needs " +
                                (expected_bytes / dtype_size(entry.dtype) == element_count
                                     ? std::to_string(expected_bytes)
                                     : std::string("more than 2^64")) +
                                " bytes, but " + offsets_text + " span " + std::to_string(entry.nbytes()));
  return entry;
}

std::map<std::string, std::string> parse_metadata(const json& value, const std::string& file) {
  std::map<std::string, std::string> metadata;
  if (value.is_null()) return metadata;  // the official reader treats null as "no metadata"
  if (!value.is_object())
    fail_file(file, "'__metadata__' is " + excerpt(value) + ", expected an object of string to string");
  for (const auto& [key, text] : value.items()) {
    if (!text.is_string())
      fail_file(file, "'__metadata__' key '" + excerpt(key) + "' holds " + excerpt(text) + ", expected a string");
    metadata.emplace(key, text.get<std::string>());
  }
  return metadata;
}

// Closes a file descriptor on every path out of a scope.
struct FileDescriptor {
  int fd = -1;
  explicit FileDescriptor(int value) : fd(value) {}
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  ~FileDescriptor() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

void write_all(int fd, const void* data, size_t size, const std::string& file) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  while (size > 0) {
    const ssize_t written = ::write(fd, bytes, std::min<size_t>(size, size_t{1} << 30));
    if (written < 0) {
      if (errno == EINTR) continue;
      fail("cannot write '" + file + "': " + system_error_text());
    }
    bytes += written;
    size -= static_cast<size_t>(written);
  }
}

}  // namespace

const char* safetensors_dtype_string(DType dtype) {
  for (const auto& d : kDTypeStrings)
    if (d.dtype == dtype) return d.text;
  fail(std::string("dtype ") + dtype_name(dtype) + " has no safetensors name");
}

SafetensorsHeader parse_safetensors_header(const uint8_t* bytes, size_t size, const std::string& file_name) {
  if (size < 8)
    fail_file(file_name, "the file has " + std::to_string(size) +
                             " bytes, fewer than the 8 that hold the header length");
  uint64_t header_length = 0;
  std::memcpy(&header_length, bytes, 8);
  const uint64_t bytes_after_length = size - 8;
  if (header_length > kSafetensorsMaxHeaderBytes)
    fail_file(file_name, "the header length is " + std::to_string(header_length) + " bytes, above the limit of " +
                             std::to_string(kSafetensorsMaxHeaderBytes));
  if (header_length > bytes_after_length)
    fail_file(file_name, "the header length is " + std::to_string(header_length) + " bytes, but only " +
                             std::to_string(bytes_after_length) + " bytes follow the 8-byte length");
  if (header_length == 0 || bytes[8] != '{')
    fail_file(file_name, "the header does not start with '{' (is this a safetensors file?)");

  const char* header_text = reinterpret_cast<const char*>(bytes + 8);
  const json header = parse_json_without_duplicate_keys(header_text, header_text + header_length,
                                                        "safetensors file '" + file_name + "'", "header",
                                                        /*max_depth=*/3, /*top_level_keys_are_tensors=*/true);
  if (!header.is_object())
    fail_file(file_name, std::string("the header is ") + header.type_name() + ", expected a JSON object");

  SafetensorsHeader result;
  result.data_start = 8 + header_length;
  const uint64_t buffer_size = bytes_after_length - header_length;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__")
      result.metadata = parse_metadata(value, file_name);
    else
      result.entries.push_back(parse_entry(name, value, buffer_size, file_name));
  }

  std::sort(result.entries.begin(), result.entries.end(), [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t covered = 0;  // the data buffer is tiled up to here
  const SafetensorsEntry* previous = nullptr;
  for (const auto& entry : result.entries) {
    const std::string offsets_text = "data_offsets [" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) + "]";
    if (entry.begin < covered)
      fail_tensor(file_name, entry.name, offsets_text + " overlap tensor '" + excerpt(previous->name) +
                                             "', which ends at byte " + std::to_string(covered));
    if (entry.begin > covered)
      fail_tensor(file_name, entry.name, offsets_text + " leave a hole: bytes [" + std::to_string(covered) + ", " +
                                             std::to_string(entry.begin) + ") belong to no tensor");
    covered = entry.end;
    previous = &entry;
  }
  if (covered != buffer_size)
    fail_file(file_name, "the tensors cover " + std::to_string(covered) + " bytes of the data buffer, which holds " +
                             std::to_string(buffer_size) + " (bytes at the end belong to no tensor)");
  return result;
}

// ---- SafetensorsFile ----

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  FileDescriptor file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (file.fd < 0) fail("cannot open safetensors file '" + path + "': " + system_error_text());
  struct stat info {};
  if (::fstat(file.fd, &info) != 0) fail("cannot stat safetensors file '" + path + "': " + system_error_text());
  if (!S_ISREG(info.st_mode)) fail("safetensors file '" + path + "' is not a regular file");
  const auto size = static_cast<size_t>(info.st_size);
  if (size < 8) {
    const uint8_t empty[8] = {};
    parse_safetensors_header(empty, size, path);  // throws with the usual message
  }
  // Writable private pages: a tensor viewing the file may be updated in place (an optimizer step)
  // without a crash and without the change ever reaching the file. NORESERVE: no swap is set aside
  // for pages that are only read.
  void* address = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, file.fd, 0);
  if (address == MAP_FAILED) fail("cannot map safetensors file '" + path + "': " + system_error_text());
  mapping_ = std::shared_ptr<void>(address, [size](void* p) { ::munmap(p, size); });
  bytes_ = static_cast<const uint8_t*>(address);
  header_ = parse_safetensors_header(bytes_, size, path);
  for (size_t i = 0; i < header_.entries.size(); ++i) index_.emplace(header_.entries[i].name, i);
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> names;
  names.reserve(header_.entries.size());
  for (const auto& entry : header_.entries) names.push_back(entry.name);
  return names;
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  const auto it = index_.find(name);
  if (it == index_.end()) fail("safetensors file '" + path_ + "' has no tensor '" + name + "'");
  return header_.entries[it->second];
}

Tensor SafetensorsFile::get(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  if (e.nbytes() == 0) return Tensor::empty(e.shape, e.dtype);
  auto* data = const_cast<uint8_t*>(bytes_ + header_.data_start + e.begin);
  // Headers whose length is not a multiple of 8 leave the data misaligned; kernels may not read
  // misaligned elements, so those tensors are copied.
  if (reinterpret_cast<uintptr_t>(data) % dtype_size(e.dtype) == 0)
    return Tensor::from_blob(mapping_, data, e.shape, e.dtype);
  Tensor copy = Tensor::empty(e.shape, e.dtype);
  std::memcpy(copy.data_ptr(), data, e.nbytes());
  return copy;
}

// ---- writing ----

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  const std::string where = "save_safetensors('" + path + "')";
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> seen;
  std::vector<Tensor> contiguous_tensors;
  contiguous_tensors.reserve(tensors.size());
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") fail(where + ": '__metadata__' is reserved and cannot name a tensor");
    if (!seen.insert(name).second) fail(where + ": tensor '" + name + "' is given twice");
    if (!tensor.defined()) fail(where + ": tensor '" + name + "' is undefined");
    if (tensor.device() != Device::cpu)
      fail(where + ": tensor '" + name + "' is " + tensor.str() + "; move it to the CPU first (.to(Device::cpu))");
    const Tensor contiguous = tensor.contiguous();
    const uint64_t nbytes = contiguous.nbytes();
    header[name] = {{"dtype", safetensors_dtype_string(contiguous.dtype())},
                    {"shape", contiguous.shape()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    contiguous_tensors.push_back(contiguous);
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    fail(where + ": a tensor name or metadata string is not valid UTF-8 (" + e.what() + ")");
  }
  // As the official writer does: spaces up to a multiple of 8, so 8-byte dtypes start aligned.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');
  const uint64_t header_length = header_text.size();

  const std::string temporary = path + ".tmp." + std::to_string(::getpid());
  FileDescriptor file(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (file.fd < 0) fail(where + ": cannot create '" + temporary + "': " + system_error_text());
  try {
    write_all(file.fd, &header_length, 8, temporary);
    write_all(file.fd, header_text.data(), header_text.size(), temporary);
    for (const auto& tensor : contiguous_tensors) write_all(file.fd, tensor.data_ptr(), tensor.nbytes(), temporary);
    if (::fsync(file.fd) != 0) fail(where + ": cannot fsync '" + temporary + "': " + system_error_text());
    if (::close(file.release()) != 0) fail(where + ": cannot close '" + temporary + "': " + system_error_text());
    if (::rename(temporary.c_str(), path.c_str()) != 0)
      fail(where + ": cannot rename '" + temporary + "' to '" + path + "': " + system_error_text());
  } catch (...) {
    ::unlink(temporary.c_str());
    throw;
  }
  // The rename is durable only once the directory entry is on disk; a failure here loses nothing
  // that a reader could see, so it is not an error.
  const std::string directory = std::filesystem::path(path).parent_path().string();
  FileDescriptor directory_fd(::open(directory.empty() ? "." : directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (directory_fd.fd >= 0) ::fsync(directory_fd.fd);
}

void write_file_atomically(const std::string& path, const std::string& text) {
  const std::string temporary = path + ".tmp." + std::to_string(::getpid());
  FileDescriptor file(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (file.fd < 0) fail("cannot create '" + temporary + "': " + system_error_text());
  try {
    write_all(file.fd, text.data(), text.size(), temporary);
    if (::fsync(file.fd) != 0) fail("cannot fsync '" + temporary + "': " + system_error_text());
    if (::close(file.release()) != 0) fail("cannot close '" + temporary + "': " + system_error_text());
    if (::rename(temporary.c_str(), path.c_str()) != 0) fail("cannot rename '" + temporary + "' to '" + path + "': " + system_error_text());
  } catch (...) {
    ::unlink(temporary.c_str());
    throw;
  }
}

std::vector<std::string> save_safetensors_sharded(const std::string& directory, const std::vector<std::pair<std::string, Tensor>>& tensors,
                                                  uint64_t max_shard_bytes, const std::map<std::string, std::string>& metadata) {
  namespace fs = std::filesystem;
  std::vector<std::vector<std::pair<std::string, Tensor>>> shards(1);
  uint64_t shard_bytes = 0, total = 0;
  for (const auto& named : tensors) {
    const uint64_t bytes = named.second.nbytes();
    if (!shards.back().empty() && shard_bytes + bytes > max_shard_bytes) shards.emplace_back(), shard_bytes = 0;
    shards.back().push_back(named);
    shard_bytes += bytes, total += bytes;
  }
  // What an earlier save left that this one does not overwrite would mislead a loader.
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(directory, error)) {
    const std::string name = entry.path().filename().string();
    if ((name.rfind("model-", 0) == 0 && entry.path().extension() == ".safetensors") || name == "model.safetensors.index.json" ||
        (shards.size() > 1 && name == "model.safetensors"))
      fs::remove(entry.path(), error);
  }
  std::vector<std::string> written;
  if (shards.size() == 1) {
    written.push_back((fs::path(directory) / "model.safetensors").string());
    save_safetensors(written.back(), shards[0], metadata);
    return written;
  }
  nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}}, {"weight_map", nlohmann::ordered_json::object()}};
  char name[64];
  for (size_t k = 0; k < shards.size(); ++k) {
    std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, shards.size());
    written.push_back((fs::path(directory) / name).string());
    save_safetensors(written.back(), shards[k], metadata);
    for (const auto& named : shards[k]) index["weight_map"][named.first] = name;
  }
  written.push_back((fs::path(directory) / "model.safetensors.index.json").string());
  write_file_atomically(written.back(), index.dump(2) + "\n");
  return written;
}

// ---- SafetensorsCheckpoint ----

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::string& path) : path_(path) {
  namespace fs = std::filesystem;
  std::error_code error;
  const auto status = fs::status(path, error);
  std::string single_file;
  if (fs::is_regular_file(status)) {
    single_file = path;
  } else if (fs::is_directory(status)) {
    // The order transformers uses: a single file wins over an index.
    const fs::path directory(path);
    if (fs::is_regular_file(directory / "model.safetensors", error))
      single_file = (directory / "model.safetensors").string();
    else if (fs::is_regular_file(directory / "model.safetensors.index.json", error))
      open_index(path, (directory / "model.safetensors.index.json").string());
    else
      fail("model directory '" + path + "' has neither model.safetensors nor model.safetensors.index.json");
  } else {
    fail("no such safetensors file or model directory: '" + path + "'");
  }
  if (!single_file.empty()) {
    const auto& file = shards_.emplace(single_file, SafetensorsFile(single_file)).first->second;
    for (const auto& entry : file.entries()) shard_of_.emplace(entry.name, single_file);
  }
  names_.reserve(shard_of_.size());
  for (const auto& [name, shard] : shard_of_) names_.push_back(name);
}

void SafetensorsCheckpoint::open_index(const std::string& directory, const std::string& index_path) {
  std::error_code error;
  const auto index_size = std::filesystem::file_size(index_path, error);
  if (!error && index_size > kSafetensorsMaxHeaderBytes)  // a real index is kilobytes; it is read whole
    fail_index(index_path, std::to_string(index_size) + " bytes is above the limit of " +
                               std::to_string(kSafetensorsMaxHeaderBytes));
  std::ifstream stream(index_path, std::ios::binary);
  if (!stream) fail("cannot open checkpoint index '" + index_path + "': " + system_error_text());
  const std::string text((std::istreambuf_iterator<char>(stream)), std::istreambuf_iterator<char>());
  if (stream.bad()) fail("cannot read checkpoint index '" + index_path + "'");
  const json index = parse_json_without_duplicate_keys(text.data(), text.data() + text.size(),
                                                       "checkpoint index '" + index_path + "'", "index",
                                                       /*max_depth=*/3, /*top_level_keys_are_tensors=*/false);
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    fail_index(index_path, "expected a JSON object with a \"weight_map\" object of tensor name -> shard file name");
  const json& weight_map = index["weight_map"];

  std::map<std::string, std::string> shard_name_of;  // tensor name -> shard file name, as listed
  for (const auto& [tensor, shard_value] : weight_map.items()) {
    if (!shard_value.is_string())
      fail_index(index_path, "tensor '" + excerpt(tensor) + "' maps to " + excerpt(shard_value) + ", expected a shard file name");
    const auto& shard_name = shard_value.get_ref<const std::string&>();
    // Shards must sit next to the index; anything else could reach any file on the machine.
    if (shard_name.empty() || shard_name == "." || shard_name.find('/') != std::string::npos ||
        shard_name.find('\\') != std::string::npos || shard_name.find("..") != std::string::npos)
      fail_index(index_path, "tensor '" + excerpt(tensor) + "' maps to shard '" + excerpt(shard_name) +
                 "', which is not a plain file name in the checkpoint directory");
    shard_name_of.emplace(tensor, shard_name);
  }

  for (const auto& [tensor, shard_name] : shard_name_of) {
    const std::string shard_path = (std::filesystem::path(directory) / shard_name).string();
    auto it = shards_.find(shard_path);
    if (it == shards_.end()) {
      if (!std::filesystem::is_regular_file(shard_path, error))
        fail_index(index_path, "tensor '" + excerpt(tensor) + "' maps to shard '" + shard_name + "', but '" + shard_path +
                   "' does not exist");
      it = shards_.emplace(shard_path, SafetensorsFile(shard_path)).first;
    }
    if (!it->second.contains(tensor))
      fail_index(index_path, "tensor '" + excerpt(tensor) + "' maps to shard '" + shard_name + "', which has no such tensor");
    shard_of_.emplace(tensor, shard_path);
  }

  // The reverse direction: every tensor a shard holds is the one the weight_map points at.
  for (const auto& [shard_path, file] : shards_) {
    const std::string shard_name = std::filesystem::path(shard_path).filename().string();
    for (const auto& entry : file.entries()) {
      const auto listed = shard_name_of.find(entry.name);
      if (listed == shard_name_of.end())
        fail_index(index_path, "shard '" + shard_name + "' holds tensor '" + excerpt(entry.name) + "', which the weight_map does not list");
      if (listed->second != shard_name)
        fail_index(index_path, "tensor '" + excerpt(entry.name) + "' is present in two shards, '" + listed->second + "' and '" +
                   shard_name + "'");
    }
  }
}

const SafetensorsFile& SafetensorsCheckpoint::file_of(const std::string& name) const {
  return shards_.at(shard_of(name));
}

const std::string& SafetensorsCheckpoint::shard_of(const std::string& name) const {
  const auto it = shard_of_.find(name);
  if (it == shard_of_.end()) fail("checkpoint '" + path_ + "' has no tensor '" + name + "'");
  return it->second;
}

const SafetensorsEntry& SafetensorsCheckpoint::entry(const std::string& name) const { return file_of(name).entry(name); }

Tensor SafetensorsCheckpoint::get(const std::string& name) const { return file_of(name).get(name); }

std::vector<std::string> SafetensorsCheckpoint::shard_paths() const {
  std::vector<std::string> paths;
  for (const auto& [shard_path, file] : shards_) paths.push_back(shard_path);
  return paths;
}

const SafetensorsFile& SafetensorsCheckpoint::shard(const std::string& shard_path) const {
  const auto it = shards_.find(shard_path);
  if (it == shards_.end()) fail("checkpoint '" + path_ + "' has no shard '" + shard_path + "'");
  return it->second;
}

}  // namespace ivl
