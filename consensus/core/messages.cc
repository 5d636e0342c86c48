#include "consensus/core/messages.h"

#include <sstream>
#include <type_traits>
#include <variant>

#include "consensus/core/codec.h"

namespace dtx::consensus {
namespace {

// Type tags on the wire: the variant index, fixed by this table's order.
template <class T, size_t I = 0>
constexpr uint8_t tag_of() {
  static_assert(I < std::variant_size_v<Payload>, "not a payload type");
  if constexpr (std::is_same_v<T, std::variant_alternative_t<I, Payload>>) {
    return static_cast<uint8_t>(I);
  } else {
    return tag_of<T, I + 1>();
  }
}

void put_slot_value(Writer& w, const SlotValue& sv) {
  w.u64(sv.slot);
  w.u64(sv.accepted.round);
  w.u32(sv.accepted.node);
  w.u8(sv.chosen ? 1 : 0);
  w.bytes(sv.value ? *sv.value : std::string());
}

SlotValue get_slot_value(Reader& r) {
  SlotValue sv;
  sv.slot = r.u64();
  sv.accepted.round = r.u64();
  sv.accepted.node = r.u32();
  const uint8_t chosen = r.u8();
  if (chosen > 1) r.fail();
  sv.chosen = chosen == 1;
  sv.value = make_bytes(r.bytes());
  return sv;
}

constexpr size_t kSlotValueMinBytes = 8 + 8 + 4 + 1 + 4;

void put_slot_values(Writer& w, const std::vector<SlotValue>& v) {
  w.u32(static_cast<uint32_t>(v.size()));
  for (const auto& sv : v)
    put_slot_value(w, sv);
}

std::vector<SlotValue> get_slot_values(Reader& r) {
  std::vector<SlotValue> v;
  const uint32_t n = r.count(kSlotValueMinBytes);
  v.reserve(n);
  for (uint32_t i = 0; i < n && r.ok(); ++i)
    v.push_back(get_slot_value(r));
  return v;
}

struct Encoder {
  Writer& w;
  void operator()(const Phase1a& p) { w.u64(p.first_unchosen); }
  void operator()(const Phase1b& p) {
    w.u64(p.compaction_index);
    w.u64(p.commit_index);
    put_slot_values(w, p.accepted);
  }
  void operator()(const Phase2a& p) {
    put_slot_values(w, p.entries);
    w.u64(p.commit_index);
  }
  void operator()(const Phase2b& p) {
    w.u64(p.compacted);
    w.u32(static_cast<uint32_t>(p.slots.size()));
    for (Slot s : p.slots)
      w.u64(s);
  }
  void operator()(const Nack& p) {
    w.u64(p.promised.round);
    w.u32(p.promised.node);
  }
  void operator()(const Heartbeat& p) {
    w.u64(p.commit_index);
    w.u64(p.round);
  }
  void operator()(const HeartbeatAck& p) {
    w.u64(p.round);
    w.u64(p.commit_index);
  }
  void operator()(const Fetch& p) {
    w.u64(p.from);
    w.u64(p.to);
  }
  void operator()(const FetchReply& p) {
    put_slot_values(w, p.entries);
    w.u64(p.snapshot_index);
    w.u64(p.commit_index);
  }
  void operator()(const SnapshotFetch& p) {
    w.u64(p.index);
    w.u64(p.offset);
  }
  void operator()(const SnapshotChunk& p) {
    w.u64(p.index);
    w.u64(p.total_bytes);
    w.u64(p.offset);
    w.bytes(p.data);
  }
  void operator()(const PreVote& p) { w.u64(p.commit_index); }
  void operator()(const PreVoteReply& p) {
    w.u8(p.granted ? 1 : 0);
    w.u64(p.promised.round);
    w.u32(p.promised.node);
  }
};

}  // namespace

std::string encode_message(const Message& m) {
  Writer w;
  w.u8(kWireVersion);
  w.u8(static_cast<uint8_t>(m.payload.index()));
  w.u32(m.from);
  w.u64(m.ballot.round);
  w.u32(m.ballot.node);
  std::visit(Encoder{w}, m.payload);
  return w.take();
}

Result<Message> decode_message(std::span<const uint8_t> bytes, NodeId to) {
  Reader r(bytes);
  const uint8_t version = r.u8();
  if (r.ok() && version != kWireVersion) {
    return error(Code::invalid_argument,
                 "paxos message: unsupported wire version " + std::to_string(version));
  }
  const uint8_t type = r.u8();
  Message m;
  m.to = to;
  m.from = r.u32();
  m.ballot.round = r.u64();
  m.ballot.node = r.u32();
  switch (type) {
    case tag_of<Phase1a>(): {
      Phase1a p;
      p.first_unchosen = r.u64();
      m.payload = p;
      break;
    }
    case tag_of<Phase1b>(): {
      Phase1b p;
      p.compaction_index = r.u64();
      p.commit_index = r.u64();
      p.accepted = get_slot_values(r);
      m.payload = std::move(p);
      break;
    }
    case tag_of<Phase2a>(): {
      Phase2a p;
      p.entries = get_slot_values(r);
      p.commit_index = r.u64();
      m.payload = std::move(p);
      break;
    }
    case tag_of<Phase2b>(): {
      Phase2b p;
      p.compacted = r.u64();
      const uint32_t n = r.count(8);
      p.slots.reserve(n);
      for (uint32_t i = 0; i < n && r.ok(); ++i)
        p.slots.push_back(r.u64());
      m.payload = std::move(p);
      break;
    }
    case tag_of<Nack>(): {
      Nack p;
      p.promised.round = r.u64();
      p.promised.node = r.u32();
      m.payload = p;
      break;
    }
    case tag_of<Heartbeat>(): {
      Heartbeat p;
      p.commit_index = r.u64();
      p.round = r.u64();
      m.payload = p;
      break;
    }
    case tag_of<HeartbeatAck>(): {
      HeartbeatAck p;
      p.round = r.u64();
      p.commit_index = r.u64();
      m.payload = p;
      break;
    }
    case tag_of<Fetch>(): {
      Fetch p;
      p.from = r.u64();
      p.to = r.u64();
      m.payload = p;
      break;
    }
    case tag_of<FetchReply>(): {
      FetchReply p;
      p.entries = get_slot_values(r);
      p.snapshot_index = r.u64();
      p.commit_index = r.u64();
      m.payload = std::move(p);
      break;
    }
    case tag_of<SnapshotFetch>(): {
      SnapshotFetch p;
      p.index = r.u64();
      p.offset = r.u64();
      m.payload = p;
      break;
    }
    case tag_of<SnapshotChunk>(): {
      SnapshotChunk p;
      p.index = r.u64();
      p.total_bytes = r.u64();
      p.offset = r.u64();
      p.data = r.bytes();
      m.payload = std::move(p);
      break;
    }
    case tag_of<PreVote>(): {
      PreVote p;
      p.commit_index = r.u64();
      m.payload = p;
      break;
    }
    case tag_of<PreVoteReply>(): {
      PreVoteReply p;
      const uint8_t granted = r.u8();
      if (granted > 1) r.fail();
      p.granted = granted == 1;
      p.promised.round = r.u64();
      p.promised.node = r.u32();
      m.payload = p;
      break;
    }
    default:
      return error(Code::invalid_argument, "paxos message: unknown type " + std::to_string(type));
  }
  if (!r.done()) return error(Code::invalid_argument, "paxos message: malformed or trailing bytes");
  return m;
}

const char* payload_name(const Payload& p) {
  static const char* const kNames[] = {"Phase1a",     "Phase1b",       "Phase2a",       "Phase2b",
                                       "Nack",        "Heartbeat",     "HeartbeatAck",  "Fetch",
                                       "FetchReply",  "SnapshotFetch", "SnapshotChunk", "PreVote",
                                       "PreVoteReply"};
  static_assert(std::variant_size_v<Payload> == sizeof(kNames) / sizeof(kNames[0]));
  return kNames[p.index()];
}

std::string Message::describe() const {
  std::ostringstream os;
  os << payload_name(payload) << "{" << from << "->" << to << " b=" << ballot;
  std::visit(
      [&](const auto& p) {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, Phase1a>) {
          os << " first_unchosen=" << p.first_unchosen;
        } else if constexpr (std::is_same_v<T, Phase1b>) {
          os << " compaction=" << p.compaction_index << " commit=" << p.commit_index
             << " accepted=" << p.accepted.size();
        } else if constexpr (std::is_same_v<T, Phase2a>) {
          os << " slots=";
          if (!p.entries.empty()) os << p.entries.front().slot << ".." << p.entries.back().slot;
          os << " commit=" << p.commit_index;
        } else if constexpr (std::is_same_v<T, Phase2b>) {
          if (p.compacted) os << " compacted=" << p.compacted;
          os << " slots=" << p.slots.size();
          if (!p.slots.empty()) os << "(" << p.slots.front() << ".." << p.slots.back() << ")";
        } else if constexpr (std::is_same_v<T, Nack>) {
          os << " promised=" << p.promised;
        } else if constexpr (std::is_same_v<T, Heartbeat>) {
          os << " commit=" << p.commit_index << " round=" << p.round;
        } else if constexpr (std::is_same_v<T, HeartbeatAck>) {
          os << " round=" << p.round << " commit=" << p.commit_index;
        } else if constexpr (std::is_same_v<T, Fetch>) {
          os << " " << p.from << ".." << p.to;
        } else if constexpr (std::is_same_v<T, FetchReply>) {
          os << " entries=" << p.entries.size() << " snapshot=" << p.snapshot_index
             << " commit=" << p.commit_index;
        } else if constexpr (std::is_same_v<T, SnapshotFetch>) {
          os << " index=" << p.index << " offset=" << p.offset;
        } else if constexpr (std::is_same_v<T, SnapshotChunk>) {
          os << " index=" << p.index << " offset=" << p.offset << "+" << p.data.size() << "/"
             << p.total_bytes;
        } else if constexpr (std::is_same_v<T, PreVote>) {
          os << " commit=" << p.commit_index;
        } else if constexpr (std::is_same_v<T, PreVoteReply>) {
          os << (p.granted ? " granted" : " denied") << " promised=" << p.promised;
        }
      },
      payload);
  os << "}";
  return os.str();
}

}  // namespace dtx::consensus
