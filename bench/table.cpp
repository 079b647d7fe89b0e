#include "table.h"

#include <iomanip>
#include <sstream>

namespace sd_bench {

Table::Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

void Table::add(std::vector<std::string> cells) {
  cells.resize(headers_.size());
  rows_.push_back(std::move(cells));
}

std::string Table::str() const {
  std::vector<size_t> width(headers_.size());
  for (size_t c = 0; c < headers_.size(); ++c) {
    width[c] = headers_[c].size();
    for (const auto& row : rows_) width[c] = std::max(width[c], row[c].size());
  }
  std::ostringstream out;
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t c = 0; c < cells.size(); ++c) {
      out << (c == 0 ? "" : "  ") << std::left << std::setw(static_cast<int>(width[c])) << cells[c];
    }
    out << '\n';
  };
  line(headers_);
  std::vector<std::string> rule;
  for (size_t w : width) rule.emplace_back(w, '-');
  line(rule);
  for (const auto& row : rows_) line(row);
  return out.str();
}

std::string fixed(double value, int decimals) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(decimals) << value;
  return out.str();
}

std::string format_bytes(std::optional<int64_t> bytes) {
  if (!bytes) return "-";
  return fixed(static_cast<double>(*bytes) / 1e9, 2) + " GB";
}

Row optional_json(std::optional<int64_t> value) {
  return value ? Row(*value) : Row(nullptr);
}

}  // namespace sd_bench
