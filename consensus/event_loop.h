// EventLoop: one thread running an Asio io_context, on which a replica's
// node, transport and timers live. Asio stays out of this header: only
// sources that include consensus/asio_internal.h see it.
#pragma once

#include <functional>
#include <memory>
#include <thread>

namespace dtx::consensus {

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();  // stops and joins
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Runs fn on the loop thread, after what is already queued. Thread-safe.
  void post(std::function<void()> fn);
  void start();  // starts the thread
  void stop();   // stops the loop and joins the thread; idempotent
  bool in_loop() const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

}  // namespace dtx::consensus
