#include "common/status.h"

namespace dtx {

std::string_view code_name(Code c) {
  switch (c) {
    case Code::ok:
      return "ok";
    case Code::invalid_argument:
      return "invalid_argument";
    case Code::not_found:
      return "not_found";
    case Code::already_exists:
      return "already_exists";
    case Code::corruption:
      return "corruption";
    case Code::io_error:
      return "io_error";
    case Code::compacted:
      return "compacted";
    case Code::closed:
      return "closed";
    case Code::busy:
      return "busy";
    case Code::timeout:
      return "timeout";
    case Code::unavailable:
      return "unavailable";
    case Code::failed_precondition:
      return "failed_precondition";
    case Code::internal:
      return "internal";
  }
  return "unknown";
}

std::string Status::describe() const {
  if (ok()) return "ok";
  std::string s(code_name(code_));
  if (!message_.empty()) {
    s += ": ";
    s += message_;
  }
  return s;
}

std::ostream& operator<<(std::ostream& os, const Status& s) {
  return os << s.describe();
}

}  // namespace dtx
