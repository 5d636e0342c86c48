// The client: one io_context with io_threads threads; per peer, a strand on
// which every step of every request to that peer runs, so a peer's pool
// (idle connections, open count, wait queue) needs no lock. Only the map
// from peer name to Peer is shared, under a mutex.
//
// A request (Call) goes: queued (waiting for a connection) -> connecting
// -> sending -> receiving -> done. Its timer covers all of it. On expiry,
// or when the client shuts down, the call cancels whatever operation it is
// in; that operation's completion then reports timeout or closed. Every
// Call ends in finish(), which runs the callback once.
#include "rest/client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <deque>
#include <future>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "rest/detail/wire.h"

namespace dtx::rest {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Strand = asio::strand<asio::io_context::executor_type>;
using SteadyTime = std::chrono::steady_clock::time_point;

namespace {

struct PeerAddress {
  std::string key;  // "host:port", the pool's name
  std::string host;
  std::string port;
};

// "host:port", "[v6]:port", optionally after "http://" and before a "/".
Result<PeerAddress> parse_peer(std::string_view peer) {
  std::string_view s = peer;
  if (s.substr(0, 7) == "http://") s.remove_prefix(7);
  if (!s.empty() && s.back() == '/') s.remove_suffix(1);
  PeerAddress a;
  size_t colon;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return error(Code::invalid_argument, fmt::format("peer '{}' is not [host]:port", peer));
    }
    a.host = std::string(s.substr(1, close - 1));
    colon = close + 1;
  } else {
    colon = s.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
      return error(Code::invalid_argument, fmt::format("peer '{}' is not host:port", peer));
    }
    a.host = std::string(s.substr(0, colon));
  }
  std::string_view port = s.substr(colon + 1);
  unsigned value = 0;
  bool digits = !port.empty() && port.size() <= 5;
  for (char c : port) {
    digits = digits && c >= '0' && c <= '9';
    if (digits) value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (!digits || value == 0 || value > 65535) {
    return error(Code::invalid_argument, fmt::format("peer '{}' has no valid port", peer));
  }
  a.port = std::string(port);
  a.key = std::string(s);
  return a;
}

// Request targets go on the wire verbatim: no spaces or control bytes.
bool valid_target(std::string_view target) {
  if (target.empty() || target[0] != '/') return false;
  return std::none_of(target.begin(), target.end(),
                      [](char c) { return static_cast<unsigned char>(c) <= ' ' || c == 0x7f; });
}

struct Conn {
  explicit Conn(const Strand& strand) : socket(strand) {}
  tcp::socket socket;
  beast::flat_buffer buffer;
  SteadyTime idle_since;
};

// True if the peer has closed (or written to) an idle connection: either
// way it cannot carry a new request.
bool stale(Conn& conn) {
  pollfd pfd{};
  pfd.fd = conn.socket.native_handle();
  pfd.events = POLLIN;
  return ::poll(&pfd, 1, 0) != 0;
}

class Call;

struct Peer {
  Peer(Client::Impl& c, PeerAddress a, Strand s)
      : client(c), address(std::move(a)), strand(std::move(s)) {}

  Client::Impl& client;
  const PeerAddress address;
  Strand strand;
  std::atomic<size_t> open_count{0};  // mirrors `open` for open_connections()

  // On the strand only.
  std::deque<std::unique_ptr<Conn>> idle;
  size_t open = 0;  // connections idle, connecting or in use
  std::deque<std::shared_ptr<Call>> waiting;
  std::unordered_set<Call*> active;  // started and not finished
  bool shut_down = false;

  void set_open(size_t n) {
    open = n;
    open_count.store(n);
  }
  // A connection slot was freed: let the first waiter open a connection.
  void serve_waiter();
  // A healthy connection came back: give it to a waiter or keep it idle.
  void release(std::unique_ptr<Conn> conn);
  void shutdown();
};

}  // namespace

struct Client::Impl {
  explicit Impl(ClientOptions o) : options(std::move(o)) {}

  const ClientOptions options;
  asio::io_context ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  std::atomic<bool> closing{false};

