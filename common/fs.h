// FileSystem: the seam between dtx's durable shells (the WAL, the Paxos vote
// file, the agents' state) and the operating system.
//
// The production implementation is POSIX (posix_file_system()). Tests and the
// deterministic simulator substitute tests/support/sim_fs.h, which keeps
// synced and unsynced bytes apart and can inject short writes, failed
// fsyncs, crashes that drop all or some unsynced pages, and lost directory
// entries. Code written against this interface must therefore assume exactly
// what POSIX promises and no more:
//   - write_at may write fewer bytes than asked (use write_all);
//   - data is durable only after datasync()/sync() on that file returned ok;
//   - a new, renamed or removed directory entry is durable only after
//     sync_dir() on its directory returned ok;
//   - after a failed datasync()/sync() the unsynced data may be gone for
//     good even if a later sync succeeds, so a failed sync is final (W5).
// Threading: a FileSystem is thread-safe; one File may be used by one thread
// at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace dtx {

class File {
 public:
  virtual ~File() = default;
  // Writes up to data.size() bytes at offset; returns how many were written.
  virtual Result<size_t> write_at(uint64_t offset, std::span<const uint8_t> data) = 0;
  // Reads up to out.size() bytes at offset; fewer only at end of file.
  virtual Result<size_t> read_at(uint64_t offset, std::span<uint8_t> out) = 0;
  // fdatasync: the file's data and the metadata needed to read it back.
  virtual Status datasync() = 0;
  // fsync: data and all metadata.
  virtual Status sync() = 0;
  virtual Result<uint64_t> size() = 0;
};

enum class OpenMode {
  read_only,
  read_write,        // the file must exist
  create_exclusive,  // read-write; the file must not exist
};

// An exclusive advisory lock (flock) held until destroyed.
class FileLock {
 public:
  virtual ~FileLock() = default;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;
  virtual Result<std::unique_ptr<File>> open(const std::string& path, OpenMode mode) = 0;
  virtual Status remove(const std::string& path) = 0;
  virtual Status rename(const std::string& from, const std::string& to) = 0;
  // Makes the entries of directory dir durable (fsync of the directory).
  virtual Status sync_dir(const std::string& dir) = 0;
  // Names (not paths) of the entries in dir, unordered, without "." and "..".
  virtual Result<std::vector<std::string>> list(const std::string& dir) = 0;
  // Creates dir and missing parents; ok if it exists.
  virtual Status make_dirs(const std::string& dir) = 0;
  virtual bool exists(const std::string& path) = 0;
  // Takes an exclusive lock on path (created if missing); busy if another
  // process or FileLock holds it.
  virtual Result<std::unique_ptr<FileLock>> lock(const std::string& path) = 0;
};

// The process-wide POSIX file system.
FileSystem& posix_file_system();

// Writes all of data at offset, continuing after short writes.
Status write_all(File& file, uint64_t offset, std::span<const uint8_t> data);
// Reads exactly out.size() bytes at offset; corruption-free short reads are
// reported as Code::io_error naming the file's shortfall.
Status read_exact(File& file, uint64_t offset, std::span<uint8_t> out);

std::string join_path(const std::string& dir, const std::string& name);

// The whole content of a file.
Result<std::string> read_file(FileSystem& fs, const std::string& path);
// Replaces dir/name with bytes, atomically and durably: dir/name.tmp is
// written and synced, renamed over dir/name, and dir is synced.
Status write_file_atomically(FileSystem& fs, const std::string& dir, const std::string& name,
                             std::string_view bytes);

}  // namespace dtx
