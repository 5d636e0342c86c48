#include "coordinator/core/records.h"

#include <sstream>
#include <type_traits>

#include "coordinator/core/record_codec.h"

namespace dtx::coordinator {

using consensus::Reader;
using consensus::Writer;

const char* protocol_name(Protocol p) {
  return p == Protocol::three_pc ? "3pc" : "2pc";
}

std::optional<Protocol> parse_protocol(std::string_view s) {
  if (s == "2pc") return Protocol::two_pc;
  if (s == "3pc") return Protocol::three_pc;
  return std::nullopt;
}

namespace {

constexpr uint8_t kVersion = 1;

// Kinds on the wire: the variant index plus one, fixed by Record's order.
template <class T, size_t I = 0>
constexpr uint8_t kind_of() {
  static_assert(I < std::variant_size_v<Record>, "not a record type");
  if constexpr (std::is_same_v<T, std::variant_alternative_t<I, Record>>) {
    return static_cast<uint8_t>(I + 1);
  } else {
    return kind_of<T, I + 1>();
  }
}

void put_outcome(Writer& w, Outcome o) {
  w.u8(o == Outcome::committed ? 1 : 2);
}

Outcome get_outcome(Reader& r) {
  const uint8_t v = r.u8();
  if (v != 1 && v != 2) r.fail();
  return v == 1 ? Outcome::committed : Outcome::aborted;
}

struct Encoder {
  Writer& w;
  void operator()(const DecisionRecord& d) { put_decision(w, d); }
  void operator()(const CompletedRecord& c) {
    w.u32(static_cast<uint32_t>(c.txids.size()));
    for (const Txid& t : c.txids)
      put_txid(w, t);
  }
  void operator()(const HazardRecord& h) { put_hazard(w, h); }
  void operator()(const HazardClearedRecord& h) {
    put_txid(w, h.txid);
    w.bytes(h.operator_name);
    w.bytes(h.operator_reason);
  }
  void operator()(const ParticipantSetRecord& p) {
    w.bytes(p.name);
    w.bytes(p.agent_id);
    w.bytes(p.url);
  }
  void operator()(const ParticipantRemoveRecord& p) { w.bytes(p.name); }
  void operator()(const WatermarkRecord& m) {
    put_txid(w, m.watermark);
    put_ballot(w, m.term);
  }
  void operator()(const TermRecord& t) { put_ballot(w, t.ballot); }
};

}  // namespace

void put_txid(Writer& w, const Txid& t) {
  w.bytes(t.cluster);
  w.u64(t.round);
  w.u32(t.node);
  w.u64(t.seq);
}

Txid get_txid(Reader& r) {
  Txid t;
  t.cluster = r.bytes();
  t.round = r.u64();
  t.node = r.u32();
  t.seq = r.u64();
  return t;
}

void put_ballot(Writer& w, const consensus::Ballot& b) {
  w.u64(b.round);
  w.u32(b.node);
}

consensus::Ballot get_ballot(Reader& r) {
  consensus::Ballot b;
  b.round = r.u64();
  b.node = r.u32();
  return b;
}

void put_decision(Writer& w, const DecisionRecord& d) {
  put_txid(w, d.txid);
  put_ballot(w, d.term);
  put_outcome(w, d.outcome);
  w.u8(static_cast<uint8_t>(d.protocol));
  w.u32(static_cast<uint32_t>(d.participants.size()));
  for (const auto& p : d.participants) {
    w.bytes(p.name);
    w.bytes(p.agent_id);
  }
  w.bytes(d.idempotency_key);
  w.bytes(d.reason.participant);
  w.bytes(d.reason.code);
  w.bytes(d.reason.message);
  w.bytes(d.reason.sqlstate);
  w.u64(static_cast<uint64_t>(d.decided_at_ms));
  w.bytes(d.operator_name);
  w.bytes(d.operator_reason);
  w.bytes(d.results_json);
}

DecisionRecord get_decision(Reader& r) {
  DecisionRecord d;
  d.txid = get_txid(r);
  d.term = get_ballot(r);
  d.outcome = get_outcome(r);
  const uint8_t p = r.u8();
  if (p != 1 && p != 2) r.fail();
  d.protocol = static_cast<Protocol>(p);
  const uint32_t n = r.count(8);
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    Enlisted e;
    e.name = r.bytes();
    e.agent_id = r.bytes();
    d.participants.push_back(std::move(e));
  }
  d.idempotency_key = r.bytes();
  d.reason.participant = r.bytes();
  d.reason.code = r.bytes();
  d.reason.message = r.bytes();
  d.reason.sqlstate = r.bytes();
  d.decided_at_ms = static_cast<int64_t>(r.u64());
  d.operator_name = r.bytes();
  d.operator_reason = r.bytes();
  d.results_json = r.bytes();
  return d;
}

