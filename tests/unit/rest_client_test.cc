// Goal: the client reports failures with codes that say how far a request
// got, never retries, reuses keep-alive connections and keeps its pool and
// queue within their bounds.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "rest/client.h"
#include "rest/server.h"
#include "tests/unit/rest_test_support.h"

namespace dtx::rest {
namespace {

using testing::eventually;
using testing::Latch;
using namespace std::chrono_literals;

std::string peer(const Server& s) {
  return "127.0.0.1:" + std::to_string(s.port());
}

// A public router: the client tests are not about auth.
class TestServer {
 public:
  explicit TestServer(ServerOptions o = {}) {
    Router r;
    r.add_public(Method::get, "/v1/ok", [](Request req, Replier reply) {
      reply(Response::text(200, std::string(req.header("X-Echo").value_or("ok"))));
    });
    r.add_public(Method::post, "/v1/hold/{n}", [this](Request, Replier reply) {
      {
        std::lock_guard lock(mu_);
        held_.push_back(reply);
      }
      arrived_.arrive();
    });
    server_ = Server::start(o, std::move(r), std::nullopt).value();
  }
  Server& server() { return *server_; }
  std::string peer() const { return rest::peer(*server_); }
  bool wait_held(int n) { return arrived_.wait_for(n); }
  int held() const { return arrived_.count(); }
  void reply(size_t i) {
    Replier r = [&] {
      std::lock_guard lock(mu_);
      return held_.at(i);
    }();
    r(Response::text(200, "done"));
  }

 private:
  std::mutex mu_;
  std::vector<Replier> held_;
  Latch arrived_;
  std::unique_ptr<Server> server_;
};

ClientRequest hold(int n, int64_t timeout_ms = 10'000) {
  ClientRequest r;
  r.method = Method::post;
  r.target = "/v1/hold/" + std::to_string(n);
  r.body = "{}";
  r.timeout_ms = timeout_ms;
  return r;
}

// Collects async results.
struct Results {
  std::mutex mu;
  std::vector<Result<Response>> all;
  Latch done;
  ResponseCallback callback() {
    return [this](Result<Response> r) {
      {
        std::lock_guard lock(mu);
        all.push_back(std::move(r));
      }
      done.arrive();
    };
  }
};

TEST(Client, sequential_requests_reuse_one_connection) {
  TestServer ts;
  Client client;
  for (int i = 0; i < 5; ++i) {
    auto r = client.get(ts.peer(), "/v1/ok");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "ok");
  }
  EXPECT_EQ(ts.server().stats().connections_accepted, 1u);
  EXPECT_EQ(client.open_connections(ts.peer()), 1u);
}

TEST(Client, pool_never_exceeds_its_bound_and_queued_requests_proceed) {
  TestServer ts;
  ClientOptions o;
  o.connections_per_peer_max = 2;
  Client client(o);
  Results results;
  for (int i = 0; i < 6; ++i)
    client.request(ts.peer(), hold(i), results.callback());
  ASSERT_TRUE(ts.wait_held(2));
  // Absence of a third can only be shown by waiting a little.
  EXPECT_FALSE(eventually([&] { return ts.held() > 2; }, 300ms));
  EXPECT_EQ(client.open_connections(ts.peer()), 2u);
  // Each answer frees a connection for the next queued request.
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(ts.wait_held(i + 1));
    ts.reply(static_cast<size_t>(i));
  }
  ASSERT_TRUE(results.done.wait_for(6));
  for (auto& r : results.all) {
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->body, "done");
  }
  EXPECT_EQ(ts.server().stats().connections_accepted, 2u);
  EXPECT_LE(client.open_connections(ts.peer()), 2u);
}

