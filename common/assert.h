// DTX_ASSERT: a check that stays on in every build, release included.
//
// A failed DTX_ASSERT is a programmer error (docs/architecture.md, Errors):
// it writes the condition, file, line and message to stderr, flushes the
// default logger, and aborts. Unlike <cassert>'s assert(), NDEBUG does not
// compile it out, so an invariant broken in production stops the process
// instead of carrying on with corrupt state (TigerBeetle keeps its own
// assertions on for the same reason). Keep conditions cheap: they run in
// release builds.
//
//   DTX_ASSERT(state_ != BranchState::active);
//   DTX_ASSERT(n <= max, "more execs than the branch allows");
#pragma once

#include <string_view>

namespace dtx {

// Reports a failed DTX_ASSERT and aborts. Never returns.
[[noreturn]] void assert_failed(const char* condition, const char* file, int line,
                                std::string_view message = {});

}  // namespace dtx

#define DTX_ASSERT(condition, ...)                                                    \
  do {                                                                                \
    if (!(condition)) [[unlikely]]                                                    \
      ::dtx::assert_failed(#condition, __FILE__, __LINE__ __VA_OPT__(, __VA_ARGS__)); \
  } while (0)
