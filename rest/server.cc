// The server: one acceptor, a pool of I/O threads running one io_context,
// and a Session per connection whose every step runs on that connection's
// strand, so a session's state needs no lock.
//
// Lifetimes. The server's registry owns each open Session; a closing
// session removes itself, and the pending asynchronous operations that
// still hold it let it die once they complete. Repliers hold the session
// only weakly, through a SessionSink, together with a shared Core whose
// mutex and `alive` flag gate every post into the io_context: stop() clears
// `alive` under that mutex before it stops and destroys the io_context, so
// a reply arriving from a worker thread at any moment either lands before
// that point or is dropped, never posted into a destroyed io_context.
#include "rest/server.h"

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cassert>
#include <chrono>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "rest/detail/wire.h"

namespace dtx::rest {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

// Bytes asked for when waiting for the start of the next request.
constexpr size_t kReadChunkBytes = 4096;
// After a `Connection: close` answer: how long and how much of what the
// client still sends is read and discarded before the socket is closed.
constexpr int64_t kLingerMs = 1000;
constexpr size_t kLingerBytesMax = 1u << 20;
// Pause before accepting again after accept() failed (EMFILE and friends).
constexpr int64_t kAcceptRetryMs = 50;

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

// What repliers share with the server; see the file comment.
struct Core {
  std::mutex mu;
  bool alive = true;  // guarded by mu
};

std::string endpoint_text(const tcp::endpoint& ep) {
  auto addr = ep.address();
  if (addr.is_v6()) return "[" + addr.to_string() + "]:" + std::to_string(ep.port());
  return addr.to_string() + ":" + std::to_string(ep.port());
}

class Session;

}  // namespace

struct Server::Impl {
  Impl(ServerOptions o, Router r, std::optional<TokenAuth> a)
      : options(std::move(o)), router(std::move(r)), auth(std::move(a)) {}

  void do_accept();
  void on_accept(const beast::error_code& ec, tcp::socket socket);
  void unregister(uint64_t id);

  const ServerOptions options;
  const Router router;
  const std::optional<TokenAuth> auth;
  const std::shared_ptr<Core> core = std::make_shared<Core>();

  std::atomic<uint64_t> connections_open{0};
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> connections_rejected{0};
  std::atomic<uint64_t> requests_dispatched{0};
  std::atomic<uint64_t> responses_written{0};
  std::atomic<size_t> serving{0};     // open connections within connections_max
  std::atomic<size_t> overloaded{0};  // open connections being answered 503

  std::mutex sessions_mu;
  std::unordered_map<uint64_t, std::shared_ptr<Session>> sessions;  // guarded by sessions_mu
  uint64_t next_session_id = 1;                                     // guarded by sessions_mu

  // Destroyed explicitly by stop(), in this order: acceptor and timer, then
  // the io_context (and with it every handler still queued).
  std::optional<asio::io_context> ioc;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::optional<tcp::acceptor> acceptor;
  std::optional<asio::steady_timer> accept_retry;
  std::vector<std::thread> threads;
  uint16_t port = 0;

