// Private to consensus/: the Asio behind EventLoop.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <optional>
#include <thread>

#include "consensus/event_loop.h"

namespace dtx::consensus {

struct EventLoop::Impl {
  boost::asio::io_context io{1};
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work{
      boost::asio::make_work_guard(io)};
  std::thread::id loop_thread;
};

inline boost::asio::io_context& io_of(EventLoop& loop) {
  return loop.impl().io;
}

}  // namespace dtx::consensus
