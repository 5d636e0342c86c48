#include "consensus/core/replica.h"

#include <algorithm>
#include <cassert>

namespace dtx::consensus {

namespace {
constexpr uint64_t kRetransmitTicks = 3;
}  // namespace

// ---------------------------------------------------------------------------
// Small things

const char* role_name(Role r) {
  switch (r) {
    case Role::follower:
      return "follower";
    case Role::candidate:
      return "candidate";
    case Role::leader:
      return "leader";
  }
  return "?";
}

bool Ready::empty() const {
  return persist_id == 0 && !promise && records.empty() && !install && send.empty() &&
         send_after_persist.empty() && apply.empty() && !serving && !lost_leadership &&
         reads_ready.empty() && reads_failed.empty();
}

Status validate(const Config& c) {
  if (c.members.size() != 3 && c.members.size() != 5) {
    return error(Code::invalid_argument, "a coordinator group has 3 or 5 replicas");
  }
  std::set<NodeId> ids(c.members.begin(), c.members.end());
  if (ids.size() != c.members.size() || ids.count(0)) {
    return error(Code::invalid_argument, "replica ids must be distinct and non-zero");
  }
  if (!ids.count(c.self)) return error(Code::invalid_argument, "self is not a member");
  if (c.heartbeat_ticks == 0 || c.election_ticks <= 2 * c.heartbeat_ticks) {
    return error(Code::invalid_argument,
                 "election_ticks must exceed two heartbeats (heartbeat_ticks >= 1)");
  }
  if (c.window_slots == 0 || c.batch_commands_max == 0 || c.catchup_entries_max == 0 ||
      c.snapshot_chunk_bytes == 0) {
    return error(Code::invalid_argument, "window, batch, catch-up and chunk limits must be > 0");
  }
  if (c.batch_bytes_max <= kValueHeaderBytes + kCommandHeaderBytes) {
    return error(Code::invalid_argument, "batch_bytes_max leaves no room for a command");
  }
  return ok_status();
}

uint64_t Replica::next_random() {
  // splitmix64: deterministic for a seed.
  uint64_t z = (rng_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t Replica::reset_election_timeout() {
  election_timeout_ticks_ = cfg_.election_ticks + next_random() % cfg_.election_ticks;
  return election_timeout_ticks_;
}

// ---------------------------------------------------------------------------
// Construction and recovery

Replica::Replica(Config config, Recovered rec) : cfg_(std::move(config)) {
  assert(validate(cfg_).ok());
  std::sort(cfg_.members.begin(), cfg_.members.end());
  rng_ = cfg_.seed ^ (uint64_t{cfg_.self} << 32) ^ 0x5bd1e995ull;
  promised_ = rec.promised;
  compaction_index_ = rec.snapshot_index;
  snapshot_ = rec.snapshot;
  commit_index_ = applied_index_ = compaction_index_;
  Slot recorded_commit = 0;
  for (LogRecord& r : rec.records) {
    switch (r.kind) {
      case LogRecord::Kind::accept: {
        // An acceptance is also a promise of its ballot: keep the higher one
        // even if the vote file lags (belt and braces for P3).
        if (r.ballot > promised_) promised_ = r.ballot;
        if (r.slot <= compaction_index_) break;
        SlotState& st = log_[r.slot];
        if (st.chosen) break;  // a chosen value never changes
        st.accepted = r.ballot;
        st.value = r.value;
        break;
      }
      case LogRecord::Kind::chosen: {
        if (r.slot <= compaction_index_) break;
        SlotState& st = log_[r.slot];
        st.value = r.value;
        st.chosen = true;
        break;
      }
      case LogRecord::Kind::commit:
        recorded_commit = std::max(recorded_commit, r.slot);
        break;
    }
  }
  // The commit record says every slot up to it was chosen; the values were
  // recorded (accepted by the chosen ballot, or fetched) before it.
  for (auto& [slot, st] : log_) {
    if (slot <= recorded_commit && st.value) st.chosen = true;
  }
  for (auto& [slot, st] : log_) {
    if (st.chosen) chosen_digest_[slot] = value_digest(*st.value);
  }
  commit_mark_ = recorded_commit;
  advance_commit();
  max_round_seen_ = promised_.round;
  last_promised_seen_ = promised_;
  reset_election_timeout();
  maybe_apply();
}

// ---------------------------------------------------------------------------
// Ready plumbing

void Replica::send(NodeId to, Payload p, const Ballot& b) {
  Message m;
  m.from = cfg_.self;
  m.to = to;
  m.ballot = b;
  m.payload = std::move(p);
  ready_.send.push_back(std::move(m));
}

void Replica::send_after_persist(NodeId to, Payload p, const Ballot& b) {
  Message m;
  m.from = cfg_.self;
  m.to = to;
  m.ballot = b;
  m.payload = std::move(p);
  ready_.send_after_persist.push_back(std::move(m));
  persist_open_ = true;
}

void Replica::add_record(LogRecord r) {
  ready_.records.push_back(std::move(r));
  persist_open_ = true;
}

bool Replica::has_ready() const {
  return !ready_.empty() || persist_open_ || !outgoing_2a_.empty();
}

Ready Replica::take_ready() {
  if (!outgoing_2a_.empty()) {
    // Phase2a messages carry every slot proposed since the last Ready, as few
    // messages as catchup_bytes_max allows (a new leader may re-propose many
    // slots at once).
    std::vector<SlotValue> entries = std::move(outgoing_2a_);
    outgoing_2a_.clear();
    const std::vector<NodeId> targets = phase2a_targets();
    for (size_t i = 0; i < entries.size();) {
      Phase2a p;
      p.commit_index = commit_index_;
      size_t bytes = 0;
      for (; i < entries.size(); ++i) {
        const size_t sz = entries[i].value->size();
        if (!p.entries.empty() && bytes + sz > cfg_.catchup_bytes_max) break;
        bytes += sz;
        p.entries.push_back(std::move(entries[i]));
      }
      for (NodeId peer : targets)
        send(peer, p, ballot_);
    }
  }
  if (persist_open_) {
    if (commit_index_ > commit_mark_) {
      ready_.records.push_back(LogRecord{LogRecord::Kind::commit, commit_index_, {}, nullptr});
      commit_mark_ = commit_index_;
    }
    ready_.persist_id = next_persist_id_++;
    persist_now_.id = ready_.persist_id;
    in_flight_.push_back(std::move(persist_now_));
    persist_now_ = PendingPersist{};
    persist_open_ = false;
  }
  Ready out = std::move(ready_);
  ready_ = Ready{};
  return out;
}

void Replica::on_persisted(uint64_t persist_id) {
  while (!in_flight_.empty() && in_flight_.front().id <= persist_id) {
    PendingPersist p = std::move(in_flight_.front());
    in_flight_.pop_front();
    if (p.own_promise && role_ == Role::candidate && promised_ == ballot_) {
      candidacy_.promises[cfg_.self] = make_phase1b(commit_index_ + 1);
      maybe_finish_phase1();
    }
    if (role_ == Role::leader && p.vote_ballot == ballot_) {
      // The leader's own 2b counts only now that its acceptance is durable.
      Message self_vote;
      self_vote.from = cfg_.self;
      self_vote.to = cfg_.self;
      self_vote.ballot = ballot_;
      Phase2b b;
      b.slots = std::move(p.vote_slots);
      on_phase2b(self_vote, b);
    }
  }
  // The leader's own vote may be the one that makes a slot chosen: apply
  // now, not at the next message.
  maybe_apply();
}

// ---------------------------------------------------------------------------
// Time

void Replica::tick() {
  ++ticks_;
  if (role_ == Role::leader) {
    if (cfg_.heartbeat_ticks > 0 && ticks_ % cfg_.heartbeat_ticks == 0) send_heartbeats();
    if (cfg_.thrifty || ticks_ % kRetransmitTicks == 0) retransmit_phase2a();
    // Check-quorum (P5): step down when no majority was heard from lately.
    size_t heard = 1;
    for (NodeId peer : cfg_.members) {
      if (peer == cfg_.self) continue;
      auto it = last_heard_tick_.find(peer);
      if (it != last_heard_tick_.end() && ticks_ - it->second < cfg_.election_ticks) ++heard;
    }
    if (heard < quorum() && ticks_ - election_started_tick_ >= cfg_.election_ticks) {
      step_down(ballot_);
    }
    return;
  }
  if ((fetch_outstanding_ || incoming_) && ticks_ - fetch_sent_tick_ >= cfg_.election_ticks) {
    retry_catch_up();
  }
  const uint64_t since = ticks_ - (role_ == Role::candidate ? election_started_tick_
                                   : prevote_.active        ? prevote_.started_tick
                                                            : last_leader_contact_tick_);
  if (since >= election_timeout_ticks_) start_election();
}

// ---------------------------------------------------------------------------
// Messages

void Replica::step(const Message& m) {
  if (m.from == cfg_.self || m.to != cfg_.self) return;
  if (std::find(cfg_.members.begin(), cfg_.members.end(), m.from) == cfg_.members.end()) return;
  // A pre-vote's ballot is only what its sender would campaign with.
  if (!std::holds_alternative<PreVote>(m.payload) &&
      !std::holds_alternative<PreVoteReply>(m.payload)) {
    note_round(m.ballot);
  }
  std::visit(
      [&](const auto& p) {
        using T = std::decay_t<decltype(p)>;
        if constexpr (std::is_same_v<T, Phase1a>) on_phase1a(m, p);
        if constexpr (std::is_same_v<T, Phase1b>) on_phase1b(m, p);
        if constexpr (std::is_same_v<T, Phase2a>) on_phase2a(m, p);
        if constexpr (std::is_same_v<T, Phase2b>) on_phase2b(m, p);
        if constexpr (std::is_same_v<T, Nack>) on_nack(m, p);
        if constexpr (std::is_same_v<T, Heartbeat>) on_heartbeat(m, p);
        if constexpr (std::is_same_v<T, HeartbeatAck>) on_heartbeat_ack(m, p);
        if constexpr (std::is_same_v<T, Fetch>) on_fetch(m, p);
        if constexpr (std::is_same_v<T, FetchReply>) on_fetch_reply(m, p);
        if constexpr (std::is_same_v<T, SnapshotFetch>) on_snapshot_fetch(m, p);
        if constexpr (std::is_same_v<T, SnapshotChunk>) on_snapshot_chunk(m, p);
        if constexpr (std::is_same_v<T, PreVote>) on_pre_vote(m, p);
        if constexpr (std::is_same_v<T, PreVoteReply>) on_pre_vote_reply(m, p);
      },
      m.payload);
  maybe_apply();
}

void Replica::note_round(const Ballot& b) {
  max_round_seen_ = std::max(max_round_seen_, b.round);
}

// ---------------------------------------------------------------------------
// Acceptor

void Replica::raise_promise(const Ballot& b, bool implicit) {
  if (b <= promised_) return;
  promised_ = b;
  const bool persist = implicit ? !cfg_.bugs.forget_implicit_promise && !cfg_.bugs.forget_promise
                                : !cfg_.bugs.forget_promise;
  if (persist) {
    ready_.promise = b;
    persist_open_ = true;
  }
}

Phase1b Replica::make_phase1b(Slot first_unchosen) const {
  Phase1b p;
  p.compaction_index = compaction_index_;
  p.commit_index = commit_index_;
  const Slot above = std::max({compaction_index_, commit_index_, first_unchosen - 1});
  for (auto it = log_.upper_bound(above); it != log_.end(); ++it) {
    const SlotState& st = it->second;
    if (!st.value) continue;
    if (st.accepted.is_zero() && !st.chosen) continue;
    p.accepted.push_back(SlotValue{it->first, st.accepted, st.chosen, st.value});
  }
  return p;
}

void Replica::on_phase1a(const Message& m, const Phase1a& p) {
  if (m.ballot < promised_) {
    send(m.from, Nack{promised_}, m.ballot);
    return;
  }
  // Leader stickiness: while a live leader is heard from, ignore other
  // candidates (they would only disrupt it). Liveness only, not safety.
  if (role_ == Role::follower && leader_ && *leader_ != m.from &&
      ticks_ - last_leader_contact_tick_ < cfg_.election_ticks) {
    return;
  }
  // Any other replica's ballot that passes the promise check is above ours.
  if (role_ != Role::follower) step_down(m.ballot);
  raise_promise(m.ballot, false);
  // Re-send the promise with the reply, even for a duplicate 1a: the reply
  // must not leave before the promise is durable.
  if (!cfg_.bugs.forget_promise) {
    ready_.promise = promised_;
    persist_open_ = true;
  }
  send_after_persist(m.from, make_phase1b(p.first_unchosen), m.ballot);
  last_leader_contact_tick_ = ticks_;  // a live candidate: do not campaign against it at once
}

void Replica::on_phase2a(const Message& m, const Phase2a& p) {
  if (m.ballot < promised_) {
    send(m.from, Nack{promised_}, m.ballot);
    return;
  }
  if (role_ != Role::follower && m.ballot > ballot_) step_down(m.ballot);
  if (role_ == Role::leader && m.ballot == ballot_) return;  // cannot happen: own ballot
  raise_promise(m.ballot, true);
  follow(m.ballot, m.from);
  Phase2b reply;
  for (const SlotValue& e : p.entries) {
    if (e.slot <= compaction_index_) {
      reply.compacted = compaction_index_;
      continue;
    }
    SlotState& st = log_[e.slot];
    if (st.chosen && *st.value != *e.value) {
      // A stale leader's proposal for a slot already chosen otherwise (it
      // cannot gather a majority: the ballot that chose the other value had
      // a quorum promise above it). Accepting is optional; decline.
      continue;
    }
    st.value = e.value;
    st.accepted = m.ballot;
    add_record(LogRecord{LogRecord::Kind::accept, e.slot, m.ballot, st.value});
    reply.slots.push_back(e.slot);
  }
  if (!reply.slots.empty()) {
    send_after_persist(m.from, std::move(reply), m.ballot);
  } else if (reply.compacted != 0) {
    send(m.from, std::move(reply), m.ballot);  // no acceptance to wait for
  }
  learn_commit(p.commit_index, m.ballot, m.from);
}

void Replica::follow(const Ballot& b, NodeId leader) {
  if (b < leader_ballot_) return;
  leader_ballot_ = b;
  leader_ = leader;
  last_leader_contact_tick_ = ticks_;
  prevote_ = PreVoting{};
}

// ---------------------------------------------------------------------------
// Learner

void Replica::learn_commit(Slot commit, const Ballot& leader_ballot, NodeId leader) {
  leader_commit_ = std::max(leader_commit_, commit);
  for (auto it = log_.upper_bound(commit_index_); it != log_.end() && it->first <= commit; ++it) {
    SlotState& st = it->second;
    if (st.chosen || !st.value) continue;
    // P2: only a value accepted in the leader's own ballot is the one it
    // counted as chosen; anything else may be a stale value from an older
    // leader, and must be fetched.
    if (st.accepted == leader_ballot || cfg_.bugs.apply_stale_accepted) {
      mark_chosen(it->first, st.value, false);
    }
  }
  advance_commit();
  if (commit_index_ < commit) maybe_fetch(leader, commit);
}

void Replica::mark_chosen(Slot s, Bytes value, bool record) {
  SlotState& st = log_[s];
  st.value = std::move(value);
  st.chosen = true;
  chosen_digest_.emplace(s, value_digest(*st.value));
  if (record) add_record(LogRecord{LogRecord::Kind::chosen, s, {}, st.value});
}

void Replica::advance_commit() {
  for (;;) {
    auto it = log_.find(commit_index_ + 1);
    if (it == log_.end() || !it->second.chosen) break;
    ++commit_index_;
  }
}

void Replica::maybe_apply() {
  while (applied_index_ < commit_index_) {
    const Slot s = applied_index_ + 1;
    auto it = log_.find(s);
    assert(it != log_.end() && it->second.chosen);
    ready_.apply.push_back(Ready::Applied{s, it->second.value});
    applied_index_ = s;
    if (role_ == Role::leader && !serving_ && s == barrier_slot_) {
      Value v;
      if (decode_value(*it->second.value, &v) && v.kind == ValueKind::barrier &&
          v.barrier == ballot_) {
        serving_ = true;
        ready_.serving = std::make_pair(ballot_, s);
      } else {
        step_down(ballot_);  // another leader's value took the barrier's slot
      }
    }
  }
}

void Replica::maybe_fetch(NodeId from, Slot upto) {
  if (from == cfg_.self || fetch_outstanding_ || incoming_) return;
  if (upto <= commit_index_) return;
  Fetch f;
  f.from = commit_index_ + 1;
  f.to = std::min<Slot>(upto, commit_index_ + cfg_.catchup_entries_max);
  send(from, f, promised_);
  fetch_outstanding_ = true;
  fetch_sent_tick_ = ticks_;
}

// A Fetch or snapshot chunk got no answer: ask again (a snapshot resumes at
// the offset already received), from the leader when there is one.
void Replica::retry_catch_up() {
  fetch_outstanding_ = false;
  if (incoming_ && ++incoming_->retries <= 2) {
    send(incoming_->from, SnapshotFetch{incoming_->index, incoming_->data.size()}, promised_);
    fetch_outstanding_ = true;
    fetch_sent_tick_ = ticks_;
    return;
  }
  // The snapshot's source stopped answering: start over from the leader,
  // which names the snapshot to fetch if one is still needed.
  incoming_.reset();
  if (role_ == Role::candidate && candidacy_.quorum_reached) {
    maybe_finish_phase1();
  } else if (leader_ && *leader_ != cfg_.self) {
    maybe_fetch(*leader_, leader_commit_);
  }
}

void Replica::on_fetch(const Message& m, const Fetch& p) {
  FetchReply r;
  r.commit_index = commit_index_;
  if (p.from <= compaction_index_) {
    r.snapshot_index = compaction_index_;
  } else {
    size_t bytes = 0;
    for (Slot s = p.from; s <= std::min(p.to, commit_index_); ++s) {
      auto it = log_.find(s);
      if (it == log_.end() || !it->second.chosen) break;
      bytes += it->second.value->size();
      if (!r.entries.empty() && bytes > cfg_.catchup_bytes_max) break;
      r.entries.push_back(SlotValue{s, {}, true, it->second.value});
      if (r.entries.size() >= cfg_.catchup_entries_max) break;
    }
  }
  send(m.from, std::move(r), promised_);
}

void Replica::on_fetch_reply(const Message& m, const FetchReply& p) {
  fetch_outstanding_ = false;
  // A leader knows every chosen value up to its commit index and decides the
  // rest itself; a late reply to its catch-up as a candidate is ignored.
  if (role_ == Role::leader) return;
  // A candidate catching up is making progress: do not restart the election.
  if (role_ == Role::candidate && !p.entries.empty()) election_started_tick_ = ticks_;
  for (const SlotValue& e : p.entries) {
    if (e.slot <= compaction_index_ || !e.value) continue;
    auto it = log_.find(e.slot);
    if (it != log_.end() && it->second.chosen) continue;
    mark_chosen(e.slot, e.value, true);
  }
  advance_commit();
  if (p.snapshot_index > commit_index_ && !incoming_) {
    incoming_ = IncomingSnapshot{p.snapshot_index, 0, {}, m.from};
    send(m.from, SnapshotFetch{p.snapshot_index, 0}, promised_);
    fetch_outstanding_ = true;
    fetch_sent_tick_ = ticks_;
    return;
  }
  // A candidate fetches exactly up to its quorum's commit index; a follower
  // up to the highest commit index it has heard of.
  const Slot target =
      role_ == Role::candidate ? candidacy_.catch_up_to : std::max(leader_commit_, p.commit_index);
  if (!p.entries.empty() && commit_index_ < target) maybe_fetch(m.from, target);
  if (role_ == Role::candidate) maybe_finish_phase1();
}

void Replica::on_snapshot_fetch(const Message& m, const SnapshotFetch& p) {
  if (!snapshot_ || compaction_index_ == 0) {
    send(m.from, SnapshotChunk{}, promised_);  // nothing to offer: the requester starts over
    return;
  }
  const uint64_t offset = (p.index == compaction_index_) ? p.offset : 0;
  if (offset > snapshot_->size()) return;
  SnapshotChunk c;
  c.index = compaction_index_;
  c.total_bytes = snapshot_->size();
  c.offset = offset;
  c.data = snapshot_->substr(offset, cfg_.snapshot_chunk_bytes);
  send(m.from, std::move(c), promised_);
}

void Replica::on_snapshot_chunk(const Message& m, const SnapshotChunk& p) {
  if (role_ == Role::leader) return;
  if (p.index <= commit_index_) {
    if (incoming_) fetch_outstanding_ = false;
    incoming_.reset();
    return;
  }
  if (!incoming_ || incoming_->index != p.index) {
    if (p.offset != 0) return;
    incoming_ = IncomingSnapshot{p.index, p.total_bytes, {}, m.from};
  }
  IncomingSnapshot& in = *incoming_;
  in.total = p.total_bytes;
  in.retries = 0;
  if (role_ == Role::candidate) election_started_tick_ = ticks_;
  if (p.offset != in.data.size()) return;  // out of order: the pull below resumes
  in.data += p.data;
  if (in.data.size() > in.total || p.data.empty()) {
    incoming_.reset();
    fetch_outstanding_ = false;
    return;
  }
  if (in.data.size() < in.total) {
    send(m.from, SnapshotFetch{in.index, in.data.size()}, promised_);
    fetch_sent_tick_ = ticks_;
    fetch_outstanding_ = true;
    return;
  }
  // Complete: install it. Values accepted above it stay (P3).
  const Slot index = in.index;
  Bytes data = make_bytes(std::move(in.data));
  incoming_.reset();
  fetch_outstanding_ = false;
  ready_.install = Ready::Install{index, data};
  persist_open_ = true;
  ready_.apply.clear();  // anything queued below the snapshot is superseded
  compaction_index_ = index;
  snapshot_ = data;
  log_.erase(log_.begin(), log_.upper_bound(index));
  chosen_digest_.erase(chosen_digest_.begin(), chosen_digest_.upper_bound(index));
  commit_index_ = std::max(commit_index_, index);
  applied_index_ = std::max(applied_index_, index);
  advance_commit();
  if (role_ == Role::candidate) maybe_finish_phase1();
  if (leader_ && commit_index_ < leader_commit_) maybe_fetch(*leader_, leader_commit_);
}

void Replica::on_snapshot(Slot index, Bytes data) {
  // P6: snapshots are taken at an applied index, never above the commit index.
  assert(index <= applied_index_ && index <= commit_index_);
  if (index <= compaction_index_) return;
  compaction_index_ = index;
  snapshot_ = std::move(data);
  log_.erase(log_.begin(), log_.upper_bound(index));
  chosen_digest_.erase(chosen_digest_.begin(), chosen_digest_.upper_bound(index));
  for (auto it = votes_.begin(); it != votes_.end() && it->first <= index;)
    it = votes_.erase(it);
}

// ---------------------------------------------------------------------------
// Proposer: election and phase 1

// The election timeout ran out: ask for pre-votes (P9), or campaign at once
// with the planted bug. A candidate whose phase 1 stalled goes back to
// asking: the promise it raised for itself stays, nobody else's moves.
void Replica::start_election() {
  if (cfg_.bugs.no_pre_vote) return campaign();
  if (role_ == Role::candidate) {
    role_ = Role::follower;
    candidacy_ = Candidacy{};
  }
  prevote_ = PreVoting{};
  prevote_.active = true;
  prevote_.ballot = Ballot{std::max(max_round_seen_, promised_.round) + 1, cfg_.self};
  prevote_.grants.insert(cfg_.self);
  prevote_.started_tick = ticks_;
  reset_election_timeout();
  for (NodeId peer : cfg_.members) {
    if (peer != cfg_.self) send(peer, PreVote{commit_index_}, prevote_.ballot);
  }
}

void Replica::on_pre_vote(const Message& m, const PreVote&) {
  // Granted only by a replica that itself heard from no leader lately; a
  // leader never grants (if it lost its majority, check-quorum makes it a
  // follower first).
  const bool granted =
      role_ != Role::leader && ticks_ - last_leader_contact_tick_ >= cfg_.prevote_quiet_ticks();
  send(m.from, PreVoteReply{granted, promised_}, m.ballot);
}

void Replica::on_pre_vote_reply(const Message& m, const PreVoteReply& p) {
  note_round(p.promised);
  if (!prevote_.active || role_ == Role::leader || m.ballot != prevote_.ballot) return;
  if (!p.granted) return;
  prevote_.grants.insert(m.from);
  if (prevote_.grants.size() >= quorum()) campaign();
}

void Replica::campaign() {
  role_ = Role::candidate;
  serving_ = false;
  leader_.reset();
  // P3: a round above every round seen, including this acceptor's own
  // durable promise.
  ballot_ = Ballot{std::max(max_round_seen_, promised_.round) + 1, cfg_.self};
  max_round_seen_ = ballot_.round;
  candidacy_ = Candidacy{};
  prevote_ = PreVoting{};
  election_started_tick_ = ticks_;
  reset_election_timeout();
  fetch_outstanding_ = false;
  raise_promise(ballot_, false);
  persist_open_ = true;  // the own promise counts once durable
  persist_now_.own_promise = true;
  for (NodeId peer : cfg_.members) {
    if (peer != cfg_.self) send(peer, Phase1a{commit_index_ + 1}, ballot_);
  }
}

void Replica::on_phase1b(const Message& m, const Phase1b& p) {
  if (role_ != Role::candidate || m.ballot != ballot_) return;
  candidacy_.promises[m.from] = p;
  maybe_finish_phase1();
}

void Replica::maybe_finish_phase1() {
  if (role_ != Role::candidate || candidacy_.promises.size() < quorum()) return;
  if (!candidacy_.quorum_reached) {
    candidacy_.quorum_reached = true;
    for (const auto& [node, p] : candidacy_.promises) {
      if (p.commit_index > candidacy_.catch_up_to) {
        candidacy_.catch_up_to = p.commit_index;
        candidacy_.catch_up_from = node;
      }
    }
  }
  // P1: first catch up to the highest commit (hence compaction) index in the
  // quorum: those slots are chosen and nobody reports them as accepted.
  if (!cfg_.bugs.noop_over_compacted && commit_index_ < candidacy_.catch_up_to) {
    maybe_fetch(candidacy_.catch_up_from, candidacy_.catch_up_to);
    return;
  }
  // Become leader: re-propose, under our ballot, the highest-ballot value of
  // every slot above our commit index up to the highest slot reported.
  role_ = Role::leader;
  serving_ = false;
  leader_ = cfg_.self;
  leader_ballot_ = ballot_;
  next_seq_ = 1;
  votes_.clear();
  vote_counts_.clear();
  last_heard_tick_.clear();
  last_vote_order_.clear();
  for (const auto& [node, p] : candidacy_.promises)
    last_heard_tick_[node] = ticks_;
  election_started_tick_ = ticks_;
  std::map<Slot, SlotValue> best;
  Slot max_slot = commit_index_;
  for (const auto& [node, p] : candidacy_.promises) {
    for (const SlotValue& sv : p.accepted) {
      if (sv.slot <= commit_index_ || !sv.value) continue;
      max_slot = std::max(max_slot, sv.slot);
      auto it = best.find(sv.slot);
      if (it == best.end() ||
          (!it->second.chosen && (sv.chosen || sv.accepted > it->second.accepted))) {
        best[sv.slot] = sv;
      }
    }
  }
  for (Slot s = commit_index_ + 1; s <= max_slot; ++s) {
    auto it = best.find(s);
    propose_slot(s, it != best.end() ? it->second.value : noop_value());
  }
  barrier_slot_ = max_slot + 1;
  propose_slot(barrier_slot_, barrier_value(ballot_));
  next_slot_ = barrier_slot_ + 1;
  candidacy_ = Candidacy{};
  send_heartbeats();
}

// ---------------------------------------------------------------------------
// Proposer: phase 2

void Replica::propose_slot(Slot s, Bytes value) {
  SlotState& st = log_[s];
  if (st.chosen) {
    // Already known chosen (e.g. learned while catching up): keep its value.
    value = st.value;
  }
  st.accepted = ballot_;
  st.value = value;
  st.proposed_tick = ticks_;
  add_record(LogRecord{LogRecord::Kind::accept, s, ballot_, value});
  persist_now_.vote_ballot = ballot_;
  persist_now_.vote_slots.push_back(s);
  outgoing_2a_.push_back(SlotValue{s, ballot_, false, value});
}

Result<CommandId> Replica::propose(std::string payload) {
  if (role_ != Role::leader) {
    return error(Code::failed_precondition, "not the leader");
  }
  // P10: until its barrier is applied, this leader may still re-propose
  // commands of an earlier leadership (its own, before a restart); it takes
  // new ones only once they are all applied.
  if (!serving_ && !cfg_.bugs.propose_before_serving) {
    return error(Code::unavailable, "leader not serving yet: its barrier is not applied");
  }
  if (payload.size() > cfg_.command_bytes_max()) {
    return error(Code::invalid_argument,
                 "command of " + std::to_string(payload.size()) + " bytes; at most " +
                     std::to_string(cfg_.command_bytes_max()) + " fit a slot");
  }
  if (pending_.size() >= cfg_.pending_commands_max) {
    return error(Code::busy, "proposal queue full");
  }
  const CommandId id = cfg_.bugs.command_ids_per_process
                           ? CommandId{Ballot{0, cfg_.self}, process_seq_++}
                           : CommandId{ballot_, next_seq_++};
  pending_.push_back(Command{id, std::move(payload)});
  maybe_propose();
  return id;
}

void Replica::maybe_propose() {
  if (role_ != Role::leader) return;
  while (!pending_.empty() && next_slot_ - 1 - commit_index_ < cfg_.window_slots) {
    Value v;
    v.kind = ValueKind::commands;
    size_t bytes = kValueHeaderBytes;
    while (!pending_.empty() && v.commands.size() < cfg_.batch_commands_max) {
      // propose() refused anything that does not fit a batch alone, so the
      // first command always fits.
      const size_t sz = pending_.front().payload.size() + kCommandHeaderBytes;
      if (!v.commands.empty() && bytes + sz > cfg_.batch_bytes_max) break;
      bytes += sz;
      v.commands.push_back(std::move(pending_.front()));
      pending_.pop_front();
    }
    propose_slot(next_slot_++, make_bytes(encode_value(v)));
  }
}

// Where a new slot's 2a goes: every other acceptor, or with thrifty phase 2
// (once serving) the followers that make a majority with this leader
// fastest: heard from in the last two heartbeats, most recent voters first.
std::vector<NodeId> Replica::phase2a_targets() const {
  std::vector<NodeId> all;
  for (NodeId peer : cfg_.members) {
    if (peer != cfg_.self) all.push_back(peer);
  }
  if (!cfg_.thrifty || !serving_) return all;
  std::vector<std::pair<uint64_t, NodeId>> live;
  for (NodeId peer : all) {
    auto heard = last_heard_tick_.find(peer);
    if (heard == last_heard_tick_.end() || ticks_ - heard->second > 2 * cfg_.heartbeat_ticks) {
      continue;
    }
    auto order = last_vote_order_.find(peer);
    live.emplace_back(order == last_vote_order_.end() ? 0 : order->second, peer);
  }
  if (live.size() < quorum() - 1) return all;
  std::sort(live.begin(), live.end(), std::greater<>());
  std::vector<NodeId> out;
  for (size_t i = 0; i + 1 < quorum(); ++i)
    out.push_back(live[i].second);
  return out;
}

// 2a messages and 2b replies can be lost, and thrifty phase 2 sends a slot
// to a bare majority: re-send, to each acceptor that has not voted yet, the
// slots still open in this ballot that were proposed at least a whole tick
// ago (bounded per message).
void Replica::retransmit_phase2a() {
  std::map<NodeId, Phase2a> per_peer;
  std::map<NodeId, size_t> per_peer_bytes;
  for (auto it = log_.upper_bound(commit_index_); it != log_.end() && it->first < next_slot_;
       ++it) {
    const SlotState& st = it->second;
    if (st.chosen || st.accepted != ballot_ || st.proposed_tick + 2 > ticks_) continue;
    auto v = votes_.find(it->first);
    for (NodeId peer : cfg_.members) {
      if (peer == cfg_.self) continue;
      if (v != votes_.end() && v->second.count(peer)) continue;
      Phase2a& p = per_peer[peer];
      size_t& bytes = per_peer_bytes[peer];
      if (p.entries.size() < cfg_.catchup_entries_max &&
          (p.entries.empty() || bytes + st.value->size() <= cfg_.catchup_bytes_max)) {
        p.entries.push_back(SlotValue{it->first, ballot_, false, st.value});
        bytes += st.value->size();
      }
    }
  }
  for (auto& [peer, p] : per_peer) {
    p.commit_index = commit_index_;
    send(peer, std::move(p), ballot_);
  }
}

void Replica::on_phase2b(const Message& m, const Phase2b& p) {
  if (role_ != Role::leader || m.ballot != ballot_) return;
  last_heard_tick_[m.from] = ticks_;
  if (!p.slots.empty()) last_vote_order_[m.from] = ++vote_order_;
  if (p.compacted > commit_index_ && !serving_) {
    // An acceptor learned (by catch-up, after it promised us) that slots
    // this new leader re-proposes are chosen, and compacted them: it can
    // never vote for them, and other acceptors may be in the same state.
    // Run phase 1 again: its catch-up fetches that snapshot first (P1).
    // Only before serving: a serving leader's open slots are its own, and
    // nobody can know them chosen before it does.
    step_down(ballot_);
    return;
  }
  bool advanced = false;
  for (Slot s : p.slots) {
    if (s <= commit_index_ || s >= next_slot_) continue;
    auto it = log_.find(s);
    if (it == log_.end() || it->second.chosen || it->second.accepted != ballot_) continue;
    size_t count;
    if (cfg_.bugs.count_duplicate_2b) {
      count = ++vote_counts_[s];
    } else {
      auto& voters = votes_[s];
      voters.insert(m.from);
      count = voters.size();
    }
    if (count >= quorum()) {
      mark_chosen(s, it->second.value, false);
      votes_.erase(s);
      vote_counts_.erase(s);
      advanced = true;
    }
  }
  if (advanced) {
    advance_commit();
    maybe_propose();
  }
}

void Replica::on_nack(const Message& m, const Nack& p) {
  note_round(p.promised);
  if ((role_ == Role::leader || role_ == Role::candidate) && m.ballot == ballot_ &&
      p.promised > ballot_) {
    step_down(p.promised);
  }
}

void Replica::step_down(const Ballot& seen) {
  note_round(seen);
  if (role_ == Role::leader || role_ == Role::candidate) {
    if (role_ == Role::leader) ready_.lost_leadership = true;
    for (const PendingRead& r : reads_)
      ready_.reads_failed.push_back(r.id);
    reads_.clear();
    pending_.clear();
  }
  role_ = Role::follower;
  serving_ = false;
  votes_.clear();
  vote_counts_.clear();
  round_acks_.clear();
  candidacy_ = Candidacy{};
  outgoing_2a_.clear();
  if (leader_ == cfg_.self) leader_.reset();
  last_leader_contact_tick_ = ticks_;
  reset_election_timeout();
}

// ---------------------------------------------------------------------------
// Heartbeats, check-quorum and read-index

void Replica::send_heartbeats() {
  ++heartbeat_round_;
  round_acks_[heartbeat_round_].insert(cfg_.self);
  for (NodeId peer : cfg_.members) {
    if (peer != cfg_.self) send(peer, Heartbeat{commit_index_, heartbeat_round_}, ballot_);
  }
  // Rounds nobody will complete any more are forgotten.
  while (round_acks_.size() > 64)
    round_acks_.erase(round_acks_.begin());
}

void Replica::on_heartbeat(const Message& m, const Heartbeat& p) {
  if (m.ballot < promised_) {
    send(m.from, Nack{promised_}, m.ballot);
    return;
  }
  if (role_ != Role::follower && m.ballot > ballot_) step_down(m.ballot);
  if (role_ != Role::follower) return;
  follow(m.ballot, m.from);
  send(m.from, HeartbeatAck{p.round, commit_index_}, m.ballot);
  learn_commit(p.commit_index, m.ballot, m.from);
}

void Replica::on_heartbeat_ack(const Message& m, const HeartbeatAck& p) {
  if (role_ != Role::leader || m.ballot != ballot_) return;
  last_heard_tick_[m.from] = ticks_;
  auto it = round_acks_.find(p.round);
  if (it == round_acks_.end()) return;
  it->second.insert(m.from);
  if (it->second.size() < quorum()) return;
  // A majority still follows this ballot as of round p.round: every read
  // registered before that round was sent can be served at its index.
  for (auto r = reads_.begin(); r != reads_.end();) {
    if (r->round <= p.round) {
      ready_.reads_ready.emplace_back(r->id, r->index);
      r = reads_.erase(r);
    } else {
      ++r;
    }
  }
}

Status Replica::read_index(uint64_t id) {
  if (role_ != Role::leader || !serving_) {
    return error(Code::failed_precondition, "not the serving leader");
  }
  send_heartbeats();
  reads_.push_back(PendingRead{id, commit_index_, heartbeat_round_});
  return ok_status();
}

// ---------------------------------------------------------------------------
// Status and invariants

ReplicaStatus Replica::status() const {
  ReplicaStatus s;
  s.role = role_;
  s.promised = promised_;
  s.ballot = ballot_;
  s.leader = leader_;
  s.serving = serving_;
  s.commit_index = commit_index_;
  s.applied_index = applied_index_;
  s.compaction_index = compaction_index_;
  s.last_slot = log_.empty() ? compaction_index_ : log_.rbegin()->first;
  s.pending_commands = pending_.size();
  s.pre_voting = prevote_.active;
  return s;
}

Status Replica::check_invariants() {
  auto fail = [&](const std::string& what) {
    return error(Code::internal, "replica " + std::to_string(cfg_.self) + ": " + what);
  };
  if (promised_ < last_promised_seen_) return fail("promise went back");
  if (applied_index_ > commit_index_) return fail("applied beyond the commit index");
  if (compaction_index_ > commit_index_) return fail("compacted beyond the commit index");
  // Incremental: the slots that became committed since the last check.
  for (Slot s = std::max(checked_commit_, compaction_index_) + 1; s <= commit_index_; ++s) {
    auto it = log_.find(s);
    if (it == log_.end() || !it->second.chosen || !it->second.value) {
      return fail("slot " + std::to_string(s) + " below the commit index is not chosen");
    }
    auto d = chosen_digest_.find(s);
    if (d != chosen_digest_.end() && d->second != value_digest(*it->second.value)) {
      return fail("chosen value of slot " + std::to_string(s) + " changed");
    }
  }
  checked_commit_ = commit_index_;
  if (role_ == Role::leader) {
    if (ballot_ != promised_ && ballot_ < promised_) return fail("leader below its promise");
    if (next_slot_ <= commit_index_) return fail("next slot not above the commit index");
  }
  last_promised_seen_ = promised_;
  return ok_status();
}

}  // namespace dtx::consensus
