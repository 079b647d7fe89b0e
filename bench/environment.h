#pragma once
// What a number was measured on and with: device name, LibTorch and CUDA versions, git revision,
// and the process's memory (peak RSS, CUDA allocator statistics).
#include <cstdint>
#include <optional>
#include <string>

#include "cuda_stats.h"
#include "row.h"

namespace sd_bench {

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
// Hands the heap's free pages back to the kernel (glibc malloc_trim; nothing elsewhere), so that the
// RSS counts what is live: after a run, malloc keeps the pages of the tensors it freed, and the next
// run reuses them without raising the RSS.
void release_free_heap_pages();

}  // namespace sd_bench
