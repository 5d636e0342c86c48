#include "tests/sim/sim_paxos_storage.h"

#include <algorithm>

#include "common/crc32c.h"
#include "consensus/core/codec.h"

namespace dtx::sim {

using namespace dtx::consensus;

namespace {

constexpr uint32_t kIdentityMagic = 0x53445049;  // "IPDS"
constexpr uint32_t kVoteMagic = 0x53445056;
constexpr uint32_t kFrameMagic = 0x53445052;
constexpr uint32_t kSnapshotMagic = 0x53445053;
constexpr size_t kFrameHeaderBytes = 12;
constexpr size_t kVoteBytes = 28;

std::span<const uint8_t> view(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

uint32_t crc_of(const std::string& s) {
  return crc32c(s.data(), s.size());
}

std::string frame(const LogRecord& r) {
  Writer body;
  body.u8(static_cast<uint8_t>(r.kind));
  body.u64(r.slot);
  body.u64(r.ballot.round);
  body.u32(r.ballot.node);
  body.bytes(r.value ? *r.value : std::string());
  std::string b = body.take();
  Writer w;
  w.u32(kFrameMagic);
  w.u32(static_cast<uint32_t>(b.size()));
  w.u32(crc_of(b));
  std::string out = w.take();
  out += b;
  return out;
}

// The frames of a log file up to the first that does not check.
std::vector<LogRecord> parse_log(const std::string& bytes) {
  std::vector<LogRecord> out;
  size_t pos = 0;
  while (bytes.size() - pos >= kFrameHeaderBytes) {
    Reader h(std::string_view(bytes).substr(pos, kFrameHeaderBytes));
    const uint32_t magic = h.u32();
    const uint32_t len = h.u32();
    const uint32_t crc = h.u32();
    if (magic != kFrameMagic || len > bytes.size() - pos - kFrameHeaderBytes) break;
    const std::string body = bytes.substr(pos + kFrameHeaderBytes, len);
    if (crc_of(body) != crc) break;
    Reader r(body);
    LogRecord rec;
    const uint8_t kind = r.u8();
    if (kind < 1 || kind > 3) break;
    rec.kind = static_cast<LogRecord::Kind>(kind);
    rec.slot = r.u64();
    rec.ballot.round = r.u64();
    rec.ballot.node = r.u32();
    rec.value = make_bytes(r.bytes());
    if (!r.done()) break;
    out.push_back(std::move(rec));
    pos += kFrameHeaderBytes + len;
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<SimPaxosStorage>> SimPaxosStorage::open(FileSystem& fs,
                                                               const std::string& dir,
                                                               uint64_t cluster_id, NodeId self,
                                                               bool bootstrap, Recovered* rec) {
  std::unique_ptr<SimPaxosStorage> st(new SimPaxosStorage(fs, dir));
  *rec = Recovered{};
  DTX_RETURN_IF_ERROR(fs.make_dirs(dir));
  const std::string id_path = dir + "/IDENTITY";
  if (!fs.exists(id_path)) {
    if (!bootstrap) {
      return error(Code::failed_precondition,
                   dir +
                       " has no IDENTITY: refusing to start a replica with no memory of its "
                       "promises");
    }
    Writer w;
    w.u32(kIdentityMagic);
    w.u64(cluster_id);
    w.u32(self);
    std::string b = w.take();
    Writer c;
    c.u32(crc_of(b));
    b += c.take();
    for (const char* name : {"vote.0", "vote.1", "log"}) {
      auto f = fs.open(dir + "/" + name, OpenMode::create_exclusive);
      if (!f.ok()) return f.status();
      DTX_RETURN_IF_ERROR((*f)->sync());
    }
    DTX_RETURN_IF_ERROR(fs.sync_dir(dir));
    DTX_RETURN_IF_ERROR(write_file_atomically(fs, dir, "IDENTITY", b));
  } else {
    auto id = read_file(fs, id_path);
    if (!id.ok()) return id.status();
    Reader r(*id);
    const uint32_t magic = r.u32();
    const uint64_t cluster = r.u64();
    const uint32_t node = r.u32();
    const uint32_t crc = r.u32();
    if (!r.done() || magic != kIdentityMagic || crc != crc_of(id->substr(0, 16))) {
      return error(Code::corruption, id_path + " is damaged");
    }
    if (cluster != cluster_id || node != self) {
      return error(Code::failed_precondition, dir + " belongs to another replica");
    }
  }

  // The promise: the valid vote file with the higher sequence.
  for (int i = 0; i < 2; ++i) {
    const std::string p = dir + "/vote." + std::to_string(i);
    auto v = read_file(fs, p);
    if (!v.ok()) return v.status();
    if (v->size() < kVoteBytes) continue;
    Reader r(std::string_view(*v).substr(0, kVoteBytes));
    const uint32_t magic = r.u32();
    const uint64_t seq = r.u64();
    const Ballot b{r.u64(), r.u32()};
    const uint32_t crc = r.u32();
    if (magic != kVoteMagic || crc != crc_of(v->substr(0, kVoteBytes - 4))) {
      continue;  // torn or never written
    }
    if (seq > st->vote_seq_) {
      st->vote_seq_ = seq;
      rec->promised = b;
    }
  }
  for (int i = 0; i < 2; ++i) {
    auto f = fs.open(dir + "/vote." + std::to_string(i), OpenMode::read_write);
    if (!f.ok()) return f.status();
    st->votes_[i] = std::move(*f);
  }

  // The snapshot.
  if (fs.exists(dir + "/snapshot")) {
    auto s = read_file(fs, dir + "/snapshot");
    if (!s.ok()) return s.status();
    Reader r(*s);
    const uint32_t magic = r.u32();
    const uint64_t index = r.u64();
    std::string data = r.bytes();
    const uint32_t crc = r.u32();
    if (!r.done() || magic != kSnapshotMagic || crc != crc_of(data)) {
      // It was synced before it was renamed into place: it cannot be torn.
      return error(Code::corruption, dir + "/snapshot is damaged");
    }
    rec->snapshot_index = st->snapshot_index_ = index;
    rec->snapshot = make_bytes(std::move(data));
  }

  // The log: its valid prefix, written again as a clean file.
  auto log = read_file(fs, dir + "/log");
  if (!log.ok()) return log.status();
  st->records_ = parse_log(*log);
  DTX_RETURN_IF_ERROR(st->rewrite_log());
  rec->records = st->records_;
  return st;
}

Status SimPaxosStorage::rewrite_log() {
  std::string bytes;
  for (const LogRecord& r : records_)
    bytes += frame(r);
  log_.reset();
  DTX_RETURN_IF_ERROR(write_file_atomically(fs_, dir_, "log", bytes));
  auto f = fs_.open(path("log"), OpenMode::read_write);
  if (!f.ok()) return f.status();
  log_ = std::move(*f);
  log_bytes_ = bytes.size();
  return ok_status();
}

Status SimPaxosStorage::write_vote(const Ballot& b) {
  ++vote_seq_;
  Writer w;
  w.u32(kVoteMagic);
  w.u64(vote_seq_);
  w.u64(b.round);
  w.u32(b.node);
  std::string v = w.take();
  Writer c;
  c.u32(crc_of(v));
  v += c.take();
  const int i = static_cast<int>(vote_seq_ % 2);
  DTX_RETURN_IF_ERROR(write_all(*votes_[i], 0, view(v)));
  return votes_[i]->sync();
}

Status SimPaxosStorage::append(const LogRecord& r) {
  const std::string f = frame(r);
  DTX_RETURN_IF_ERROR(write_all(*log_, log_bytes_, view(f)));
  log_bytes_ += f.size();
  records_.push_back(r);
  return ok_status();
}

// As PaxosStorage::persist: the vote file and a received snapshot are made
// durable at once, before any record of the same persist is written (a
// record of it must never survive a crash that loses them: a commit record
// above a lost snapshot would mark stale accepted values chosen).
Status SimPaxosStorage::write(const Ready& ready) {
  if (ready.promise && !ready.promise->is_zero()) DTX_RETURN_IF_ERROR(write_vote(*ready.promise));
  if (ready.install) DTX_RETURN_IF_ERROR(save_snapshot(ready.install->index, *ready.install->data));
  for (const LogRecord& r : ready.records)
    DTX_RETURN_IF_ERROR(append(r));
  return ok_status();
}

Status SimPaxosStorage::complete(uint64_t) {
  return log_->datasync();
}

Status SimPaxosStorage::save_snapshot(Slot index, const std::string& data) {
  if (index <= snapshot_index_) return ok_status();
  Writer w;
  w.u32(kSnapshotMagic);
  w.u64(index);
  w.bytes(data);
  w.u32(crc_of(data));
  DTX_RETURN_IF_ERROR(write_file_atomically(fs_, dir_, "snapshot", w.take()));
  snapshot_index_ = index;
  // Then the log, without what the snapshot covers. The last commit record
  // stays where it is if it names a slot above the snapshot (commit records
  // only grow, so it is the highest).
  size_t last_commit = records_.size();
  for (size_t i = 0; i < records_.size(); ++i) {
    if (records_[i].kind == LogRecord::Kind::commit) last_commit = i;
  }
  std::vector<LogRecord> kept;
  for (size_t i = 0; i < records_.size(); ++i) {
    LogRecord& r = records_[i];
    const bool keep =
        r.kind == LogRecord::Kind::commit ? i == last_commit && r.slot > index : r.slot > index;
    if (keep) kept.push_back(std::move(r));
  }
  records_ = std::move(kept);
  return rewrite_log();
}

}  // namespace dtx::sim
