// Safetensors I/O: round trips of every dtype, the shared fixtures, sharded checkpoints, and crafted
// malformed files (built here at run time) that must each end in a clear exception, never a crash;
// also the `ivl inspect` binary on good and bad input.
#include <stdlib.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "nn/safetensors.h"
#include "tests/catch.h"
#include "tests/test_support.h"

using namespace ivl;
namespace fs = std::filesystem;

namespace {

const std::string kSharedDirectory = IVL_SHARED_DIR;
const std::string kTinyInternLM2 = kSharedDirectory + "/fixtures/tiny-internlm2";


std::string little_endian_u64(uint64_t value) {
  std::string bytes(8, '\0');
  std::memcpy(bytes.data(), &value, 8);
  return bytes;
}

// A file image: the 8-byte header length, the header text, the data buffer.
std::string file_image(const std::string& header, const std::string& data) {
  return little_endian_u64(header.size()) + header + data;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream stream(path, std::ios::binary | std::ios::trunc);
  stream.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(stream.good());
}

// A tensor whose bytes follow a pattern (0/1 for bool, which must stay a valid bool).
Tensor patterned(const Shape& shape, DType dtype, int seed) {
  Tensor t = Tensor::empty(shape, dtype);
  auto* bytes = static_cast<uint8_t*>(t.data_ptr());
  for (size_t i = 0; i < t.nbytes(); ++i)
    bytes[i] = dtype == DType::boolean ? static_cast<uint8_t>((i + static_cast<size_t>(seed)) % 2) : static_cast<uint8_t>(i * 31 + static_cast<size_t>(seed));
  return t;
}

std::vector<uint8_t> bytes_of(const Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.data_ptr());
  return std::vector<uint8_t>(p, p + t.nbytes());
}

// The message of the exception `action` throws; fails the test if it throws none.
std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const std::exception& e) {
    return e.what();
  }
  FAIL("expected an exception");
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }


const std::string kGoodEntry = R"("dtype":"F32","shape":[2],"data_offsets":[0,8])";

}  // namespace

TEST_CASE("safetensors: every dtype round-trips byte for byte, with metadata", "[safetensors]") {
  TemporaryDirectory directory;
  const std::string path = directory.file("all.safetensors");
  const std::vector<DType> dtypes = {DType::f64, DType::f32, DType::bf16, DType::f16,
                                     DType::i32, DType::i64, DType::u8,   DType::boolean};
  std::vector<std::pair<std::string, Tensor>> tensors;
  int seed = 0;
  for (DType dtype : dtypes) tensors.emplace_back(std::string("t_") + dtype_name(dtype), patterned({3, 5}, dtype, ++seed));
  tensors.emplace_back("scalar", patterned({}, DType::f32, 7));
  tensors.emplace_back("empty", patterned({0, 4}, DType::bf16, 8));
  tensors.emplace_back("u8_odd", patterned({3}, DType::u8, 9));  // leaves what follows misaligned
  tensors.emplace_back("after_odd", patterned({2, 2}, DType::f64, 10));
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "round trip ü"}};
  save_safetensors(path, tensors, metadata);

  CHECK(directory.listing() == std::vector<std::string>{"all.safetensors"});  // no temporary left behind
  std::ifstream raw(path, std::ios::binary);
  uint64_t header_length = 0;
  raw.read(reinterpret_cast<char*>(&header_length), 8);
  CHECK(header_length % 8 == 0);

  const SafetensorsFile file(path);
  CHECK(file.metadata() == metadata);
  std::vector<std::string> expected_names;
  for (const auto& [name, tensor] : tensors) expected_names.push_back(name);
  CHECK(file.names() == expected_names);  // file order is the order given
  for (const auto& [name, tensor] : tensors) {
    INFO(name);
    const Tensor loaded = file.get(name);
    CHECK(loaded.dtype() == tensor.dtype());
    CHECK(loaded.shape() == tensor.shape());
    CHECK(loaded.device() == Device::cpu);
    CHECK(bytes_of(loaded) == bytes_of(tensor));
    CHECK(file.entry(name).nbytes() == tensor.nbytes());
    CHECK(reinterpret_cast<uintptr_t>(loaded.data_ptr()) % dtype_size(loaded.dtype()) == 0);
  }
  // "after_odd" (f64) starts 3 bytes past an 8-byte boundary: it must be a copy. The others view the file.
  CHECK(file.get("after_odd").data_ptr() != file.get("after_odd").data_ptr());
  CHECK(file.get("t_f64").data_ptr() == file.get("t_f64").data_ptr());
  CHECK(file.get("t_bf16").data_ptr() == file.get("t_bf16").data_ptr());
}

