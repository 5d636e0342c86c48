// Logging set-up for every dtx process: spdlog, one line per event.
//
// Every line that concerns a transaction carries its txid, as "txid=<id>"
// at the start of the message, so `grep txid=...` follows one transaction
// through coordinator and agents. Use the txn_* helpers for those lines.
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>

#include "common/status.h"

namespace dtx::logging {

// Levels accepted on the command line (--log-level).
inline constexpr std::string_view kLevelNames = "trace, debug, info, warn, error, critical, off";

Result<spdlog::level::level_enum> parse_level(std::string_view name);

// Installs the default logger for a process: stderr, with time, level and
// the process name in every line. Idempotent; later calls change the level.
Status setup(std::string_view process_name, std::string_view level_name);

template <class Txid, class... Args>
void txn(spdlog::level::level_enum level, const Txid& txid, fmt::format_string<Args...> f,
         Args&&... args) {
  if (!spdlog::should_log(level)) return;
  spdlog::log(level, "txid={} {}", txid, fmt::format(f, std::forward<Args>(args)...));
}

template <class Txid, class... Args>
void txn_debug(const Txid& txid, fmt::format_string<Args...> f, Args&&... args) {
  txn(spdlog::level::debug, txid, f, std::forward<Args>(args)...);
}
template <class Txid, class... Args>
void txn_info(const Txid& txid, fmt::format_string<Args...> f, Args&&... args) {
  txn(spdlog::level::info, txid, f, std::forward<Args>(args)...);
}
template <class Txid, class... Args>
void txn_warn(const Txid& txid, fmt::format_string<Args...> f, Args&&... args) {
  txn(spdlog::level::warn, txid, f, std::forward<Args>(args)...);
}
template <class Txid, class... Args>
void txn_error(const Txid& txid, fmt::format_string<Args...> f, Args&&... args) {
  txn(spdlog::level::err, txid, f, std::forward<Args>(args)...);
}

}  // namespace dtx::logging
