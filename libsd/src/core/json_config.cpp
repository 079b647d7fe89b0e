#include "core/json_config.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>

namespace sd {

nlohmann::json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  SD_CHECK(in.is_open(), path.string(), ": cannot open");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    SD_FAIL(path.string(), ": not valid JSON: ", e.what());
  }
}

namespace {

// An integer in int64's range, written as an integer or as a float with an integral value (2.0).
bool is_int64(const nlohmann::json& v) {
  if (v.is_number_integer()) return !v.is_number_unsigned() || v.get<uint64_t>() <= uint64_t{INT64_MAX};
  if (!v.is_number_float()) return false;
  const double d = v.get<double>();
  return std::floor(d) == d && d >= -9223372036854775808.0 && d < 9223372036854775808.0;
}

}  // namespace

void JsonConfig::check_integers(const char* key) const {
  const auto& v = json_[key];
  if (!v.is_number() && !v.is_array()) return;  // not a number at all: get() reports the wrong type
  bool ok = v.is_array() ? std::all_of(v.begin(), v.end(), [](const auto& x) { return !x.is_number() || is_int64(x); })
                         : is_int64(v);
  SD_CHECK(ok, origin_, ": field '", key, "' must hold integers (64-bit), got ", v.dump());
}

std::vector<int64_t> JsonConfig::int_or_list(const char* key, int64_t fallback, size_t count) const {
  if (!has(key)) return std::vector<int64_t>(count, fallback);
  const auto& v = json_[key];
  if (v.is_number()) {
    check_integers(key);
    return std::vector<int64_t>(count, v.get<int64_t>());
  }
  SD_CHECK(v.is_array() && v.size() == count, origin_, ": field '", key, "' must be an int or a list of ", count,
           " ints, got ", v.dump());
  std::vector<int64_t> out;
  for (const auto& x : v) {
    SD_CHECK(x.is_number() && is_int64(x), origin_, ": field '", key, "' must hold ints, got ", v.dump());
    out.push_back(x.get<int64_t>());
  }
  return out;
}

}  // namespace sd
