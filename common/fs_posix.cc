// POSIX implementation of common/fs.h.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/fs.h"

namespace dtx {
namespace {

Status errno_status(const std::string& what, const std::string& path, int err) {
  Code code = Code::io_error;
  if (err == ENOENT) code = Code::not_found;
  if (err == EEXIST) code = Code::already_exists;
  if (err == EWOULDBLOCK) code = Code::busy;
  return error(code, what + " " + path + ": " + std::strerror(err));
}

class PosixFile final : public File {
 public:
  PosixFile(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~PosixFile() override { ::close(fd_); }

  Result<size_t> write_at(uint64_t offset, std::span<const uint8_t> data) override {
    for (;;) {
      ssize_t n = ::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(offset));
      if (n >= 0) return static_cast<size_t>(n);
      if (errno != EINTR) return errno_status("write", path_, errno);
    }
  }
  Result<size_t> read_at(uint64_t offset, std::span<uint8_t> out) override {
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n =
          ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_status("read", path_, errno);
      }
      if (n == 0) break;
      done += static_cast<size_t>(n);
    }
    return done;
  }
  Status datasync() override {
    if (::fdatasync(fd_) != 0) return errno_status("fdatasync", path_, errno);
    return ok_status();
  }
  Status sync() override {
    if (::fsync(fd_) != 0) return errno_status("fsync", path_, errno);
    return ok_status();
  }
  Result<uint64_t> size() override {
    struct stat st;
    if (::fstat(fd_, &st) != 0) return errno_status("stat", path_, errno);
    return static_cast<uint64_t>(st.st_size);
  }

 private:
  int fd_;
  std::string path_;
};

class PosixLock final : public FileLock {
 public:
  explicit PosixLock(int fd) : fd_(fd) {}
  ~PosixLock() override {
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }

 private:
  int fd_;
};

class PosixFileSystem final : public FileSystem {
 public:
  Result<std::unique_ptr<File>> open(const std::string& path, OpenMode mode) override {
    int flags = O_CLOEXEC;
    switch (mode) {
      case OpenMode::read_only:
        flags |= O_RDONLY;
        break;
      case OpenMode::read_write:
        flags |= O_RDWR;
        break;
      case OpenMode::create_exclusive:
        flags |= O_RDWR | O_CREAT | O_EXCL;
        break;
    }
    int fd = ::open(path.c_str(), flags, 0644);
    if (fd < 0) return errno_status("open", path, errno);
    return std::unique_ptr<File>(new PosixFile(fd, path));
  }
  Status remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0) return errno_status("unlink", path, errno);
    return ok_status();
  }
  Status rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return errno_status("rename", from, errno);
    return ok_status();
  }
  Status sync_dir(const std::string& dir) override {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno_status("open directory", dir, errno);
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0) return errno_status("fsync directory", dir, err);
    return ok_status();
  }
  Result<std::vector<std::string>> list(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) return errno_status("list", dir, errno);
    std::vector<std::string> names;
    while (struct dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(std::move(name));
    }
    ::closedir(d);
    return names;
  }
  Status make_dirs(const std::string& dir) override {
    if (dir.empty()) return ok_status();
    std::string partial;
    size_t pos = 0;
    while (pos != std::string::npos) {
      pos = dir.find('/', pos + 1);
      partial = dir.substr(0, pos);
      if (partial.empty()) continue;
      if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
        return errno_status("mkdir", partial, errno);
      }
    }
    return ok_status();
  }
  bool exists(const std::string& path) override {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
  }
  Result<std::unique_ptr<FileLock>> lock(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return errno_status("open lock file", path, errno);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) {
        return error(Code::busy, path + " is locked by another process");
      }
      return errno_status("flock", path, err);
    }
    return std::unique_ptr<FileLock>(new PosixLock(fd));
  }
};

}  // namespace

FileSystem& posix_file_system() {
  static PosixFileSystem fs;
  return fs;
}

Status write_all(File& file, uint64_t offset, std::span<const uint8_t> data) {
  while (!data.empty()) {
    auto n = file.write_at(offset, data);
    if (!n.ok()) return n.status();
    if (*n == 0) return error(Code::io_error, "write made no progress");
    offset += *n;
    data = data.subspan(*n);
  }
  return ok_status();
}

Status read_exact(File& file, uint64_t offset, std::span<uint8_t> out) {
  auto n = file.read_at(offset, out);
  if (!n.ok()) return n.status();
  if (*n != out.size()) {
    return error(Code::io_error, "short read: wanted " + std::to_string(out.size()) +
                                     " bytes at offset " + std::to_string(offset) + ", got " +
                                     std::to_string(*n));
  }
  return ok_status();
}

std::string join_path(const std::string& dir, const std::string& name) {
  if (dir.empty()) return name;
  if (dir.back() == '/') return dir + name;
  return dir + "/" + name;
}

Result<std::string> read_file(FileSystem& fs, const std::string& path) {
  auto f = fs.open(path, OpenMode::read_only);
  if (!f.ok()) return f.status();
  auto size = (*f)->size();
  if (!size.ok()) return size.status();
  std::string s(*size, '\0');
  DTX_RETURN_IF_ERROR(
      read_exact(**f, 0, std::span<uint8_t>(reinterpret_cast<uint8_t*>(s.data()), s.size())));
  return s;
}

Status write_file_atomically(FileSystem& fs, const std::string& dir, const std::string& name,
                             std::string_view bytes) {
  const std::string tmp = join_path(dir, name + ".tmp");
  if (fs.exists(tmp)) DTX_RETURN_IF_ERROR(fs.remove(tmp));
  auto f = fs.open(tmp, OpenMode::create_exclusive);
  if (!f.ok()) return f.status();
  DTX_RETURN_IF_ERROR(
      write_all(**f, 0, {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}));
  DTX_RETURN_IF_ERROR((*f)->sync());
  f->reset();
  DTX_RETURN_IF_ERROR(fs.rename(tmp, join_path(dir, name)));
  return fs.sync_dir(dir);
}

}  // namespace dtx
