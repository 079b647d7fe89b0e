#pragma once
// A result row: an ordered JSON object. The CSV columns are the same rows flattened (rows.h), so a
// file's header and its rows cannot disagree (the seed study's CSV did).
#include <nlohmann/json.hpp>

namespace sd_bench {

using Row = nlohmann::ordered_json;

}  // namespace sd_bench