TEST(Client, many_threads_many_peers_concurrent_requests) {
  ServerOptions so;
  so.io_threads = 3;
  TestServer a(so), b(so);
  ClientOptions o;
  o.io_threads = 3;
  o.connections_per_peer_max = 4;
  Client client(o);
  Results results;
  constexpr int kRequests = 200;
  std::vector<std::thread> senders;
  for (int t = 0; t < 4; ++t) {
    senders.emplace_back([&, t] {
      for (int i = 0; i < kRequests / 4; ++i) {
        ClientRequest req;
        req.target = "/v1/ok";
        req.headers.add("X-Echo", std::to_string(t * 1000 + i));
        client.request((i % 2 == 0 ? a : b).peer(), req, results.callback());
      }
    });
  }
  for (auto& s : senders)
    s.join();
  ASSERT_TRUE(results.done.wait_for(kRequests));
  std::lock_guard lock(results.mu);
  std::set<std::string> bodies;
  for (auto& r : results.all) {
    ASSERT_TRUE(r.ok()) << r.status();
    bodies.insert(r->body);
  }
  EXPECT_EQ(bodies.size(), static_cast<size_t>(kRequests)) << "each answer is its own request's";
  EXPECT_LE(a.server().stats().connections_accepted, 4u);
  EXPECT_LE(b.server().stats().connections_accepted, 4u);
}

TEST(Client, full_queue_is_busy_and_not_sent) {
  TestServer ts;
  ClientOptions o;
  o.connections_per_peer_max = 1;
  o.queued_requests_max = 1;
  Client client(o);
  Results results;
  client.request(ts.peer(), hold(0), results.callback());
  ASSERT_TRUE(ts.wait_held(1));
  client.request(ts.peer(), hold(1), results.callback());  // queued
  client.request(ts.peer(), hold(2), results.callback());  // over the queue bound
  ASSERT_TRUE(results.done.wait_for(1));
  {
    std::lock_guard lock(results.mu);
    ASSERT_FALSE(results.all[0].ok());
    EXPECT_EQ(results.all[0].status().code(), Code::busy);
  }
  ts.reply(0);
  ASSERT_TRUE(ts.wait_held(2));
  ts.reply(1);
  ASSERT_TRUE(results.done.wait_for(3));
  EXPECT_EQ(ts.held(), 2) << "the refused request never reached the server";
}

TEST(Client, timeout_is_reported_as_timeout) {
  TestServer ts;
  Client client;
  auto begin = std::chrono::steady_clock::now();
  auto r = client.request_sync(ts.peer(), hold(0, 200));
  auto elapsed = std::chrono::steady_clock::now() - begin;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::timeout) << r.status();
  EXPECT_GE(elapsed, 150ms);
  EXPECT_LT(elapsed, 5s);
  EXPECT_EQ(ts.held(), 1) << "sent once, not retried";
  // The timed-out connection is not reused: the next request opens another.
  EXPECT_EQ(client.get(ts.peer(), "/v1/ok").value().status, 200);
  EXPECT_EQ(ts.server().stats().connections_accepted, 2u);
}

TEST(Client, timeout_while_queued_for_a_connection) {
  TestServer ts;
  ClientOptions o;
  o.connections_per_peer_max = 1;
  Client client(o);
  Results results;
  client.request(ts.peer(), hold(0), results.callback());
  ASSERT_TRUE(ts.wait_held(1));
  auto r = client.request_sync(ts.peer(), hold(1, 150));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::timeout);
  ts.reply(0);
  ASSERT_TRUE(results.done.wait_for(1));
  EXPECT_EQ(ts.held(), 1) << "the queued request was never sent";
}

TEST(Client, connect_failure_is_unavailable) {
  // A bound socket that does not listen: connecting to it is refused.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  std::string target = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));

  Client client;
  auto r = client.get(target, "/v1/ok");
  ::close(fd);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::unavailable) << r.status();
  EXPECT_EQ(client.open_connections(target), 0u) << "the failed slot is given back";

  auto unresolvable = client.get("no-such-host.invalid:80", "/");
  ASSERT_FALSE(unresolvable.ok());
  EXPECT_EQ(unresolvable.status().code(), Code::unavailable);
}

TEST(Client, bad_peer_or_target_is_invalid_argument) {
  Client client;
  EXPECT_EQ(client.get("no-port", "/").status().code(), Code::invalid_argument);
  EXPECT_EQ(client.get("host:99999", "/").status().code(), Code::invalid_argument);
  EXPECT_EQ(client.get("127.0.0.1:80", "/a b").status().code(), Code::invalid_argument);
  EXPECT_EQ(client.get("127.0.0.1:80", "relative").status().code(), Code::invalid_argument);
}