  std::mutex peers_mu;
  std::unordered_map<std::string, std::shared_ptr<Peer>> peers;  // guarded by peers_mu

  std::shared_ptr<Peer> peer_for(const PeerAddress& a) {
    std::lock_guard lock(peers_mu);
    auto& p = peers[a.key];
    if (!p) p = std::make_shared<Peer>(*this, a, asio::make_strand(ioc));
    return p;
  }
};

namespace {

class Call : public std::enable_shared_from_this<Call> {
 public:
  Call(std::shared_ptr<Peer> peer, detail::BeastRequest msg, int64_t timeout_ms,
       ResponseCallback callback)
      : peer_(std::move(peer)),
        msg_(std::move(msg)),
        timeout_ms_(timeout_ms),
        callback_(std::move(callback)),
        timer_(peer_->strand),
        resolver_(peer_->strand) {}

  // On the strand.
  void start() {
    if (peer_->shut_down) {
      finish(error(Code::closed, "the client is shutting down"));
      return;
    }
    peer_->active.insert(this);
    timer_.expires_after(std::chrono::milliseconds(timeout_ms_));
    timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec) self->on_deadline();
    });
    acquire();
  }

  // A waiter's turn: open a new connection (a slot is reserved for it).
  void connect_for_waiter() { connect(); }
  // A waiter's turn: a pooled connection was handed over.
  void send_on(std::unique_ptr<Conn> conn) {
    conn_ = std::move(conn);
    send();
  }

  // The client shuts down: abandon whatever is in progress.
  void abandon() {
    abandoned_ = true;
    if (stage_ == Stage::queued) {
      finish(error(Code::closed, "the client shut down before the request was sent"));
      return;
    }
    interrupt();
  }

 private:
  enum class Stage { idle, queued, connecting, sending, receiving, done };

  void acquire() {
    Client::Impl& client = peer_->client;
    while (!peer_->idle.empty()) {
      std::unique_ptr<Conn> conn = std::move(peer_->idle.back());
      peer_->idle.pop_back();
      auto idle_for = std::chrono::steady_clock::now() - conn->idle_since;
      if (idle_for < std::chrono::milliseconds(client.options.idle_timeout_ms) && !stale(*conn)) {
        conn_ = std::move(conn);
        send();
        return;
      }
      beast::error_code ignored;
      conn->socket.close(ignored);
      peer_->set_open(peer_->open - 1);
    }
    if (peer_->open < client.options.connections_per_peer_max) {
      peer_->set_open(peer_->open + 1);
      connect();
      return;
    }
    if (peer_->waiting.size() >= client.options.queued_requests_max) {
      finish(error(Code::busy, fmt::format("{} requests already wait for {}", peer_->waiting.size(),
                                           peer_->address.key)));
      return;
    }
    stage_ = Stage::queued;
    peer_->waiting.push_back(shared_from_this());
  }

  void connect() {
    stage_ = Stage::connecting;
    conn_ = std::make_unique<Conn>(peer_->strand);
    resolver_.async_resolve(
        peer_->address.host, peer_->address.port,
        [self = shared_from_this()](beast::error_code ec, tcp::resolver::results_type results) {
          if (ec) {
            self->fail(Code::unavailable, "resolve", ec);
            return;
          }
          if (self->timed_out_ || self->abandoned_) {
            self->fail(Code::unavailable, "connect", asio::error::operation_aborted);
            return;
          }
          asio::async_connect(self->conn_->socket, results,
                              [self](beast::error_code ec2, const tcp::endpoint&) {
                                if (ec2) {
                                  self->fail(Code::unavailable, "connect", ec2);
                                  return;
                                }
                                beast::error_code ignored;
                                self->conn_->socket.set_option(tcp::no_delay(true), ignored);
                                self->send();
                              });
        });
  }

  void send() {
    if (timed_out_ || abandoned_) {
      fail(Code::unavailable, "send", asio::error::operation_aborted);
      return;
    }
    stage_ = Stage::sending;
    http::async_write(conn_->socket, msg_,
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) {
                          self->fail(Code::io_error, "send", ec);
                          return;
                        }
                        self->receive();
                      });
  }

  void receive() {
    stage_ = Stage::receiving;
    const ClientOptions& o = peer_->client.options;
    parser_.emplace();
    detail::configure(*parser_, {o.response_header_bytes_max, o.response_body_bytes_max});
    // The answer to HEAD has a Content-Length but no body.
    parser_->skip(msg_.method() == http::verb::head);
    http::async_read(conn_->socket, conn_->buffer, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) {
                         self->fail(Code::io_error, "receive", ec);
                         return;
                       }
                       self->on_response();
                     });
  }

  void on_response() {
    auto msg = parser_->release();
    parser_.reset();
    // Reuse only a connection in a known-clean state: the answer said
    // keep-alive and nothing beyond it has arrived.
    bool reusable = msg.keep_alive() && !msg.need_eof() && conn_->buffer.size() == 0;
    Response response = detail::from_beast(std::move(msg));
    if (reusable && !abandoned_) {
      conn_->idle_since = std::chrono::steady_clock::now();
      peer_->release(std::move(conn_));
    } else {
      drop_conn();
    }
    finish(std::move(response));
  }

  // An operation failed; `code` is what it means unless the deadline or the
  // shutdown interrupted it.
  void fail(Code code, std::string_view step, const beast::error_code& ec) {
    drop_conn();
    if (timed_out_) {
      finish(error(Code::timeout, fmt::format("{} {}: no answer within {} ms", method_name(),
                                              target(), timeout_ms_)));
    } else if (abandoned_) {
      finish(error(Code::closed, "the client shut down during the request"));
    } else {
      finish(error(code, fmt::format("{} {} to {}: {} failed: {}", method_name(), target(),
                                     peer_->address.key, step, ec.message())));
    }
  }

  void on_deadline() {
    if (stage_ == Stage::done) return;
    timed_out_ = true;
    if (stage_ == Stage::queued) {
      std::erase(peer_->waiting, shared_from_this());
      finish(
          error(Code::timeout, fmt::format("{} {}: no connection to {} within {} ms", method_name(),
                                           target(), peer_->address.key, timeout_ms_)));
      return;
    }
    interrupt();
  }

  // Cancels the operation in progress; its completion reports the reason.
  void interrupt() {
    resolver_.cancel();
    if (conn_) {
      beast::error_code ignored;
      conn_->socket.close(ignored);
    }
  }

  void drop_conn() {
    if (!conn_) return;
    beast::error_code ignored;
    conn_->socket.close(ignored);
    conn_.reset();
    peer_->set_open(peer_->open - 1);
    peer_->serve_waiter();
  }

  void finish(Result<Response> result) {
    if (stage_ == Stage::done) return;
    stage_ = Stage::done;
    timer_.cancel();
    peer_->active.erase(this);
    try {
      callback_(std::move(result));
    } catch (const std::exception& e) {
      spdlog::error("rest: a client callback threw: {}", e.what());
    }
  }

  std::string_view method_name() const { return msg_.method_string(); }
  std::string_view target() const { return msg_.target(); }

  std::shared_ptr<Peer> peer_;
  detail::BeastRequest msg_;
  const int64_t timeout_ms_;
  ResponseCallback callback_;
  asio::steady_timer timer_;
  tcp::resolver resolver_;
  std::unique_ptr<Conn> conn_;
  std::optional<detail::ResponseParser> parser_;
  Stage stage_ = Stage::idle;
  bool timed_out_ = false;
  bool abandoned_ = false;
};

