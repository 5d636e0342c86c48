#include "consensus/transport.h"

#include <cstring>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <deque>
#include <set>

#include "common/bytes.h"
#include "common/crc32c.h"
#include "consensus/asio_internal.h"

namespace dtx::consensus {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr uint32_t kHelloMagic = 0x48585444;  // "DTXH"
constexpr uint32_t kHandshakeVersion = 1;
constexpr size_t kNonceBytes = 16;
constexpr size_t kMacBytes = 32;
constexpr size_t kHelloBytes = 4 + 4 + 8 + 8 + 4 + 4 + kNonceBytes;
constexpr size_t kChallengeBytes = kNonceBytes + kMacBytes;
constexpr size_t kFrameHeaderBytes = 9;
constexpr size_t kReadBufferBytes = 64 * 1024;
constexpr uint8_t kLastFragment = 1;

using Mac = std::array<uint8_t, kMacBytes>;

Mac hmac(const std::string& secret, char role, std::span<const uint8_t> hello,
         std::span<const uint8_t> nonce) {
  std::string data(1, role);
  data.append(reinterpret_cast<const char*>(hello.data()), hello.size());
  data.append(reinterpret_cast<const char*>(nonce.data()), nonce.size());
  Mac out{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data(), &len);
  return out;
}

bool same_mac(const Mac& a, const uint8_t* b) {
  return CRYPTO_memcmp(a.data(), b, kMacBytes) == 0;
}

}  // namespace

Result<std::pair<std::string, uint16_t>> split_host_port(const std::string& s) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size()) {
    return error(Code::invalid_argument, "expected host:port, got '" + s + "'");
  }
  unsigned long port = 0;
  for (size_t i = colon + 1; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return error(Code::invalid_argument, "bad port in '" + s + "'");
    port = port * 10 + static_cast<unsigned long>(s[i] - '0');
    if (port > 65535) return error(Code::invalid_argument, "port out of range in '" + s + "'");
  }
  return std::make_pair(s.substr(0, colon), static_cast<uint16_t>(port));
}

struct Transport::Impl : std::enable_shared_from_this<Transport::Impl> {
  struct Outbound {
    NodeId peer = 0;
    tcp::endpoint endpoint;
    std::shared_ptr<tcp::socket> sock;
    bool ready = false;
    bool writing = false;
    std::deque<std::string> queue;
    size_t queue_bytes = 0;
    int backoff_ms = 0;
    uint64_t generation = 0;
    std::unique_ptr<asio::steady_timer> timer;
    std::vector<uint8_t> hello;
    std::vector<uint8_t> challenge;
  };
  struct Inbound {
    std::shared_ptr<tcp::socket> sock;
    std::vector<uint8_t> hello = std::vector<uint8_t>(kHelloBytes);
    std::vector<uint8_t> nonce = std::vector<uint8_t>(kNonceBytes);
    std::vector<uint8_t> auth = std::vector<uint8_t>(kMacBytes);
    std::vector<uint8_t> buf = std::vector<uint8_t>(kReadBufferBytes);  // [begin, end) unread
    size_t begin = 0;
    size_t end = 0;
    std::string message;  // fragments of a message split across frames
    NodeId from = 0;
  };

  EventLoop& loop;
  asio::io_context& io;
  TransportOptions opt;
  Handler on_message;
  tcp::acceptor acceptor;
  std::map<NodeId, Outbound> out;
  std::set<std::shared_ptr<Inbound>> in;
  bool stopped = false;
  std::atomic<uint64_t> sent{0}, received{0}, dropped{0}, refused{0}, connections{0};

  Impl(EventLoop& l, TransportOptions o, Handler h)
      : loop(l), io(io_of(l)), opt(std::move(o)), on_message(std::move(h)), acceptor(io) {}

  // ---- dialling
  void dial(NodeId peer) {
    Outbound& o = out[peer];
    if (stopped) return;
    o.generation += 1;
    o.ready = false;
    o.writing = false;
    o.sock = std::make_shared<tcp::socket>(io);
    const uint64_t gen = o.generation;
    auto self = shared_from_this();
    o.sock->async_connect(
        o.endpoint, [self, peer, gen](const error_code& ec) { self->on_connected(peer, gen, ec); });
  }

  void retry_later(NodeId peer, const std::string& why) {
    Outbound& o = out[peer];
    if (stopped) return;
    if (o.sock) {
      error_code ignored;
      o.sock->close(ignored);
    }
    o.ready = false;
    o.writing = false;
    o.generation += 1;
    o.backoff_ms =
        o.backoff_ms == 0 ? opt.reconnect_min_ms : std::min(o.backoff_ms * 2, opt.reconnect_max_ms);
    spdlog::debug("paxos transport {}: link to {} down ({}); retry in {} ms", opt.self, peer, why,
                  o.backoff_ms);
    o.timer->expires_after(std::chrono::milliseconds(o.backoff_ms));
    auto self = shared_from_this();
    const uint64_t gen = o.generation;
    o.timer->async_wait([self, peer, gen](const error_code& ec) {
      if (ec || self->stopped || self->out[peer].generation != gen) return;
      self->dial(peer);
    });
  }