TEST_CASE("safetensors: zero-copy tensors keep the mapping alive, misaligned data is copied", "[safetensors]") {
  TemporaryDirectory directory;
  const std::string path = directory.file("view.safetensors");
  const Tensor original = patterned({4, 4}, DType::f32, 3);
  save_safetensors(path, {{"w", original}});
  Tensor view;
  {
    const SafetensorsFile file(path);
    view = file.get("w");
  }
  CHECK(bytes_of(view) == bytes_of(original));  // the file object is gone; the mapping is not
  // Writes land in private pages, never in the file.
  static_cast<uint8_t*>(view.data_ptr())[0] ^= 0xff;
  CHECK(bytes_of(SafetensorsFile(path).get("w")) == bytes_of(original));

  // A header of 61 bytes puts the data at offset 69, which no f32 may start at.
  std::string header = "{\"w\":{" + kGoodEntry + "}}";
  header.append(61 - header.size(), ' ');
  const std::string data = "\x01\x02\x03\x04\x05\x06\x07\x08";
  write_bytes(directory.file("odd.safetensors"), file_image(header, data));
  const SafetensorsFile odd(directory.file("odd.safetensors"));
  const Tensor copy = odd.get("w");
  CHECK(reinterpret_cast<uintptr_t>(copy.data_ptr()) % 4 == 0);
  CHECK(bytes_of(copy) == std::vector<uint8_t>(data.begin(), data.end()));
  CHECK(copy.data_ptr() != odd.get("w").data_ptr());
}

TEST_CASE("safetensors: saving writes row-major data and refuses bad input", "[safetensors]") {
  TemporaryDirectory directory;
  const std::string path = directory.file("out.safetensors");
  const Tensor matrix = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  save_safetensors(path, {{"transposed", matrix.transpose(0, 1)}});
  const Tensor loaded = SafetensorsFile(path).get("transposed");
  CHECK(loaded.shape() == Shape{3, 2});
  const auto* values = static_cast<const float*>(loaded.data_ptr());
  CHECK(std::vector<float>(values, values + 6) == std::vector<float>{1, 4, 2, 5, 3, 6});

  // A contiguous view that starts inside its storage: the bytes written start at the view.
  save_safetensors(directory.file("row.safetensors"), {{"row", matrix.narrow(0, 1, 1)}});
  const Tensor row = SafetensorsFile(directory.file("row.safetensors")).get("row");
  CHECK(row.shape() == Shape{1, 3});
  CHECK(std::vector<float>(static_cast<const float*>(row.data_ptr()), static_cast<const float*>(row.data_ptr()) + 3) ==
        std::vector<float>{4, 5, 6});
  fs::remove(directory.file("row.safetensors"));

  const Tensor t = patterned({2}, DType::f32, 1);
  CHECK(contains(error_of([&] { save_safetensors(path, {{"a", t}, {"a", t}}); }), "'a' is given twice"));
  CHECK(contains(error_of([&] { save_safetensors(path, {{"a", Tensor()}}); }), "undefined"));
  CHECK(contains(error_of([&] { save_safetensors(path, {{"__metadata__", t}}); }), "reserved"));
  const std::string unwritable = directory.file("missing/x.safetensors");
  CHECK(contains(error_of([&] { save_safetensors(unwritable, {{"a", t}}); }), unwritable));
  // The refused saves left the earlier file as it was, and no temporary.
  CHECK(SafetensorsFile(path).names() == std::vector<std::string>{"transposed"});
  CHECK(directory.listing() == std::vector<std::string>{"out.safetensors"});

  // Overwriting a file while tensors still view it is safe: the rename leaves the old bytes mapped.
  const Tensor view = SafetensorsFile(path).get("transposed");
  save_safetensors(path, {{"other", t}});
  CHECK(std::vector<float>(static_cast<const float*>(view.data_ptr()), static_cast<const float*>(view.data_ptr()) + 6) ==
        std::vector<float>{1, 4, 2, 5, 3, 6});
  CHECK(SafetensorsFile(path).names() == std::vector<std::string>{"other"});

  save_safetensors(directory.file("none.safetensors"), {});
  CHECK(SafetensorsFile(directory.file("none.safetensors")).names().empty());
}

