#include "rest/json.h"

#include <boost/json/parser.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace dtx::rest {

namespace json = boost::json;

namespace {

Status bad(std::string message) {
  return error(Code::invalid_argument, std::move(message));
}

// The field `key` of object document `doc`: null when missing or JSON null.
Result<const json::value*> field(const json::value& doc, std::string_view key) {
  const json::object* obj = doc.if_object();
  if (obj == nullptr) return bad("request body must be a JSON object");
  const json::value* v = obj->if_contains(key);
  if (v == nullptr || v->is_null()) return static_cast<const json::value*>(nullptr);
  return v;
}

Status wrong_type(std::string_view key, std::string_view want, const json::value& got) {
  return bad(fmt::format("field '{}' must be {}, not {}", key, want, json_kind_name(got)));
}

Status missing(std::string_view key) {
  return bad(fmt::format("field '{}' is required", key));
}

Result<int64_t> to_int64(std::string_view key, const json::value& v, int64_t min, int64_t max) {
  int64_t n = 0;
  if (v.is_int64()) {
    n = v.get_int64();
  } else if (v.is_uint64()) {
    // Only values above INT64_MAX are stored as uint64.
    return bad(fmt::format("field '{}' must be at most {}", key, max));
  } else {
    return wrong_type(key, "an integer", v);
  }
  if (n < min || n > max) {
    return bad(fmt::format("field '{}' must be between {} and {}, not {}", key, min, max, n));
  }
  return n;
}

// Boost.JSON 1.81 turns a number too large for a double (1e999) into
// infinity and would serialise it as `Infinity`, which is not JSON: a value
// echoed back (a result row, a stored record) would then break its reader.
// The tree is at most JsonLimits::depth_max deep, so recursion is bounded.
bool all_finite(const json::value& v) {
  if (v.is_double()) return std::isfinite(v.get_double());
  if (const auto* a = v.if_array()) {
    return std::all_of(a->begin(), a->end(), [](const json::value& e) { return all_finite(e); });
  }
  if (const auto* o = v.if_object()) {
    return std::all_of(o->begin(), o->end(),
                       [](const json::key_value_pair& kv) { return all_finite(kv.value()); });
  }
  return true;
}

}  // namespace

std::string_view json_kind_name(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
      return "an integer";
    case json::kind::double_:
      return "a number";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
  }
  return "unknown";
}

Result<json::value> parse_json(std::string_view body, const JsonLimits& limits) {
  if (body.size() > limits.bytes_max) {
    return bad(fmt::format("JSON body of {} bytes exceeds the limit of {}", body.size(),
                           limits.bytes_max));
  }
  json::parse_options opt;
  opt.max_depth = limits.depth_max;
  json::parser p(json::storage_ptr(), opt);
  json::error_code ec;
  // write() takes the whole body: anything after the value but whitespace
  // is an error.
  size_t used = p.write(body.data(), body.size(), ec);
  if (ec) {
    if (body.empty()) return bad("request body must be JSON, and is empty");
    return bad(fmt::format("invalid JSON at offset {}: {}", used, ec.message()));
  }
  json::value doc = p.release();
  if (!all_finite(doc)) return bad("invalid JSON: a number is out of range");
  return doc;
}

Result<const json::object*> as_object(const json::value& doc) {
  const json::object* obj = doc.if_object();
  if (obj == nullptr) return bad("request body must be a JSON object");
  return obj;
}

Result<std::string> get_string(const json::value& doc, std::string_view key) {
  auto v = field(doc, key);
  if (!v.ok()) return v.status();
  if (*v == nullptr) return missing(key);
  if (!(*v)->is_string()) return wrong_type(key, "a string", **v);
  return std::string((*v)->get_string());
}

Result<std::string> get_string_or(const json::value& doc, std::string_view key,
                                  std::string_view fallback) {
  auto v = field(doc, key);
  if (!v.ok()) return v.status();
  if (*v == nullptr) return std::string(fallback);
  return get_string(doc, key);
}

Result<bool> get_bool(const json::value& doc, std::string_view key) {
  auto v = field(doc, key);
  if (!v.ok()) return v.status();
  if (*v == nullptr) return missing(key);
  if (!(*v)->is_bool()) return wrong_type(key, "a boolean", **v);
  return (*v)->get_bool();
}

Result<bool> get_bool_or(const json::value& doc, std::string_view key, bool fallback) {
  auto v = field(doc, key);
  if (!v.ok()) return v.status();
  if (*v == nullptr) return fallback;
  return get_bool(doc, key);
}

Result<int64_t> get_int64(const json::value& doc, std::string_view key, int64_t min, int64_t max) {
  auto v = field(doc, key);
  if (!v.ok()) return v.status();
  if (*v == nullptr) return missing(key);
  return to_int64(key, **v, min, max);
}

Result<int64_t> get_int64_or(const json::value& doc, std::string_view key, int64_t fallback,
                             int64_t min, int64_t max) {
  auto v = field(doc, key);
  if (!v.ok()) return v.status();
  if (*v == nullptr) return fallback;
  return to_int64(key, **v, min, max);
}

Result<const json::array*> get_array(const json::value& doc, std::string_view key) {
  auto v = field(doc, key);
  if (!v.ok()) return v.status();
  if (*v == nullptr) return missing(key);
  if (!(*v)->is_array()) return wrong_type(key, "an array", **v);
  return &(*v)->get_array();
}

Result<const json::object*> get_object(const json::value& doc, std::string_view key) {
  auto v = field(doc, key);
  if (!v.ok()) return v.status();
  if (*v == nullptr) return missing(key);
  if (!(*v)->is_object()) return wrong_type(key, "an object", **v);
  return &(*v)->get_object();
}

}  // namespace dtx::rest