  std::mutex stop_mu;
  bool stopped = false;  // guarded by stop_mu
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Server::Impl& server, tcp::socket socket, uint64_t id, bool overload, std::string remote)
      : server_(server),
        socket_(std::move(socket)),
        executor_(socket_.get_executor()),
        read_timer_(socket_.get_executor()),
        write_timer_(socket_.get_executor()),
        id_(id),
        overload_(overload),
        remote_(std::move(remote)) {}

  // Runs on the strand.
  void start() { maybe_read(); }

  // A handler's answer for request `seq`. Runs on the strand.
  void on_reply(uint64_t seq, Response response) {
    if (closed_ || pending_.empty() || seq < pending_.front().seq) return;
    size_t index = seq - pending_.front().seq;
    if (index >= pending_.size() || pending_[index].response) return;
    pending_[index].response = std::move(response);
    maybe_write();
  }

  // Closes the socket and leaves the registry. On the strand, or from
  // stop() once the I/O threads are gone.
  void close_now() {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    read_timer_.cancel();
    write_timer_.cancel();
    if (!pending_.empty()) {
      spdlog::debug("rest: connection {} from {} closed with {} request(s) unanswered", id_,
                    remote_, pending_.size());
    }
    pending_.clear();
    (overload_ ? server_.overloaded : server_.serving).fetch_sub(1);
    server_.connections_open.fetch_sub(1);
    server_.unregister(id_);
  }

  // The connection's strand; safe to read from any thread.
  const asio::any_io_executor& executor() const { return executor_; }

 private:
  enum class Phase { waiting, reading };
  struct Pending {
    uint64_t seq;
    unsigned version;
    bool keep_alive;
    bool head;  // a HEAD request: the answer's header only
    std::optional<Response> response;
  };

  void maybe_read() {
    if (closed_ || lingering_ || read_active_ || no_more_requests_ ||
        pending_.size() >= server_.options.pipeline_requests_max) {
      return;
    }
    if (buffer_.size() > 0) {  // a pipelined request already arrived
      begin_request();
      return;
    }
    phase_ = Phase::waiting;
    read_active_ = true;
    maybe_arm_idle();
    socket_.async_read_some(buffer_.prepare(kReadChunkBytes),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->read_active_ = false;
                              if (self->after_read_stopped(ec)) return;
                              self->buffer_.commit(n);
                              self->begin_request();
                            });
  }

  // The first bytes of a request are here: from now on it has
  // read_timeout_ms to arrive in full.
  void begin_request() {
    phase_ = Phase::reading;
    arm_read_timer(server_.options.read_timeout_ms);
    parser_.emplace();
    detail::configure(*parser_, {server_.options.header_bytes_max, server_.options.body_bytes_max});
    read_active_ = true;
    http::async_read_header(socket_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, size_t) {
                              self->read_active_ = false;
                              if (self->after_read_stopped(ec)) return;
                              self->on_header();
                            });
  }

  void on_header() {
    if (parser_->is_done()) {
      on_request();
      return;
    }
    auto expect = parser_->get()[http::field::expect];
    if (iequals(expect, "100-continue") && pending_.empty() && !writing_) {
      // Nothing earlier is owed on this connection, so the interim answer
      // cannot overtake a final one.
      writing_ = true;
      arm_write_timer();
      asio::async_write(socket_, asio::buffer(kContinue.data(), kContinue.size()),
                        [self = shared_from_this()](beast::error_code ec, size_t) {
                          self->on_write_done(ec, /*final_response=*/false);
                        });
    }
    read_active_ = true;
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       self->read_active_ = false;
                       if (self->after_read_stopped(ec)) return;
                       self->on_request();
                     });
  }

  // Handles the end of a read that did not complete a step normally. True
  // when the caller must not continue.
  bool after_read_stopped(const beast::error_code& ec) {
    if (closed_) return true;
    if (lingering_) {
      drain();
      return true;
    }
    if (!ec) return false;
    if (ec == asio::error::operation_aborted) return true;
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == http::error::partial_message) {
      if (phase_ == Phase::reading) {
        spdlog::debug("rest: connection {} from {} ended inside a request", id_, remote_);
      }
      // The client is done sending; answer what it asked, then close.
      cancel_read_timer();
      no_more_requests_ = true;
      eof_seen_ = true;
      maybe_close_after_eof();
      return true;
    }
    if (detail::is_parse_error(ec)) {
      spdlog::debug("rest: connection {} from {}: bad request: {}", id_, remote_, ec.message());
      cancel_read_timer();
      no_more_requests_ = true;
      pending_.push_back({next_seq_++, 11, false, false, detail::parse_error_response(ec)});
      maybe_write();
      return true;
    }
    spdlog::debug("rest: connection {} from {}: read failed: {}", id_, remote_, ec.message());
    close_now();
    return true;
  }

  void on_request() {
    cancel_read_timer();
    phase_ = Phase::waiting;
    detail::BeastRequest msg = parser_->release();
    parser_.reset();
    bool keep_alive = msg.keep_alive() && !overload_;
    if (!keep_alive) no_more_requests_ = true;
    uint64_t seq = next_seq_++;
    pending_.push_back(
        {seq, msg.version(), keep_alive, msg.method() == http::verb::head, std::nullopt});
    if (overload_) {
      pending_.back().response =
          Response::error(503, "overloaded", "the server has too many connections");
    } else {
      dispatch(seq, std::move(msg));
    }
    maybe_write();
    maybe_read();
  }

  void dispatch(uint64_t seq, detail::BeastRequest&& msg);

  void maybe_write() {
    if (closed_ || writing_ || pending_.empty() || !pending_.front().response) return;
    Pending& p = pending_.front();
    out_.emplace(detail::to_beast(std::move(*p.response), p.version, p.keep_alive));
    if (p.head) out_->body().clear();  // Content-Length stays that of the GET answer
    writing_ = true;
    arm_write_timer();
    http::async_write(socket_, *out_, [self = shared_from_this()](beast::error_code ec, size_t) {
      self->on_write_done(ec, /*final_response=*/true);
    });
  }

  void on_write_done(const beast::error_code& ec, bool final_response) {
    writing_ = false;
    ++write_gen_;
    write_timer_.cancel();
    out_.reset();
    if (closed_) return;
    if (ec) {
      spdlog::debug("rest: connection {} from {}: write failed: {}", id_, remote_, ec.message());
      close_now();
      return;
    }
    if (final_response) {
      server_.responses_written.fetch_add(1);
      bool keep_alive = pending_.front().keep_alive;
      pending_.pop_front();
      if (!keep_alive) {
        linger();
        return;
      }
    }
    maybe_write();
    if (maybe_close_after_eof()) return;
    maybe_read();
    maybe_arm_idle();
  }

  bool maybe_close_after_eof() {
    if (!eof_seen_ || !pending_.empty() || writing_) return false;
    close_now();
    return true;
  }

  // After a final `Connection: close` answer: half-close, then read and
  // discard until the client closes too, for a bounded time and size, so it
  // reads our answer rather than a reset caused by its unread bytes.
  void linger() {
    lingering_ = true;
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    arm_read_timer(std::min(kLingerMs, server_.options.read_timeout_ms));
    if (!read_active_) drain();
  }

  void drain() {
    if (closed_) return;
    read_active_ = true;
    socket_.async_read_some(asio::buffer(drain_buf_),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              self->read_active_ = false;
                              self->drained_bytes_ += n;
                              if (ec || self->drained_bytes_ > kLingerBytesMax) {
                                self->close_now();
                                return;
                              }
                              self->drain();
                            });
  }

  // The idle deadline applies only while nothing is owed and no request has
  // begun.
  void maybe_arm_idle() {
    if (phase_ == Phase::waiting && read_active_ && pending_.empty() && !writing_ && !lingering_) {
      arm_read_timer(server_.options.idle_timeout_ms);
    }
  }

  void arm_read_timer(int64_t ms) {
    uint64_t gen = ++read_gen_;
    read_timer_.expires_after(std::chrono::milliseconds(ms));
    read_timer_.async_wait([self = shared_from_this(), gen](beast::error_code ec) {
      if (ec || gen != self->read_gen_ || self->closed_) return;
      if (self->lingering_) {
        // Done waiting for the client to close.
      } else if (self->phase_ == Phase::reading) {
        spdlog::debug("rest: connection {} from {}: request not complete within {} ms, closing",
                      self->id_, self->remote_, self->server_.options.read_timeout_ms);
      } else {
        spdlog::debug("rest: connection {} from {}: idle, closing", self->id_, self->remote_);
      }
      self->close_now();
    });
  }

  void cancel_read_timer() {
    ++read_gen_;
    read_timer_.cancel();
  }

  void arm_write_timer() {
    uint64_t gen = ++write_gen_;
    write_timer_.expires_after(std::chrono::milliseconds(server_.options.write_timeout_ms));
    write_timer_.async_wait([self = shared_from_this(), gen](beast::error_code ec) {
      if (ec || gen != self->write_gen_ || self->closed_ || !self->writing_) return;
      spdlog::debug("rest: connection {} from {}: answer not taken within {} ms, closing",
                    self->id_, self->remote_, self->server_.options.write_timeout_ms);
      self->close_now();
    });
  }

  Server::Impl& server_;
  tcp::socket socket_;
  const asio::any_io_executor executor_;
  asio::steady_timer read_timer_;   // read deadline, idle deadline or linger
  asio::steady_timer write_timer_;  // write deadline
  const uint64_t id_;
  const bool overload_;  // answer every request 503 and close
  const std::string remote_;

  beast::flat_buffer buffer_;
  std::optional<detail::RequestParser> parser_;
  std::optional<detail::BeastResponse> out_;  // the answer being written
  std::deque<Pending> pending_;               // requests read and not yet answered, in order
  uint64_t next_seq_ = 0;
  Phase phase_ = Phase::waiting;
  uint64_t read_gen_ = 0;   // bumps invalidate an armed read timer
  uint64_t write_gen_ = 0;  // bumps invalidate an armed write timer
  bool read_active_ = false;
  bool writing_ = false;
  bool no_more_requests_ = false;  // `Connection: close`, a parse error or EOF
  bool eof_seen_ = false;
  bool lingering_ = false;
  bool closed_ = false;
  std::array<char, 4096> drain_buf_{};
  size_t drained_bytes_ = 0;
};

