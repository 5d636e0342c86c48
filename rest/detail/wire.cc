#include "rest/detail/wire.h"

#include <boost/beast/http/error.hpp>

namespace dtx::rest::detail {

namespace {

// Fields the layer writes itself; a handler's copy would contradict them.
bool layer_owned(std::string_view name) {
  for (std::string_view owned :
       {"Content-Type", "Content-Length", "Connection", "Server", "Transfer-Encoding"}) {
    if (iequals(name, owned)) return true;
  }
  return false;
}

// Header values must not smuggle a line break (or any other control byte a
// peer's parser refuses) onto the wire, and must fit Beast's 16-bit field
// lengths (it throws beyond them). RFC 9110 field-value: visible ASCII,
// obs-text (0x80-0xFF), space and tab.
constexpr size_t kFieldBytesMax = 8192;
bool header_safe(std::string_view s) {
  if (s.size() > kFieldBytesMax) return false;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

// A field name is an RFC 9110 token.
bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > kFieldBytesMax) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

// Copies the caller's extra fields, skipping the layer's own and any that
// would not serialise as one well-formed field.
template <class Message>
void copy_fields(const Headers& headers, Message& msg) {
  for (const auto& [name, value] : headers.fields()) {
    if (layer_owned(name) || !valid_name(name) || !header_safe(value)) continue;
    msg.insert(name, value);
  }
}

}  // namespace

void configure(RequestParser& parser, const ParserLimits& limits) {
  parser.header_limit(static_cast<std::uint32_t>(limits.header_bytes_max));
  parser.body_limit(static_cast<std::uint64_t>(limits.body_bytes_max));
}

void configure(ResponseParser& parser, const ParserLimits& limits) {
  parser.header_limit(static_cast<std::uint32_t>(limits.header_bytes_max));
  parser.body_limit(static_cast<std::uint64_t>(limits.body_bytes_max));
}

bool is_parse_error(const boost::beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_method).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

Response parse_error_response(const boost::beast::error_code& ec) {
  if (ec == http::error::body_limit) {
    return Response::error(413, "payload_too_large", "the request body is too large");
  }
  if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
    return Response::error(431, "headers_too_large", "the request header block is too large");
  }
  return Response::error(400, "bad_request", "malformed HTTP request: " + ec.message());
}

std::optional<Response> to_request(BeastRequest&& msg, std::string remote_address, Request& out) {
  std::string_view method = msg.method_string();
  out.method = parse_method(method);
  out.method_text = std::string(method);
  std::string_view target = msg.target();
  out.target = std::string(target);
  if (target.empty() || target[0] != '/') {
    return Response::error(400, "bad_request", "the request target must be an absolute path");
  }
  size_t q = target.find('?');
  out.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos && !parse_query(target.substr(q + 1), out.query)) {
    return Response::error(400, "bad_request", "the query string is malformed");
  }
  for (const auto& f : msg) {
    out.headers.add(std::string(f.name_string()), std::string(f.value()));
  }
  out.body = std::move(msg.body());
  out.remote_address = std::move(remote_address);
  return std::nullopt;
}

Dispatch route(const Router& router, const TokenAuth* auth, Request& request) {
  RouteMatch m = router.match(request.method, request.path);
  if (m.kind != RouteMatch::Kind::found) return {nullptr, Router::error_for(m)};
  if (m.route->requires_auth) {
    auto verdict = auth == nullptr ? TokenAuth::Verdict::missing
                                   : auth->check(request.header("Authorization"));
    if (verdict == TokenAuth::Verdict::missing) {
      Response r = Response::error(401, "unauthorized", "a bearer token is required");
      r.headers.set("WWW-Authenticate", "Bearer");
      return {nullptr, std::move(r)};
    }
    if (verdict == TokenAuth::Verdict::wrong) {
      return {nullptr, Response::error(403, "forbidden", "the bearer token is not accepted")};
    }
  }
  request.path_params = std::move(m.path_params);
  return {&m.route->handler, {}};
}

BeastResponse to_beast(Response&& response, unsigned version, bool keep_alive) {
  BeastResponse msg;
  msg.version(version);
  // A final answer is 2xx-5xx; anything else is a handler bug, answered as
  // such (and Beast would throw on some of it).
  bool valid_status = response.status >= 200 && response.status <= 599;
  msg.result(valid_status ? static_cast<unsigned>(response.status) : 500u);
  // 204 and 304 carry no body (Beast throws when asked to frame one).
  if (msg.result() == http::status::no_content || msg.result() == http::status::not_modified) {
    response.body.clear();
  }
  msg.set(http::field::server, "dtx");
  if (header_safe(response.content_type)) msg.set(http::field::content_type, response.content_type);
  copy_fields(response.headers, msg);
  msg.body() = std::move(response.body);
  msg.keep_alive(keep_alive);
  msg.prepare_payload();
  return msg;
}

BeastRequest to_beast(ClientRequest&& request, std::string_view host,
                      std::string_view bearer_token) {
  BeastRequest msg;
  msg.version(11);
  if (request.method == Method::other) {
    msg.method(http::verb::get);
  } else {
    msg.method_string(method_name(request.method));
  }
  msg.target(request.target);
  msg.set(http::field::host, host);
  msg.set(http::field::user_agent, "dtx");
  if (!bearer_token.empty()) {
    msg.set(http::field::authorization, "Bearer " + std::string(bearer_token));
  }
  copy_fields(request.headers, msg);
  if (!request.body.empty()) msg.set(http::field::content_type, kJsonContentType);
  msg.body() = std::move(request.body);
  msg.keep_alive(true);
  msg.prepare_payload();
  return msg;
}

Response from_beast(http::response<http::string_body>&& msg) {
  Response r;
  r.status = static_cast<int>(msg.result_int());
  r.content_type = std::string(msg[http::field::content_type]);
  for (const auto& f : msg) {
    r.headers.add(std::string(f.name_string()), std::string(f.value()));
  }
  r.body = std::move(msg.body());
  return r;
}

}  // namespace dtx::rest::detail
