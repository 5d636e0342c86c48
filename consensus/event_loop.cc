#include "consensus/event_loop.h"

#include <boost/asio/post.hpp>

#include "consensus/asio_internal.h"

namespace dtx::consensus {

EventLoop::EventLoop() : impl_(std::make_unique<Impl>()) {}

EventLoop::~EventLoop() {
  stop();
}

void EventLoop::post(std::function<void()> fn) {
  boost::asio::post(impl_->io, std::move(fn));
}

void EventLoop::start() {
  thread_ = std::thread([this] {
    impl_->loop_thread = std::this_thread::get_id();
    impl_->io.run();
  });
}

void EventLoop::stop() {
  impl_->work.reset();
  impl_->io.stop();
  if (thread_.joinable() && std::this_thread::get_id() != thread_.get_id()) thread_.join();
}

bool EventLoop::in_loop() const {
  return std::this_thread::get_id() == impl_->loop_thread;
}

}  // namespace dtx::consensus