// The Replier's target for one request of one session.
class SessionSink final : public ReplySink {
 public:
  SessionSink(std::shared_ptr<Core> core, std::weak_ptr<Session> session, uint64_t seq)
      : core_(std::move(core)), session_(std::move(session)), seq_(seq) {}

  ~SessionSink() override {
    if (replied()) return;
    bool alive;
    {
      std::lock_guard lock(core_->mu);
      alive = core_->alive;
    }
    // After stop() an unanswered request is expected, and nobody is waiting.
    if (alive) spdlog::warn("rest: a handler dropped its request without replying; answering 500");
    reply(Response::error(500, "internal", "the handler did not answer"));
  }

 protected:
  void deliver(Response response) override {
    std::lock_guard lock(core_->mu);
    if (!core_->alive) return;  // the server stopped
    std::shared_ptr<Session> session = session_.lock();
    if (!session) return;  // the connection is gone
    auto executor = session->executor();
    asio::post(executor, [session = std::move(session), seq = seq_,
                          response = std::move(response)]() mutable {
      session->on_reply(seq, std::move(response));
    });
  }

 private:
  std::shared_ptr<Core> core_;
  std::weak_ptr<Session> session_;
  uint64_t seq_;
};

void Session::dispatch(uint64_t seq, detail::BeastRequest&& msg) {
  Request request;
  if (auto bad = detail::to_request(std::move(msg), remote_, request)) {
    pending_.back().response = std::move(*bad);
    return;
  }
  const TokenAuth* auth = server_.auth ? &*server_.auth : nullptr;
  detail::Dispatch d = detail::route(server_.router, auth, request);
  if (d.handler == nullptr) {
    pending_.back().response = std::move(d.answer);
    return;
  }
  server_.requests_dispatched.fetch_add(1);
  auto sink = std::make_shared<SessionSink>(server_.core, weak_from_this(), seq);
  Replier replier(sink);
  try {
    (*d.handler)(std::move(request), replier);
  } catch (const std::exception& e) {
    spdlog::warn("rest: handler threw: {}", e.what());
    replier(Response::error(500, "internal", "the handler failed"));
  } catch (...) {
    spdlog::warn("rest: handler threw a non-standard exception");
    replier(Response::error(500, "internal", "the handler failed"));
  }
}

}  // namespace