void put_hazard(Writer& w, const HazardRecord& h) {
  put_txid(w, h.txid);
  w.bytes(h.participant);
  put_outcome(w, h.applied);
  w.u64(static_cast<uint64_t>(h.at_ms));
}

HazardRecord get_hazard(Reader& r) {
  HazardRecord h;
  h.txid = get_txid(r);
  h.participant = r.bytes();
  h.applied = get_outcome(r);
  h.at_ms = static_cast<int64_t>(r.u64());
  return h;
}

std::string encode_record(const Record& rec) {
  Writer w;
  w.u8(kVersion);
  w.u8(std::visit([](const auto& x) { return kind_of<std::decay_t<decltype(x)>>(); }, rec));
  std::visit(Encoder{w}, rec);
  return w.take();
}

Result<Record> decode_record(std::string_view bytes) {
  Reader r(bytes);
  if (r.u8() != kVersion) return error(Code::corruption, "coordinator record: unknown version");
  const uint8_t kind = r.u8();
  Record out;
  switch (kind) {
    case kind_of<DecisionRecord>():
      out = get_decision(r);
      break;
    case kind_of<CompletedRecord>(): {
      CompletedRecord c;
      const uint32_t n = r.count(24);
      for (uint32_t i = 0; i < n && r.ok(); ++i)
        c.txids.push_back(get_txid(r));
      out = std::move(c);
      break;
    }
    case kind_of<HazardRecord>():
      out = get_hazard(r);
      break;
    case kind_of<HazardClearedRecord>(): {
      HazardClearedRecord h;
      h.txid = get_txid(r);
      h.operator_name = r.bytes();
      h.operator_reason = r.bytes();
      out = std::move(h);
      break;
    }
    case kind_of<ParticipantSetRecord>(): {
      ParticipantSetRecord p;
      p.name = r.bytes();
      p.agent_id = r.bytes();
      p.url = r.bytes();
      out = std::move(p);
      break;
    }
    case kind_of<ParticipantRemoveRecord>(): {
      ParticipantRemoveRecord p;
      p.name = r.bytes();
      out = std::move(p);
      break;
    }
    case kind_of<WatermarkRecord>(): {
      WatermarkRecord m;
      m.watermark = get_txid(r);
      m.term = get_ballot(r);
      out = std::move(m);
      break;
    }
    case kind_of<TermRecord>():
      out = TermRecord{get_ballot(r)};
      break;
    default:
      return error(Code::corruption, "coordinator record: unknown kind " + std::to_string(kind));
  }
  if (!r.done()) return error(Code::corruption, "coordinator record: malformed");
  return out;
}

namespace {

struct Describer {
  std::ostringstream& os;
  void operator()(const DecisionRecord& d) {
    os << "DECISION txid=" << d.txid.str() << ' ' << txn::outcome_name(d.outcome) << ' '
       << protocol_name(d.protocol) << " [";
    for (size_t i = 0; i < d.participants.size(); ++i)
      os << (i ? "," : "") << d.participants[i].name;
    os << ']';
    if (!d.idempotency_key.empty()) os << " key=" << d.idempotency_key;
    if (!d.reason.code.empty()) os << " reason=" << d.reason.code;
    if (!d.operator_name.empty()) os << " operator=" << d.operator_name;
  }
  void operator()(const CompletedRecord& c) { os << "COMPLETED n=" << c.txids.size(); }
  void operator()(const HazardRecord& h) {
    os << "HAZARD txid=" << h.txid.str() << ' ' << h.participant << " applied "
       << txn::outcome_name(h.applied);
  }
  void operator()(const HazardClearedRecord& h) {
    os << "HAZARD_CLEARED txid=" << h.txid.str() << " operator=" << h.operator_name;
  }
  void operator()(const ParticipantSetRecord& p) {
    os << "PARTICIPANT_SET " << p.name << " agent=" << p.agent_id << " url=" << p.url;
  }
  void operator()(const ParticipantRemoveRecord& p) { os << "PARTICIPANT_REMOVE " << p.name; }
  void operator()(const WatermarkRecord& w) { os << "WATERMARK " << w.watermark.str(); }
  void operator()(const TermRecord& t) { os << "TERM " << t.ballot.describe(); }
};

}  // namespace

std::string describe(const Record& r) {
  std::ostringstream os;
  std::visit(Describer{os}, r);
  return os.str();
}

}  // namespace dtx::coordinator
