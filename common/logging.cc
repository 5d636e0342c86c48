#include "common/logging.h"

#include <spdlog/sinks/stdout_sinks.h>

#include <mutex>

namespace dtx::logging {

Result<spdlog::level::level_enum> parse_level(std::string_view name) {
  using spdlog::level::level_enum;
  if (name == "trace") return level_enum::trace;
  if (name == "debug") return level_enum::debug;
  if (name == "info") return level_enum::info;
  if (name == "warn" || name == "warning") return level_enum::warn;
  if (name == "error") return level_enum::err;
  if (name == "critical") return level_enum::critical;
  if (name == "off") return level_enum::off;
  return error(Code::invalid_argument, "unknown log level '" + std::string(name) +
                                           "' (expected one of: " + std::string(kLevelNames) + ")");
}

Status setup(std::string_view process_name, std::string_view level_name) {
  auto level = parse_level(level_name);
  if (!level.ok()) return level.status();
  static std::once_flag once;
  std::call_once(once, [&] {
    auto logger = std::make_shared<spdlog::logger>(
        std::string(process_name), std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %n[%P]: %v");
    spdlog::set_default_logger(std::move(logger));
  });
  spdlog::set_level(*level);
  spdlog::flush_on(spdlog::level::warn);
  return ok_status();
}

}  // namespace dtx::logging