void Server::Impl::unregister(uint64_t id) {
  std::shared_ptr<Session> doomed;  // released outside the lock
  std::lock_guard lock(sessions_mu);
  auto it = sessions.find(id);
  if (it == sessions.end()) return;
  doomed = std::move(it->second);
  sessions.erase(it);
}

void Server::Impl::do_accept() {
  acceptor->async_accept(asio::make_strand(*ioc), [this](beast::error_code ec, tcp::socket socket) {
    on_accept(ec, std::move(socket));
  });
}

void Server::Impl::on_accept(const beast::error_code& ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor->is_open()) return;
  if (ec) {
    // Out of descriptors or memory: wait a little rather than spin.
    spdlog::warn("rest: accept on port {} failed: {}", port, ec.message());
    accept_retry->expires_after(std::chrono::milliseconds(kAcceptRetryMs));
    accept_retry->async_wait([this](beast::error_code wait_ec) {
      if (!wait_ec) do_accept();
    });
    return;
  }
  beast::error_code peer_ec;
  std::string remote = endpoint_text(socket.remote_endpoint(peer_ec));
  // Answers are small and go out whole: never hold one back for Nagle.
  beast::error_code nodelay_ec;
  socket.set_option(tcp::no_delay(true), nodelay_ec);
  bool overload = false;
  if (serving.load() >= options.connections_max) {
    connections_rejected.fetch_add(1);
    if (overloaded.load() >= options.overload_connections_max) {
      spdlog::debug("rest: connection from {} refused: {} connections open", remote,
                    serving.load() + overloaded.load());
      beast::error_code ignored;
      socket.close(ignored);
      do_accept();
      return;
    }
    overload = true;
    overloaded.fetch_add(1);
  } else {
    connections_accepted.fetch_add(1);
    serving.fetch_add(1);
  }
  connections_open.fetch_add(1);
  std::shared_ptr<Session> session;
  {
    std::lock_guard lock(sessions_mu);
    uint64_t id = next_session_id++;
    session = std::make_shared<Session>(*this, std::move(socket), id, overload, remote);
    sessions.emplace(id, session);
    spdlog::debug("rest: connection {} from {} accepted{}", id, remote,
                  overload ? " (overloaded: answering 503)" : "");
  }
  auto executor = session->executor();
  asio::dispatch(executor, [session = std::move(session)] { session->start(); });
  do_accept();
}

