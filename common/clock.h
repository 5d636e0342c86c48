// Clock and Timer: where time comes from.
//
// Pure cores never read a clock; shells do, through these interfaces, so a
// test or the simulator can substitute a ManualClock and drive time by hand.
// Units: nanoseconds on a monotonic scale with an arbitrary origin. Wall
// clock time (for human-readable timestamps) is a separate concern and is
// never used to order events.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

namespace dtx {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic nanoseconds. Never goes back.
  virtual int64_t now_ns() const = 0;
  int64_t now_ms() const { return now_ns() / 1'000'000; }
};

// std::chrono::steady_clock.
class SteadyClock final : public Clock {
 public:
  int64_t now_ns() const override;
};

// Time that moves only when told. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ns = 0) : now_ns_(start_ns) {}
  int64_t now_ns() const override { return now_ns_.load(std::memory_order_acquire); }
  // Moves time forward by delta_ns (>= 0).
  void advance_ns(int64_t delta_ns);

 private:
  std::atomic<int64_t> now_ns_;
};

using TimerId = uint64_t;

// Pending callbacks ordered by (deadline, id); ids grow, so ties keep arm
// order. Not thread-safe: the timers below guard it with their mutex.
class TimerTable {
 public:
  TimerId add(int64_t deadline_ns, std::function<void()> fn);
  bool cancel(TimerId id);
  bool empty() const { return pending_.empty(); }
  size_t size() const { return pending_.size(); }
  int64_t next_deadline_ns() const { return pending_.begin()->first.first; }
  // Removes and returns the earliest callback.
  std::function<void()> pop_first();
  void clear();

 private:
  std::map<std::pair<int64_t, TimerId>, std::function<void()>> pending_;
  std::map<TimerId, int64_t> deadline_of_;
  TimerId next_id_ = 1;
};

// Runs callbacks after a delay. Threading: arm and cancel may be called from
// any thread, including from inside a callback.
class Timer {
 public:
  virtual ~Timer() = default;
  virtual const Clock& clock() const = 0;
  // Runs fn once, no earlier than delay_ns from now. Returns an id for cancel.
  virtual TimerId arm(int64_t delay_ns, std::function<void()> fn) = 0;
  // Returns true if the timer was pending and will now never run.
  virtual bool cancel(TimerId id) = 0;
};

// A real timer: one thread sleeping until the earliest deadline on a
// SteadyClock; callbacks run on that thread, one at a time, in deadline order.
class ThreadTimer final : public Timer {
 public:
  ThreadTimer();
  ~ThreadTimer() override;  // cancels everything pending and joins the thread
  ThreadTimer(const ThreadTimer&) = delete;
  ThreadTimer& operator=(const ThreadTimer&) = delete;

  const Clock& clock() const override { return clock_; }
  TimerId arm(int64_t delay_ns, std::function<void()> fn) override;
  bool cancel(TimerId id) override;

 private:
  void run();

  SteadyClock clock_;
  std::mutex mu_;
  std::condition_variable cv_;
  TimerTable table_;
  bool stop_ = false;
  std::thread thread_;
};

// A timer on a ManualClock: advance() moves the clock and runs every callback
// that falls due, in deadline order (ties in arm order), on the caller's
// thread. A callback that arms a timer due within the advanced span runs in
// the same advance().
class ManualTimer final : public Timer {
 public:
  explicit ManualTimer(ManualClock& clock) : clock_(clock) {}

  const Clock& clock() const override { return clock_; }
  TimerId arm(int64_t delay_ns, std::function<void()> fn) override;
  bool cancel(TimerId id) override;

  // Advances the clock by delta_ns, firing due timers at their deadlines.
  void advance_ns(int64_t delta_ns);
  // Advances to the next deadline and fires it; false if none is pending.
  bool fire_next();
  size_t pending() const;

 private:
  ManualClock& clock_;
  mutable std::mutex mu_;
  TimerTable table_;
};

}  // namespace dtx
