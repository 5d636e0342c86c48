#include "coordinator/core/table.h"

#include <algorithm>

#include "consensus/core/codec.h"
#include "coordinator/core/record_codec.h"

namespace dtx::coordinator {

using consensus::Reader;
using consensus::Writer;

TxnTable::TxnTable(std::string cluster) : cluster_(std::move(cluster)) {}

ApplyResult TxnTable::apply(Slot slot, const Record& r) {
  if (slot > applied_slot_) applied_slot_ = slot;
  if (const auto* d = std::get_if<DecisionRecord>(&r)) return apply_decision(slot, *d);
  if (const auto* c = std::get_if<CompletedRecord>(&r)) return apply_completed(*c);
  if (const auto* w = std::get_if<WatermarkRecord>(&r)) return apply_watermark(*w);
  ApplyResult out;
  if (const auto* t = std::get_if<TermRecord>(&r)) {
    if (!(term_ < t->ballot)) {
      out.note = "term not above the current one";
      return out;
    }
    on_term(slot, t->ballot);
    out.kind = ApplyResult::Kind::term;
    out.ballot = t->ballot;
    return out;
  }
  if (const auto* h = std::get_if<HazardRecord>(&r)) {
    if (!entries_.count(h->txid)) {
      out.note = "hazard for a transaction the table does not hold";
      return out;
    }
    hazards_[h->txid].reports.push_back(*h);
    out.kind = ApplyResult::Kind::hazard;
    out.txid = h->txid;
    return out;
  }
  if (const auto* hc = std::get_if<HazardClearedRecord>(&r)) {
    if (!hazards_.erase(hc->txid)) {
      out.note = "no hazard to clear";
      return out;
    }
    out.kind = ApplyResult::Kind::hazard_cleared;
    out.txid = hc->txid;
    return out;
  }
  if (const auto* ps = std::get_if<ParticipantSetRecord>(&r)) {
    registry_[ps->name] = RegistryEntry{ps->agent_id, ps->url};
    out.kind = ApplyResult::Kind::registry;
    return out;
  }
  if (const auto* pr = std::get_if<ParticipantRemoveRecord>(&r)) {
    if (!registry_.erase(pr->name)) {
      out.note = "no such participant";
      return out;
    }
    out.kind = ApplyResult::Kind::registry;
    return out;
  }
  out.note = "unknown record";
  return out;
}

ApplyResult TxnTable::apply_decision(Slot slot, const DecisionRecord& d) {
  ApplyResult out;
  out.txid = d.txid;
  if (d.term != term_) {
    // Only the leader of the current term decides (records.h): this is an
    // old leader's proposal chosen after a newer leader's barrier.
    out.note = "decision from a past term";
    return out;
  }
  auto it = entries_.find(d.txid);
  if (it != entries_.end()) {
    // Write-once (T1): the register keeps its first value.
    out.kind = ApplyResult::Kind::decided;
    out.outcome = it->second.decision.outcome;
    return out;
  }
  if (d.txid < watermark_) {
    // Forgotten: its outcome is gone, and a decision must not resurrect it
    // with a possibly different value. The leader never proposes this.
    out.note = "decision for a txid below the watermark";
    return out;
  }
  TxnEntry e;
  e.decision = d;
  e.decided_slot = slot;
  entries_.emplace(d.txid, std::move(e));
  open_.insert(d.txid);
  if (!d.idempotency_key.empty()) {
    auto [kit, inserted] = keys_.emplace(d.idempotency_key, d.txid);
    if (!inserted) {
      // The first transaction decided with a key keeps it (T4). The leader
      // checks keys before proposing, so this means a bug: report it.
      out.key_conflict = true;
      entries_[d.txid].decision.idempotency_key.clear();
    }
  }
  if (d.outcome == Outcome::committed) {
    ++counts_.decided_committed;
  } else {
    ++counts_.decided_aborted;
  }
  out.kind = ApplyResult::Kind::decided;
  out.first_decision = true;
  out.outcome = d.outcome;
  return out;
}

ApplyResult TxnTable::apply_completed(const CompletedRecord& c) {
  ApplyResult out;
  for (const Txid& t : c.txids) {
    auto it = entries_.find(t);
    if (it == entries_.end() || it->second.completed) continue;
    it->second.completed = true;
    open_.erase(t);
    ++counts_.completed;
    out.txids.push_back(t);
  }
  out.kind = out.txids.empty() ? ApplyResult::Kind::ignored : ApplyResult::Kind::completed;
  if (out.txids.empty()) out.note = "nothing newly completed";
  return out;
}

ApplyResult TxnTable::apply_watermark(const WatermarkRecord& w) {
  ApplyResult out;
  if (w.term != term_) {
    out.note = "watermark from a past term";
    return out;
  }
  if (!(watermark_ < w.watermark)) {
    out.note = "watermark not above the current one";
    return out;
  }
  watermark_ = w.watermark;
  // Drop completed entries below it. An entry that is not completed stays,
  // whatever the record says: its participants still need the outcome.
  for (auto it = entries_.begin(); it != entries_.end() && it->first < watermark_;) {
    if (!it->second.completed || hazards_.count(it->first)) {
      ++it;
      continue;
    }
    const std::string& key = it->second.decision.idempotency_key;
    if (!key.empty()) {
      auto kit = keys_.find(key);
      if (kit != keys_.end() && kit->second == it->first) keys_.erase(kit);
    }
    ++counts_.forgotten;
    it = entries_.erase(it);
  }
  // Terms older than the watermark's ballot can no longer name a txid that
  // is not forgotten.
  const Ballot wb = ballot_of(watermark_);
  for (auto it = terms_.begin(); it != terms_.end() && it->first < wb;) {
    it = terms_.erase(it);
  }
  out.kind = ApplyResult::Kind::watermark;
  return out;
}

void TxnTable::on_term(Slot slot, const Ballot& ballot) {
  if (slot > applied_slot_) applied_slot_ = slot;
  terms_.emplace(ballot, slot);
  term_ = ballot;
}

const TxnEntry* TxnTable::find(const Txid& t) const {
  auto it = entries_.find(t);
  return it == entries_.end() ? nullptr : &it->second;
}

std::optional<Txid> TxnTable::by_key(std::string_view key) const {
  auto it = keys_.find(std::string(key));
  if (it == keys_.end()) return std::nullopt;
  return it->second;
}

TxnTable::Known TxnTable::classify(const Txid& t) const {
  if (entries_.count(t)) return Known::decided;
  if (t < watermark_) return Known::forgotten;
  // Leaders issue txids only while serving, after their barrier: a txid of
  // a ballot with no term in the log was never issued.
  if (!terms_.count(ballot_of(t))) return Known::never_issued;
  return Known::undecided;
}

const RegistryEntry* TxnTable::participant(std::string_view name) const {
  auto it = registry_.find(std::string(name));
  return it == registry_.end() ? nullptr : &it->second;
}

Ballot TxnTable::current_term() const {
  return term_;
}

Slot TxnTable::current_term_slot() const {
  auto it = terms_.find(term_);
  return it == terms_.end() ? 0 : it->second;
}

// Snapshot format: u8 version (1), cluster, watermark txid, current term,
// applied slot,
// counts (4 x u64), terms (count, ballot + slot), registry (count, name,
// agent id, url), entries (count, decision, slot, completed), hazards
// (count, txid, reports).
std::string TxnTable::snapshot() const {
  Writer w;
  w.u8(1);
  w.bytes(cluster_);
  put_txid(w, watermark_);
  put_ballot(w, term_);
  w.u64(applied_slot_);
  w.u64(counts_.decided_committed);
  w.u64(counts_.decided_aborted);
  w.u64(counts_.completed);
  w.u64(counts_.forgotten);
  w.u32(static_cast<uint32_t>(terms_.size()));
  for (const auto& [b, s] : terms_) {
    w.u64(b.round);
    w.u32(b.node);
    w.u64(s);
  }
  w.u32(static_cast<uint32_t>(registry_.size()));
  for (const auto& [name, e] : registry_) {
    w.bytes(name);
    w.bytes(e.agent_id);
    w.bytes(e.url);
  }
  w.u32(static_cast<uint32_t>(entries_.size()));
  for (const auto& [t, e] : entries_) {
    put_decision(w, e.decision);
    w.u64(e.decided_slot);
    w.u8(e.completed ? 1 : 0);
  }
  w.u32(static_cast<uint32_t>(hazards_.size()));
  for (const auto& [t, h] : hazards_) {
    put_txid(w, t);
    w.u32(static_cast<uint32_t>(h.reports.size()));
    for (const auto& rep : h.reports)
      put_hazard(w, rep);
  }
  return w.take();
}

Result<TxnTable> TxnTable::restore(std::string_view bytes) {
  Reader r(bytes);
  if (r.u8() != 1) return error(Code::corruption, "coordinator snapshot: unknown version");
  TxnTable t(r.bytes());
  t.watermark_ = get_txid(r);
  t.term_ = get_ballot(r);
  t.applied_slot_ = r.u64();
  t.counts_.decided_committed = r.u64();
  t.counts_.decided_aborted = r.u64();
  t.counts_.completed = r.u64();
  t.counts_.forgotten = r.u64();
  uint32_t n = r.count(20);
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    Ballot b;
    b.round = r.u64();
    b.node = r.u32();
    t.terms_[b] = r.u64();
  }
  n = r.count(12);
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    std::string name = r.bytes();
    RegistryEntry e;
    e.agent_id = r.bytes();
    e.url = r.bytes();
    t.registry_[name] = std::move(e);
  }
  n = r.count(16);
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    TxnEntry e;
    e.decision = get_decision(r);
    e.decided_slot = r.u64();
    const uint8_t completed = r.u8();
    if (completed > 1) r.fail();
    e.completed = completed == 1;
    if (!r.ok()) break;
    const Txid id = e.decision.txid;
    if (!e.completed) t.open_.insert(id);
    if (!e.decision.idempotency_key.empty()) t.keys_.emplace(e.decision.idempotency_key, id);
    t.entries_.emplace(id, std::move(e));
  }
  n = r.count(8);
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    Txid id = get_txid(r);
    HazardEntry h;
    uint32_t m = r.count(8);
    for (uint32_t j = 0; j < m && r.ok(); ++j)
      h.reports.push_back(get_hazard(r));
    t.hazards_[id] = std::move(h);
  }
  if (!r.done()) return error(Code::corruption, "coordinator snapshot: malformed");
  t.checked_watermark_ = t.watermark_;
  return t;
}

