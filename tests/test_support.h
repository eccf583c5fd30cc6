// Shared by the tests: tensor comparisons, reading a file, the official tokenizers loaded once, a
// temporary directory that cleans up after itself, and running a command line.
#pragma once
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>
#include <utility>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "llm/tokenizer.h"
#include "tensor/tensor.h"
#include "tests/catch.h"

// The elements of an f32 tensor (any layout) in order.
inline std::vector<float> floats(const ivl::Tensor& t) {
  const ivl::Tensor dense = t.contiguous();
  return std::vector<float>(dense.data<float>(), dense.data<float>() + dense.numel());
}

// max |a - b| over all elements; the shapes must match.
inline double max_abs_diff(const ivl::Tensor& a, const ivl::Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const std::vector<double> x = a.to_doubles(), y = b.to_doubles();
  double d = 0;
  for (size_t i = 0; i < x.size(); ++i) d = std::max(d, std::abs(x[i] - y[i]));
  return d;
}

// max |got - want| / max |want| (the golden comparisons' measure); the element counts must match.
inline double max_rel_error(const ivl::Tensor& got, const ivl::Tensor& want) {
  const std::vector<double> a = got.to_doubles(), b = want.to_doubles();
  REQUIRE(a.size() == b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = std::max(diff, std::abs(a[i] - b[i])), scale = std::max(scale, std::abs(b[i]));
  return diff / std::max(scale, 1e-30);
}

// The whole file as bytes; a file that cannot be read fails the test.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return std::string(std::istreambuf_iterator<char>(in), {});
}

#ifdef IVL_SHARED_DIR
// The official tokenizers in ../shared/assets, each loaded once for all the tests that only read it
// (loading parses 150k merges).
inline const ivl::Tokenizer& qwen2_tokenizer() {
  static const auto tokenizer = ivl::load_tokenizer(std::string(IVL_SHARED_DIR) + "/assets/tokenizers/qwen2");
  return *tokenizer;
}
inline const ivl::Tokenizer& internlm2_tokenizer() {
  static const auto tokenizer = ivl::load_tokenizer(std::string(IVL_SHARED_DIR) + "/assets/tokenizers/internlm2");
  return *tokenizer;
}
#endif

// A fresh directory under the system temp folder for one test, removed with everything in it when
// the test ends.
struct TemporaryDirectory {
  std::filesystem::path path;
  explicit TemporaryDirectory(const std::string& prefix = "ivl_test") {
    std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "_XXXXXX")).string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~TemporaryDirectory() {
    std::error_code error;
    std::filesystem::remove_all(path, error);
  }
  TemporaryDirectory(const TemporaryDirectory&) = delete;
  TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;

  std::string str() const { return path.string(); }
  std::string file(const std::string& name) const { return (path / name).string(); }
  void write(const std::string& name, const std::string& bytes) const {
    std::ofstream out(path / name, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  // A symbolic link `name` to `target` (a shared asset that a test directory should contain).
  void link(const std::string& name, const std::string& target) const {
    std::filesystem::create_symlink(std::filesystem::absolute(target), path / name);
  }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& item : std::filesystem::directory_iterator(path)) names.push_back(item.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
};

// Runs a shell command line; returns its combined output and its exit code (-1 after a signal).
inline std::pair<std::string, int> run_command(const std::string& command) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string output;
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
  const int status = ::pclose(pipe);
  return {output, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}
