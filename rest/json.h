// JSON bodies: a parser with limits and typed field readers whose errors
// name the field, so a handler can answer 400 with a useful message:
//
//   auto doc = parse_json(req.body);
//   if (!doc) return reply(Response::from_status(doc.status()));   // 400
//   auto sql = get_string(*doc, "sql");                             // required
//   auto limit = get_int64_or(*doc, "limit", 100, 1, 1000);         // optional
//
// Every failure is Code::invalid_argument (HTTP 400 through
// Response::from_status). Messages read like "field 'sql' must be a
// string" or "invalid JSON at offset 17: syntax error".
//
// Duplicate keys: Boost.JSON 1.81 keeps the last value of a repeated key.
// Numbers: integers are exact (int64, or uint64 above INT64_MAX); numbers
// with a fraction or exponent become doubles, which Boost.JSON 1.81 parses
// fast, not exactly (they may be off by an ULP), and a number beyond a
// double's range is rejected. Values that must be exact decimals travel as
// strings.
// Threading: pure functions.
#pragma once

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "common/status.h"

namespace dtx::rest {

struct JsonLimits {
  // Largest body accepted; larger is rejected before parsing.
  size_t bytes_max = 1u << 20;
  // Deepest nesting of arrays and objects.
  size_t depth_max = 32;
};

// Parses a whole document (trailing non-whitespace is an error). No
// comments, no trailing commas, valid UTF-8 only.
Result<boost::json::value> parse_json(std::string_view body, const JsonLimits& limits = {});

// The document as an object ("request body must be a JSON object").
Result<const boost::json::object*> as_object(const boost::json::value& doc);

// Required fields of an object document (`doc` must be an object, else the
// error says so). Missing or null is "field 'x' is required".
Result<std::string> get_string(const boost::json::value& doc, std::string_view key);
Result<bool> get_bool(const boost::json::value& doc, std::string_view key);
// An integer in [min, max]. Accepts JSON integers only (5, not 5.0 or "5").
Result<int64_t> get_int64(const boost::json::value& doc, std::string_view key,
                          int64_t min = std::numeric_limits<int64_t>::min(),
                          int64_t max = std::numeric_limits<int64_t>::max());
Result<const boost::json::array*> get_array(const boost::json::value& doc, std::string_view key);
Result<const boost::json::object*> get_object(const boost::json::value& doc, std::string_view key);

// Optional fields: missing or null gives the fallback; a present value of
// the wrong type is still an error.
Result<std::string> get_string_or(const boost::json::value& doc, std::string_view key,
                                  std::string_view fallback);
Result<bool> get_bool_or(const boost::json::value& doc, std::string_view key, bool fallback);
Result<int64_t> get_int64_or(const boost::json::value& doc, std::string_view key, int64_t fallback,
                             int64_t min = std::numeric_limits<int64_t>::min(),
                             int64_t max = std::numeric_limits<int64_t>::max());

// "string", "number", "object"... for messages.
std::string_view json_kind_name(const boost::json::value& v);

}  // namespace dtx::rest
