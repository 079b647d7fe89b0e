#include "common.h"
#include "sd/build_info.h"

#include <c10/core/Device.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <iterator>
#include <limits>
#include <sstream>

#include "../tools/cli_checks.h"
#include "cuda_stats.h"
#include "sd/atomic_file.h"
#include "sd/error.h"
#include "sd/scheduler.h"

#ifndef LIBSD_BENCH_GIT_REVISION
#define LIBSD_BENCH_GIT_REVISION "unknown"
#endif

namespace sd_bench {

// ---- options -------------------------------------------------------------------------------

void add_common_options(CLI::App& app, CommonOptions& o) {
  app.add_option("--model", o.model, "diffusers folder, single-file .safetensors, or random:sd-v1-5")->capture_default_str();
  app.add_option("--device", o.device, "cpu, cuda or cuda:N")->capture_default_str();
  app.add_option("--height", o.height, "image height (multiple of 8)")->capture_default_str()
      ->check(sd_cli_checks::positive_multiple_of_8());
  app.add_option("--width", o.width, "image width (multiple of 8)")->capture_default_str()
      ->check(sd_cli_checks::positive_multiple_of_8());
  app.add_option("--prompt", o.prompt, "the prompt")->capture_default_str();
  app.add_option("--negative-prompt", o.negative_prompt, "negative prompt (with guidance > 1)");
  app.add_option("--seed", o.seed, "seed of the initial latents")->capture_default_str()->transform(sd_cli_checks::seed());
  app.add_option("--scheduler", o.scheduler, "pndm, ddim, euler, euler-a, dpm++2m, dpm++2m-karras, lms")->capture_default_str();
  app.add_option("--guidance", o.guidance, "classifier-free guidance scale (<= 1: none)")->capture_default_str()
      ->check(sd_cli_checks::finite_non_negative());
  app.add_option("--threads", o.threads, "CPU threads (0: all cores)")->capture_default_str()->check(CLI::Range(0, 4096));
  app.add_flag("--no-channels-last", o.no_channels_last, "keep the convolutions in contiguous (NCHW) layout");
  app.add_option("--prepack-max-pixels", o.prepack_max_pixels,
                 "CPU: convolutions on inputs of at most this many pixels (batch x height x width) keep a weight "
                 "copy reordered for oneDNN; -1 = libsd's choice per precision, 0 = off (less memory)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{-1}, std::numeric_limits<int64_t>::max()));
  app.add_option("--attention-slice", o.attention_slice, "attention in query slices of this many rows (0: whole)")->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--quiet", o.quiet, "no progress lines on stderr");
}

void add_output_options(CLI::App& app, OutputOptions& o, bool with_lambda_format) {
  app.add_option("--csv", o.csv, "append rows to this CSV file (header written once, checked after)");
  app.add_option("--json", o.json, "append row objects to the JSON array in this file");
  if (with_lambda_format) {
    app.add_option("--csv-format", o.csv_format,
                   "full: every field; lambda: the seed study's columns "
                   "device,precision,autocast,xformers,runtime,n_samples,latency,memory")
        ->capture_default_str()
        ->check(CLI::IsMember({"full", "lambda"}));
  }
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, ',')) {
    const auto begin = item.find_first_not_of(" \t");
    const auto end = item.find_last_not_of(" \t");
    if (begin != std::string::npos) out.push_back(item.substr(begin, end - begin + 1));
  }
  return out;
}