  void on_connected(NodeId peer, uint64_t gen, const error_code& ec) {
    Outbound& o = out[peer];
    if (stopped || o.generation != gen) return;
    if (ec) return retry_later(peer, ec.message());
    error_code ignored;
    o.sock->set_option(tcp::no_delay(true), ignored);
    o.hello.assign(kHelloBytes, 0);
    uint8_t* p = o.hello.data();
    put_u32(p, kHelloMagic);
    put_u32(p + 4, kHandshakeVersion);
    put_u64(p + 8, opt.cluster_id);
    put_u64(p + 16, opt.membership_hash);
    put_u32(p + 24, opt.self);
    put_u32(p + 28, peer);
    RAND_bytes(p + 32, kNonceBytes);
    auto self = shared_from_this();
    auto sock = o.sock;
    asio::async_write(*sock, asio::buffer(o.hello),
                      [self, peer, gen, sock](const error_code& ec, size_t) {
                        Outbound& o = self->out[peer];
                        if (self->stopped || o.generation != gen) return;
                        if (ec) return self->retry_later(peer, ec.message());
                        o.challenge.assign(kChallengeBytes, 0);
                        asio::async_read(*sock, asio::buffer(o.challenge),
                                         [self, peer, gen, sock](const error_code& ec, size_t) {
                                           self->on_challenge(peer, gen, ec);
                                         });
                      });
  }

  void on_challenge(NodeId peer, uint64_t gen, const error_code& ec) {
    Outbound& o = out[peer];
    if (stopped || o.generation != gen) return;
    if (ec) return retry_later(peer, "handshake: " + ec.message());
    std::span<const uint8_t> nonce_l(o.challenge.data(), kNonceBytes);
    if (!same_mac(hmac(opt.secret, 'L', o.hello, nonce_l), o.challenge.data() + kNonceBytes)) {
      refused++;
      spdlog::warn(
          "paxos transport {}: replica {} at {} failed the handshake (wrong cluster "
          "secret?)",
          opt.self, peer, o.endpoint.address().to_string());
      return retry_later(peer, "peer not authenticated");
    }
    auto auth = std::make_shared<Mac>(hmac(opt.secret, 'D', o.hello, nonce_l));
    auto self = shared_from_this();
    auto sock = o.sock;
    asio::async_write(
        *sock, asio::buffer(*auth), [self, peer, gen, auth](const error_code& ec, size_t) {
          Outbound& o = self->out[peer];
          if (self->stopped || o.generation != gen) return;
          if (ec) return self->retry_later(peer, ec.message());
          o.ready = true;
          o.backoff_ms = 0;
          self->connections++;
          spdlog::info("paxos transport {}: link to replica {} up", self->opt.self, peer);
          self->pump(peer);
        });
  }

  void enqueue(NodeId peer, std::string bytes) {
    auto it = out.find(peer);
    if (it == out.end()) return;
    Outbound& o = it->second;
    o.queue_bytes += bytes.size();
    o.queue.push_back(std::move(bytes));
    while (o.queue_bytes > opt.send_queue_bytes_max && o.queue.size() > 1) {
      o.queue_bytes -= o.queue.front().size();
      o.queue.pop_front();
      dropped++;
    }
    pump(peer);
  }

  void pump(NodeId peer) {
    Outbound& o = out[peer];
    if (!o.ready || o.writing || o.queue.empty() || stopped) return;
    auto buf = std::make_shared<std::string>();
    size_t taken = 0;
    while (!o.queue.empty() && (taken == 0 || buf->size() < (1u << 20))) {
      const std::string& msg = o.queue.front();
      for (size_t off = 0; off < msg.size() || off == 0;) {
        const size_t n = std::min(opt.frame_bytes_max, msg.size() - off);
        uint8_t h[kFrameHeaderBytes];
        put_u32(h, static_cast<uint32_t>(n));
        h[4] = off + n >= msg.size() ? kLastFragment : 0;
        put_u32(h + 5, crc32c(msg.data() + off, n));
        buf->append(reinterpret_cast<const char*>(h), kFrameHeaderBytes);
        buf->append(msg, off, n);
        off += n;
        if (n == 0) break;
      }
      o.queue_bytes -= msg.size();
      o.queue.pop_front();
      ++taken;
    }
    o.writing = true;
    sent += taken;
    auto self = shared_from_this();
    const uint64_t gen = o.generation;
    asio::async_write(*o.sock, asio::buffer(*buf),
                      [self, peer, gen, buf](const error_code& ec, size_t) {
                        Outbound& o = self->out[peer];
                        if (self->stopped || o.generation != gen) return;
                        o.writing = false;
                        if (ec) return self->retry_later(peer, ec.message());
                        self->pump(peer);
                      });
  }

