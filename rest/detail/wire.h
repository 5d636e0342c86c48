// Internal to rest/: the translation between Beast's messages and dtx's
// Request/Response, and the server's request path up to the handler call
// (parser limits, target parsing, routing, authentication). The server,
// the client and the request fuzz target share it, so the fuzzer exercises
// exactly the configuration the server runs.
//
// This header includes Beast. Only rest/*.cc and tests/fuzz include it;
// public headers never do.
#pragma once

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "rest/auth.h"
#include "rest/client.h"
#include "rest/http.h"
#include "rest/router.h"

namespace dtx::rest::detail {

namespace http = boost::beast::http;

using BeastRequest = http::request<http::string_body>;
using BeastResponse = http::response<http::string_body>;
using RequestParser = http::request_parser<http::string_body>;
using ResponseParser = http::response_parser<http::string_body>;

struct ParserLimits {
  size_t header_bytes_max;
  size_t body_bytes_max;
};

// Applies the limits to a fresh parser (header_limit, body_limit).
void configure(RequestParser& parser, const ParserLimits& limits);
void configure(ResponseParser& parser, const ParserLimits& limits);

// The answer to a request whose parse failed with `ec` (an http::error):
// 413, 431 or 400, in the error shape.
Response parse_error_response(const boost::beast::error_code& ec);

// Whether `ec` is a parse error (as opposed to a transport error or EOF).
bool is_parse_error(const boost::beast::error_code& ec);

// Fills `out` from a parsed message; the error response (400) if the target
// is not an absolute path with a well-formed query.
std::optional<Response> to_request(BeastRequest&& msg, std::string remote_address, Request& out);

// What the server does with a parsed Request: run `handler` (path_params
// are then set in the request), or send `answer` (404, 405, 400, 401, 403).
struct Dispatch {
  const Handler* handler = nullptr;
  Response answer;
};
Dispatch route(const Router& router, const TokenAuth* auth, Request& request);

// The wire form of a handler's answer. Fields the layer owns (Content-Type,
// Content-Length, Connection, Server, Transfer-Encoding) are not copied from
// response.headers.
BeastResponse to_beast(Response&& response, unsigned version, bool keep_alive);

// The client's side.
BeastRequest to_beast(ClientRequest&& request, std::string_view host,
                      std::string_view bearer_token);
Response from_beast(http::response<http::string_body>&& msg);

}  // namespace dtx::rest::detail