TEST_CASE("safetensors: the tiny-internlm2 fixture", "[safetensors]") {
  const SafetensorsFile model(kTinyInternLM2 + "/model.safetensors");
  CHECK(model.names().size() == 55);
  for (const auto& entry : model.entries()) CHECK(entry.dtype == DType::bf16);
  CHECK(model.metadata().at("format") == "pt");
  CHECK(model.entry("language_model.model.layers.0.attention.wqkv.weight").shape == Shape{128, 64});
  const Tensor patch = model.get("vision_model.embeddings.patch_embedding.weight");
  CHECK(patch.shape() == Shape{64, 3, 14, 14});
  CHECK(patch.dtype() == DType::bf16);
  CHECK(!model.contains("no.such.tensor"));
  CHECK(contains(error_of([&] { model.entry("no.such.tensor"); }), "no tensor 'no.such.tensor'"));

  const SafetensorsFile golden(kTinyInternLM2 + "/golden.safetensors");
  CHECK(golden.entry("input.input_ids").dtype == DType::i64);
  CHECK(golden.entry("out.logits").dtype == DType::f32);
  // Header order in this file is not offset order; entries() must be.
  for (size_t i = 1; i < golden.entries().size(); ++i) CHECK(golden.entries()[i - 1].end == golden.entries()[i].begin);

  const SafetensorsCheckpoint directory(kTinyInternLM2);
  CHECK(directory.names().size() == 55);
  CHECK(std::is_sorted(directory.names().begin(), directory.names().end()));
  CHECK(fs::path(directory.shard_of("mlp1.1.weight")).filename() == "model.safetensors");
}

