#include "core/json_config.h"

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

std::vector<int64_t> JsonConfig::int_or_list(const char* key, int64_t fallback, size_t count) const {
  if (!has(key)) return std::vector<int64_t>(count, fallback);
  const auto& v = json_[key];
  if (v.is_number_integer()) return std::vector<int64_t>(count, v.get<int64_t>());
  SD_CHECK(v.is_array() && v.size() == count, origin_, ": field '", key, "' must be an int or a list of ", count,
           " ints, got ", v.dump());
  std::vector<int64_t> out;
  for (const auto& x : v) {
    SD_CHECK(x.is_number_integer(), origin_, ": field '", key, "' must hold ints, got ", v.dump());
    out.push_back(x.get<int64_t>());
  }
  return out;
}

}  // namespace sd
