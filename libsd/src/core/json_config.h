#pragma once
// Reading diffusers/transformers config.json files: typed fields with defaults, errors that name
// the file and the field.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sd/error.h"

namespace sd {

nlohmann::json read_json_file(const std::filesystem::path& path);

// A config file plus its name, so every accessor can say where a bad value came from.
class JsonConfig {
 public:
  // Refuses anything but a JSON object: a number or a list would make every field silently default.
  JsonConfig(nlohmann::json json, std::string origin);
  static JsonConfig from_file(const std::filesystem::path& path) { return {read_json_file(path), path.string()}; }

  const nlohmann::json& json() const { return json_; }
  const std::string& origin() const { return origin_; }
  // Absent or null -> `fallback` (older diffusers versions omit fields: the default applies).
  bool has(const char* key) const { return json_.contains(key) && !json_[key].is_null(); }

  // Strictly typed: an integer field must hold an integer (not 2.5, not 1e3, not a value beyond
  // int64), a number field a number, a bool a bool, a string a string, a list only such items.
  // Anything else is an sd::Error naming the file, the field and the value.
  template <class T>
  T get(const char* key, const T& fallback) const {
    if (!has(key)) return fallback;
    T out{};
    convert(key, json_[key], out);
    return out;
  }
  // An int or a per-block list of ints (UNet attention_head_dim, transformer_layers_per_block).
  std::vector<int64_t> int_or_list(const char* key, int64_t fallback, size_t count) const;

 private:
  void convert(const char* key, const nlohmann::json& v, int64_t& out) const;
  void convert(const char* key, const nlohmann::json& v, double& out) const;
  void convert(const char* key, const nlohmann::json& v, bool& out) const;
  void convert(const char* key, const nlohmann::json& v, std::string& out) const;
  template <class T>
  void convert(const char* key, const nlohmann::json& v, std::vector<T>& out) const {
    wrong_type_unless(v.is_array(), key, v, "a list");
    out.clear();
    for (const auto& item : v) {
      T x{};
      convert(key, item, x);
      out.push_back(std::move(x));
    }
  }
  void wrong_type_unless(bool ok, const char* key, const nlohmann::json& v, const char* expected) const;

  nlohmann::json json_;
  std::string origin_;
};

}  // namespace sd
