// Server: dtx's HTTP/1.1 server (Boost.Beast underneath; none of it shows
// here). The coordinator and the agent each run one; it turns requests into
// Handler calls and Responses into bytes, and knows nothing of transactions.
//
// Connections
//   - Keep-alive (HTTP/1.1 default, HTTP/1.0 when asked). Pipelined requests
//     on one connection are handed to their handlers as they arrive, up to
//     pipeline_requests_max unanswered at a time (then reading pauses), and
//     answered strictly in request order, whatever order the handlers reply
//     in.
//   - `Expect: 100-continue` is answered when nothing earlier on the
//     connection is still unanswered.
//   - A request the server cannot take (malformed, body or header block too
//     large) is answered with the error shape of rest/http.h and
//     `Connection: close`; its handler never runs. After a response with
//     `Connection: close` the server shuts its side down and discards what
//     the client still sends for up to a second, so the client reads the
//     answer instead of a reset.
//
// Limits (ServerOptions; each enforced, each with a default)
//   - body_bytes_max: larger bodies get 413 (Content-Length is checked
//     before any body byte is read; chunked bodies as they arrive).
//   - header_bytes_max: a larger request line plus header block gets 431.
//   - read_timeout_ms: a deadline for a whole request, from its first byte
//     to its last; a slow (slowloris) client is disconnected without answer.
//   - idle_timeout_ms: a keep-alive connection with nothing unanswered and
//     no request begun is closed after this long.
//   - write_timeout_ms: a client that does not read its answer is
//     disconnected.
//   - connections_max: beyond it, up to overload_connections_max further
//     connections are answered 503 "overloaded" and closed; beyond those,
//     new connections are closed at once.
//   - pipeline_requests_max: unanswered requests per connection.
//
// Handlers run on the I/O threads (io_threads of them) and must not block;
// they reply through their Replier from any thread, now or later. A request
// whose handler never replies holds its connection until the server stops.
// A handler that throws gets 500 "internal".
//
// Authentication: when `auth` is given, routes that require it are checked
// (rest/auth.h: 401 missing, 403 wrong). start() refuses a router with such
// routes and no auth, so a forgotten token file is an error, not an open
// door.
//
// Logging: one line at start and at stop (info); connection errors and
// timeouts at debug, accept failures at warn; nothing per request above
// debug.
//
// Threading: start(), port(), stats() and stop() may be called from any
// thread except a server I/O thread (stop() there would join itself: it
// asserts).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "rest/auth.h"
#include "rest/router.h"

namespace dtx::rest {

struct ServerOptions {
  // Listening address; "0.0.0.0" or "::" for every interface.
  std::string bind_address = "127.0.0.1";
  // 0 picks a free port (see Server::port()).
  uint16_t port = 0;
  size_t io_threads = 2;

  size_t body_bytes_max = 1u << 20;     // 413 beyond
  size_t header_bytes_max = 16u << 10;  // 431 beyond
  int64_t read_timeout_ms = 10'000;
  int64_t idle_timeout_ms = 60'000;
  int64_t write_timeout_ms = 10'000;
  size_t connections_max = 1024;
  size_t overload_connections_max = 64;
  size_t pipeline_requests_max = 16;
};

// Counters since start; a snapshot, read without stopping the server.
struct ServerStats {
  uint64_t connections_open = 0;      // accepted and not yet closed (overload ones included)
  uint64_t connections_accepted = 0;  // within connections_max
  uint64_t connections_rejected = 0;  // answered 503 or closed at accept
  uint64_t requests_dispatched = 0;   // handed to a handler
  uint64_t responses_written = 0;     // every status, errors included
};

class Server {
 public:
  // Binds, listens and starts the I/O threads. Code::invalid_argument for
  // bad options or auth-requiring routes without auth; Code::unavailable
  // if the address cannot be bound.
  static Result<std::unique_ptr<Server>> start(ServerOptions options, Router router,
                                               std::optional<TokenAuth> auth);

  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound port (the chosen one when options.port was 0).
  uint16_t port() const;
  ServerStats stats() const;

  // Stops accepting, closes every connection (answered or not), joins the
  // I/O threads. Replies that arrive later are dropped. Idempotent.
  void stop();

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace dtx::rest
