#pragma once
// What the three benchmark tools share: command-line options, statistics, the run environment
// (device name, LibTorch version, git revision, peak RSS), and the CSV/JSON/table writers.
// Rows are ordered JSON objects; the CSV columns are the same rows flattened, so the header and
// the rows cannot disagree (the seed study's CSV did).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "sd/pipeline.h"
#include "sd/precision.h"

namespace sd_bench {

using Row = nlohmann::ordered_json;

// A bad argument the tool finds after CLI11's parsing (a comma list, a precision name): exit code 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---- options -------------------------------------------------------------------------------

// Options every tool takes.
struct CommonOptions {
  std::string model = "random:sd-v1-5";
  std::string device = "cpu";
  int height = 512, width = 512;
  std::string prompt = "a photo of an astronaut riding a horse on mars";
  std::string negative_prompt;
  uint64_t seed = 0;
  std::string scheduler = "pndm";
  double guidance = 7.5;
  int threads = 0;
  bool no_channels_last = false;
  int64_t prepack_max_pixels = -1;
  int64_t attention_slice = 0;
  bool quiet = false;
};
void add_common_options(CLI::App& app, CommonOptions& options);

// Where the rows go besides stdout.
struct OutputOptions {
  std::string csv, json;
  std::string csv_format = "full";  // "full" or "lambda" (the seed study's columns)
};
void add_output_options(CLI::App& app, OutputOptions& options, bool with_lambda_format);

// One precision to measure: "fp32", "tf32", "fp16", "bf16", or "autocast" (fp32 weights with
// LoadOptions::autocast: fp16 compute on CUDA, bf16 on CPU).
struct PrecisionSpec {
  std::string label;
  sd::Precision precision = sd::Precision::kFP32;
  bool autocast = false;
};
PrecisionSpec parse_precision(const std::string& name);
std::vector<PrecisionSpec> parse_precision_list(const std::string& text);

// "1,2,4" -> {1, 2, 4}; every entry a positive integer, else sd::Error naming `flag`.
std::vector<int> parse_positive_int_list(const std::string& text, const std::string& flag);
std::vector<std::string> split_list(const std::string& text);

sd::LoadOptions make_load_options(const CommonOptions& options, const PrecisionSpec& precision);
sd::GenerateOptions make_generate_options(const CommonOptions& options, int steps, int batch);

bool is_cuda_device(const std::string& device);
// "cuda:1" -> 1, "cuda" -> 0 (c10::Device's parsing; sd::Error for what it refuses).
int cuda_index(const std::string& device);

// ---- statistics ----------------------------------------------------------------------------

struct Stats {
  double mean = 0, median = 0, p90 = 0, min = 0, max = 0, stdev = 0;
  size_t count = 0;
};
// Percentiles interpolate linearly between order statistics (numpy's default); stdev is the
// sample standard deviation (n - 1), 0 for a single value. Empty input -> all zeros.
Stats summarize(std::vector<double> values);
Row stats_json(const Stats& stats);
double sum(const std::vector<double>& values);

// ---- environment ---------------------------------------------------------------------------

std::string cpu_model_name();                  // "model name" of /proc/cpuinfo, else "unknown CPU"
std::string device_name(const std::string& device);  // the GPU's name for CUDA, the CPU model otherwise
std::string libtorch_version();                // "1.13.0"
// Sets the row's libtorch, libtorch_cuda, cuda and cudnn columns (sd::build_info()): a number
// means little without the LibTorch and CUDA it was measured with.
void add_build_columns(Row& row);
std::string git_revision();                    // from configure time, "unknown" outside git
std::optional<int64_t> peak_rss_bytes();       // VmHWM of /proc/self/status
std::optional<int64_t> current_rss_bytes();    // VmRSS
// Starts a new peak-RSS window (Linux: "5" > /proc/self/clear_refs). False if the kernel refuses:
// then peak_rss_bytes() stays the peak of the whole process.
bool reset_peak_rss();

// LibTorch's out-of-memory errors: c10::OutOfMemoryError, or a c10::Error whose message says
// "out of memory" (CUDA) or "can't allocate memory" (CPU allocator).
bool is_out_of_memory(const std::exception& error);
// An exception message without the C++ backtrace c10::Error appends.
std::string without_backtrace(const std::string& message);

// ---- output --------------------------------------------------------------------------------

// Flattening for CSV: nested objects become parent_child columns, null becomes an empty field,
// arrays are joined with spaces.
std::vector<std::string> csv_header_of(const Row& row);
std::vector<std::string> csv_values_of(const Row& row);
std::string csv_line(const std::vector<std::string>& fields);  // quotes fields with , " or newlines

// Appends rows to a CSV file. A new (or empty) file gets the header first; an existing file must
// start with exactly this header, else sd::Error naming the file with both headers and nothing is
// written. The file is rewritten atomically: an interrupted run never leaves half a row.
void append_csv(const std::filesystem::path& path, const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows);
void append_csv_rows(const std::filesystem::path& path, const std::vector<Row>& rows);

// Appends `rows` to output.csv (if set) in output.csv_format: our full columns, or the seed study's
// eight ("lambda": precision single/half, memory in GB: CUDA reserved-after-run, else peak RSS);
// `latency_of` picks each row's latency in seconds for the lambda columns.
void write_csv_output(const OutputOptions& output, const std::vector<Row>& rows,
                      const std::function<Row(const Row&)>& latency_of);

// Writes (replaces) a CSV file of `rows` with their header, atomically.
void write_csv_rows(const std::filesystem::path& path, const std::vector<Row>& rows);
// Writes (replaces) a JSON array of `rows`, atomically.
void write_json_rows(const std::filesystem::path& path, const std::vector<Row>& rows);

// Appends row objects to the JSON array in `path` (created if absent); refuses a file that does
// not hold an array. Written atomically.
void append_json_rows(const std::filesystem::path& path, const std::vector<Row>& rows);

// A plain text table for stdout: columns padded to their widest cell.
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

// Number formatting for tables and lambda rows.
std::string fixed(double value, int decimals);
std::string format_bytes(std::optional<int64_t> bytes);  // "3.41 GB" (10^9), "-" if absent
Row optional_json(std::optional<int64_t> value);

// Progress lines on stderr ("[bench_latency] ..."), silenced by --quiet.
class Progress {
 public:
  Progress(std::string tool, bool quiet) : tool_(std::move(tool)), quiet_(quiet) {}
  void operator()(const std::string& message) const;

 private:
  std::string tool_;
  bool quiet_;
};

// Runs one configuration's measurements. An exception is reported on stderr ("error: what: ...")
// and collected instead of ending the program, so the other configurations still run and the rows
// measured so far are still written. Returns false if `body` threw.
bool guarded(const std::string& what, std::vector<std::string>* failures, const std::function<void()>& body);
// 0 if nothing failed, else 1 after listing the failures on stderr.
int report_failures(const std::vector<std::string>& failures);

// Runs `body`, turning exceptions into "error: ..." on stderr and exit codes (1 runtime, 2 usage).
int run_tool(CLI::App& app, int argc, char** argv, const std::function<int()>& body);

}  // namespace sd_bench
