#include "common/assert.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>

namespace dtx {

void assert_failed(const char* condition, const char* file, int line, std::string_view message) {
  // stderr first: it needs no allocation and survives a broken logger.
  std::fprintf(stderr, "dtx: assertion failed: %s at %s:%d%s%.*s\n", condition, file, line,
               message.empty() ? "" : ": ", static_cast<int>(message.size()), message.data());
  std::fflush(stderr);
  if (auto logger = spdlog::default_logger_raw()) logger->flush();
  std::abort();
}

}  // namespace dtx
