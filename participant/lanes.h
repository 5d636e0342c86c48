// LanePool: lanes of worker threads, each with a bounded queue.
//
// A job goes to one lane and runs on one of that lane's workers, in the
// order queued within the lane. A full lane refuses (submit() returns
// false: the caller answers 503, never waits), so a slow database fills
// queues instead of memory. Lanes exist so that work that may wait long
// (a branch's first exec waiting for a database session) never delays
// work that must not (a decision for a branch that holds one).
//
// A job that throws is logged and dropped; the worker goes on.
//
// Threading: submit() from any thread, also from a job. stop() stops
// accepting, lets the workers finish what is queued, and joins them; not
// from a job. The pool's lock is a leaf: no job runs under it.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace dtx::participant {

class LanePool {
 public:
  // `lanes` lanes of `workers` threads each; at most `queue_max` jobs
  // waiting per lane. `name` goes into log lines.
  LanePool(size_t lanes, size_t workers, size_t queue_max, std::string name);
  ~LanePool();  // stop()
  LanePool(const LanePool&) = delete;
  LanePool& operator=(const LanePool&) = delete;

  // Queues job on `lane`; false if that lane is full or the pool stopping.
  bool submit(size_t lane, std::function<void()> job);
  void stop();
  // Jobs waiting (not running) on `lane`.
  size_t queued(size_t lane) const;
  size_t lanes() const { return queues_.size(); }

 private:
  void worker_loop(size_t lane);

  const size_t queue_max_;
  const std::string name_;
  mutable std::mutex mu_;
  std::vector<std::deque<std::function<void()>>> queues_;
  std::vector<std::condition_variable> cvs_;  // one per lane: a job wakes one worker of its lane
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

}  // namespace dtx::participant
