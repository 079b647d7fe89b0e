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
  JsonConfig(nlohmann::json json, std::string origin) : json_(std::move(json)), origin_(std::move(origin)) {}
  static JsonConfig from_file(const std::filesystem::path& path) { return {read_json_file(path), path.string()}; }

  const nlohmann::json& json() const { return json_; }
  const std::string& origin() const { return origin_; }
  // Absent or null -> `fallback` (older diffusers versions omit fields: the default applies).
  bool has(const char* key) const { return json_.contains(key) && !json_[key].is_null(); }

  template <class T>
  T get(const char* key, const T& fallback) const {
    if (!has(key)) return fallback;
    try {
      return json_[key].get<T>();
    } catch (const nlohmann::json::exception&) {
      SD_FAIL(origin_, ": field '", key, "' has the wrong type: ", json_[key].dump());
    }
  }
  // An int or a per-block list of ints (UNet attention_head_dim, transformer_layers_per_block).
  std::vector<int64_t> int_or_list(const char* key, int64_t fallback, size_t count) const;

 private:
  nlohmann::json json_;
  std::string origin_;
};

}  // namespace sd
