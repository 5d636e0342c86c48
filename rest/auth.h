// TokenAuth: bearer-token authentication for dtx's REST endpoints.
//
// A request is authenticated by `Authorization: Bearer <token>` (the scheme
// is case-insensitive, the token is not). The server answers
//   401 unauthorized (with `WWW-Authenticate: Bearer`) when the header is
//       missing or is not a Bearer credential, and
//   403 forbidden when a bearer token is present but not accepted.
// Public routes (Router::add_public) skip the check entirely.
//
// Tokens come from a file or from an environment variable, never from the
// command line (where `ps` would show them). A token file holds one token a
// line; blank lines and lines starting with '#' are ignored; surrounding
// whitespace is trimmed. Several tokens may be accepted at once, which is how
// a token is rotated. A token must be 16 to 4096 printable ASCII characters
// without spaces.
//
// Comparison is constant-time in the bytes of the presented token: every
// accepted token is compared in full, without early exit.
//
// Threading: immutable after construction; check() is safe from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace dtx::rest {

class TokenAuth {
 public:
  enum class Verdict { ok, missing, wrong };

  // Code::not_found if the file does not exist, invalid_argument if it
  // holds no token or a malformed one. Warns if the file is readable by
  // group or others.
  static Result<TokenAuth> from_file(const std::string& path);
  // The variable holds one token (trimmed). Code::not_found if unset or empty.
  static Result<TokenAuth> from_env(const std::string& variable);
  // Tokens given directly (tests, or a caller that read its own config).
  static Result<TokenAuth> from_tokens(std::vector<std::string> tokens);

  // `authorization` is the Authorization field's value, if the request had one.
  Verdict check(std::optional<std::string_view> authorization) const;

  // The first token: what a client of the same cluster presents.
  const std::string& primary_token() const { return tokens_.front(); }
  size_t token_count() const { return tokens_.size(); }

 private:
  explicit TokenAuth(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {}
  std::vector<std::string> tokens_;  // never empty
};

// Equality whose running time depends only on the lengths of a and b.
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace dtx::rest