TEST_CASE("safetensors: malformed files throw with the file, the tensor and the numbers", "[safetensors]") {
  TemporaryDirectory directory;
  const std::string eight = "abcdefgh";
  struct Case {
    const char* label;
    std::string bytes;
    std::vector<std::string> expected;  // substrings of the message, besides the file name
  };
  const uint64_t limit = kSafetensorsMaxHeaderBytes;
  const std::vector<Case> cases = {
      {"empty file", "", {"0 bytes"}},
      {"shorter than 8 bytes", std::string("\x05\x00\x00", 3), {"3 bytes", "fewer than the 8"}},
      {"data cut short", file_image("{\"w\":{" + kGoodEntry + "}}", "abcd"), {"'w'", "[0, 8]", "past the end", "4 bytes"}},
      {"end beyond the file",
       file_image(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", eight), {"'w'", "[0, 16]", "holds 8 bytes"}},
      {"overlap",
       file_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                  eight + "1234"),
       {"'b'", "overlap tensor 'a'", "ends at byte 8"}},
      {"hole",
       file_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                  eight + "1234" + eight),
       {"'b'", "hole", "[8, 12)"}},
      {"first tensor not at 0", file_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", "1234" + eight),
       {"'a'", "hole", "[0, 4)"}},
      {"begin after end", file_image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", eight),
       {"'a'", "[8, 0]", "begin after"}},
      {"bytes after the last tensor", file_image("{\"w\":{" + kGoodEntry + "}}", eight + "xyz"),
       {"cover 8 bytes", "holds 11"}},
      {"header length 2^63", little_endian_u64(uint64_t{1} << 63) + "{}", {"9223372036854775808", "above the limit"}},
      {"header length 2^40", little_endian_u64(uint64_t{1} << 40) + "{}", {"1099511627776", "above the limit"}},
      {"header length just above the limit", little_endian_u64(limit + 1) + "{}", {"100000001"}},
      {"header length beyond the file", little_endian_u64(1000) + "{}", {"1000 bytes", "only 2 bytes follow"}},
      {"zero header length", little_endian_u64(0), {"does not start with '{'"}},
      {"bad JSON", file_image(R"({"w":{"dtype":)", ""), {"not valid JSON"}},
      {"JSON array", file_image("[1, 2]", ""), {"does not start with '{'"}},
      {"trailing garbage", file_image("{} x", ""), {"not valid JSON"}},
      {"invalid UTF-8", file_image("{\"w\xff\":{" + kGoodEntry + "}}", eight), {"not valid JSON"}},
      {"duplicate tensor names", file_image("{\"w\":{" + kGoodEntry + "},\"w\":{" + kGoodEntry + "}}", eight),
       {"'w'", "appears twice"}},
      {"duplicate key in an entry",
       file_image(R"({"w":{"dtype":"F32","dtype":"F64","shape":[2],"data_offsets":[0,8]}})", eight), {"'dtype' appears twice"}},
      {"entry not an object", file_image(R"({"w":[1,2]})", ""), {"'w'", "expected an object"}},
      {"missing dtype", file_image(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", eight), {"'w'", "no 'dtype'"}},
      {"dtype not a string", file_image(R"({"w":{"dtype":7,"shape":[2],"data_offsets":[0,8]}})", eight), {"'w'", "'dtype' is 7"}},
      {"unsupported dtype I8", file_image(R"({"w":{"dtype":"I8","shape":[8],"data_offsets":[0,8]}})", eight),
       {"'w'", "unsupported dtype 'I8'", "BF16"}},
      {"unsupported dtype F8_E4M3", file_image(R"({"w":{"dtype":"F8_E4M3","shape":[8],"data_offsets":[0,8]}})", eight),
       {"'w'", "unsupported dtype 'F8_E4M3'"}},
      {"missing shape", file_image(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})", eight), {"'w'", "no 'shape'"}},
      {"shape not an array", file_image(R"({"w":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", eight), {"'w'", "'shape' is 2"}},
      {"shape times dtype size is not the byte count",
       file_image(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight), {"'w'", "needs 12 bytes", "span 8"}},
      {"negative dim", file_image(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight),
       {"'w'", "-2", "non-negative integer"}},
      {"fractional dim", file_image(R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", eight),
       {"'w'", "non-negative integer"}},
      {"dim above 2^64", file_image(R"({"w":{"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,8]}})", eight),
       {"'w'", "non-negative integer"}},
      {"element count overflows", file_image(R"({"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", eight),
       {"'w'", "63 bits"}},
      {"byte count overflows", file_image(R"({"w":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", eight),
       {"'w'", "more than 2^64"}},
      {"missing data_offsets", file_image(R"({"w":{"dtype":"F32","shape":[2]}})", eight), {"'w'", "no 'data_offsets'"}},
      {"three data_offsets", file_image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", eight),
       {"'w'", "[begin, end]"}},
      {"negative data_offsets", file_image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", eight),
       {"'w'", "[begin, end]"}},
      {"shape nested in a shape", file_image(R"({"w":{"dtype":"F32","shape":[[2]],"data_offsets":[0,8]}})", eight),
       {"nests objects and arrays 4 deep"}},
      {"a hundred thousand nested arrays",
       file_image("{\"w\":" + std::string(100000, '[') + std::string(100000, ']') + "}", ""), {"4 deep"}},
      {"metadata not an object", file_image(R"({"__metadata__":["a"]})", ""), {"'__metadata__'", "expected an object"}},
      {"metadata value not a string", file_image(R"({"__metadata__":{"epoch":3}})", ""), {"'epoch'", "expected a string"}},
  };
  for (const auto& c : cases) {
    INFO(c.label);
    const std::string path = directory.file("bad.safetensors");
    write_bytes(path, c.bytes);
    const std::string message = error_of([&] { SafetensorsFile file(path); });
    INFO(message);
    CHECK(contains(message, path));
    for (const auto& part : c.expected) CHECK(contains(message, part));
    // The parser alone (what the fuzzer drives) agrees.
    const std::string direct = error_of([&] {
      parse_safetensors_header(reinterpret_cast<const uint8_t*>(c.bytes.data()), c.bytes.size(), "in memory");
    });
    CHECK(contains(direct, "in memory"));
  }

  // A parse error quotes the token it stopped at; an unterminated 1 MB string must not all end up in it.
  write_bytes(directory.file("long.safetensors"), file_image("{\"" + std::string(1 << 20, 'a'), ""));
  const std::string long_message = error_of([&] { SafetensorsFile file(directory.file("long.safetensors")); });
  CHECK(contains(long_message, "not valid JSON"));
  CHECK(long_message.size() < 1000);

  // Things that look odd but are valid: null metadata, zero-size tensors, padding, unknown entry keys.
  const std::string fine = file_image(
      R"({"__metadata__":null,"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}}    )",
      eight);
  const auto header = parse_safetensors_header(reinterpret_cast<const uint8_t*>(fine.data()), fine.size(), "fine");
  CHECK(header.entries.size() == 2);
  CHECK(header.entries[0].name == "z");
  CHECK(header.metadata.empty());

  CHECK(contains(error_of([&] { SafetensorsFile file(directory.file("absent.safetensors")); }), "absent.safetensors"));
  CHECK(contains(error_of([&] { SafetensorsFile file(directory.path.string()); }), "not a regular file"));
}