Status TxnTable::check_invariants() {
  if (watermark_ < checked_watermark_) {
    return error(Code::internal, "watermark went back");
  }
  checked_watermark_ = watermark_;
  size_t open = 0;
  for (const auto& [t, e] : entries_) {
    if (!(e.decision.txid == t)) return error(Code::internal, "entry keyed by another txid");
    if (!e.completed) {
      ++open;
      if (!open_.count(t)) return error(Code::internal, "open entry missing from open set");
    } else if (t < watermark_ && !hazards_.count(t)) {
      return error(Code::internal, "completed entry kept below the watermark");
    }
    auto [sit, inserted] = seen_registers_.emplace(t, e.decision.outcome);
    if (!inserted && sit->second != e.decision.outcome) {
      return error(Code::internal, "a decision register changed its value");
    }
  }
  if (open != open_.size())
    return error(Code::internal, "open set holds undecided or completed txids");
  for (const auto& [key, t] : keys_) {
    auto it = entries_.find(t);
    if (it == entries_.end() || it->second.decision.idempotency_key != key) {
      return error(Code::internal, "idempotency key names no entry with that key");
    }
  }
  for (const auto& [t, h] : hazards_) {
    if (!entries_.count(t)) return error(Code::internal, "hazard for a txid the table dropped");
  }
  // Registers below the watermark are gone for good; stop tracking them.
  for (auto it = seen_registers_.begin(); it != seen_registers_.end() && it->first < watermark_;) {
    if (entries_.count(it->first)) {
      ++it;
    } else {
      it = seen_registers_.erase(it);
    }
  }
  return ok_status();
}

}  // namespace dtx::coordinator
