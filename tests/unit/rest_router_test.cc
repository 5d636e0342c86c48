// Goal: the router binds path and query parameters, prefers literals over
// parameters, and answers unknown paths 404 and wrong methods 405, with the
// one error shape; Response helpers produce that shape.
#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "rest/http.h"
#include "rest/router.h"

namespace dtx::rest {
namespace {

Handler tagged(std::string tag) {
  return [tag](Request, Replier reply) { reply(Response::text(200, tag)); };
}

// Runs the matched handler synchronously and returns its body.
std::string run(const RouteMatch& m) {
  std::string body;
  m.route->handler(Request{}, Replier::to([&](Response r) { body = r.body; }));
  return body;
}

Router branch_router() {
  Router r;
  r.post("/v1/branches/{txid}/exec", tagged("exec"));
  r.get("/v1/branches/{txid}", tagged("status"));
  r.get("/v1/branches/recover", tagged("recover"));
  r.get("/v1/branches", tagged("list"));
  r.add_public(Method::get, "/healthz", tagged("health"));
  return r;
}

TEST(Router, binds_path_parameters) {
  Router r = branch_router();
  RouteMatch m = r.match(Method::post, "/v1/branches/42/exec");
  ASSERT_EQ(m.kind, RouteMatch::Kind::found);
  EXPECT_EQ(run(m), "exec");
  EXPECT_EQ(m.path_params.at("txid"), "42");
  EXPECT_TRUE(m.route->requires_auth);
}

TEST(Router, decodes_percent_encoded_parameters) {
  Router r = branch_router();
  RouteMatch m = r.match(Method::get, "/v1/branches/a%2Fb%20c");
  ASSERT_EQ(m.kind, RouteMatch::Kind::found);
  EXPECT_EQ(m.path_params.at("txid"), "a/b c");
  EXPECT_EQ(r.match(Method::get, "/v1/branches/%zz").kind, RouteMatch::Kind::bad_path);
  EXPECT_EQ(r.match(Method::get, "/v1/branches/%4").kind, RouteMatch::Kind::bad_path);
}

TEST(Router, literal_segment_beats_parameter) {
  Router r = branch_router();
  RouteMatch m = r.match(Method::get, "/v1/branches/recover");
  ASSERT_EQ(m.kind, RouteMatch::Kind::found);
  EXPECT_EQ(run(m), "recover");
  EXPECT_TRUE(m.path_params.empty());
  EXPECT_EQ(run(r.match(Method::get, "/v1/branches/recovers")), "status");
}

TEST(Router, registration_order_does_not_decide_specificity) {
  Router r;
  r.get("/a/{x}/c", tagged("param-first"));
  r.get("/a/b/{y}", tagged("literal-first"));
  EXPECT_EQ(run(r.match(Method::get, "/a/b/c")), "literal-first");
  EXPECT_EQ(run(r.match(Method::get, "/a/z/c")), "param-first");
}

TEST(Router, unknown_path_is_not_found) {
  Router r = branch_router();
  EXPECT_EQ(r.match(Method::get, "/v2/branches").kind, RouteMatch::Kind::not_found);
  EXPECT_EQ(r.match(Method::get, "/v1/branches/").kind, RouteMatch::Kind::not_found)
      << "a trailing slash is a different path, and {txid} never matches empty";
  EXPECT_EQ(r.match(Method::post, "/v1/branches/1/exec/more").kind, RouteMatch::Kind::not_found);
  EXPECT_EQ(r.match(Method::get, "/").kind, RouteMatch::Kind::not_found);
  Response resp = Router::error_for(r.match(Method::get, "/nope"));
  EXPECT_EQ(resp.status, 404);
  EXPECT_EQ(resp.error_code(), "not_found");
}

TEST(Router, wrong_method_is_405_with_allow) {
  Router r;
  r.get("/v1/x", tagged("g"));
  r.post("/v1/x", tagged("p"));
  r.add(Method::delete_, "/v1/{id}", tagged("d"));
  RouteMatch m = r.match(Method::put, "/v1/x");
  ASSERT_EQ(m.kind, RouteMatch::Kind::method_not_allowed);
  EXPECT_EQ(m.allow, "DELETE, GET, POST");
  Response resp = Router::error_for(m);
  EXPECT_EQ(resp.status, 405);
  EXPECT_EQ(resp.error_code(), "method_not_allowed");
  EXPECT_EQ(resp.headers.get("allow"), "DELETE, GET, POST");
  // A less specific pattern with the right method still serves the path.
  EXPECT_EQ(run(r.match(Method::delete_, "/v1/x")), "d");
}

TEST(Router, public_routes_are_marked) {
  Router r = branch_router();
  RouteMatch m = r.match(Method::get, "/healthz");
  ASSERT_EQ(m.kind, RouteMatch::Kind::found);
  EXPECT_FALSE(m.route->requires_auth);
  EXPECT_TRUE(r.any_requires_auth());
  Router open;
  open.add_public(Method::get, "/metrics", tagged("m"));
  EXPECT_FALSE(open.any_requires_auth());
}

TEST(RouterDeathTest, malformed_or_repeated_patterns_abort) {
  EXPECT_DEATH(Router().get("no-slash", tagged("x")), "must start with '/'");
  EXPECT_DEATH(Router().get("/a/{}", tagged("x")), "malformed parameter");
  EXPECT_DEATH(Router().get("/a/{x}/{x}", tagged("x")), "repeats");
  EXPECT_DEATH(Router().get("/a/b{x}", tagged("x")), "neither a literal");
  EXPECT_DEATH(Router().get("/a", tagged("x")).get("/a", tagged("y")), "registered twice");
}

TEST(Query, parses_and_decodes) {
  std::map<std::string, std::string, std::less<>> q;
  ASSERT_TRUE(parse_query("state=prepared&limit=10&name=a+b%26c&flag&&state=other", q));
  EXPECT_EQ(q.at("state"), "prepared") << "the first value of a repeated name wins";
  EXPECT_EQ(q.at("limit"), "10");
  EXPECT_EQ(q.at("name"), "a b&c");
  EXPECT_EQ(q.at("flag"), "");
  EXPECT_EQ(q.size(), 4u);
  std::map<std::string, std::string, std::less<>> bad;
  EXPECT_FALSE(parse_query("a=%g1", bad));
  EXPECT_FALSE(parse_query("a=%", bad));
}

TEST(Response, error_has_the_one_shape) {
  Response r = Response::error(409, "wrong_state", "branch is prepared");
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.content_type, "application/json");
  auto doc = boost::json::parse(r.body);
  EXPECT_EQ(doc.at("error").at("code").as_string(), "wrong_state");
  EXPECT_EQ(doc.at("error").at("message").as_string(), "branch is prepared");
  EXPECT_EQ(doc.as_object().size(), 1u);
}

TEST(Response, from_status_maps_codes) {
  struct Case {
    Code code;
    int status;
  };
  for (auto [code, status] :
       {Case{Code::invalid_argument, 400}, Case{Code::not_found, 404},
        Case{Code::failed_precondition, 409}, Case{Code::busy, 503}, Case{Code::unavailable, 503},
        Case{Code::timeout, 504}, Case{Code::internal, 500}}) {
    Response r = Response::from_status(error(code, "why"));
    EXPECT_EQ(r.status, status) << code_name(code);
    EXPECT_EQ(r.error_code(), code_name(code));
  }
}

TEST(Response, json_and_text_bodies) {
  Response j = Response::json(201, boost::json::object{{"txid", "7"}, {"n", 3}});
  EXPECT_EQ(j.status, 201);
  EXPECT_EQ(boost::json::parse(j.body).at("n").as_int64(), 3);
  EXPECT_EQ(j.error_code(), "");
  Response t = Response::text(200, "up\n");
  EXPECT_EQ(t.content_type, "text/plain; charset=utf-8");
  EXPECT_EQ(t.body, "up\n");
}

TEST(Headers, lookup_is_case_insensitive_and_set_replaces) {
  Headers h;
  h.add("Idempotency-Key", "k1");
  h.add("X-Twice", "1");
  h.add("x-twice", "2");
  EXPECT_EQ(h.get("idempotency-key"), "k1");
  EXPECT_EQ(h.get("X-TWICE"), "1");
  h.set("X-Twice", "3");
  EXPECT_EQ(h.get("x-twice"), "3");
  EXPECT_EQ(h.fields().size(), 2u);
  EXPECT_FALSE(h.get("missing").has_value());
}

TEST(Replier, first_answer_wins_across_copies) {
  int calls = 0;
  std::string body;
  Replier a = Replier::to([&](Response r) {
    ++calls;
    body = r.body;
  });
  Replier b = a;
  b(Response::text(200, "first"));
  a(Response::text(200, "second"));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(body, "first");
}

TEST(Method, names_round_trip) {
  for (Method m : {Method::get, Method::head, Method::post, Method::put, Method::patch,
                   Method::delete_, Method::options}) {
    EXPECT_EQ(parse_method(method_name(m)), m);
  }
  EXPECT_EQ(parse_method("get"), Method::other) << "methods are case-sensitive";
  EXPECT_EQ(parse_method("PROPFIND"), Method::other);
}

}  // namespace
}  // namespace dtx::rest
