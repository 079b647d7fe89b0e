#pragma once
// Rows to CSV and JSON files. Every write replaces the file atomically (sd/atomic_file.h): an
// interrupted run leaves the old file or the complete new one, never half a row.
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "options.h"
#include "row.h"

namespace sd_bench {

// Flattening for CSV: nested objects become parent_child columns, null becomes an empty field,
// arrays are joined with spaces.
std::vector<std::string> csv_header_of(const Row& row);
std::vector<std::string> csv_values_of(const Row& row);
std::string csv_line(const std::vector<std::string>& fields);  // quotes fields with , " or newlines

// Appends rows to a CSV file. A new (or empty) file gets the header first; an existing file must
// start with exactly this header, else sd::Error naming the file with both headers and nothing is
// written.
void append_csv(const std::filesystem::path& path, const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows);
void append_csv_rows(const std::filesystem::path& path, const std::vector<Row>& rows);

// Appends `rows` to output.csv (if set) in output.csv_format: our full columns, or the seed study's
// eight ("lambda": precision single/half, memory in GB: CUDA reserved-after-run, else peak RSS);
// `latency_of` picks each row's latency in seconds for the lambda columns.
void write_csv_output(const OutputOptions& output, const std::vector<Row>& rows,
                      const std::function<Row(const Row&)>& latency_of);

// Writes (replaces) a CSV file of `rows` with their header.
void write_csv_rows(const std::filesystem::path& path, const std::vector<Row>& rows);
// Writes (replaces) a JSON array of `rows`.
void write_json_rows(const std::filesystem::path& path, const std::vector<Row>& rows);
// Appends row objects to the JSON array in `path` (created if absent); refuses a file that does
// not hold an array.
void append_json_rows(const std::filesystem::path& path, const std::vector<Row>& rows);

}  // namespace sd_bench
