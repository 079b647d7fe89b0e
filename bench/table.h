#pragma once
// The plain-text table each tool prints on stdout, and its number formatting.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "row.h"

namespace sd_bench {

// Columns padded to their widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> headers);
  void add(std::vector<std::string> cells);
  size_t size() const { return rows_.size(); }
  std::string str() const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

std::string fixed(double value, int decimals);
std::string format_bytes(std::optional<int64_t> bytes);  // "3.41 GB" (10^9), "-" if absent
Row optional_json(std::optional<int64_t> value);

}  // namespace sd_bench
