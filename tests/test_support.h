// Shared by the tests: a temporary directory that cleans up after itself, and running a command line.
#pragma once
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>
#include <utility>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/catch.h"

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
