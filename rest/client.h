// Client: dtx's HTTP/1.1 client (Boost.Beast underneath, none of it shown
// here). The coordinator calls agents with it, agents ask the coordinator,
// the CLI talks to the coordinator.
//
// It never retries. Whether a request may be sent again is the caller's
// decision (an exec or a prepare sent twice is a bug in dtx), so the error
// codes say how far a failed request got:
//   Code::unavailable  the request was certainly not sent: the peer could not
//                      be resolved or connected to. Safe to retry.
//   Code::timeout      the deadline passed; the request may or may not have
//                      reached the peer and run there.
//   Code::io_error     the connection failed after the request was (perhaps)
//                      written, or the answer was malformed or too large: the
//                      outcome is unknown, as for a timeout.
//   Code::busy         too many requests already wait for this peer; not sent.
//   Code::closed       the client is shutting down; not sent, or abandoned.
// An HTTP answer of any status (404, 409, 503...) is a successful Result:
// the Response carries it.
//
// Connection pool: per peer ("host:port"), at most connections_per_peer_max
// connections, open or in use. A request takes an idle keep-alive
// connection, opens a new one while under the bound, or waits in a queue of
// at most queued_requests_max per peer. An idle connection is dropped after
// idle_timeout_ms (keep it below the server's) or when the peer closed it;
// a request sent on a reused connection that the peer closed at that moment
// fails with io_error, not retried.
//
// Timeouts: timeout_ms is the whole request's deadline, from the call to
// the last byte of the answer, waiting in the queue included.
//
// Threading: every method is thread-safe. Callbacks run on the client's I/O
// threads and must not block; request_sync() must not be called from a
// callback (it asserts), nor may the destructor run in one. The destructor
// fails what is still pending with Code::closed, runs those callbacks, and
// joins its threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "rest/http.h"

namespace dtx::rest {

struct ClientOptions {
  size_t io_threads = 1;
  size_t connections_per_peer_max = 8;
  size_t queued_requests_max = 1024;  // per peer
  int64_t idle_timeout_ms = 30'000;   // keep below the server's idle timeout
  int64_t default_timeout_ms = 10'000;
  size_t response_body_bytes_max = 16u << 20;
  size_t response_header_bytes_max = 16u << 10;
  // Sent as `Authorization: Bearer <token>` with every request when not
  // empty. Load it with TokenAuth (rest/auth.h), never from argv.
  std::string bearer_token;
};

struct ClientRequest {
  Method method = Method::get;
  std::string target = "/";  // path and query, e.g. "/v1/branches?state=prepared"
  std::string body;          // sent with Content-Type: application/json when not empty
  Headers headers;           // extra fields, e.g. Idempotency-Key
  int64_t timeout_ms = 0;    // 0: ClientOptions::default_timeout_ms
};

using ResponseCallback = std::function<void(Result<Response>)>;

class Client {
 public:
  explicit Client(ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // `peer` is "host:port" or "[v6addr]:port", optionally after "http://".
  // The callback runs exactly once, on a client I/O thread.
  void request(std::string_view peer, ClientRequest request, ResponseCallback callback);
  // Blocks until the answer, the deadline or a failure.
  Result<Response> request_sync(std::string_view peer, ClientRequest request);

  // Shorthands for request_sync.
  Result<Response> get(std::string_view peer, std::string target, int64_t timeout_ms = 0);
  Result<Response> post(std::string_view peer, std::string target, std::string body,
                        int64_t timeout_ms = 0);

  // Connections to `peer` now open (idle or in use); for tests and metrics.
  size_t open_connections(std::string_view peer) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace dtx::rest
