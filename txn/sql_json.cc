#include "txn/sql_json.h"

#include <cmath>
#include <cstdint>
#include <string>

namespace dtx::txn {

namespace json = boost::json;

json::value sql_value_to_json(const SqlValue& v) {
  if (std::holds_alternative<std::monostate>(v)) return nullptr;
  if (const bool* b = std::get_if<bool>(&v)) return *b;
  if (const int64_t* i = std::get_if<int64_t>(&v)) return *i;
  if (const double* d = std::get_if<double>(&v)) {
    if (!std::isfinite(*d)) return nullptr;  // JSON has no NaN or infinity
    return *d;
  }
  return json::string(std::get<std::string>(v));
}

Result<SqlValue> sql_value_from_json(const json::value& v, std::string_view what) {
  switch (v.kind()) {
    case json::kind::null:
      return SqlValue{};
    case json::kind::bool_:
      return SqlValue{v.get_bool()};
    case json::kind::int64:
      return SqlValue{v.get_int64()};
    case json::kind::uint64:
      if (v.get_uint64() > static_cast<uint64_t>(INT64_MAX)) break;
      return SqlValue{static_cast<int64_t>(v.get_uint64())};
    case json::kind::double_:
      return SqlValue{v.get_double()};
    case json::kind::string:
      return SqlValue{std::string(v.get_string())};
    default:
      break;
  }
  return error(Code::invalid_argument,
               std::string(what) + " must be null, a boolean, a number or a string");
}

json::array sql_values_to_json(const std::vector<SqlValue>& values) {
  json::array a;
  a.reserve(values.size());
  for (const SqlValue& v : values)
    a.push_back(sql_value_to_json(v));
  return a;
}

Result<std::vector<SqlValue>> sql_values_from_json(const json::value& v, std::string_view what,
                                                   size_t max) {
  if (!v.is_array()) return error(Code::invalid_argument, std::string(what) + " must be an array");
  const json::array& a = v.get_array();
  if (a.size() > max) {
    return error(Code::invalid_argument,
                 std::string(what) + " has more than " + std::to_string(max) + " values");
  }
  std::vector<SqlValue> out;
  out.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    auto x = sql_value_from_json(a[i], std::string(what) + "[" + std::to_string(i) + "]");
    if (!x.ok()) return x.status();
    out.push_back(std::move(*x));
  }
  return out;
}

}  // namespace dtx::txn
