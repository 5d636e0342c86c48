#include "common/clock.h"

#include <cassert>
#include <chrono>

namespace dtx {

int64_t SteadyClock::now_ns() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void ManualClock::advance_ns(int64_t delta_ns) {
  assert(delta_ns >= 0 && "time never goes back");
  now_ns_.fetch_add(delta_ns, std::memory_order_acq_rel);
}

TimerId TimerTable::add(int64_t deadline_ns, std::function<void()> fn) {
  const TimerId id = next_id_++;
  pending_.emplace(std::make_pair(deadline_ns, id), std::move(fn));
  deadline_of_.emplace(id, deadline_ns);
  return id;
}

bool TimerTable::cancel(TimerId id) {
  auto it = deadline_of_.find(id);
  if (it == deadline_of_.end()) return false;
  pending_.erase({it->second, id});
  deadline_of_.erase(it);
  return true;
}

std::function<void()> TimerTable::pop_first() {
  auto first = pending_.begin();
  std::function<void()> fn = std::move(first->second);
  deadline_of_.erase(first->first.second);
  pending_.erase(first);
  return fn;
}

void TimerTable::clear() {
  pending_.clear();
  deadline_of_.clear();
}

ThreadTimer::ThreadTimer() : thread_([this] { run(); }) {}

ThreadTimer::~ThreadTimer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    table_.clear();
  }
  cv_.notify_all();
  thread_.join();
}

TimerId ThreadTimer::arm(int64_t delay_ns, std::function<void()> fn) {
  const int64_t deadline = clock_.now_ns() + (delay_ns < 0 ? 0 : delay_ns);
  TimerId id;
  {
    std::lock_guard lock(mu_);
    id = table_.add(deadline, std::move(fn));
  }
  cv_.notify_all();
  return id;
}

bool ThreadTimer::cancel(TimerId id) {
  std::lock_guard lock(mu_);
  return table_.cancel(id);
}

void ThreadTimer::run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    if (table_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const int64_t wait_ns = table_.next_deadline_ns() - clock_.now_ns();
    if (wait_ns > 0) {
      cv_.wait_for(lock, std::chrono::nanoseconds(wait_ns));
      continue;
    }
    std::function<void()> fn = table_.pop_first();
    lock.unlock();
    fn();
    lock.lock();
  }
}

TimerId ManualTimer::arm(int64_t delay_ns, std::function<void()> fn) {
  std::lock_guard lock(mu_);
  return table_.add(clock_.now_ns() + (delay_ns < 0 ? 0 : delay_ns), std::move(fn));
}

bool ManualTimer::cancel(TimerId id) {
  std::lock_guard lock(mu_);
  return table_.cancel(id);
}

void ManualTimer::advance_ns(int64_t delta_ns) {
  assert(delta_ns >= 0);
  const int64_t target = clock_.now_ns() + delta_ns;
  for (;;) {
    std::function<void()> fn;
    {
      std::lock_guard lock(mu_);
      if (table_.empty() || table_.next_deadline_ns() > target) break;
      const int64_t deadline = table_.next_deadline_ns();
      if (deadline > clock_.now_ns()) clock_.advance_ns(deadline - clock_.now_ns());
      fn = table_.pop_first();
    }
    fn();
  }
  if (target > clock_.now_ns()) clock_.advance_ns(target - clock_.now_ns());
}

bool ManualTimer::fire_next() {
  std::function<void()> fn;
  {
    std::lock_guard lock(mu_);
    if (table_.empty()) return false;
    const int64_t deadline = table_.next_deadline_ns();
    if (deadline > clock_.now_ns()) clock_.advance_ns(deadline - clock_.now_ns());
    fn = table_.pop_first();
  }
  fn();
  return true;
}

size_t ManualTimer::pending() const {
  std::lock_guard lock(mu_);
  return table_.size();
}

}  // namespace dtx