TEST_CASE("safetensors: sharded checkpoints with an index", "[safetensors]") {
  TemporaryDirectory directory;
  const std::string first = "model-00001-of-00002.safetensors", second = "model-00002-of-00002.safetensors";
  const Tensor a = patterned({2, 3}, DType::bf16, 1), b = patterned({4}, DType::f32, 2), c = patterned({3}, DType::i64, 3);
  save_safetensors(directory.file(first), {{"a", a}, {"b", b}});
  save_safetensors(directory.file(second), {{"c", c}});
  const auto write_index = [&](const std::string& weight_map) {
    std::ofstream(directory.file("model.safetensors.index.json"))
        << R"({"metadata": {"total_size": 52}, "weight_map": )" << weight_map << "}";
  };
  const std::string good_map = "{\"a\": \"" + first + "\", \"b\": \"" + first + "\", \"c\": \"" + second + "\"}";
  write_index(good_map);
  {
    const SafetensorsCheckpoint checkpoint(directory.path.string());
    CHECK(checkpoint.names() == std::vector<std::string>{"a", "b", "c"});
    CHECK(checkpoint.shard_paths().size() == 2);
    CHECK(checkpoint.shard_of("c") == directory.file(second));
    CHECK(bytes_of(checkpoint.get("a")) == bytes_of(a));
    CHECK(bytes_of(checkpoint.get("c")) == bytes_of(c));
    CHECK(checkpoint.entry("b").shape == Shape{4});
    CHECK(checkpoint.contains("b"));
    CHECK(!checkpoint.contains("d"));
    CHECK(contains(error_of([&] { checkpoint.get("d"); }), "no tensor 'd'"));
  }
  const auto error_for = [&](const std::string& weight_map) {
    write_index(weight_map);
    return error_of([&] { SafetensorsCheckpoint checkpoint(directory.path.string()); });
  };
  const std::string missing = error_for("{\"a\": \"" + first + "\", \"b\": \"" + first + "\", \"c\": \"model-00003.safetensors\"}");
  CHECK(contains(missing, "model-00003.safetensors"));
  CHECK(contains(missing, "does not exist"));
  const std::string wrong = error_for("{\"a\": \"" + second + "\", \"b\": \"" + first + "\", \"c\": \"" + second + "\"}");
  CHECK(contains(wrong, "'a'"));
  CHECK(contains(wrong, "has no such tensor"));
  CHECK(contains(error_for("{\"a\": \"../" + first + "\"}"), "not a plain file name"));
  CHECK(contains(error_for("{\"a\": \"/etc/passwd\"}"), "not a plain file name"));
  CHECK(contains(error_for("{\"a\": \"..\"}"), "not a plain file name"));
  const std::string unlisted = error_for("{\"a\": \"" + first + "\", \"c\": \"" + second + "\"}");
  CHECK(contains(unlisted, "'b'"));
  CHECK(contains(unlisted, "does not list"));
  CHECK(contains(error_for("[]"), "weight_map"));
  CHECK(contains(error_for("{\"a\": 3}"), "'a'"));
  const std::string duplicate = error_for("{\"a\": \"x\", \"a\": \"y\"}");
  CHECK(contains(duplicate, "checkpoint index '" + directory.file("model.safetensors.index.json") + "'"));
  CHECK(contains(duplicate, "'a' appears twice"));
  write_index(good_map + " trailing");
  CHECK(contains(error_of([&] { SafetensorsCheckpoint checkpoint(directory.path.string()); }), "not valid JSON"));

  // The same tensor in both shards.
  save_safetensors(directory.file(second), {{"c", c}, {"a", a}});
  const std::string twice = error_for(good_map);
  CHECK(contains(twice, "'a'"));
  CHECK(contains(twice, "two shards"));

  // A single file, as a path or as model.safetensors in a directory; a directory with neither.
  TemporaryDirectory single;
  CHECK(contains(error_of([&] { SafetensorsCheckpoint checkpoint(single.path.string()); }), "neither"));
  save_safetensors(single.file("model.safetensors"), {{"x", a}});
  CHECK(SafetensorsCheckpoint(single.path.string()).names() == std::vector<std::string>{"x"});
  CHECK(SafetensorsCheckpoint(single.file("model.safetensors")).names() == std::vector<std::string>{"x"});
  CHECK(contains(error_of([&] { SafetensorsCheckpoint checkpoint(single.file("nothing")); }), "nothing"));
}

