// EventQueue: simulated time and the events that happen in it. Time is in
// microseconds from 0; an event is a closure run at its time, events at the
// same time in the order they were scheduled. Nothing runs on its own: the
// simulation's main loop calls run_next() or run_until().
//
// Use:
//   EventQueue q;
//   q.after(10'000, [&] { node.tick(); }, /*tag=*/1);
//   while (q.run_next(end_us)) check_invariants();
// An event for something that may be gone by then (a crashed node) captures
// a token and checks it when it runs (see SimPaxosNode's incarnations).
//
// The trace hash mixes every event's time and tag, plus whatever the
// simulation mixes in itself (mix()): the same seed must give the same hash,
// which is how a simulation shows it replays exactly.
#pragma once

#include <cstdint>
#include <functional>
#include <queue>
#include <vector>

namespace dtx::sim {

using SimTime = int64_t;  // microseconds since the start of the run
inline constexpr SimTime kSimMs = 1000;

class EventQueue {
 public:
  SimTime now() const { return now_; }
  // Runs fn at time t (not before now()); `tag` goes into the trace hash.
  void at(SimTime t, std::function<void()> fn, uint64_t tag = 0);
  void after(SimTime delay, std::function<void()> fn, uint64_t tag = 0) {
    at(now_ + delay, std::move(fn), tag);
  }
  // Runs the earliest event if it is due at or before `limit`; false if there
  // is none (time then stays where it was).
  bool run_next(SimTime limit);
  // Runs every event up to `t` and leaves the clock at t.
  void run_until(SimTime t);
  bool empty() const { return queue_.empty(); }
  size_t pending() const { return queue_.size(); }
  uint64_t events_run() const { return events_run_; }

  void mix(uint64_t v) { hash_ ^= v + 0x9e3779b97f4a7c15ull + (hash_ << 6) + (hash_ >> 2); }
  uint64_t trace_hash() const { return hash_; }

 private:
  struct Event {
    SimTime at = 0;
    uint64_t seq = 0;
    uint64_t tag = 0;
    std::function<void()> fn;
    bool operator>(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> queue_;
  SimTime now_ = 0;
  uint64_t next_seq_ = 0;
  uint64_t events_run_ = 0;
  uint64_t hash_ = 0xcbf29ce484222325ull;
};

}  // namespace dtx::sim
