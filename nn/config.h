// Reading config.json files: a thin typed view over nlohmann::json whose errors name the file and the
// full key path ("config.json: llm_config.hidden_size: expected an integer, found a string").
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace ivl {

class ConfigReader {
 public:
  static ConfigReader from_file(const std::string& path);
  ConfigReader(nlohmann::json value, std::string file, std::string path = "");

  bool has(const std::string& key) const;  // present and not null
  ConfigReader child(const std::string& key) const;
  int64_t integer(const std::string& key) const;
  int64_t integer(const std::string& key, int64_t fallback) const;
  double number(const std::string& key) const;
  double number(const std::string& key, double fallback) const;
  bool boolean(const std::string& key, bool fallback) const;
  std::string string(const std::string& key) const;
  std::string string(const std::string& key, const std::string& fallback) const;
  std::vector<std::string> strings(const std::string& key) const;  // an array of strings
  const nlohmann::json& json() const { return value_; }
  [[noreturn]] void fail_at(const std::string& key, const std::string& message) const;

 private:
  const nlohmann::json& at(const std::string& key) const;
  nlohmann::json value_;
  std::string file_, path_;
};

}  // namespace ivl
