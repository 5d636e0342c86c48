// SimPaxosStorage: a Paxos replica's durable state on a simulated disk, for
// the simulator: the same durable objects as consensus::PaxosStorage (an
// identity stamp, the promise in two alternating vote files, the snapshot
// written to a temp file and renamed, the log of accept/chosen/commit
// records), in simple files of its own on any FileSystem, so that a
// SimDisk's crash decides what survives page by page. It has no threads and
// no timing of its own: SimPaxosNode writes a persist at once and completes
// it when the disk's sync completes. As in PaxosStorage, the vote file and a
// snapshot received from a peer are durable before the persist's records
// are written.
//
// Files under dir:
//   IDENTITY           u32 magic, u64 cluster id, u32 replica id, u32 crc
//   vote.0, vote.1     u32 magic, u64 sequence, u64 round, u32 node, u32 crc
//                      (28 bytes); writes alternate, the valid copy with the
//                      higher sequence wins
//   log                frames: u32 magic, u32 length, u32 crc, then
//                      length bytes: u8 kind, u64 slot, u64 round, u32
//                      node, value. Recovery keeps the frames up to the first
//                      bad one, then rewrites the file with exactly those (so
//                      stale frames of a previous life are never read again).
//   snapshot           u32 magic, u64 index, u32 length, u32 crc, bytes;
//                      written to snapshot.tmp, synced, renamed, directory
//                      synced, and only then is the log rewritten without
//                      the records at or below it (P6): records of slots
//                      above it always survive (P3).
//
// Use:
//   Recovered rec;
//   auto st = SimPaxosStorage::open(disk.fs(), "/paxos", bootstrap, &rec);
//   st->write(ready);                 // at persist time
//   disk.sync([&] { st->complete(ready.persist_id); executor.on_persisted(...); });
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/fs.h"
#include "common/status.h"
#include "consensus/core/replica.h"

namespace dtx::sim {

class SimPaxosStorage {
 public:
  // Opens dir on fs and reads back what a restarting replica needs. Without
  // an IDENTITY file it refuses (failed_precondition: an empty disk means
  // forgotten promises, P4) unless bootstrap.
  static Result<std::unique_ptr<SimPaxosStorage>> open(FileSystem& fs, const std::string& dir,
                                                       uint64_t cluster_id, consensus::NodeId self,
                                                       bool bootstrap,
                                                       consensus::Recovered* recovered);

  // Writes the durable part of `ready`: the vote file and a received
  // snapshot durably at once (as PaxosStorage does, before the records),
  // then the log records, not synced yet.
  Status write(const consensus::Ready& ready);
  // The sync covering every write so far is done: fsync the log.
  Status complete(uint64_t persist_id);
  // Saves a snapshot of the state machine at applied index `index` and
  // rewrites the log without what it covers; nothing if one at or above
  // `index` is saved already.
  Status save_snapshot(consensus::Slot index, const std::string& data);

  consensus::Slot snapshot_index() const { return snapshot_index_; }
  size_t log_records() const { return records_.size(); }

 private:
  SimPaxosStorage(FileSystem& fs, std::string dir) : fs_(fs), dir_(std::move(dir)) {}
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  Status write_vote(const consensus::Ballot& b);
  Status append(const consensus::LogRecord& r);
  // Replaces the log file with exactly `records_` (synced, renamed, dir synced).
  Status rewrite_log();

  FileSystem& fs_;
  std::string dir_;
  std::unique_ptr<File> log_;
  uint64_t log_bytes_ = 0;
  std::vector<consensus::LogRecord> records_;  // what the log file holds now
  std::unique_ptr<File> votes_[2];
  uint64_t vote_seq_ = 0;
  consensus::Slot snapshot_index_ = 0;
};

}  // namespace dtx::sim
