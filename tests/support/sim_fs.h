// SimFileSystem: an in-memory FileSystem (common/fs.h) that keeps what is
// durable apart from what is only written, for tests and the deterministic
// simulator.
//
// Model
//   - Each file has its current bytes and its durable bytes. write_at changes
//     the current bytes and marks their 4 KiB pages dirty; datasync()/sync()
//     make the file's current bytes durable.
//   - Directory entries (create, rename, remove) are current until
//     sync_dir() of their directory makes them durable. make_dirs is durable
//     at once.
//   - crash() is a power cut: every open handle and lock becomes invalid;
//     each file falls back to its durable bytes plus, depending on the mode,
//     none or a random subset of its dirty pages; each unsynced directory
//     change is lost, or kept at random. The machine then stays down (every
//     operation fails, as for a process that no longer runs) until
//     restart(): threads of the crashed process cannot touch the disk.
//   - Faults: short writes with a probability, failed syncs (the dirty pages
//     of that file are then dropped from the cache's dirty set and will never
//     become durable, as on Linux), and a hook run at the start of every sync.
// Deterministic for a seed. Thread-safe (one mutex).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/fs.h"

namespace dtx::sim {

class SimFileSystem final : public FileSystem {
 public:
  static constexpr size_t kPageBytes = 4096;

  explicit SimFileSystem(uint64_t seed = 1);
  ~SimFileSystem() override;

  Result<std::unique_ptr<File>> open(const std::string& path, OpenMode mode) override;
  Status remove(const std::string& path) override;
  Status rename(const std::string& from, const std::string& to) override;
  Status sync_dir(const std::string& dir) override;
  Result<std::vector<std::string>> list(const std::string& dir) override;
  Status make_dirs(const std::string& dir) override;
  bool exists(const std::string& path) override;
  Result<std::unique_ptr<FileLock>> lock(const std::string& path) override;

  // ---- faults
  void set_short_write_probability(double p);
  // The next n calls of datasync()/sync() on any file fail with io_error.
  void fail_next_syncs(int n);
  // Runs at the start of every datasync()/sync(), outside the lock, with the
  // file's path. Lets a test hold a sync back.
  void set_before_sync(std::function<void(const std::string&)> hook);

  enum class PageLoss { all_unsynced, random_unsynced, none };
  enum class DirLoss { all_unsynced, random_unsynced, none };
  void crash(PageLoss pages, DirLoss dirs);
  void restart();

  // ---- inspection
  // The bytes a crash that loses every unsynced page would leave.
  std::vector<uint8_t> durable_bytes(const std::string& path);
  // Current bytes (what a read sees now).
  std::vector<uint8_t> current_bytes(const std::string& path);
  // Overwrites bytes in place, durably (for planting corruption).
  void poke(const std::string& path, uint64_t offset, std::span<const uint8_t> bytes);
  // Truncates current and durable bytes (for planting torn tails).
  void cut(const std::string& path, uint64_t size);
  uint64_t syncs() const;
  uint64_t crashes() const;

 private:
  struct Inode {
    std::vector<uint8_t> data;
    std::vector<uint8_t> durable;
    std::set<uint64_t> dirty_pages;
  };
  class SimFile;
  class SimLock;

  static std::string parent_of(const std::string& path);
  Status check_epoch(uint64_t epoch) const;  // requires mu_
  Status check_up() const;                   // requires mu_

  mutable std::mutex mu_;
  std::mt19937_64 rng_;
  uint64_t epoch_ = 0;  // bumped by crash(); stale handles fail
  bool down_ = false;   // between crash() and restart()
  std::map<std::string, std::shared_ptr<Inode>> current_;
  std::map<std::string, std::shared_ptr<Inode>> durable_;
  std::set<std::string> dirs_;
  std::set<std::string> locks_;
  double short_write_p_ = 0;
  int failing_syncs_ = 0;
  std::function<void(const std::string&)> before_sync_;
  uint64_t syncs_ = 0;
  uint64_t crashes_ = 0;
};

}  // namespace dtx::sim