  // ---- listening
  void accept() {
    auto sock = std::make_shared<tcp::socket>(io);
    auto self = shared_from_this();
    acceptor.async_accept(*sock, [self, sock](const error_code& ec) {
      if (self->stopped) return;
      if (!ec) {
        auto s = std::make_shared<Inbound>();
        s->sock = sock;
        self->in.insert(s);
        self->read_hello(s);
      }
      self->accept();
    });
  }

  void drop(const std::shared_ptr<Inbound>& s, const std::string& why) {
    if (!why.empty()) spdlog::debug("paxos transport {}: inbound link closed: {}", opt.self, why);
    error_code ignored;
    s->sock->close(ignored);
    in.erase(s);
  }

  void refuse(const std::shared_ptr<Inbound>& s, const std::string& why) {
    refused++;
    error_code ignored;
    auto ep = s->sock->remote_endpoint(ignored);
    spdlog::warn("paxos transport {}: refused a connection from {}: {}", opt.self,
                 ignored ? std::string("?") : ep.address().to_string(), why);
    drop(s, "");
  }

  void read_hello(const std::shared_ptr<Inbound>& s) {
    auto self = shared_from_this();
    asio::async_read(*s->sock, asio::buffer(s->hello), [self, s](const error_code& ec, size_t) {
      if (self->stopped) return;
      if (ec) return self->drop(s, ec.message());
      const uint8_t* p = s->hello.data();
      if (get_u32(p) != kHelloMagic || get_u32(p + 4) != kHandshakeVersion) {
        return self->refuse(s, "not a dtx replica (bad magic or version)");
      }
      if (get_u64(p + 8) != self->opt.cluster_id) return self->refuse(s, "another cluster id");
      if (get_u64(p + 16) != self->opt.membership_hash) {
        return self->refuse(s, "a different membership");
      }
      s->from = get_u32(p + 24);
      if (get_u32(p + 28) != self->opt.self || !self->opt.peers.count(s->from)) {
        return self->refuse(s, "names replicas outside this group");
      }
      RAND_bytes(s->nonce.data(), kNonceBytes);
      auto challenge = std::make_shared<std::vector<uint8_t>>(s->nonce);
      Mac mac = hmac(self->opt.secret, 'L', s->hello, s->nonce);
      challenge->insert(challenge->end(), mac.begin(), mac.end());
      asio::async_write(*s->sock, asio::buffer(*challenge),
                        [self, s, challenge](const error_code& ec, size_t) {
                          if (self->stopped) return;
                          if (ec) return self->drop(s, ec.message());
                          self->read_auth(s);
                        });
    });
  }

  void read_auth(const std::shared_ptr<Inbound>& s) {
    auto self = shared_from_this();
    asio::async_read(*s->sock, asio::buffer(s->auth), [self, s](const error_code& ec, size_t) {
      if (self->stopped) return;
      if (ec) return self->drop(s, ec.message());
      if (!same_mac(hmac(self->opt.secret, 'D', s->hello, s->nonce), s->auth.data())) {
        return self->refuse(s, "wrong cluster secret");
      }
      self->read_frame(s);
    });
  }

