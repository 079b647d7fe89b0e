#include "core/json_config.h"

#include <fstream>
#include <limits>

namespace sd {

nlohmann::json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  SD_CHECK(in.is_open(), path.string(), ": cannot open");
  nlohmann::json out;
  try {
    out = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    SD_FAIL(path.string(), ": not valid JSON: ", e.what());
  }
  // Every config is an object of fields; anything else would make each field silently default.
  SD_CHECK(out.is_object(), path.string(), ": expected a JSON object of config fields, got ", out.type_name());
  return out;
}

JsonConfig::JsonConfig(nlohmann::json json, std::string origin) : json_(std::move(json)), origin_(std::move(origin)) {
  SD_CHECK(json_.is_object(), origin_, ": expected a JSON object of config fields, got ", json_.type_name());
}

void JsonConfig::wrong_type_unless(bool ok, const char* key, const nlohmann::json& v, const char* expected) const {
  if (ok) return;
  std::string shown = v.dump();
  if (shown.size() > 80) shown = shown.substr(0, 77) + "...";
  SD_FAIL(origin_, ": field '", key, "' has the wrong type: expected ", expected, ", got ", shown);
}

void JsonConfig::convert(const char* key, const nlohmann::json& v, int64_t& out) const {
  // nlohmann would truncate 2.5 to 2 and wrap 2^64-1 to -1: both are refused instead.
  const bool fits = v.is_number_integer() &&
                    (!v.is_number_unsigned() ||
                     v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()));
  wrong_type_unless(fits, key, v, "an integer (within 64 bits)");
  out = v.get<int64_t>();
}

void JsonConfig::convert(const char* key, const nlohmann::json& v, double& out) const {
  wrong_type_unless(v.is_number(), key, v, "a number");
  out = v.get<double>();
}

void JsonConfig::convert(const char* key, const nlohmann::json& v, bool& out) const {
  wrong_type_unless(v.is_boolean(), key, v, "true or false");
  out = v.get<bool>();
}

void JsonConfig::convert(const char* key, const nlohmann::json& v, std::string& out) const {
  wrong_type_unless(v.is_string(), key, v, "a string");
  out = v.get<std::string>();
}

std::vector<int64_t> JsonConfig::int_or_list(const char* key, int64_t fallback, size_t count) const {
  if (!has(key)) return std::vector<int64_t>(count, fallback);
  const auto& v = json_[key];
  if (!v.is_array()) {
    int64_t one = 0;
    convert(key, v, one);
    return std::vector<int64_t>(count, one);
  }
  SD_CHECK(v.size() == count, origin_, ": field '", key, "' must be an int or a list of ", count, " ints, got ",
           v.size(), " entries");
  std::vector<int64_t> out;
  convert(key, v, out);
  return out;
}

}  // namespace sd
