// PaxosStorage: a replica's durable state on disk, under one data directory.
//
// Layout (every file checksummed; integers little-endian):
//   IDENTITY        magic "DTXI", format version (2: command ids carry the
//                   leader's ballot), cluster id, replica id, a hash of the
//                   membership, crc. A directory of another format version
//                   is refused. Written once with --bootstrap
//                   (temp file, fsync, rename, directory fsync). A replica
//                   refuses to start on a directory without it unless told
//                   --bootstrap, and on one stamped for another cluster,
//                   replica or membership (P4): an empty directory means a
//                   lost disk, and an acceptor with amnesia breaks Paxos.
//   vote.0, vote.1  the promise (P3): magic, sequence, ballot, crc. Writes
//                   alternate between the two files and each is fsync'd, so
//                   a torn write leaves the other copy intact; the copy with
//                   the higher valid sequence wins. It lives outside the log,
//                   so log truncation can never drop it.
//   snapshot        the state machine image: magic, index, length, crc,
//                   bytes. Written to snapshot.tmp, fsync'd, renamed,
//                   directory fsync'd (P6), by one writer at a time: a
//                   snapshot installed from a peer (persist, on the loop)
//                   and the replica's own (save_snapshot, on the snapshot
//                   thread) wait for each other, and one at or below the
//                   snapshot already saved is skipped, so the file never
//                   goes back below the truncated log.
//   wal/            a wal::SegmentedLog of LogRecords (accept, chosen,
//                   commit), group-committed. The records of one persist
//                   go into one log record of type 5 (u32 count, then per
//                   record u8 kind and its bytes: u64 slot, u64 round, u32
//                   node, u32 length, value), split only if it would exceed
//                   the log's record limit: the log's group commit then
//                   counts persists, and a lone persist is flushed at once.
//
// Durability: persist() writes the vote file first (synchronously: it is
// rare, at ballot changes) and a received snapshot, then appends the records
// and calls `done` once every record appended so far is durable, so
// completions come in order. After a snapshot is saved, the log is truncated
// below the oldest record still needed (the latest record of every slot
// above the snapshot).
//
// Threading: persist(), restore() and the accessors are called from the
// node's event loop; `done` runs on the WAL's flushing thread unless a
// callback executor is given (the node posts it back to its loop). With
// flush_here, a persist that finds the log idle is
// written and fdatasync'd on the caller's thread and its `done` runs there,
// before persist() returns (the node's loop then needs no hand-off to the
// flusher thread and back: two thread wake-ups off every acceptance's path
// at low load). A `done` that runs this way may run before the `done` of an
// earlier persist that the flusher thread synced and handed to the
// callback executor; it still means that every earlier persist is durable.
// save_snapshot() may run on another thread, concurrently with persist().
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/fs.h"
#include "common/status.h"
#include "consensus/core/replica.h"
#include "wal/segmented_log.h"

namespace dtx::consensus {

struct StorageOptions {
  std::string dir;
  uint64_t cluster_id = 0;
  NodeId self = 0;
  std::vector<NodeId> members;
  bool bootstrap = false;  // allow creating a new data directory
  FileSystem* fs = nullptr;
  uint64_t segment_bytes = 64ull << 20;
  // Each of the log's two append buffers; the largest record is half of it.
  // A slot's value is a batch of at most Config::batch_bytes_max (1 MiB by
  // default), so keep this at least twice that.
  size_t wal_buffer_bytes = 8u << 20;
  std::function<void(const Status&)> on_fatal;  // default: log and abort (W5)
  std::function<void(std::function<void()>)> callback_executor;
};

uint64_t membership_hash(uint64_t cluster_id, const std::vector<NodeId>& members);

// The largest log record the storage accepts (half an append buffer).
size_t record_bytes_max(const StorageOptions& options);
// The size of the log record that holds a slot value of `value_bytes`.
size_t batch_record_bytes(size_t value_bytes);

class PaxosStorage {
 public:
  // Opens (or with bootstrap, creates) the data directory and reads back
  // what a replica needs to restart.
  static Result<std::unique_ptr<PaxosStorage>> open(const StorageOptions& options,
                                                    Recovered* recovered);
  ~PaxosStorage();

  // Makes the durable part of a Ready durable; `done` runs once it is (and
  // everything persisted before it). Failures stop the process (W5).
  // flush_here: if the log is idle, write and sync on this thread and run
  // `done` before returning (see Threading above); the caller blocks for
  // one write and fdatasync.
  void persist(const Ready& ready, std::function<void()> done, bool flush_here = false);
  // Saves a snapshot taken at `index` and truncates the log below it; does
  // nothing if a snapshot at or above `index` is saved already.
  Status save_snapshot(Slot index, const std::string& data);

  Slot snapshot_index() const;
  const wal::SegmentedLog& log() const { return *log_; }

 private:
  explicit PaxosStorage(StorageOptions o);
  Status check_identity();
  Status write_vote(const Ballot& b);
  Status write_snapshot_file(Slot index, const std::string& data);
  void note_lsn(const LogRecord& r, uint64_t lsn);
  void maybe_truncate();

  StorageOptions opt_;
  FileSystem& fs_;
  std::unique_ptr<wal::SegmentedLog> log_;
  uint64_t vote_seq_ = 0;
  uint64_t last_lsn_ = 0;  // highest LSN appended

  std::mutex snapshot_writer_mu_;  // one writer of snapshot files at a time (P6)
  mutable std::mutex mu_;          // guards what truncation and snapshots share
  Slot snapshot_index_ = 0;
  std::map<Slot, uint64_t> lsn_of_slot_;  // latest record per slot above the snapshot
};

}  // namespace dtx::consensus
