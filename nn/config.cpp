// ConfigReader: typed access to a JSON config with errors that say which file and key.
#include "nn/config.h"

#include <fstream>
#include <sstream>

#include "tensor/tensor.h"

namespace ivl {

ConfigReader ConfigReader::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot open config file '" + path + "'");
  std::stringstream text;
  text << in.rdbuf();
  try {
    nlohmann::json value = nlohmann::json::parse(text.str());
    if (!value.is_object()) fail("config file '" + path + "' does not hold a JSON object");
    return ConfigReader(std::move(value), path);
  } catch (const nlohmann::json::exception& e) {
    fail("config file '" + path + "' is not valid JSON: " + e.what());
  }
}

ConfigReader::ConfigReader(nlohmann::json value, std::string file, std::string path)
    : value_(std::move(value)), file_(std::move(file)), path_(std::move(path)) {}

void ConfigReader::fail_at(const std::string& key, const std::string& message) const {
  fail(file_ + ": " + path_ + key + ": " + message);
}

bool ConfigReader::has(const std::string& key) const {
  const auto it = value_.find(key);
  return it != value_.end() && !it->is_null();
}

const nlohmann::json& ConfigReader::at(const std::string& key) const {
  const auto it = value_.find(key);
  if (it == value_.end() || it->is_null()) fail_at(key, "missing");
  return *it;
}

ConfigReader ConfigReader::child(const std::string& key) const {
  const nlohmann::json& v = at(key);
  if (!v.is_object()) fail_at(key, std::string("expected an object, found ") + v.type_name());
  return ConfigReader(v, file_, path_ + key + ".");
}

int64_t ConfigReader::integer(const std::string& key) const {
  const nlohmann::json& v = at(key);
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float() && v.get<double>() == static_cast<double>(static_cast<int64_t>(v.get<double>())))
    return static_cast<int64_t>(v.get<double>());
  fail_at(key, std::string("expected an integer, found ") + v.dump());
}

int64_t ConfigReader::integer(const std::string& key, int64_t fallback) const { return has(key) ? integer(key) : fallback; }

double ConfigReader::number(const std::string& key) const {
  const nlohmann::json& v = at(key);
  if (!v.is_number()) fail_at(key, std::string("expected a number, found ") + v.dump());
  return v.get<double>();
}

double ConfigReader::number(const std::string& key, double fallback) const { return has(key) ? number(key) : fallback; }

bool ConfigReader::boolean(const std::string& key, bool fallback) const {
  if (!has(key)) return fallback;
  const nlohmann::json& v = at(key);
  if (!v.is_boolean()) fail_at(key, std::string("expected true or false, found ") + v.dump());
  return v.get<bool>();
}

std::string ConfigReader::string(const std::string& key) const {
  const nlohmann::json& v = at(key);
  if (!v.is_string()) fail_at(key, std::string("expected a string, found ") + v.dump());
  return v.get<std::string>();
}

std::string ConfigReader::string(const std::string& key, const std::string& fallback) const {
  return has(key) ? string(key) : fallback;
}

std::vector<std::string> ConfigReader::strings(const std::string& key) const {
  const nlohmann::json& v = at(key);
  if (!v.is_array()) fail_at(key, std::string("expected an array of strings, found ") + v.dump());
  std::vector<std::string> out;
  for (const auto& e : v) {
    if (!e.is_string()) fail_at(key, std::string("expected an array of strings, found ") + v.dump());
    out.push_back(e.get<std::string>());
  }
  return out;
}

}  // namespace ivl
