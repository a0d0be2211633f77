// Leveled logging with timestamps, to stderr. The level comes from FLUX_LOG (debug, info, warn, error, off)
// or set_log_level(). Thread-safe: each line is written with one call.
#pragma once

#include <string>

#include "base/error.h"

namespace flux {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

void set_log_level(LogLevel level);
LogLevel log_level();
// Parses "debug", "info", "warn", "error", "off"; throws Error naming the bad value.
LogLevel parse_log_level(const std::string& name);
void log_line(LogLevel level, const std::string& message);

template <typename... Args>
void log_debug(Args&&... args) {
  if (log_level() <= LogLevel::debug) log_line(LogLevel::debug, str_cat(std::forward<Args>(args)...));
}
template <typename... Args>
void log_info(Args&&... args) {
  if (log_level() <= LogLevel::info) log_line(LogLevel::info, str_cat(std::forward<Args>(args)...));
}
template <typename... Args>
void log_warn(Args&&... args) {
  if (log_level() <= LogLevel::warn) log_line(LogLevel::warn, str_cat(std::forward<Args>(args)...));
}
template <typename... Args>
void log_error(Args&&... args) {
  if (log_level() <= LogLevel::error) log_line(LogLevel::error, str_cat(std::forward<Args>(args)...));
}

}  // namespace flux
