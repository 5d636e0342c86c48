#include "participant/lanes.h"

#include <spdlog/spdlog.h>

#include "common/assert.h"

namespace dtx::participant {

LanePool::LanePool(size_t lanes, size_t workers, size_t queue_max, std::string name)
    : queue_max_(queue_max), name_(std::move(name)), queues_(lanes), cvs_(lanes) {
  DTX_ASSERT(lanes > 0 && workers > 0 && queue_max > 0);
  for (size_t w = 0; w < workers; ++w) {
    for (size_t lane = 0; lane < lanes; ++lane)
      workers_.emplace_back([this, lane] { worker_loop(lane); });
  }
}

LanePool::~LanePool() {
  stop();
}

bool LanePool::submit(size_t lane, std::function<void()> job) {
  DTX_ASSERT(lane < queues_.size());
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queues_[lane].size() >= queue_max_) return false;
    queues_[lane].push_back(std::move(job));
  }
  cvs_[lane].notify_one();
  return true;
}

void LanePool::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && workers_.empty()) return;
    stopping_ = true;
  }
  for (auto& cv : cvs_)
    cv.notify_all();
  for (auto& w : workers_) {
    if (w.joinable()) w.join();
  }
  std::lock_guard lock(mu_);
  workers_.clear();
}

size_t LanePool::queued(size_t lane) const {
  std::lock_guard lock(mu_);
  return queues_.at(lane).size();
}

void LanePool::worker_loop(size_t lane) {
  auto& q = queues_[lane];
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      cvs_[lane].wait(lock, [&] { return stopping_ || !q.empty(); });
      if (q.empty()) return;
      job = std::move(q.front());
      q.pop_front();
    }
    try {
      job();
    } catch (const std::exception& e) {
      spdlog::error("{}: a queued job failed: {}", name_, e.what());
    } catch (...) {
      spdlog::error("{}: a queued job failed", name_);
    }
  }
}

}  // namespace dtx::participant