Result<std::unique_ptr<Server>> Server::start(ServerOptions options, Router router,
                                              std::optional<TokenAuth> auth) {
  if (options.io_threads == 0 || options.connections_max == 0 ||
      options.pipeline_requests_max == 0 || options.body_bytes_max == 0 ||
      options.header_bytes_max == 0 || options.header_bytes_max > UINT32_MAX ||
      options.read_timeout_ms <= 0 || options.idle_timeout_ms <= 0 ||
      options.write_timeout_ms <= 0) {
    return error(Code::invalid_argument,
                 "server options: threads, limits and timeouts must all be positive");
  }
  if (router.any_requires_auth() && !auth) {
    return error(Code::invalid_argument,
                 "routes require a bearer token but no token is configured");
  }
  beast::error_code ec;
  auto address = asio::ip::make_address(options.bind_address, ec);
  if (ec) {
    return error(Code::invalid_argument,
                 fmt::format("bind address '{}' is not an IP address", options.bind_address));
  }
  auto impl = std::make_unique<Impl>(std::move(options), std::move(router), std::move(auth));
  Impl& s = *impl;
  s.ioc.emplace(static_cast<int>(s.options.io_threads));
  s.work.emplace(s.ioc->get_executor());
  s.acceptor.emplace(*s.ioc);
  s.accept_retry.emplace(*s.ioc);
  tcp::endpoint endpoint(address, s.options.port);
  s.acceptor->open(endpoint.protocol(), ec);
  if (!ec) s.acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor->bind(endpoint, ec);
  if (!ec) s.acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return error(Code::unavailable,
                 fmt::format("cannot listen on {}:{}: {}", s.options.bind_address, s.options.port,
                             ec.message()));
  }
  s.port = s.acceptor->local_endpoint().port();
  s.do_accept();
  for (size_t i = 0; i < s.options.io_threads; ++i) {
    s.threads.emplace_back([&s] { s.ioc->run(); });
  }
  spdlog::info("rest: listening on {}:{} with {} I/O thread(s), {} route(s)",
               s.options.bind_address, s.port, s.options.io_threads, s.router.routes().size());
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  stop();
}

uint16_t Server::port() const {
  return impl_->port;
}

ServerStats Server::stats() const {
  ServerStats st;
  st.connections_open = impl_->connections_open.load();
  st.connections_accepted = impl_->connections_accepted.load();
  st.connections_rejected = impl_->connections_rejected.load();
  st.requests_dispatched = impl_->requests_dispatched.load();
  st.responses_written = impl_->responses_written.load();
  return st;
}

void Server::stop() {
  Impl& s = *impl_;
  {
    std::lock_guard lock(s.stop_mu);
    if (s.stopped) return;
    s.stopped = true;
  }
  assert(!s.ioc->get_executor().running_in_this_thread() &&
         "Server::stop() called from one of its own I/O threads");
  {
    std::lock_guard lock(s.core->mu);
    s.core->alive = false;  // from here on, replies are dropped
  }
  s.ioc->stop();
  for (auto& t : s.threads)
    t.join();
  s.threads.clear();

  // No I/O thread runs now: close everything from here.
  beast::error_code ignored;
  s.acceptor->close(ignored);
  std::vector<std::shared_ptr<Session>> open;
  {
    std::lock_guard lock(s.sessions_mu);
    for (auto& [id, session] : s.sessions)
      open.push_back(session);
  }
  size_t closed = open.size();
  for (auto& session : open)
    session->close_now();
  open.clear();
  s.accept_retry.reset();
  s.acceptor.reset();
  s.work.reset();
  s.ioc.reset();  // destroys queued handlers and the sessions they held
  spdlog::info("rest: server on port {} stopped, {} connection(s) closed", s.port, closed);
}

}  // namespace dtx::rest