  // Frames are read in as large chunks as the socket has ready and parsed
  // from the buffer: one receive for many messages, not two per message.
  void read_frame(const std::shared_ptr<Inbound>& s) {
    // Parse every whole frame already buffered; the messages go to the
    // handler together (the node steps them all, then persists once).
    std::vector<Message> batch;
    auto deliver = [&] {
      if (batch.empty()) return;
      received += batch.size();
      on_message(batch);
      batch.clear();
    };
    for (;;) {
      const size_t avail = s->end - s->begin;
      if (avail < kFrameHeaderBytes) break;
      const uint8_t* h = s->buf.data() + s->begin;
      const uint32_t n = get_u32(h);
      if (n > opt.frame_bytes_max || s->message.size() + n > opt.message_bytes_max) {
        deliver();
        return refuse(s, "frame or message too large");
      }
      if (avail < kFrameHeaderBytes + n) {
        // Make room for the whole frame.
        if (s->buf.size() - s->begin < kFrameHeaderBytes + n) {
          std::memmove(s->buf.data(), s->buf.data() + s->begin, avail);
          s->end = avail;
          s->begin = 0;
          if (s->buf.size() < kFrameHeaderBytes + n) s->buf.resize(kFrameHeaderBytes + n);
        }
        break;
      }
      const char* payload = reinterpret_cast<const char*>(h + kFrameHeaderBytes);
      if (crc32c(static_cast<const void*>(payload), size_t{n}) != get_u32(h + 5)) {
        deliver();
        return refuse(s, "frame checksum mismatch");
      }
      const bool last = h[4] & kLastFragment;
      s->begin += kFrameHeaderBytes + n;
      if (!last || !s->message.empty()) {
        s->message.append(payload, n);
        if (!last) continue;
      }
      auto m = s->message.empty()
                   ? decode_message(
                         std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(payload), n),
                         opt.self)
                   : decode_message(std::span<const uint8_t>(
                                        reinterpret_cast<const uint8_t*>(s->message.data()),
                                        s->message.size()),
                                    opt.self);
      s->message.clear();
      if (!m.ok() || m->from != s->from) {
        deliver();
        return refuse(s, !m.ok() ? m.status().describe() : "message claims another sender");
      }
      batch.push_back(std::move(*m));
    }
    deliver();
    if (stopped) return;
    if (s->begin == s->end) s->begin = s->end = 0;
    if (s->end == s->buf.size()) {
      // Full of a partial frame's start: slide it down.
      const size_t avail = s->end - s->begin;
      std::memmove(s->buf.data(), s->buf.data() + s->begin, avail);
      s->begin = 0;
      s->end = avail;
    }
    auto self = shared_from_this();
    s->sock->async_read_some(asio::buffer(s->buf.data() + s->end, s->buf.size() - s->end),
                             [self, s](const error_code& ec, size_t got) {
                               if (self->stopped) return;
                               if (ec) return self->drop(s, ec.message());
                               s->end += got;
                               self->read_frame(s);
                             });
  }

  void stop() {
    if (stopped) return;
    stopped = true;
    error_code ignored;
    acceptor.close(ignored);
    for (auto& [peer, o] : out) {
      if (o.sock) o.sock->close(ignored);
      if (o.timer) o.timer->cancel();
    }
    for (const auto& s : in)
      s->sock->close(ignored);
    in.clear();
  }
};

Result<std::unique_ptr<Transport>> Transport::start(EventLoop& loop, TransportOptions options,
                                                    Handler on_message) {
  if (options.secret.size() < 16) {
    return error(Code::invalid_argument, "the cluster secret must be at least 16 bytes");
  }
  auto impl = std::make_shared<Impl>(loop, std::move(options), std::move(on_message));
  auto listen = split_host_port(impl->opt.listen);
  if (!listen.ok()) return listen.status();
  error_code ec;
  tcp::resolver resolver(impl->io);
  auto bind_to = resolver.resolve(listen->first, std::to_string(listen->second), ec);
  if (ec || bind_to.empty()) {
    return error(Code::invalid_argument,
                 "cannot resolve " + impl->opt.listen + ": " + ec.message());
  }
  const tcp::endpoint ep = bind_to.begin()->endpoint();
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return error(Code::unavailable, "cannot listen on " + impl->opt.listen + ": " + ec.message());
  }
  for (const auto& [peer, addr] : impl->opt.peers) {
    auto hp = split_host_port(addr);
    if (!hp.ok()) return hp.status();
    auto r = resolver.resolve(hp->first, std::to_string(hp->second), ec);
    if (ec || r.empty()) {
      return error(Code::invalid_argument, "cannot resolve replica " + std::to_string(peer) +
                                               " at " + addr + ": " + ec.message());
    }
    Impl::Outbound& o = impl->out[peer];
    o.peer = peer;
    o.endpoint = r.begin()->endpoint();
    o.timer = std::make_unique<asio::steady_timer>(impl->io);
  }
  std::unique_ptr<Transport> t(new Transport(impl));
  loop.post([impl] {
    impl->accept();
    for (auto& [peer, o] : impl->out)
      impl->dial(peer);
  });
  return t;
}

// The Impl outlives pending handlers through their shared_ptr. Call stop()
// on the loop, or stop the loop, before destroying a Transport.
Transport::~Transport() = default;

void Transport::send(const Message& m) {
  impl_->enqueue(m.to, encode_message(m));
}

void Transport::stop() {
  impl_->stop();
}

TransportStats Transport::stats() const {
  TransportStats s;
  s.sent = impl_->sent;
  s.received = impl_->received;
  s.dropped = impl_->dropped;
  s.handshakes_refused = impl_->refused;
  s.connections = impl_->connections;
  return s;
}

uint16_t Transport::listen_port() const {
  error_code ec;
  return impl_->acceptor.local_endpoint(ec).port();
}

}  // namespace dtx::consensus
