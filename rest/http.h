// Request and Response: the values dtx's REST layer hands to handlers and
// takes back from them, on the server and on the client alike.
//
// Errors have one shape everywhere, on every status:
//   {"error": {"code": "<snake_case word>", "message": "<one human sentence>"}}
// The codes the rest layer produces by itself (handlers add their own):
//   400 bad_request         malformed HTTP, target or percent-encoding
//   401 unauthorized        no (or no Bearer) Authorization header
//   403 forbidden           a bearer token that is not one of ours
//   404 not_found           no route has this path
//   405 method_not_allowed  the path exists for other methods (see Allow)
//   413 payload_too_large   the body exceeds ServerOptions::body_bytes_max
//   431 headers_too_large   the header block exceeds header_bytes_max
//   500 internal            a handler threw, or dropped its Replier unused
//   503 overloaded          ServerOptions::connections_max was reached
// Response::from_status() maps a dtx Status to the same shape, with the
// Code's name (common/status.h) as the error code.
//
// Threading: plain values; no synchronisation.
#pragma once

#include <boost/json/value.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace dtx::rest {

enum class Method { get, head, post, put, patch, delete_, options, other };

// "GET", "POST", ...; "OTHER" for Method::other.
std::string_view method_name(Method m);
// Exact, case-sensitive (RFC 9110: methods are case-sensitive). Unknown
// names give Method::other.
Method parse_method(std::string_view name);

// An ordered list of header fields. Lookup by name is case-insensitive;
// the order and spelling of added fields are kept.
class Headers {
 public:
  using Field = std::pair<std::string, std::string>;

  // Appends a field (a repeated name keeps both).
  void add(std::string name, std::string value);
  // Replaces every field of this name by one.
  void set(std::string name, std::string value);
  // The first field of this name, if any.
  std::optional<std::string_view> get(std::string_view name) const;
  bool contains(std::string_view name) const { return get(name).has_value(); }

  const std::vector<Field>& fields() const { return fields_; }
  bool empty() const { return fields_.empty(); }

 private:
  std::vector<Field> fields_;
};

// ASCII case-insensitive equality, as HTTP field names and auth schemes
// compare.
bool iequals(std::string_view a, std::string_view b);

// A request as a handler sees it. `path` and `target` are as received
// (still percent-encoded); path and query parameters are decoded.
struct Request {
  Method method = Method::get;
  std::string method_text;  // as received, e.g. "PROPFIND" for Method::other
  std::string target;       // "/v1/branches?state=prepared"
  std::string path;         // "/v1/branches"
  // Query parameters, percent-decoded ('+' is a space). A repeated name
  // keeps its first value.
  std::map<std::string, std::string, std::less<>> query;
  // Filled by the router from the matched pattern: {txid} -> "42".
  std::map<std::string, std::string, std::less<>> path_params;
  Headers headers;
  std::string body;
  std::string remote_address;  // "127.0.0.1:53412"; empty on the client

  std::optional<std::string_view> header(std::string_view name) const { return headers.get(name); }
  std::optional<std::string_view> query_param(std::string_view name) const;
  // The value of a parameter of the matched pattern; "" if the pattern has
  // no such parameter (a programmer error the handler's tests catch).
  std::string_view path_param(std::string_view name) const;
};

inline constexpr std::string_view kJsonContentType = "application/json";
inline constexpr std::string_view kTextContentType = "text/plain; charset=utf-8";

struct Response {
  int status = 200;
  std::string body;
  std::string content_type = std::string(kJsonContentType);
  // Extra fields (Location, Allow, WWW-Authenticate...). The layer sets
  // Content-Type, Content-Length, Connection and Server itself; fields of
  // those names here are ignored on the server.
  Headers headers;

  // A JSON body.
  static Response json(int status, const boost::json::value& value);
  // The error shape above.
  static Response error(int status, std::string_view code, std::string_view message);
  // A non-ok Status as an error response: invalid_argument 400, not_found
  // 404, already_exists and failed_precondition 409, busy, unavailable and
  // closed 503, timeout 504, compacted 410, anything else 500. The error
  // code is code_name(status.code()).
  static Response from_status(const Status& status);
  // A plain-text body (Prometheus /metrics, health checks).
  static Response text(int status, std::string body,
                       std::string_view content_type = kTextContentType);

  // The parsed JSON body (for callers of the client), limited as
  // parse_json's defaults are. Code::invalid_argument if it is not JSON.
  Result<boost::json::value> json_body() const;
  // For an error-shaped body, its "code"; "" otherwise.
  std::string error_code() const;
};

// The "code" of an error-shaped JSON body; "" for any other body.
std::string error_code_of(std::string_view body);

// The HTTP status from_status() gives a Code.
int http_status_for(Code code);

// The sink behind a Replier. The server implements it; tests of handlers
// can use Replier::to(function) instead.
class ReplySink {
 public:
  virtual ~ReplySink() = default;
  // Delivers the first response given; later ones are dropped. Any thread.
  void reply(Response response) {
    if (!replied_.exchange(true, std::memory_order_acq_rel)) deliver(std::move(response));
  }
  bool replied() const { return replied_.load(std::memory_order_acquire); }

 protected:
  // Called at most once, on the thread of the first reply().
  virtual void deliver(Response response) = 0;

 private:
  std::atomic<bool> replied_{false};
};

// How a handler answers: call it once with the Response, now or later, from
// any thread. Copyable; the copies share one answer: the first call wins
// and later calls are ignored. If every copy is destroyed without a call,
// the server answers 500 "internal" so the connection does not wait
// forever. Calling it after the server stopped is harmless (the answer is
// dropped).
class Replier {
 public:
  explicit Replier(std::shared_ptr<ReplySink> sink) : sink_(std::move(sink)) {}
  // A replier that hands the response to fn (tests, adapters).
  static Replier to(std::function<void(Response)> fn);

  void operator()(Response response) const;

 private:
  std::shared_ptr<ReplySink> sink_;
};

// A route's handler: runs on a server I/O thread and must not block; slow
// work goes to the caller's own threads, which reply when done.
using Handler = std::function<void(Request, Replier)>;

}  // namespace dtx::rest
