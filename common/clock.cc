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

ThreadTimer::ThreadTimer() : thread_([this] { run(); }) {}

ThreadTimer::~ThreadTimer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    pending_.clear();
    deadline_of_.clear();
  }
  cv_.notify_all();
  thread_.join();
}

TimerId ThreadTimer::arm(int64_t delay_ns, std::function<void()> fn) {
  int64_t deadline = clock_.now_ns() + (delay_ns < 0 ? 0 : delay_ns);
  TimerId id;
  {
    std::lock_guard lock(mu_);
    id = next_id_++;
    pending_.emplace(std::make_pair(deadline, id), std::move(fn));
    deadline_of_.emplace(id, deadline);
  }
  cv_.notify_all();
  return id;
}

bool ThreadTimer::cancel(TimerId id) {
  std::lock_guard lock(mu_);
  auto it = deadline_of_.find(id);
  if (it == deadline_of_.end()) return false;
  pending_.erase({it->second, id});
  deadline_of_.erase(it);
  return true;
}

void ThreadTimer::run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    if (pending_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto first = pending_.begin();
    int64_t now = clock_.now_ns();
    if (first->first.first > now) {
      cv_.wait_for(lock, std::chrono::nanoseconds(first->first.first - now));
      continue;
    }
    std::function<void()> fn = std::move(first->second);
    deadline_of_.erase(first->first.second);
    pending_.erase(first);
    lock.unlock();
    fn();
    lock.lock();
  }
}

TimerId ManualTimer::arm(int64_t delay_ns, std::function<void()> fn) {
  std::lock_guard lock(mu_);
  int64_t deadline = clock_.now_ns() + (delay_ns < 0 ? 0 : delay_ns);
  TimerId id = next_id_++;
  pending_.emplace(std::make_pair(deadline, id), std::move(fn));
  deadline_of_.emplace(id, deadline);
  return id;
}

bool ManualTimer::cancel(TimerId id) {
  std::lock_guard lock(mu_);
  auto it = deadline_of_.find(id);
  if (it == deadline_of_.end()) return false;
  pending_.erase({it->second, id});
  deadline_of_.erase(it);
  return true;
}

void ManualTimer::advance_ns(int64_t delta_ns) {
  assert(delta_ns >= 0);
  const int64_t target = clock_.now_ns() + delta_ns;
  for (;;) {
    std::function<void()> fn;
    {
      std::lock_guard lock(mu_);
      if (pending_.empty() || pending_.begin()->first.first > target) break;
      auto first = pending_.begin();
      int64_t deadline = first->first.first;
      if (deadline > clock_.now_ns()) clock_.advance_ns(deadline - clock_.now_ns());
      fn = std::move(first->second);
      deadline_of_.erase(first->first.second);
      pending_.erase(first);
    }
    fn();
  }
  if (target > clock_.now_ns()) clock_.advance_ns(target - clock_.now_ns());
}

bool ManualTimer::fire_next() {
  std::function<void()> fn;
  {
    std::lock_guard lock(mu_);
    if (pending_.empty()) return false;
    auto first = pending_.begin();
    int64_t deadline = first->first.first;
    if (deadline > clock_.now_ns()) clock_.advance_ns(deadline - clock_.now_ns());
    fn = std::move(first->second);
    deadline_of_.erase(first->first.second);
    pending_.erase(first);
  }
  fn();
  return true;
}

size_t ManualTimer::pending() const {
  std::lock_guard lock(mu_);
  return pending_.size();
}

}  // namespace dtx
