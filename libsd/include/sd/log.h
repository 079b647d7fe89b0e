#pragma once
// The library never prints by itself: every message goes through one sink.
#include <functional>
#include <string_view>

#include "sd/export.h"

namespace sd {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

using LogSink = std::function<void(LogLevel, std::string_view)>;

// Replaces the sink (default: stderr, kInfo and above). Pass nullptr to silence the library.
SD_API void set_log_sink(LogSink sink);
// Messages below this level are dropped before formatting.
SD_API void set_log_level(LogLevel level);
SD_API LogLevel log_level();
SD_API void log(LogLevel level, std::string_view message);

}  // namespace sd