void Peer::serve_waiter() {
  while (!waiting.empty() && open < client.options.connections_per_peer_max && !shut_down) {
    std::shared_ptr<Call> next = std::move(waiting.front());
    waiting.pop_front();
    set_open(open + 1);
    next->connect_for_waiter();
  }
}

void Peer::release(std::unique_ptr<Conn> conn) {
  if (shut_down) {
    beast::error_code ignored;
    conn->socket.close(ignored);
    set_open(open - 1);
    return;
  }
  if (!waiting.empty()) {
    std::shared_ptr<Call> next = std::move(waiting.front());
    waiting.pop_front();
    next->send_on(std::move(conn));
    return;
  }
  idle.push_back(std::move(conn));
}

void Peer::shutdown() {
  shut_down = true;
  for (auto& conn : idle) {
    beast::error_code ignored;
    conn->socket.close(ignored);
  }
  set_open(open - idle.size());
  idle.clear();
  auto queued = std::move(waiting);
  waiting.clear();
  for (auto& call : queued)
    call->abandon();
  // abandon() of an active call may finish it (and erase it from `active`).
  std::vector<Call*> in_flight(active.begin(), active.end());
  for (Call* call : in_flight)
    call->abandon();
}

}  // namespace

Client::Client(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  Impl& c = *impl_;
  c.work.emplace(c.ioc.get_executor());
  size_t n = std::max<size_t>(1, c.options.io_threads);
  for (size_t i = 0; i < n; ++i) {
    c.threads.emplace_back([&c] { c.ioc.run(); });
  }
}

