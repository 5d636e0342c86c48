#include "rest/http.h"

#include <boost/json/serialize.hpp>

#include <array>

#include "rest/json.h"

namespace dtx::rest {

namespace {

constexpr std::array<std::pair<Method, std::string_view>, 7> kMethodNames = {{
    {Method::get, "GET"},
    {Method::head, "HEAD"},
    {Method::post, "POST"},
    {Method::put, "PUT"},
    {Method::patch, "PATCH"},
    {Method::delete_, "DELETE"},
    {Method::options, "OPTIONS"},
}};

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// A replier for tests and adapters: hands the response to a function.
class FunctionSink final : public ReplySink {
 public:
  explicit FunctionSink(std::function<void(Response)> fn) : fn_(std::move(fn)) {}

 protected:
  void deliver(Response response) override { fn_(std::move(response)); }

 private:
  std::function<void(Response)> fn_;
};

}  // namespace

std::string_view method_name(Method m) {
  for (const auto& [method, name] : kMethodNames) {
    if (method == m) return name;
  }
  return "OTHER";
}

Method parse_method(std::string_view name) {
  for (const auto& [method, text] : kMethodNames) {
    if (text == name) return method;
  }
  return Method::other;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

void Headers::add(std::string name, std::string value) {
  fields_.emplace_back(std::move(name), std::move(value));
}

void Headers::set(std::string name, std::string value) {
  std::erase_if(fields_, [&](const Field& f) { return iequals(f.first, name); });
  add(std::move(name), std::move(value));
}

std::optional<std::string_view> Headers::get(std::string_view name) const {
  for (const auto& [n, v] : fields_) {
    if (iequals(n, name)) return std::string_view(v);
  }
  return std::nullopt;
}

std::optional<std::string_view> Request::query_param(std::string_view name) const {
  auto it = query.find(name);
  if (it == query.end()) return std::nullopt;
  return std::string_view(it->second);
}

std::string_view Request::path_param(std::string_view name) const {
  auto it = path_params.find(name);
  if (it == path_params.end()) return {};
  return it->second;
}

Response Response::json(int status, const boost::json::value& value) {
  Response r;
  r.status = status;
  r.body = boost::json::serialize(value);
  return r;
}

Response Response::error(int status, std::string_view code, std::string_view message) {
  boost::json::object inner;
  inner["code"] = code;
  inner["message"] = message;
  boost::json::object outer;
  outer["error"] = std::move(inner);
  return json(status, outer);
}

int http_status_for(Code code) {
  switch (code) {
    case Code::ok:
      return 200;
    case Code::invalid_argument:
      return 400;
    case Code::not_found:
      return 404;
    case Code::already_exists:
    case Code::failed_precondition:
      return 409;
    case Code::compacted:
      return 410;
    case Code::busy:
    case Code::unavailable:
    case Code::closed:
      return 503;
    case Code::timeout:
      return 504;
    case Code::corruption:
    case Code::io_error:
    case Code::internal:
      return 500;
  }
  return 500;
}

Response Response::from_status(const Status& status) {
  return error(http_status_for(status.code()), code_name(status.code()), status.message());
}

Response Response::text(int status, std::string body, std::string_view content_type) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  r.content_type = std::string(content_type);
  return r;
}

Result<boost::json::value> Response::json_body() const {
  return parse_json(body);
}

std::string Response::error_code() const {
  return error_code_of(body);
}

std::string error_code_of(std::string_view body) {
  auto doc = parse_json(body);
  if (!doc.ok() || !doc->is_object()) return {};
  const auto* err = doc->as_object().if_contains("error");
  if (err == nullptr || !err->is_object()) return {};
  const auto* code = err->as_object().if_contains("code");
  if (code == nullptr || !code->is_string()) return {};
  return std::string(code->as_string());
}

Replier Replier::to(std::function<void(Response)> fn) {
  return Replier(std::make_shared<FunctionSink>(std::move(fn)));
}

void Replier::operator()(Response response) const {
  sink_->reply(std::move(response));
}

}  // namespace dtx::rest
