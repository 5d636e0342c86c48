#include "tests/support/sim_fs.h"

#include <algorithm>
#include <cstring>

namespace dtx::sim {

class SimFileSystem::SimFile final : public File {
 public:
  SimFile(SimFileSystem& fs, std::string path, std::shared_ptr<Inode> inode, bool writable,
          uint64_t epoch)
      : fs_(fs),
        path_(std::move(path)),
        inode_(std::move(inode)),
        writable_(writable),
        epoch_(epoch) {}

  Result<size_t> write_at(uint64_t offset, std::span<const uint8_t> data) override {
    std::lock_guard lock(fs_.mu_);
    DTX_RETURN_IF_ERROR(fs_.check_epoch(epoch_));
    if (!writable_) return error(Code::io_error, "write " + path_ + ": opened read-only");
    size_t n = data.size();
    if (n > 1 && fs_.short_write_p_ > 0 &&
        std::uniform_real_distribution<double>(0, 1)(fs_.rng_) < fs_.short_write_p_) {
      n = std::uniform_int_distribution<size_t>(1, n - 1)(fs_.rng_);
    }
    Inode& in = *inode_;
    if (in.data.size() < offset + n) in.data.resize(offset + n, 0);
    if (n > 0) std::memcpy(in.data.data() + offset, data.data(), n);
    for (uint64_t p = offset / kPageBytes; p * kPageBytes < offset + n; ++p)
      in.dirty_pages.insert(p);
    return n;
  }

  Result<size_t> read_at(uint64_t offset, std::span<uint8_t> out) override {
    std::lock_guard lock(fs_.mu_);
    DTX_RETURN_IF_ERROR(fs_.check_epoch(epoch_));
    const auto& d = inode_->data;
    if (offset >= d.size()) return size_t{0};
    size_t n = std::min<size_t>(out.size(), d.size() - offset);
    std::memcpy(out.data(), d.data() + offset, n);
    return n;
  }

  Status datasync() override { return do_sync(); }
  Status sync() override { return do_sync(); }

  Result<uint64_t> size() override {
    std::lock_guard lock(fs_.mu_);
    DTX_RETURN_IF_ERROR(fs_.check_epoch(epoch_));
    return uint64_t{inode_->data.size()};
  }

 private:
  Status do_sync() {
    std::function<void(const std::string&)> hook;
    {
      std::lock_guard lock(fs_.mu_);
      hook = fs_.before_sync_;
    }
    if (hook) hook(path_);
    std::lock_guard lock(fs_.mu_);
    DTX_RETURN_IF_ERROR(fs_.check_epoch(epoch_));
    fs_.syncs_ += 1;
    Inode& in = *inode_;
    if (fs_.failing_syncs_ > 0) {
      fs_.failing_syncs_ -= 1;
      // As on Linux: the error is reported once and the dirty pages are
      // marked clean without reaching the disk.
      in.dirty_pages.clear();
      return error(Code::io_error, "fsync " + path_ + ": Input/output error (injected)");
    }
    in.durable = in.data;
    in.dirty_pages.clear();
    return ok_status();
  }

  SimFileSystem& fs_;
  std::string path_;
  std::shared_ptr<Inode> inode_;
  bool writable_;
  uint64_t epoch_;
};

class SimFileSystem::SimLock final : public FileLock {
 public:
  SimLock(SimFileSystem& fs, std::string path, uint64_t epoch)
      : fs_(fs), path_(std::move(path)), epoch_(epoch) {}
  ~SimLock() override {
    std::lock_guard lock(fs_.mu_);
    if (fs_.epoch_ == epoch_) fs_.locks_.erase(path_);
  }

