// Router: maps (method, path) to a Handler, binding path parameters.
//
// Patterns are absolute paths whose segments are literals or parameters in
// braces, a whole segment each: "/v1/branches/{txid}/exec". A parameter
// matches one non-empty segment, percent-decoded. Matching is exact:
// no prefix matching, and a trailing slash is a different path.
//
// When several patterns match a path, the most specific one wins: compared
// segment by segment from the left, a literal beats a parameter
// ("/v1/branches/recover" before "/v1/branches/{txid}"). Among the patterns
// that match the path, only those registered for the request's method are
// candidates; if there are none, the answer is 405 with an Allow field
// listing the methods of every matching pattern; if no pattern matches at
// all, 404. Routing happens before authentication, so an unknown path is
// 404 with or without a token.
//
// Threading: build the router on one thread, then hand it to the server;
// match() is const and safe from many threads.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "rest/http.h"

namespace dtx::rest {

struct Route {
  Method method;
  std::string pattern;
  Handler handler;
  // false: a public route (health checks, metrics) served without a token.
  bool requires_auth = true;
};

// What match() found.
struct RouteMatch {
  enum class Kind { found, not_found, method_not_allowed, bad_path };
  Kind kind = Kind::not_found;
  const Route* route = nullptr;                                 // when found
  std::map<std::string, std::string, std::less<>> path_params;  // when found
  std::string allow;  // when method_not_allowed: "GET, POST"
};

class Router {
 public:
  // Registers a route. A malformed pattern or a repeated (method, pattern)
  // is a programmer error: it aborts with a message.
  Router& add(Method method, std::string pattern, Handler handler, bool requires_auth = true);
  // Shorthands for add(..., requires_auth = true).
  Router& get(std::string pattern, Handler handler);
  Router& post(std::string pattern, Handler handler);
  // A route that needs no token.
  Router& add_public(Method method, std::string pattern, Handler handler);

  // `path` as received, percent-encoded, without the query. kind is
  // bad_path when a segment's percent-encoding is invalid.
  RouteMatch match(Method method, std::string_view path) const;

  // The error response for a match that was not found.
  static Response error_for(const RouteMatch& m);

  const std::vector<Route>& routes() const { return routes_; }
  bool any_requires_auth() const;

 private:
  struct Segment {
    std::string text;  // a literal, or the parameter name
    bool param = false;
  };
  struct Compiled {
    std::vector<Segment> segments;
  };

  std::vector<Route> routes_;
  std::vector<Compiled> compiled_;  // parallel to routes_
};

// Splits "a=1&b=x%20y" into decoded pairs; false on invalid percent-encoding.
bool parse_query(std::string_view query, std::map<std::string, std::string, std::less<>>& out);
// Decodes %XX (and '+' as a space when plus_is_space); false if malformed.
bool percent_decode(std::string_view in, std::string& out, bool plus_is_space);

}  // namespace dtx::rest
