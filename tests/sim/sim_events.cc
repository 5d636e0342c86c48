#include "tests/sim/sim_events.h"

#include <algorithm>

namespace dtx::sim {

void EventQueue::at(SimTime t, std::function<void()> fn, uint64_t tag) {
  Event e;
  e.at = std::max(t, now_);
  e.seq = next_seq_++;
  e.tag = tag;
  e.fn = std::move(fn);
  queue_.push(std::move(e));
}

bool EventQueue::run_next(SimTime limit) {
  if (queue_.empty() || queue_.top().at > limit) return false;
  // priority_queue::top is const: move the closure out through a copy of
  // the small fields and a const_cast of the function (it is popped next).
  Event& top = const_cast<Event&>(queue_.top());
  std::function<void()> fn = std::move(top.fn);
  const SimTime at = top.at;
  const uint64_t tag = top.tag;
  queue_.pop();
  now_ = at;
  events_run_ += 1;
  mix(static_cast<uint64_t>(at) * 1315423911u + tag);
  fn();
  return true;
}

void EventQueue::run_until(SimTime t) {
  while (run_next(t)) {
  }
  now_ = std::max(now_, t);
}

}  // namespace dtx::sim