std::vector<int> parse_positive_int_list(const std::string& text, const std::string& flag) {
  std::vector<int> out;
  for (const auto& item : split_list(text)) {
    size_t used = 0;
    long value = 0;
    try {
      value = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (!(used == item.size() && value >= 1 && value <= 1000000)) {
      throw UsageError(flag + ": expected a comma list of positive integers (at most 1000000), got '" + item +
                       "' in '" + text + "'");
    }
    out.push_back(static_cast<int>(value));
  }
  if (out.empty()) throw UsageError(flag + ": expected at least one value, got '" + text + "'");
  return out;
}

PrecisionSpec parse_precision(const std::string& name) {
  PrecisionSpec spec;
  spec.label = name;
  if (name == "autocast") {
    spec.precision = sd::Precision::kFP32;
    spec.autocast = true;
    return spec;
  }
  try {
    spec.precision = sd::precision_from_name(name);
  } catch (const sd::Error&) {
    throw UsageError("--precision: unknown precision '" + name + "' (expected fp32, tf32, fp16, bf16 or autocast)");
  }
  return spec;
}

std::vector<PrecisionSpec> parse_precision_list(const std::string& text) {
  std::vector<PrecisionSpec> out;
  for (const auto& name : split_list(text)) out.push_back(parse_precision(name));
  if (out.empty()) throw UsageError("--precision: expected at least one precision, got '" + text + "'");
  return out;
}

bool is_cuda_device(const std::string& device) { return device.rfind("cuda", 0) == 0; }

std::optional<CudaMemory> device_memory(const std::string& device) {
  if (!is_cuda_device(device)) return std::nullopt;
  return cuda_memory(cuda_index(device));
}

int cuda_index(const std::string& device) {
  try {
    const c10::Device d(device);
    return d.has_index() ? d.index() : 0;
  } catch (const std::exception&) {
    SD_FAIL("unknown device '", device, "' (expected cpu, cuda or cuda:N)");
  }
}

sd::LoadOptions make_load_options(const CommonOptions& o, const PrecisionSpec& precision) {
  sd::LoadOptions load;
  load.device = o.device;
  load.precision = precision.precision;
  load.autocast = precision.autocast;
  load.threads = o.threads;
  load.channels_last = !o.no_channels_last;
  load.prepack_max_pixels = o.prepack_max_pixels;
  load.attention_slice = o.attention_slice;
  return load;
}

sd::GenerateOptions make_generate_options(const CommonOptions& o, int steps, int batch) {
  sd::GenerateOptions gen;
  gen.negative_prompt = o.negative_prompt;
  gen.width = o.width;
  gen.height = o.height;
  gen.steps = steps;
  gen.batch = batch;
  gen.guidance_scale = o.guidance;
  gen.seed = o.seed;
  gen.scheduler = sd::scheduler_kind_from_name(o.scheduler);
  return gen;
}

// ---- statistics ----------------------------------------------------------------------------

Stats summarize(std::vector<double> values) {
  Stats s;
  s.count = values.size();
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  auto percentile = [&](double q) {
    const double rank = q * static_cast<double>(n - 1);
    const auto lo = static_cast<size_t>(std::floor(rank));
    const size_t hi = std::min(lo + 1, n - 1);
    return values[lo] + (rank - static_cast<double>(lo)) * (values[hi] - values[lo]);
  };
  s.min = values.front();
  s.max = values.back();
  s.median = percentile(0.5);
  s.p90 = percentile(0.9);
  s.mean = sum(values) / static_cast<double>(n);
  if (n > 1) {
    double squares = 0;
    for (double v : values) squares += (v - s.mean) * (v - s.mean);
    s.stdev = std::sqrt(squares / static_cast<double>(n - 1));
  }
  return s;
}

Row stats_json(const Stats& s) {
  Row out;
  out["mean"] = s.mean;
  out["median"] = s.median;
  out["p90"] = s.p90;
  out["min"] = s.min;
  out["max"] = s.max;
  out["stdev"] = s.stdev;
  return out;
}

double sum(const std::vector<double>& values) {
  double total = 0;
  for (double v : values) total += v;
  return total;
}

// ---- environment ---------------------------------------------------------------------------

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const auto begin = line.find_first_not_of(" \t", colon + 1);
    if (begin != std::string::npos) return line.substr(begin);
  }
  return "unknown CPU";
}

std::string device_name(const std::string& device) {
  if (is_cuda_device(device)) return cuda_device_name(cuda_index(device));
  return cpu_model_name();
}

std::string libtorch_version() { return TORCH_VERSION; }

void add_build_columns(Row& row) {
  const auto& info = sd::build_info();
  row["libtorch"] = info.libtorch_version;
  row["libtorch_cuda"] = info.cuda_compiled;
  row["cuda"] = info.cuda_version;
  row["cudnn"] = info.cudnn_version;
}

std::string git_revision() { return LIBSD_BENCH_GIT_REVISION; }

namespace {
std::optional<int64_t> status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(key) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    std::istringstream fields(line.substr(prefix.size()));
    int64_t kib = 0;
    if (fields >> kib) return kib * 1024;
  }
  return std::nullopt;
}
}  // namespace

std::optional<int64_t> peak_rss_bytes() { return status_kib("VmHWM"); }
std::optional<int64_t> current_rss_bytes() { return status_kib("VmRSS"); }

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  if (!out) return false;
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

bool is_out_of_memory(const std::exception& error) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&error) != nullptr) return true;
  const std::string message = error.what();
  for (const char* needle : {"out of memory", "can't allocate memory", "Cannot allocate memory", "std::bad_alloc"}) {
    if (message.find(needle) != std::string::npos) return true;
  }
  return dynamic_cast<const std::bad_alloc*>(&error) != nullptr;
}

std::string without_backtrace(const std::string& message) {
  auto out = message;
  if (auto nl = out.find("\nException raised from"); nl != std::string::npos) out.resize(nl);
  return out;
}

// ---- output --------------------------------------------------------------------------------

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

void Progress::operator()(const std::string& message) const {
  if (quiet_) return;
  std::fprintf(stderr, "[%s] %s\n", tool_.c_str(), message.c_str());
  std::fflush(stderr);
}

bool guarded(const std::string& what, std::vector<std::string>* failures, const std::function<void()>& body) {
  try {
    body();
    return true;
  } catch (const std::exception& e) {
    const std::string message = what + ": " + without_backtrace(e.what());
    std::fprintf(stderr, "error: %s\n", message.c_str());
    failures->push_back(message);
    return false;
  }
}

int report_failures(const std::vector<std::string>& failures) {
  if (failures.empty()) return 0;
  std::fprintf(stderr, "%zu configuration(s) failed:\n", failures.size());
  for (const auto& f : failures) std::fprintf(stderr, "  %s\n", f.c_str());
  return 1;
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

int run_tool(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  bool verbose = false;
  app.add_flag("--verbose", verbose, "on errors, the full message (LibTorch's C++ backtrace included)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  // One line unless --verbose: LibTorch's messages carry a backtrace after their first line.
  auto shown = [verbose](const std::exception& e) {
    std::string message = e.what();
    if (auto nl = message.find('\n'); nl != std::string::npos && !verbose) message.resize(nl);
    return message;
  };
  try {
    return body();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "usage error: %s\n", shown(e).c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", shown(e).c_str());
    return 1;
  }
}

}  // namespace sd_bench
