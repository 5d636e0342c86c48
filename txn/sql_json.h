// SQL values in JSON, the one mapping every dtx program uses.
//
//   JSON         SqlValue
//   null         std::monostate
//   true/false   bool
//   integer      int64_t   (an integer above 2^63-1 is refused)
//   fraction or
//   exponent     double    (a non-finite double is written as null)
//   string       std::string
// Arrays and objects are not SQL values: refused, naming the field.
//
// Threading: pure functions.
#pragma once

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

#include <string_view>
#include <vector>

#include "common/status.h"
#include "txn/types.h"

namespace dtx::txn {

boost::json::value sql_value_to_json(const SqlValue& v);
// `what` names the value in the error ("params[3]").
Result<SqlValue> sql_value_from_json(const boost::json::value& v, std::string_view what);

boost::json::array sql_values_to_json(const std::vector<SqlValue>& values);
// An array of at most `max` scalars; `what` names it ("params").
Result<std::vector<SqlValue>> sql_values_from_json(const boost::json::value& v,
                                                   std::string_view what, size_t max);

}  // namespace dtx::txn