TEST(Client, accepts_urls_and_bracketed_addresses) {
  TestServer ts;
  Client client;
  std::string port = std::to_string(ts.server().port());
  EXPECT_EQ(client.get("http://127.0.0.1:" + port + "/", "/v1/ok").value().status, 200);
  EXPECT_EQ(client.open_connections("127.0.0.1:" + port), 1u) << "one pool for both spellings";
  auto v6 = client.get("[::1]:" + port, "/v1/ok");
  ASSERT_FALSE(v6.ok()) << "the server listens on IPv4 only";
  EXPECT_EQ(v6.status().code(), Code::unavailable);
}

TEST(Client, stale_pooled_connection_is_replaced_not_failed) {
  ServerOptions so;
  so.idle_timeout_ms = 100;
  TestServer ts(so);
  Client client;
  ASSERT_EQ(client.get(ts.peer(), "/v1/ok").value().status, 200);
  // The server closes the idle connection; the pooled one is now dead.
  ASSERT_TRUE(eventually([&] { return ts.server().stats().connections_open == 0; }));
  auto r = client.get(ts.peer(), "/v1/ok");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(ts.server().stats().connections_accepted, 2u);
}

TEST(Client, sends_bearer_token_and_extra_headers) {
  Router r;
  r.get("/v1/who", [](Request req, Replier reply) {
    reply(Response::text(200, std::string(req.header("Idempotency-Key").value_or("-")) + "|" +
                                  std::string(req.header("X-Ctl").value_or("-"))));
  });
  const std::string token = "client-token-0123456789";
  auto server = Server::start({}, std::move(r), TokenAuth::from_tokens({token}).value()).value();
  ClientOptions o;
  o.bearer_token = token;
  Client client(o);
  ClientRequest req;
  req.target = "/v1/who";
  req.headers.add("Idempotency-Key", "abc-1");
  req.headers.add("Bad\r\nName", "x");  // dropped: it would break the framing
  req.headers.add("X-Ctl", "x\x1ay");   // dropped: a control byte peers refuse
  auto resp = client.request_sync(peer(*server), req);
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->status, 200);
  EXPECT_EQ(resp->body, "abc-1|-");
  Client anonymous;
  auto denied = anonymous.get(peer(*server), "/v1/who");
  ASSERT_TRUE(denied.ok()) << "an HTTP error status is still an answer";
  EXPECT_EQ(denied->status, 401);
  EXPECT_EQ(denied->error_code(), "unauthorized");
}

TEST(Client, head_answer_has_a_length_but_no_body) {
  Router r;
  r.add_public(Method::head, "/v1/x",
               [](Request, Replier reply) { reply(Response::text(200, "twelve bytes")); });
  auto server = Server::start({}, std::move(r), std::nullopt).value();
  Client client;
  ClientRequest head;
  head.method = Method::head;
  head.target = "/v1/x";
  for (int i = 0; i < 2; ++i) {  // the connection stays in step for the next one
    auto resp = client.request_sync(peer(*server), head);
    ASSERT_TRUE(resp.ok()) << resp.status();
    EXPECT_EQ(resp->status, 200);
    EXPECT_EQ(resp->body, "");
    EXPECT_EQ(resp->headers.get("Content-Length"), "12");
  }
  EXPECT_EQ(server->stats().connections_accepted, 1u);
}

TEST(Client, response_over_the_limit_is_io_error) {
  Router r;
  r.add_public(Method::get, "/v1/big", [](Request, Replier reply) {
    reply(Response::text(200, std::string(64 << 10, 'b')));
  });
  auto server = Server::start({}, std::move(r), std::nullopt).value();
  ClientOptions o;
  o.response_body_bytes_max = 1024;
  Client client(o);
  auto resp = client.get(peer(*server), "/v1/big");
  ASSERT_FALSE(resp.ok());
  EXPECT_EQ(resp.status().code(), Code::io_error);
}

TEST(Client, destruction_ends_pending_requests_with_closed) {
  TestServer ts;
  Results results;
  {
    ClientOptions o;
    o.connections_per_peer_max = 1;
    Client client(o);
    client.request(ts.peer(), hold(0), results.callback());
    ASSERT_TRUE(ts.wait_held(1));
    client.request(ts.peer(), hold(1), results.callback());  // queued behind it
  }
  ASSERT_EQ(results.done.count(), 2) << "callbacks ran before the destructor returned";
  for (auto& r : results.all) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::closed) << r.status();
  }
}

}  // namespace
}  // namespace dtx::rest
