#include "rest/router.h"

#include <cstdio>
#include <cstdlib>
#include <set>

namespace dtx::rest {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Splits "/a/b/c" into "a", "b", "c". The leading '/' is required; "/" is
// one empty segment, so "/" and "" never match a pattern with segments.
std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  path.remove_prefix(1);
  while (true) {
    size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

// A programmer error: say so on stderr (as assert does) and abort.
[[noreturn]] void bad_route(std::string_view pattern, std::string_view why) {
  std::fprintf(stderr, "rest: route '%.*s' is invalid: %.*s\n", static_cast<int>(pattern.size()),
               pattern.data(), static_cast<int>(why.size()), why.data());
  std::abort();
}

}  // namespace

bool percent_decode(std::string_view in, std::string& out, bool plus_is_space) {
  out.clear();
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = hex_value(in[i + 1]);
      int lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return true;
}

bool parse_query(std::string_view query, std::map<std::string, std::string, std::less<>>& out) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string key, value;
    if (!percent_decode(pair.substr(0, eq), key, true)) return false;
    if (eq != std::string_view::npos && !percent_decode(pair.substr(eq + 1), value, true)) {
      return false;
    }
    out.emplace(std::move(key), std::move(value));  // the first value of a name wins
  }
  return true;
}

Router& Router::add(Method method, std::string pattern, Handler handler, bool requires_auth) {
  if (pattern.empty() || pattern[0] != '/') bad_route(pattern, "must start with '/'");
  if (method == Method::other) bad_route(pattern, "needs a known method");
  if (!handler) bad_route(pattern, "has no handler");
  Compiled c;
  std::set<std::string, std::less<>> names;
  for (std::string_view seg : split_path(pattern)) {
    Segment s;
    if (seg.size() >= 2 && seg.front() == '{' && seg.back() == '}') {
      s.param = true;
      s.text = std::string(seg.substr(1, seg.size() - 2));
      if (s.text.empty() || s.text.find_first_of("{}") != std::string::npos) {
        bad_route(pattern, "has a malformed parameter");
      }
      if (!names.insert(s.text).second) bad_route(pattern, "repeats a parameter name");
    } else {
      if (seg.find_first_of("{}%?#") != std::string_view::npos) {
        bad_route(pattern, "has a segment that is neither a literal nor a {parameter}");
      }
      s.text = std::string(seg);
    }
    c.segments.push_back(std::move(s));
  }
  for (const Route& r : routes_) {
    if (r.method == method && r.pattern == pattern) bad_route(pattern, "is registered twice");
  }
  routes_.push_back(Route{method, std::move(pattern), std::move(handler), requires_auth});
  compiled_.push_back(std::move(c));
  return *this;
}

Router& Router::get(std::string pattern, Handler handler) {
  return add(Method::get, std::move(pattern), std::move(handler));
}

Router& Router::post(std::string pattern, Handler handler) {
  return add(Method::post, std::move(pattern), std::move(handler));
}

Router& Router::add_public(Method method, std::string pattern, Handler handler) {
  return add(method, std::move(pattern), std::move(handler), false);
}

bool Router::any_requires_auth() const {
  for (const Route& r : routes_) {
    if (r.requires_auth) return true;
  }
  return false;
}

RouteMatch Router::match(Method method, std::string_view path) const {
  RouteMatch m;
  if (path.empty() || path[0] != '/') {
    m.kind = RouteMatch::Kind::bad_path;
    return m;
  }
  std::vector<std::string> decoded;
  for (std::string_view seg : split_path(path)) {
    std::string d;
    if (!percent_decode(seg, d, false)) {
      m.kind = RouteMatch::Kind::bad_path;
      return m;
    }
    decoded.push_back(std::move(d));
  }

  // For each matching pattern: is it more specific than the best so far?
  // Specificity compares segments left to right, a literal beating a
  // parameter; matching patterns have equally many segments.
  auto more_specific = [&](size_t a, size_t b) {
    const auto& sa = compiled_[a].segments;
    const auto& sb = compiled_[b].segments;
    for (size_t i = 0; i < sa.size(); ++i) {
      if (sa[i].param != sb[i].param) return !sa[i].param;
    }
    return false;
  };
  std::optional<size_t> best;
  std::set<std::string_view> allowed;
  for (size_t i = 0; i < routes_.size(); ++i) {
    const auto& segs = compiled_[i].segments;
    if (segs.size() != decoded.size()) continue;
    bool ok = true;
    for (size_t j = 0; j < segs.size() && ok; ++j) {
      ok = segs[j].param ? !decoded[j].empty() : segs[j].text == decoded[j];
    }
    if (!ok) continue;
    if (routes_[i].method != method) {
      allowed.insert(method_name(routes_[i].method));
      continue;
    }
    if (!best || more_specific(i, *best)) best = i;
  }
  if (best) {
    m.kind = RouteMatch::Kind::found;
    m.route = &routes_[*best];
    const auto& segs = compiled_[*best].segments;
    for (size_t j = 0; j < segs.size(); ++j) {
      if (segs[j].param) m.path_params.emplace(segs[j].text, std::move(decoded[j]));
    }
    return m;
  }
  if (allowed.empty()) {
    m.kind = RouteMatch::Kind::not_found;
    return m;
  }
  m.kind = RouteMatch::Kind::method_not_allowed;
  for (std::string_view name : allowed) {
    if (!m.allow.empty()) m.allow += ", ";
    m.allow += name;
  }
  return m;
}

Response Router::error_for(const RouteMatch& m) {
  switch (m.kind) {
    case RouteMatch::Kind::method_not_allowed: {
      Response r =
          Response::error(405, "method_not_allowed", "this path does not accept that method");
      r.headers.set("Allow", m.allow);
      return r;
    }
    case RouteMatch::Kind::bad_path:
      return Response::error(400, "bad_request", "the request path is malformed");
    case RouteMatch::Kind::not_found:
    case RouteMatch::Kind::found:
      break;
  }
  return Response::error(404, "not_found", "no such path");
}

}  // namespace dtx::rest
