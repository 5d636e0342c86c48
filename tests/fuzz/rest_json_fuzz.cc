// Fuzzes rest/json.h: parse_json must never crash or exceed its limits, and
// what it accepts must survive a serialise-and-parse round trip; the typed
// field readers must answer every document with a value or a 400-style
// error.
#include <boost/json/serialize.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "rest/http.h"
#include "rest/json.h"

using namespace dtx::rest;

namespace {

// Nesting depth of a value.
size_t depth(const boost::json::value& v) {
  size_t d = 0;
  if (const auto* a = v.if_array()) {
    for (const auto& e : *a)
      d = std::max(d, depth(e));
    return d + 1;
  }
  if (const auto* o = v.if_object()) {
    for (const auto& kv : *o)
      d = std::max(d, depth(kv.value()));
    return d + 1;
  }
  return 0;
}

// Equality, but doubles need only agree to a few ULP: Boost.JSON 1.81
// parses decimal numbers fast rather than exactly (rest/json.h says so), so
// a double may move by an ULP on a serialise-and-parse round trip.
bool same(const boost::json::value& a, const boost::json::value& b) {
  if (a.is_double() && b.is_double()) {
    double x = a.get_double(), y = b.get_double();
    return x == y || std::fabs(x - y) <= 1e-14 * std::max(std::fabs(x), std::fabs(y));
  }
  if (a.kind() != b.kind()) return false;
  if (const auto* arr = a.if_array()) {
    const auto& brr = b.get_array();
    if (arr->size() != brr.size()) return false;
    for (size_t i = 0; i < arr->size(); ++i) {
      if (!same((*arr)[i], brr[i])) return false;
    }
    return true;
  }
  if (const auto* obj = a.if_object()) {
    const auto& bbj = b.get_object();
    if (obj->size() != bbj.size()) return false;
    for (const auto& kv : *obj) {
      const auto* other = bbj.if_contains(kv.key());
      if (other == nullptr || !same(kv.value(), *other)) return false;
    }
    return true;
  }
  return a == b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  JsonLimits limits;
  limits.depth_max = 1 + data[0] % 40;
  limits.bytes_max = 1u << 16;
  std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);

  auto doc = parse_json(body, limits);
  if (!doc.ok()) {
    if (doc.status().code() != dtx::Code::invalid_argument) std::abort();
    if (Response::from_status(doc.status()).status != 400) std::abort();
    return 0;
  }
  if (body.size() > limits.bytes_max || depth(*doc) > limits.depth_max) std::abort();

  // Round trip: what we accept, we can write back and read again unchanged.
  std::string again = boost::json::serialize(*doc);
  JsonLimits loose;
  loose.bytes_max = again.size() + 1;
  loose.depth_max = limits.depth_max;
  auto reparsed = parse_json(again, loose);
  if (!reparsed.ok() || !same(*reparsed, *doc)) std::abort();

  // The field readers, on keys the document may or may not have.
  for (std::string_view key : {"sql", "n", "params", "a", ""}) {
    auto s = get_string(*doc, key);
    auto b = get_bool_or(*doc, key, false);
    auto i = get_int64_or(*doc, key, 0, -5, 1'000'000);
    auto a = get_array(*doc, key);
    auto o = get_object(*doc, key);
    for (const dtx::Status* st :
         {&s.status(), &b.status(), &i.status(), &a.status(), &o.status()}) {
      if (!st->ok() && st->code() != dtx::Code::invalid_argument) std::abort();
    }
    if (i.ok() && (*i < -5 || *i > 1'000'000)) std::abort();
  }
  return 0;
}