Client::~Client() {
  Impl& c = *impl_;
  assert(!c.ioc.get_executor().running_in_this_thread() &&
         "a Client destroyed from its own callback would join itself");
  c.closing.store(true);
  std::vector<std::shared_ptr<Peer>> peers;
  {
    std::lock_guard lock(c.peers_mu);
    for (auto& [key, peer] : c.peers)
      peers.push_back(peer);
  }
  for (auto& peer : peers) {
    asio::post(peer->strand, [peer] { peer->shutdown(); });
  }
  c.work.reset();
  for (auto& t : c.threads)
    t.join();
}

void Client::request(std::string_view peer, ClientRequest request, ResponseCallback callback) {
  Impl& c = *impl_;
  auto fail_now = [&](Status status) {
    asio::post(c.ioc, [cb = std::move(callback), status = std::move(status)]() mutable {
      cb(std::move(status));
    });
  };
  auto address = parse_peer(peer);
  if (!address.ok()) return fail_now(address.status());
  if (!valid_target(request.target)) {
    return fail_now(error(Code::invalid_argument,
                          "request target must be a path without spaces or control bytes"));
  }
  int64_t timeout_ms = request.timeout_ms == 0 ? c.options.default_timeout_ms : request.timeout_ms;
  if (timeout_ms <= 0) return fail_now(error(Code::invalid_argument, "timeout must be positive"));
  if (c.closing.load()) return fail_now(error(Code::closed, "the client is shutting down"));
  auto p = c.peer_for(*address);
  auto msg = detail::to_beast(std::move(request), p->address.key, c.options.bearer_token);
  auto call = std::make_shared<Call>(p, std::move(msg), timeout_ms, std::move(callback));
  asio::post(p->strand, [call] { call->start(); });
}

Result<Response> Client::request_sync(std::string_view peer, ClientRequest request) {
  assert(!impl_->ioc.get_executor().running_in_this_thread() &&
         "Client::request_sync called from a client callback");
  std::promise<Result<Response>> done;
  auto answer = done.get_future();
  this->request(peer, std::move(request),
                [&done](Result<Response> r) { done.set_value(std::move(r)); });
  return answer.get();
}

Result<Response> Client::get(std::string_view peer, std::string target, int64_t timeout_ms) {
  ClientRequest r;
  r.method = Method::get;
  r.target = std::move(target);
  r.timeout_ms = timeout_ms;
  return request_sync(peer, std::move(r));
}

Result<Response> Client::post(std::string_view peer, std::string target, std::string body,
                              int64_t timeout_ms) {
  ClientRequest r;
  r.method = Method::post;
  r.target = std::move(target);
  r.body = std::move(body);
  r.timeout_ms = timeout_ms;
  return request_sync(peer, std::move(r));
}

size_t Client::open_connections(std::string_view peer) const {
  auto address = parse_peer(peer);
  if (!address.ok()) return 0;
  std::lock_guard lock(impl_->peers_mu);
  auto it = impl_->peers.find(address->key);
  return it == impl_->peers.end() ? 0 : it->second->open_count.load();
}

}  // namespace dtx::rest
