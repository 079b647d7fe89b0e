#include "rows.h"

#include <fstream>
#include <iterator>

#include "sd/atomic_file.h"
#include "sd/error.h"

namespace sd_bench {

namespace {

void flatten(const Row& value, const std::string& prefix, std::vector<std::string>* header,
             std::vector<std::string>* values) {
  if (value.is_object()) {
    for (auto it = value.begin(); it != value.end(); ++it) {
      flatten(it.value(), prefix.empty() ? it.key() : prefix + "_" + it.key(), header, values);
    }
    return;
  }
  if (header != nullptr) header->push_back(prefix);
  if (values == nullptr) return;
  if (value.is_null()) {
    values->emplace_back();
  } else if (value.is_string()) {
    values->push_back(value.get<std::string>());
  } else if (value.is_array()) {
    std::string joined;
    for (const auto& item : value) {
      if (!joined.empty()) joined += ' ';
      joined += item.is_string() ? item.get<std::string>() : item.dump();
    }
    values->push_back(joined);
  } else {
    values->push_back(value.dump());
  }
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  SD_CHECK(in, "cannot read ", path.string());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

std::vector<std::string> csv_header_of(const Row& row) {
  std::vector<std::string> header;
  flatten(row, "", &header, nullptr);
  return header;
}

std::vector<std::string> csv_values_of(const Row& row) {
  std::vector<std::string> values;
  flatten(row, "", nullptr, &values);
  return values;
}

std::string csv_line(const std::vector<std::string>& fields) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) {
    if (i > 0) line += ',';
    const std::string& f = fields[i];
    if (f.find_first_of(",\"\n\r") == std::string::npos) {
      line += f;
      continue;
    }
    line += '"';
    for (char c : f) {
      if (c == '"') line += '"';
      line += c;
    }
    line += '"';
  }
  return line;
}

void append_csv(const std::filesystem::path& path, const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  const std::string header_line = csv_line(header);
  for (const auto& row : rows) {
    SD_CHECK(row.size() == header.size(), "CSV ", path.string(), ": a row has ", row.size(), " fields, the header ",
             header.size(), " (a bug in the benchmark tool)");
  }
  std::string content;
  if (std::filesystem::exists(path)) content = read_file(path);
  if (content.empty()) {
    content = header_line + "\n";
  } else {
    std::string existing = content.substr(0, content.find('\n'));
    if (!existing.empty() && existing.back() == '\r') existing.pop_back();
    SD_CHECK(existing == header_line, "CSV ", path.string(),
             " has a different header; refusing to append rows that would not match it.\n  file:     ", existing,
             "\n  expected: ", header_line, "\nWrite to a new file (or use the same tool and --csv-format).");
    if (content.back() != '\n') content += '\n';
  }
  for (const auto& row : rows) content += csv_line(row) + "\n";
  sd::write_file_atomic(path, content);
}

void append_csv_rows(const std::filesystem::path& path, const std::vector<Row>& rows) {
  if (rows.empty()) return;
  const auto header = csv_header_of(rows.front());
  std::vector<std::vector<std::string>> values;
  for (const auto& row : rows) {
    SD_CHECK(csv_header_of(row) == header, "CSV ", path.string(), ": rows of different shapes (a bug in the benchmark tool)");
    values.push_back(csv_values_of(row));
  }
  append_csv(path, header, values);
}

void write_csv_rows(const std::filesystem::path& path, const std::vector<Row>& rows) {
  SD_CHECK(!rows.empty(), "CSV ", path.string(), ": no rows to write");
  const auto header = csv_header_of(rows.front());
  std::string content = csv_line(header) + "\n";
  for (const auto& row : rows) {
    SD_CHECK(csv_header_of(row) == header, "CSV ", path.string(), ": rows of different shapes (a bug in the benchmark tool)");
    content += csv_line(csv_values_of(row)) + "\n";
  }
  sd::write_file_atomic(path, content);
}

void write_json_rows(const std::filesystem::path& path, const std::vector<Row>& rows) {
  Row array = Row::array();
  for (const auto& row : rows) array.push_back(row);
  sd::write_file_atomic(path, array.dump(2) + "\n");
}

void append_json_rows(const std::filesystem::path& path, const std::vector<Row>& rows) {
  Row array = Row::array();
  if (std::filesystem::exists(path)) {
    const std::string text = read_file(path);
    if (text.find_first_not_of(" \t\r\n") != std::string::npos) {
      try {
        array = Row::parse(text);
      } catch (const std::exception& e) {
        SD_FAIL("JSON ", path.string(), " is not valid JSON (", e.what(), "); refusing to overwrite it");
      }
      SD_CHECK(array.is_array(), "JSON ", path.string(), " holds a ", array.type_name(),
               ", expected an array of rows; refusing to overwrite it");
    }
  }
  for (const auto& row : rows) array.push_back(row);
  sd::write_file_atomic(path, array.dump(2) + "\n");
}

void write_csv_output(const OutputOptions& output, const std::vector<Row>& rows,
                      const std::function<Row(const Row&)>& latency_of) {
  if (output.csv.empty()) return;
  if (output.csv_format != "lambda") {
    append_csv_rows(output.csv, rows);
    return;
  }
  std::vector<Row> lambda;
  for (const auto& row : rows) {
    Row out;
    const std::string precision = row["precision"];
    out["device"] = row["device"];
    out["precision"] = precision == "fp32" ? "single" : precision == "fp16" ? "half" : precision;
    out["autocast"] = row["autocast"].get<bool>() ? "yes" : "no";
    out["xformers"] = "no";
    out["runtime"] = "libsd";
    out["n_samples"] = row["batch"];
    out["latency"] = latency_of(row);
    const auto& memory =
        row["reserved_after_run_bytes"].is_null() ? row["peak_rss_bytes"] : row["reserved_after_run_bytes"];
    out["memory"] = memory.is_null() ? Row(nullptr) : Row(memory.get<double>() / 1e9);
    lambda.push_back(std::move(out));
  }
  append_csv_rows(output.csv, lambda);
}

}  // namespace sd_bench
