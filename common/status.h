// Status and Result<T>: how dtx reports expected outcomes.
//
// dtx has three kinds of error (docs/architecture.md): a programmer error
// asserts and aborts; an expected outcome is a typed result (this file); a
// local durability failure stops the process. No exceptions cross module
// boundaries: functions that can fail in an expected way return Status or
// Result<T>.
#pragma once

#include <cassert>  // kept: files that use assert() get it from here
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

#include "common/assert.h"

namespace dtx {

// The codes a caller may react to. Add one only when some caller treats it
// specially; otherwise use the nearest and say more in the message.
enum class Code : int {
  ok = 0,
  invalid_argument,  // the caller passed something malformed or out of range
  not_found,         // no such file, record, transaction
  already_exists,
  corruption,  // checksums or framing do not hold; never silently skipped
  io_error,    // the operating system refused a read or write
  compacted,   // the requested position was truncated away
  closed,      // the object was closed or failed and accepts no more work
  busy,        // a bounded queue is full, or a lock is held by another
  timeout,
  unavailable,          // no quorum, no leader, peer unreachable
  failed_precondition,  // wrong state for this request
  internal,
};

std::string_view code_name(Code c);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() { return Status(); }

  bool ok() const { return code_ == Code::ok; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "corruption: bad crc in segment 3 at offset 4096"
  std::string describe() const;

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  Code code_ = Code::ok;
  std::string message_;
};

inline Status ok_status() {
  return Status();
}
inline Status error(Code code, std::string message) {
  return Status(code, std::move(message));
}

std::ostream& operator<<(std::ostream& os, const Status& s);

// A value or the Status that explains its absence. Never holds an ok Status.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}         // NOLINT(google-explicit-constructor)
  Result(Status status) : status_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    DTX_ASSERT(!status_.ok(), "a Result built from an ok Status has no value");
  }

  bool ok() const { return value_.has_value(); }
  explicit operator bool() const { return ok(); }

  const Status& status() const { return status_; }
  // The value. Calling these on an error is a programmer error: DTX_ASSERT
  // aborts, in release builds too.
  T& value() & {
    DTX_ASSERT(ok(), "value() of a Result that holds an error");
    return *value_;
  }
  const T& value() const& {
    DTX_ASSERT(ok(), "value() of a Result that holds an error");
    return *value_;
  }
  T&& value() && {
    DTX_ASSERT(ok(), "value() of a Result that holds an error");
    return std::move(*value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::optional<T> value_;
  Status status_;  // ok exactly when value_ is set
};

}  // namespace dtx

// Propagate a non-ok Status from an expression that yields a Status.
#define DTX_RETURN_IF_ERROR(expr)              \
  do {                                         \
    ::dtx::Status dtx_status_ = (expr);        \
    if (!dtx_status_.ok()) return dtx_status_; \
  } while (0)
