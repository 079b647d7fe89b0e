#include "environment.h"

#include <torch/version.h>

#include <fstream>
#include <sstream>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "options.h"
#include "sd/build_info.h"

#ifndef LIBSD_BENCH_GIT_REVISION
#define LIBSD_BENCH_GIT_REVISION "unknown"
#endif

namespace sd_bench {

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

void release_free_heap_pages() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  if (!out) return false;
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

std::optional<CudaMemory> device_memory(const std::string& device) {
  if (!is_cuda_device(device)) return std::nullopt;
  return cuda_memory(cuda_index(device));
}

}  // namespace sd_bench
