#include "pipeline/out_of_memory.h"

#include <cmath>
#include <regex>

#include "core/device_memory.h"
#include "core/log_macros.h"
#include "pipeline/memory_estimate.h"
#include "sd/error.h"

namespace sd {

namespace {

// A number and LibTorch's unit after it (c10's format_size: bytes, KiB, MiB, GiB).
const char* const kSize = R"(([0-9]+(?:\.[0-9]+)?) ?(bytes|B|KiB|MiB|GiB|TiB))";

int64_t search_size(const std::string& message, const std::string& pattern) {
  std::smatch match;
  if (!std::regex_search(message, match, std::regex(pattern))) return -1;
  return parse_memory_size(match[1].str(), match[2].str());
}

}  // namespace

int64_t parse_memory_size(const std::string& number, const std::string& unit) {
  double value = 0;
  try {
    value = std::stod(number);
  } catch (const std::exception&) {
    return -1;
  }
  int shift = 0;
  if (unit == "KiB") shift = 10;
  else if (unit == "MiB") shift = 20;
  else if (unit == "GiB") shift = 30;
  else if (unit == "TiB") shift = 40;
  else if (unit != "bytes" && unit != "B") return -1;
  const double bytes = std::ldexp(value, shift);
  if (!std::isfinite(bytes) || bytes < 0 || bytes >= 9.2e18) return -1;
  return static_cast<int64_t>(std::llround(bytes));
}

OutOfMemoryInfo parse_out_of_memory(const std::string& message) {
  OutOfMemoryInfo info;
  const std::string line = first_line(message);
  info.requested_bytes = search_size(line, std::string("[Tt]ried to allocate ") + kSize);
  // 2.x: "of which 3.56 MiB is free"; 1.13: "1.01 GiB free;".
  info.free_bytes = search_size(line, std::string(kSize) + " (?:is )?free");
  std::smatch gpu;
  if (std::regex_search(line, gpu, std::regex(R"(GPU ([0-9]+))"))) {
    info.device = "cuda:" + gpu[1].str();
  } else if (line.find("CPUAllocator") != std::string::npos) {
    info.device = "cpu";
  }
  return info;
}

void throw_out_of_memory(const std::exception& error, const c10::Device& device, const std::string& doing,
                         const std::string& lower) {
  SD_LOG_DEBUG("out of memory ", doing, ": ", error.what());
  OutOfMemoryInfo info;
  std::string detail;
  if (const auto* inner = dynamic_cast<const OutOfMemoryError*>(&error)) {
    info.requested_bytes = inner->requested_bytes();
    info.free_bytes = inner->free_bytes();
  } else {
    info = parse_out_of_memory(error.what());
    detail = first_line(error.what());
  }
  if (info.device.empty()) info.device = device.str();
  std::string numbers;
  if (info.requested_bytes >= 0) numbers = "asked " + format_memory(static_cast<double>(info.requested_bytes));
  if (info.free_bytes >= 0) {
    numbers += (numbers.empty() ? "" : ", ") + format_memory(static_cast<double>(info.free_bytes)) + " free";
  }
  if (numbers.empty()) numbers = detail.empty() ? std::string("the allocator gave no numbers") : detail;
  release_cached_memory(device);
  throw OutOfMemoryError("out of memory on " + info.device + " " + doing + ": " + numbers + " (" + lower + ")",
                         info.requested_bytes, info.free_bytes);
}

}  // namespace sd
