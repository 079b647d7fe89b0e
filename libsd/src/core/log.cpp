#include "sd/log.h"

#include <cstdio>
#include <mutex>

namespace sd {
namespace {
std::mutex g_mutex;
LogLevel g_level = LogLevel::kInfo;
const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warning";
    case LogLevel::kError: return "error";
  }
  return "?";
}
LogSink g_sink = [](LogLevel level, std::string_view message) {
  std::fprintf(stderr, "libsd %s: %.*s\n", level_name(level), static_cast<int>(message.size()), message.data());
};
}  // namespace

void set_log_sink(LogSink sink) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_sink = std::move(sink);
}
void set_log_level(LogLevel level) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_level = level;
}
LogLevel log_level() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_level;
}
void log(LogLevel level, std::string_view message) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (level < g_level || !g_sink) return;
  g_sink(level, message);
}

}  // namespace sd