TEST_CASE("safetensors: the ivl inspect command", "[safetensors]") {
  const std::string binary = IVL_BINARY;
  const auto [listing, listing_code] = run_command("'" + binary + "' inspect '" + kTinyInternLM2 + "/model.safetensors'");
  INFO(listing);
  CHECK(listing_code == 0);
  CHECK(contains(listing, "total: 55 tensors"));
  size_t bf16_lines = 0;
  for (size_t at = listing.find(" BF16 "); at != std::string::npos; at = listing.find(" BF16 ", at + 1)) ++bf16_lines;
  CHECK(bf16_lines == 55);
  CHECK(contains(listing, "language_model.model.layers.0.attention.wqkv.weight"));

  const auto [model, model_code] = run_command("'" + binary + "' inspect '" + kTinyInternLM2 + "'");
  INFO(model);
  CHECK(model_code == 0);
  CHECK(contains(model, "InternLM2ForCausalLM"));
  CHECK(contains(model, "internlm2-chat"));
  CHECK(contains(model, "vision_model"));
  CHECK(contains(model, "BF16 x 55"));

  TemporaryDirectory directory;
  const std::string bad = directory.file("bad.safetensors");
  write_bytes(bad, file_image(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", "abcd"));
  const auto [error, error_code] = run_command("'" + binary + "' inspect '" + bad + "'");
  INFO(error);
  CHECK(error_code == 1);  // a message and exit code 1, not a signal
  CHECK(contains(error, bad));
  CHECK(contains(error, "'w'"));

  const auto [usage, usage_code] = run_command("'" + binary + "' inspect");
  CHECK(usage_code == 1);
  CHECK(contains(usage, "usage"));
  const auto [absent, absent_code] = run_command("'" + binary + "' inspect '" + directory.file("absent") + "'");
  CHECK(absent_code == 1);
  CHECK(contains(absent, "no such file"));
}
