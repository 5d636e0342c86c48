// Child processes for integration tests: real binaries, real sockets.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace dtx::testing {

class Process {
 public:
  // Starts `path` with `args`; stdout and stderr go to `log_path`.
  static Process spawn(const std::string& path, const std::vector<std::string>& args,
                       const std::string& log_path);
  Process() = default;
  Process(Process&& o) noexcept;
  Process& operator=(Process&& o) noexcept;
  ~Process();  // SIGKILL and reap if still running

  pid_t pid() const { return pid_; }
  bool running();
  void signal(int sig);
  // Waits for the exit; the wait status, or nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  void kill_and_wait();  // SIGKILL
  std::string log() const;

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string log_path_;
};

// A TCP port nobody listens on right now (bound and released).
uint16_t free_port();
// Directory of the test binaries (build/bin), from /proc/self/exe.
std::string bin_dir();

}  // namespace dtx::testing
