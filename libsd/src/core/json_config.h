#pragma once
// Reading diffusers/transformers config.json files: typed fields with defaults, errors that name
// the file and the field.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <type_traits>
#include <vector>

#include "sd/error.h"

namespace sd {

nlohmann::json read_json_file(const std::filesystem::path& path);

// A config file plus its name, so every accessor can say where a bad value came from.
class JsonConfig {
 public:
  // Only an object is a config: anything else (a number, a list) would otherwise read as "every
  // field absent" and load the defaults silently.
  JsonConfig(nlohmann::json json, std::string origin) : json_(std::move(json)), origin_(std::move(origin)) {
    SD_CHECK(json_.is_object(), origin_, ": expected a JSON object, got ", json_.type_name());
  }
  static JsonConfig from_file(const std::filesystem::path& path) { return {read_json_file(path), path.string()}; }

  const nlohmann::json& json() const { return json_; }
  const std::string& origin() const { return origin_; }
  // Absent or null -> `fallback` (older diffusers versions omit fields: the default applies).
  bool has(const char* key) const { return json_.contains(key) && !json_[key].is_null(); }

  template <class T>
  T get(const char* key, const T& fallback) const {
    if (!has(key)) return fallback;
    if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, std::vector<int64_t>>) check_integers(key);
    try {
      return json_[key].get<T>();
    } catch (const nlohmann::json::exception&) {
      SD_FAIL(origin_, ": field '", key, "' has the wrong type: ", json_[key].dump());
    }
  }
  // An int or a per-block list of ints (UNet attention_head_dim, transformer_layers_per_block).
  std::vector<int64_t> int_or_list(const char* key, int64_t fallback, size_t count) const;

 private:
  // nlohmann converts a float to an integer with a plain cast (undefined behaviour out of range, a
  // silent truncation in it): an integer field must hold integers that fit (fractional 2.5 or 1e30
  // is an error naming the field). A list is checked element by element.
  void check_integers(const char* key) const;

  nlohmann::json json_;
  std::string origin_;
};

}  // namespace sd
