#pragma once
// Internal logging helpers: format only when the level is enabled.
#include "sd/error.h"
#include "sd/log.h"

#define SD_LOG(level, ...)                                                        \
  do {                                                                            \
    if ((level) >= ::sd::log_level()) ::sd::log((level), ::sd::detail::concat(__VA_ARGS__)); \
  } while (0)
#define SD_LOG_DEBUG(...) SD_LOG(::sd::LogLevel::kDebug, __VA_ARGS__)
#define SD_LOG_INFO(...) SD_LOG(::sd::LogLevel::kInfo, __VA_ARGS__)
#define SD_LOG_WARN(...) SD_LOG(::sd::LogLevel::kWarn, __VA_ARGS__)
