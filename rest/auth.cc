#include "rest/auth.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "rest/http.h"

namespace dtx::rest {

namespace {

constexpr size_t kTokenBytesMin = 16;
constexpr size_t kTokenBytesMax = 4096;

std::string_view trim(std::string_view s) {
  const char* ws = " \t\r\n";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

// Printable ASCII without spaces: what RFC 6750's b64token allows and more,
// but nothing that could split a header or hide in a log line.
Status validate(std::string_view token, std::string_view source) {
  if (token.size() < kTokenBytesMin || token.size() > kTokenBytesMax) {
    return error(Code::invalid_argument,
                 fmt::format("token from {} must be {} to {} characters long, not {}", source,
                             kTokenBytesMin, kTokenBytesMax, token.size()));
  }
  for (char c : token) {
    if (c <= ' ' || c > '~') {
      return error(Code::invalid_argument,
                   fmt::format("token from {} holds a space or a non-printable character", source));
    }
  }
  return ok_status();
}

}  // namespace

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Walk all of b whatever a holds; a shorter a reads as zeros. Volatile
  // keeps the compiler from turning the loop back into an early exit.
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i) {
    unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    diff = diff | (x ^ static_cast<unsigned char>(b[i]));
  }
  return diff == 0;
}

Result<TokenAuth> TokenAuth::from_tokens(std::vector<std::string> tokens) {
  if (tokens.empty()) return error(Code::invalid_argument, "no token given");
  for (const auto& t : tokens) {
    DTX_RETURN_IF_ERROR(validate(t, "the caller"));
  }
  return TokenAuth(std::move(tokens));
}

Result<TokenAuth> TokenAuth::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    int err = errno;
    Code code = err == ENOENT ? Code::not_found : Code::io_error;
    return error(code, fmt::format("token file {}: {}", path, std::strerror(err)));
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
    spdlog::warn("rest: token file {} is accessible by group or others (mode {:o})", path,
                 st.st_mode & 0777);
  }
  std::vector<std::string> tokens;
  std::string line;
  const std::string source = "file " + path;
  while (std::getline(in, line)) {
    std::string_view t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    DTX_RETURN_IF_ERROR(validate(t, source));
    tokens.emplace_back(t);
  }
  if (tokens.empty()) {
    return error(Code::invalid_argument, fmt::format("token file {} holds no token", path));
  }
  return TokenAuth(std::move(tokens));
}

Result<TokenAuth> TokenAuth::from_env(const std::string& variable) {
  const char* v = std::getenv(variable.c_str());
  std::string_view t = v == nullptr ? std::string_view() : trim(v);
  if (t.empty()) {
    return error(Code::not_found, fmt::format("environment variable {} is not set", variable));
  }
  DTX_RETURN_IF_ERROR(validate(t, "environment variable " + variable));
  return TokenAuth({std::string(t)});
}

TokenAuth::Verdict TokenAuth::check(std::optional<std::string_view> authorization) const {
  if (!authorization) return Verdict::missing;
  std::string_view value = trim(*authorization);
  constexpr std::string_view kScheme = "Bearer";
  if (value.size() <= kScheme.size() || !iequals(value.substr(0, kScheme.size()), kScheme) ||
      value[kScheme.size()] != ' ') {
    return Verdict::missing;
  }
  std::string_view presented = trim(value.substr(kScheme.size() + 1));
  bool any = false;
  for (const auto& t : tokens_) {
    // Every token is compared, whether or not an earlier one matched.
    bool equal = constant_time_equal(presented, t);
    any = any || equal;
  }
  return any ? Verdict::ok : Verdict::wrong;
}

}  // namespace dtx::rest