 private:
  SimFileSystem& fs_;
  std::string path_;
  uint64_t epoch_;
};

SimFileSystem::SimFileSystem(uint64_t seed) : rng_(seed) {
  dirs_.insert("/");
}
SimFileSystem::~SimFileSystem() = default;

std::string SimFileSystem::parent_of(const std::string& path) {
  auto pos = path.find_last_of('/');
  if (pos == std::string::npos) return ".";
  if (pos == 0) return "/";
  return path.substr(0, pos);
}

Status SimFileSystem::check_epoch(uint64_t epoch) const {
  if (epoch != epoch_) return error(Code::io_error, "file handle from before a crash");
  return check_up();
}

Status SimFileSystem::check_up() const {
  if (down_) return error(Code::io_error, "the machine crashed and has not restarted");
  return ok_status();
}

void SimFileSystem::restart() {
  std::lock_guard lock(mu_);
  down_ = false;
}

Result<std::unique_ptr<File>> SimFileSystem::open(const std::string& path, OpenMode mode) {
  std::lock_guard lock(mu_);
  DTX_RETURN_IF_ERROR(check_up());
  if (!dirs_.count(parent_of(path))) {
    return error(Code::not_found, "open " + path + ": No such file or directory");
  }
  auto it = current_.find(path);
  if (mode == OpenMode::create_exclusive) {
    if (it != current_.end()) return error(Code::already_exists, "open " + path + ": File exists");
    auto inode = std::make_shared<Inode>();
    current_[path] = inode;
    return std::unique_ptr<File>(new SimFile(*this, path, inode, true, epoch_));
  }
  if (it == current_.end()) {
    return error(Code::not_found, "open " + path + ": No such file or directory");
  }
  return std::unique_ptr<File>(
      new SimFile(*this, path, it->second, mode == OpenMode::read_write, epoch_));
}

Status SimFileSystem::remove(const std::string& path) {
  std::lock_guard lock(mu_);
  DTX_RETURN_IF_ERROR(check_up());
  if (!current_.erase(path)) return error(Code::not_found, "unlink " + path + ": no such file");
  return ok_status();
}

Status SimFileSystem::rename(const std::string& from, const std::string& to) {
  std::lock_guard lock(mu_);
  DTX_RETURN_IF_ERROR(check_up());
  auto it = current_.find(from);
  if (it == current_.end()) return error(Code::not_found, "rename " + from + ": no such file");
  auto inode = it->second;
  current_.erase(it);
  current_[to] = inode;
  return ok_status();
}

Status SimFileSystem::sync_dir(const std::string& dir) {
  std::function<void(const std::string&)> hook;
  {
    std::lock_guard lock(mu_);
    hook = before_sync_;
  }
  if (hook) hook(dir);
  std::lock_guard lock(mu_);
  DTX_RETURN_IF_ERROR(check_up());
  if (!dirs_.count(dir)) return error(Code::not_found, "fsync directory " + dir + ": not found");
  syncs_ += 1;
  if (failing_syncs_ > 0) {
    failing_syncs_ -= 1;
    return error(Code::io_error, "fsync directory " + dir + ": Input/output error (injected)");
  }
  for (auto it = durable_.begin(); it != durable_.end();) {
    if (parent_of(it->first) == dir && !current_.count(it->first)) {
      it = durable_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [path, inode] : current_) {
    if (parent_of(path) == dir) durable_[path] = inode;
  }
  return ok_status();
}

Result<std::vector<std::string>> SimFileSystem::list(const std::string& dir) {
  std::lock_guard lock(mu_);
  DTX_RETURN_IF_ERROR(check_up());
  if (!dirs_.count(dir)) return error(Code::not_found, "list " + dir + ": not found");
  std::vector<std::string> names;
  for (const auto& [path, inode] : current_) {
    if (parent_of(path) == dir) names.push_back(path.substr(path.find_last_of('/') + 1));
  }
  return names;
}

Status SimFileSystem::make_dirs(const std::string& dir) {
  std::lock_guard lock(mu_);
  DTX_RETURN_IF_ERROR(check_up());
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    partial = dir.substr(0, pos);
    if (!partial.empty()) dirs_.insert(partial);
  }
  return ok_status();
}

bool SimFileSystem::exists(const std::string& path) {
  std::lock_guard lock(mu_);
  return current_.count(path) > 0 || dirs_.count(path) > 0;
}

Result<std::unique_ptr<FileLock>> SimFileSystem::lock(const std::string& path) {
  std::lock_guard lock(mu_);
  DTX_RETURN_IF_ERROR(check_up());
  if (!locks_.insert(path).second) return error(Code::busy, path + " is locked by another process");
  if (!current_.count(path)) current_[path] = std::make_shared<Inode>();
  return std::unique_ptr<FileLock>(new SimLock(*this, path, epoch_));
}

void SimFileSystem::set_short_write_probability(double p) {
  std::lock_guard lock(mu_);
  short_write_p_ = p;
}

void SimFileSystem::fail_next_syncs(int n) {
  std::lock_guard lock(mu_);
  failing_syncs_ = n;
}

void SimFileSystem::set_before_sync(std::function<void(const std::string&)> hook) {
  std::lock_guard lock(mu_);
  before_sync_ = std::move(hook);
}

void SimFileSystem::crash(PageLoss pages, DirLoss dirs) {
  std::lock_guard lock(mu_);
  epoch_ += 1;
  crashes_ += 1;
  down_ = true;
  locks_.clear();
  failing_syncs_ = 0;
  // Directory entries: durable ones stay; unsynced changes are lost or kept.
  std::map<std::string, std::shared_ptr<Inode>> after;
  std::set<std::string> paths;
  for (const auto& [p, i] : current_)
    paths.insert(p);
  for (const auto& [p, i] : durable_)
    paths.insert(p);
  for (const auto& p : paths) {
    auto c = current_.find(p);
    auto d = durable_.find(p);
    const bool same = c != current_.end() && d != durable_.end() && c->second == d->second;
    bool keep_current =
        same || dirs == DirLoss::none || (dirs == DirLoss::random_unsynced && (rng_() & 1));
    if (keep_current) {
      if (c != current_.end()) after[p] = c->second;
    } else if (d != durable_.end()) {
      after[p] = d->second;
    }
  }
  current_ = after;
  durable_ = after;
  // File contents: durable bytes plus the dirty pages that happened to reach
  // the disk.
  std::set<Inode*> seen;
  for (auto& [p, inode] : current_) {
    if (!seen.insert(inode.get()).second) continue;
    Inode& in = *inode;
    std::vector<uint8_t> next = in.durable;
    for (uint64_t page : in.dirty_pages) {
      bool keep = pages == PageLoss::none || (pages == PageLoss::random_unsynced && (rng_() & 1));
      if (!keep) continue;
      const uint64_t begin = page * kPageBytes;
      if (begin >= in.data.size()) continue;
      const uint64_t end = std::min<uint64_t>(begin + kPageBytes, in.data.size());
      if (next.size() < end) next.resize(end, 0);
      std::memcpy(next.data() + begin, in.data.data() + begin, end - begin);
    }
    in.data = next;
    in.durable = next;
    in.dirty_pages.clear();
  }
}

std::vector<uint8_t> SimFileSystem::durable_bytes(const std::string& path) {
  std::lock_guard lock(mu_);
  auto it = durable_.find(path);
  if (it == durable_.end()) return {};
  return it->second->durable;
}

std::vector<uint8_t> SimFileSystem::current_bytes(const std::string& path) {
  std::lock_guard lock(mu_);
  auto it = current_.find(path);
  if (it == current_.end()) return {};
  return it->second->data;
}

void SimFileSystem::poke(const std::string& path, uint64_t offset, std::span<const uint8_t> b) {
  std::lock_guard lock(mu_);
  auto& in = *current_.at(path);
  if (in.data.size() < offset + b.size()) in.data.resize(offset + b.size(), 0);
  std::memcpy(in.data.data() + offset, b.data(), b.size());
  in.durable = in.data;
}

void SimFileSystem::cut(const std::string& path, uint64_t size) {
  std::lock_guard lock(mu_);
  auto& in = *current_.at(path);
  in.data.resize(size);
  in.durable = in.data;
  in.dirty_pages.clear();
}

uint64_t SimFileSystem::syncs() const {
  std::lock_guard lock(mu_);
  return syncs_;
}

uint64_t SimFileSystem::crashes() const {
  std::lock_guard lock(mu_);
  return crashes_;
}

}  // namespace dtx::sim
