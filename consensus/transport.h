// Transport: authenticated TCP links between the replicas of one group.
//
// Each replica dials every peer and sends on that connection only; it
// receives on the connections its peers dialled. A connection starts with a
// handshake, then carries frames one way.
//
// Handshake (fixed sizes, little-endian):
//   dialer -> listener  Hello     u32 magic "DTXH", u32 version (1),
//                                 u64 cluster id, u64 membership hash,
//                                 u32 from, u32 to, 16-byte nonce_d
//   listener -> dialer  Challenge 16-byte nonce_l,
//                                 32-byte HMAC-SHA256(secret, "L" | Hello | nonce_l)
//   dialer -> listener  Auth      32-byte HMAC-SHA256(secret, "D" | Hello | nonce_l)
// Each side proves it holds the cluster secret over fresh nonces; the
// listener also checks the cluster id, the membership hash, that `to` is
// itself and `from` a member (P4). Anything else closes the connection with
// a log line. The secret never crosses the wire.
//
// Frames: u32 payload length, u8 flags (bit 0: last fragment of a message),
// u32 crc32c of the payload, payload. Messages (consensus/core/messages.h
// wire form) are split into frames of at most frame_bytes_max and
// reassembled up to message_bytes_max; a bad crc or size closes the
// connection.
//
// Sending never blocks: each peer has a bounded queue; when it is full the
// oldest messages are dropped (Paxos retransmits). A lost connection is
// re-dialled with exponential backoff.
//
// Threading: lives on one EventLoop; send() and stop() on the loop thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/status.h"
#include "consensus/core/messages.h"
#include "consensus/event_loop.h"

namespace dtx::consensus {

struct TransportOptions {
  NodeId self = 0;
  uint64_t cluster_id = 0;
  uint64_t membership_hash = 0;
  std::string listen;                   // host:port
  std::map<NodeId, std::string> peers;  // every other replica: id -> host:port
  std::string secret;                   // the cluster secret (HMAC key)
  size_t frame_bytes_max = 1u << 20;
  size_t message_bytes_max = 64u << 20;
  size_t send_queue_bytes_max = 64u << 20;
  int reconnect_min_ms = 20;
  int reconnect_max_ms = 1000;
};

struct TransportStats {
  uint64_t sent = 0;
  uint64_t received = 0;
  uint64_t dropped = 0;             // queue overflow
  uint64_t handshakes_refused = 0;  // wrong secret, cluster, membership or identity
  uint64_t connections = 0;         // successful outbound handshakes
};

class Transport {
 public:
  // The messages that arrived together on one connection, in order (the
  // handler may move them out).
  using Handler = std::function<void(std::vector<Message>& messages)>;
  // Binds the listener (fails if the address is taken) and starts dialling.
  static Result<std::unique_ptr<Transport>> start(EventLoop& loop, TransportOptions options,
                                                  Handler on_message);
  ~Transport();
  void send(const Message& m);
  void stop();
  TransportStats stats() const;
  uint16_t listen_port() const;

  struct Impl;

 private:
  explicit Transport(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

// host:port -> (host, port); Code::invalid_argument when malformed.
Result<std::pair<std::string, uint16_t>> split_host_port(const std::string& s);

}  // namespace dtx::consensus
