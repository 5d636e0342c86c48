#include "consensus/executor.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <utility>

namespace dtx::consensus {

const char* outcome_name(ProposeResult::Outcome o) {
  switch (o) {
    case ProposeResult::Outcome::applied:
      return "applied";
    case ProposeResult::Outcome::unknown:
      return "unknown";
    case ProposeResult::Outcome::not_leader:
      return "not_leader";
    case ProposeResult::Outcome::not_serving:
      return "not_serving";
    case ProposeResult::Outcome::too_large:
      return "too_large";
    case ProposeResult::Outcome::busy:
      return "busy";
    case ProposeResult::Outcome::stopped:
      return "stopped";
  }
  return "?";
}

std::string AppliedEntry::describe() const {
  std::string s = "slot " + std::to_string(slot) + ": ";
  if (kind == Kind::term_start) return s + "term start " + ballot.describe();
  return s + "command " + (command ? command->id.describe() : std::string("?"));
}

Executor::Executor(std::unique_ptr<Replica> core, ExecutorIo& io, ExecutorCallbacks callbacks,
                   Slot applied_index)
    : core_(std::move(core)), io_(io), cb_(std::move(callbacks)), applied_(applied_index) {}

Executor::~Executor() = default;

void Executor::process() {
  drain();
}

void Executor::tick() {
  if (stopped_) return;
  core_->tick();
  drain();
}

void Executor::step(const Message& m) {
  if (stopped_) return;
  core_->step(m);
  drain();
}

void Executor::step_all(const std::vector<Message>& messages) {
  if (stopped_) return;
  for (const Message& m : messages)
    core_->step(m);
  drain();
}

void Executor::propose(std::string payload, ProposeCallback done) {
  if (stopped_) return done(ProposeResult{ProposeResult::Outcome::stopped, 0, {}, std::nullopt});
  auto id = core_->propose(std::move(payload));
  if (!id.ok()) {
    ProposeResult r;
    switch (id.status().code()) {
      case Code::busy:
        r.outcome = ProposeResult::Outcome::busy;
        break;
      case Code::unavailable:
        r.outcome = ProposeResult::Outcome::not_serving;
        break;
      case Code::invalid_argument:
        r.outcome = ProposeResult::Outcome::too_large;
        break;
      default:
        r.outcome = ProposeResult::Outcome::not_leader;
        r.leader = core_->status().leader;
        if (r.leader == core_->config().self) r.leader.reset();
        break;
    }
    return done(r);
  }
  proposals_.emplace(*id, std::move(done));
  drain();
}

void Executor::read_index(ReadCallback done) {
  if (stopped_) return done(error(Code::closed, "replica stopped"));
  const uint64_t id = next_read_id_++;
  Status s = core_->read_index(id);
  if (!s.ok()) return done(error(Code::failed_precondition, s.message()));
  reads_.emplace(id, std::move(done));
  drain();
}

void Executor::wait_applied(Slot slot, WaitCallback done) {
  if (stopped_) return done(error(Code::closed, "replica stopped"));
  if (applied_ >= slot) return done(ok_status());
  waiters_.emplace(slot, std::move(done));
}

void Executor::on_persisted(uint64_t persist_id) {
  if (stopped_) return;
  durable_id_ = std::max(durable_id_, persist_id);
  drain();
}

void Executor::on_snapshot(Slot index, Bytes data) {
  if (stopped_) return;
  core_->on_snapshot(index, std::move(data));
  drain();
}

void Executor::stop() {
  if (stopped_) return;
  stopped_ = true;
  in_flight_.clear();
  fail_proposals(ProposeResult::Outcome::stopped);
  auto reads = std::move(reads_);
  reads_.clear();
  for (auto& [id, done] : reads)
    done(error(Code::closed, "replica stopped"));
  auto waiters = std::move(waiters_);
  waiters_.clear();
  for (auto& [slot, done] : waiters)
    done(error(Code::closed, "replica stopped"));
}

// Everything the core has ready, and every persist reported durable, until
// nothing is left. A callback that calls back in (or a persist reported
// durable from inside ExecutorIo::persist) lands here again and returns at
// once: the loop below picks its work up.
void Executor::drain() {
  if (draining_) return;
  draining_ = true;
  while (!stopped_) {
    if (!in_flight_.empty() && in_flight_.front().id <= durable_id_) {
      deliver_persisted();
      continue;
    }
    if (!core_->has_ready()) break;
    handle(core_->take_ready());
  }
  draining_ = false;
}

void Executor::deliver_persisted() {
  while (!stopped_ && !in_flight_.empty() && in_flight_.front().id <= durable_id_) {
    InFlight f = std::move(in_flight_.front());
    in_flight_.pop_front();
    for (const Message& m : f.after)
      io_.send(m);
    core_->on_persisted(f.id);
  }
}

void Executor::handle(Ready r) {
  // 1. A snapshot from a peer replaces the state machine before anything
  //    above it is applied.
  if (r.install) {
    if (cb_.restore) cb_.restore(r.install->index, *r.install->data);
    applied_ = r.install->index;
  }
  // 2. Chosen values, in slot order.
  for (const Ready::Applied& a : r.apply) {
    if (stopped_) return;
    apply_value(a.slot, a.value);
  }
  release_waiters();
  // 3. Leadership and reads.
  if (r.serving && cb_.on_leader) cb_.on_leader(r.serving->first, r.serving->second);
  if (r.lost_leadership) {
    fail_proposals(ProposeResult::Outcome::unknown);
    if (cb_.on_leadership_lost) cb_.on_leadership_lost();
  }
  for (uint64_t id : r.reads_failed) {
    auto it = reads_.find(id);
    if (it == reads_.end()) continue;
    ReadCallback done = std::move(it->second);
    reads_.erase(it);
    done(error(Code::unavailable, "leadership lost before the read was confirmed"));
  }
  for (const auto& [id, index] : r.reads_ready) {
    auto it = reads_.find(id);
    if (it == reads_.end()) continue;
    ReadCallback done = std::move(it->second);
    reads_.erase(it);
    const Slot at = index;
    if (applied_ >= at) {
      done(at);
    } else {
      waiters_.emplace(at, [done = std::move(done), at](Status s) {
        if (s.ok()) {
          done(at);
        } else {
          done(s);
        }
      });
    }
  }
  if (stopped_) return;
  // 4. Messages that need no persist.
  for (const Message& m : r.send)
    io_.send(m);
  // 5. The persist; what waits for it leaves once it is durable.
  if (r.persist_id != 0) {
    in_flight_.push_back(InFlight{r.persist_id, std::move(r.send_after_persist)});
    io_.persist(r);
  } else {
    for (const Message& m : r.send_after_persist)
      io_.send(m);
  }
}

void Executor::apply_value(Slot slot, const Bytes& value) {
  Value v;
  if (!decode_value(*value, &v)) {
    // Only well-formed values are ever proposed; a chosen value that does
    // not decode is corruption the checksums missed.
    spdlog::critical("paxos replica {}: chosen value at slot {} does not decode",
                     core_->config().self, slot);
    spdlog::default_logger()->flush();
    std::abort();
  }
  if (cb_.on_applied_value) cb_.on_applied_value(slot, value);
  switch (v.kind) {
    case ValueKind::noop:
      break;
    case ValueKind::barrier: {
      AppliedEntry e;
      e.kind = AppliedEntry::Kind::term_start;
      e.slot = slot;
      e.ballot = v.barrier;
      if (cb_.apply) cb_.apply(e);
      break;
    }
    case ValueKind::commands:
      for (const Command& c : v.commands) {
        AppliedEntry e;
        e.kind = AppliedEntry::Kind::command;
        e.slot = slot;
        e.command = &c;
        if (cb_.apply) cb_.apply(e);
        if (stopped_) return;
        auto p = proposals_.find(c.id);
        if (p != proposals_.end()) {
          ProposeCallback done = std::move(p->second);
          proposals_.erase(p);
          done(ProposeResult{ProposeResult::Outcome::applied, slot, c.id, std::nullopt});
        }
      }
      break;
  }
  applied_ = slot;
}

void Executor::release_waiters() {
  while (!stopped_ && !waiters_.empty() && waiters_.begin()->first <= applied_) {
    WaitCallback done = std::move(waiters_.begin()->second);
    waiters_.erase(waiters_.begin());
    done(ok_status());
  }
}

void Executor::fail_proposals(ProposeResult::Outcome outcome) {
  auto proposals = std::move(proposals_);
  proposals_.clear();
  for (auto& [id, done] : proposals)
    done(ProposeResult{outcome, 0, id, std::nullopt});
}

}  // namespace dtx::consensus
