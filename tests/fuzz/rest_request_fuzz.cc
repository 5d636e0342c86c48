// Fuzzes the server's request path on raw bytes: Beast's parser with the
// limits the server uses (rest/detail/wire.h), messages back to back as on a
// pipelined connection, then target parsing, routing and bearer auth, and
// the serialisation of every answer. It must never crash, and every
// rejection must be one of the statuses the server promises, in the error
// shape.
#include <boost/asio/buffer.hpp>
#include <boost/beast/http/write.hpp>

#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>

#include "rest/detail/wire.h"
#include "rest/json.h"
#include "rest/server.h"

using namespace dtx::rest;
namespace http = boost::beast::http;

namespace {

constexpr const char* kToken = "fuzz-token-0123456789";

Router make_router() {
  Router r;
  r.post("/v1/branches/{txid}/exec", [](Request req, Replier reply) {
    auto doc = parse_json(req.body);
    if (!doc.ok()) return reply(Response::from_status(doc.status()));
    auto sql = get_string(*doc, "sql");
    if (!sql.ok()) return reply(Response::from_status(sql.status()));
    reply(Response::json(200, {{"txid", req.path_param("txid")}, {"sql", *sql}}));
  });
  r.get("/v1/branches", [](Request req, Replier reply) {
    reply(Response::json(200, {{"state", req.query_param("state").value_or("")}}));
  });
  r.get("/v1/branches/{txid}", [](Request req, Replier reply) {
    // Whatever status a handler picks, the answer must stay well framed.
    std::string_view id = req.path_param("txid");
    int status = 200;
    if (!id.empty() && id.size() <= 4 && id.find_first_not_of("0123456789") == id.npos) {
      status = std::stoi(std::string(id));
    }
    Response resp = Response::text(status, std::string(id));
    // Hostile bytes from the request must not break the answer's framing.
    resp.headers.add(std::string(req.path_param("txid")), std::string(req.body));
    reply(std::move(resp));
  });
  r.add_public(Method::get, "/healthz",
               [](Request, Replier reply) { reply(Response::text(200, "ok")); });
  return r;
}

void check_error_shape(const Response& r) {
  if (r.error_code().empty()) std::abort();
}

// Serialises an answer as the server would and re-parses it.
void serialise(Response response, unsigned version) {
  auto msg = detail::to_beast(std::move(response), version, true);
  std::ostringstream out;
  out << msg;
  std::string wire = out.str();
  http::response_parser<http::string_body> p;
  p.eager(true);
  boost::beast::error_code ec;
  p.put(boost::asio::buffer(wire), ec);
  if (ec || !p.is_done()) std::abort();  // our own answers always parse
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Router router = make_router();
  static const TokenAuth auth = TokenAuth::from_tokens({kToken}).value();
  const ServerOptions defaults;
  // A smaller body limit than the default, so the fuzzer can reach it.
  const detail::ParserLimits limits{defaults.header_bytes_max, 4096};

  std::string_view in(reinterpret_cast<const char*>(data), size);
  while (!in.empty()) {
    detail::RequestParser parser;
    detail::configure(parser, limits);
    parser.eager(true);  // as http::async_read reads a whole message
    boost::beast::error_code ec;
    while (!in.empty() && !parser.is_done()) {
      size_t used = parser.put(boost::asio::buffer(in.data(), in.size()), ec);
      in.remove_prefix(used);
      if (ec == http::error::need_more) {
        ec = {};
        if (used == 0) break;  // the message needs bytes we do not have
        continue;
      }
      if (ec) break;
    }
    if (!ec && !parser.is_done()) {
      parser.put_eof(ec);  // the connection ends here
      if (!ec && !parser.is_done()) return 0;
    }
    if (ec) {
      if (!detail::is_parse_error(ec)) return 0;  // partial message: no answer owed
      Response r = detail::parse_error_response(ec);
      if (r.status != 400 && r.status != 413 && r.status != 431) std::abort();
      check_error_shape(r);
      serialise(std::move(r), 11);
      return 0;  // the server closes after a parse error
    }
    auto msg = parser.release();
    unsigned version = msg.version();
    Request request;
    if (auto bad = detail::to_request(std::move(msg), "127.0.0.1:1", request)) {
      if (bad->status != 400) std::abort();
      check_error_shape(*bad);
      serialise(std::move(*bad), version);
      continue;
    }
    detail::Dispatch d = detail::route(router, &auth, request);
    if (d.handler == nullptr) {
      int s = d.answer.status;
      if (s != 400 && s != 401 && s != 403 && s != 404 && s != 405) std::abort();
      check_error_shape(d.answer);
      serialise(std::move(d.answer), version);
      continue;
    }
    std::optional<Response> answer;
    (*d.handler)(std::move(request), Replier::to([&](Response r) { answer = std::move(r); }));
    if (!answer) std::abort();
    serialise(std::move(*answer), version);
  }
  return 0;
}
