#include "consensus/core/types.h"

#include "common/crc32c.h"
#include "consensus/core/codec.h"

namespace dtx::consensus {

std::string Ballot::describe() const {
  return std::to_string(round) + "." + std::to_string(node);
}

std::ostream& operator<<(std::ostream& os, const Ballot& b) {
  return os << b.describe();
}

std::string CommandId::describe() const {
  return ballot.describe() + "#" + std::to_string(seq);
}

std::ostream& operator<<(std::ostream& os, const CommandId& id) {
  return os << id.describe();
}

std::string Value::describe() const {
  switch (kind) {
    case ValueKind::noop:
      return "noop";
    case ValueKind::barrier:
      return "barrier(" + barrier.describe() + ")";
    case ValueKind::commands: {
      std::string s = "commands(" + std::to_string(commands.size());
      if (!commands.empty()) {
        s += ": " + commands.front().id.describe();
        if (commands.size() > 1) s += ".." + commands.back().id.describe();
      }
      return s + ")";
    }
  }
  return "?";
}

Bytes make_bytes(std::string s) {
  return std::make_shared<const std::string>(std::move(s));
}

std::string encode_value(const Value& v) {
  Writer w;
  w.u8(static_cast<uint8_t>(v.kind));
  switch (v.kind) {
    case ValueKind::noop:
      break;
    case ValueKind::barrier:
      w.u64(v.barrier.round);
      w.u32(v.barrier.node);
      break;
    case ValueKind::commands:
      w.u32(static_cast<uint32_t>(v.commands.size()));
      for (const Command& c : v.commands) {
        w.u64(c.id.ballot.round);
        w.u32(c.id.ballot.node);
        w.u64(c.id.seq);
        w.bytes(c.payload);
      }
      break;
  }
  return w.take();
}

bool decode_value(const std::string& bytes, Value* out) {
  Reader r(bytes);
  *out = Value{};
  const uint8_t kind = r.u8();
  switch (kind) {
    case static_cast<uint8_t>(ValueKind::noop):
      out->kind = ValueKind::noop;
      break;
    case static_cast<uint8_t>(ValueKind::barrier):
      out->kind = ValueKind::barrier;
      out->barrier.round = r.u64();
      out->barrier.node = r.u32();
      break;
    case static_cast<uint8_t>(ValueKind::commands): {
      out->kind = ValueKind::commands;
      const uint32_t n = r.count(kCommandHeaderBytes);
      out->commands.reserve(n);
      for (uint32_t i = 0; i < n && r.ok(); ++i) {
        Command c;
        c.id.ballot.round = r.u64();
        c.id.ballot.node = r.u32();
        c.id.seq = r.u64();
        c.payload = r.bytes();
        out->commands.push_back(std::move(c));
      }
      break;
    }
    default:
      return false;
  }
  return r.done();
}

Bytes noop_value() {
  static const Bytes kNoop = make_bytes(encode_value(Value{ValueKind::noop, {}, {}}));
  return kNoop;
}

Bytes barrier_value(const Ballot& b) {
  return make_bytes(encode_value(Value{ValueKind::barrier, b, {}}));
}

uint64_t value_digest(const std::string& bytes) {
  // Two CRCs with different seeds: a 64-bit digest that is cheap and stable.
  const uint64_t lo = crc32c(bytes);
  const uint64_t hi = crc32c(bytes, 0x9e3779b9u);
  return (hi << 32) | lo;
}

}  // namespace dtx::consensus
