#pragma once
// How a benchmark tool runs: progress lines, one failing configuration not ending the others,
// and exit codes (0 done, 1 a runtime error or a failed configuration, 2 a usage error).
#include <CLI/CLI.hpp>

#include <exception>
#include <functional>
#include <string>
#include <vector>

namespace sd_bench {

// An out-of-memory error: the library turns LibTorch's (CUDA or the CPU allocator) into
// sd::OutOfMemoryError in every stage the tools call, with the pipeline left usable.
bool is_out_of_memory(const std::exception& error);
// An exception message without the C++ backtrace c10::Error appends.
std::string without_backtrace(const std::string& message);

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
