#include "consensus/storage.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/bytes.h"
#include "common/crc32c.h"
#include "consensus/core/codec.h"

namespace dtx::consensus {
namespace {

constexpr uint32_t kIdentityMagic = 0x49585444;  // "DTXI"
constexpr uint32_t kVoteMagic = 0x56585444;      // "DTXV"
constexpr uint32_t kSnapshotMagic = 0x53585444;  // "DTXS"
constexpr uint32_t kFileVersion = 1;             // vote and snapshot files
constexpr uint32_t kIdentityVersion =
    2;                               // the data directory's format: 2, command ids with ballots
constexpr uint16_t kSyncMarker = 4;  // a record with no content: orders a persist with no records
constexpr uint16_t kGroup = 5;  // the records of one persist: u32 count, count x (u8 kind, bytes)
constexpr size_t kVoteBytes = 32;
constexpr size_t kIdentityBytes = 36;
constexpr size_t kSnapshotHeaderBytes = 32;
constexpr size_t kGroupSlackBytes = 64;

std::span<const uint8_t> view(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string encode_record(const LogRecord& r) {
  Writer w;
  w.u64(r.slot);
  w.u64(r.ballot.round);
  w.u32(r.ballot.node);
  w.bytes(r.value ? *r.value : std::string());
  return w.take();
}

// The records of one persist, as few log records as the size limit allows:
// one per persist in practice, so the log's group commit counts persists,
// and a lone persist is flushed at once instead of waiting for a second
// record of the same persist.
std::vector<std::string> encode_groups(const std::vector<LogRecord>& records, size_t bytes_max) {
  std::vector<std::string> out;
  uint32_t count = 0;
  std::string body;
  auto flush = [&] {
    if (count == 0) return;
    Writer head;
    head.u32(count);
    std::string g = head.take();
    g += body;
    out.push_back(std::move(g));
    body.clear();
    count = 0;
  };
  for (const LogRecord& r : records) {
    Writer one;
    one.u8(static_cast<uint8_t>(r.kind));
    one.bytes(encode_record(r));
    std::string e = one.take();
    if (count > 0 && 4 + body.size() + e.size() > bytes_max) flush();
    body += e;
    ++count;
  }
  flush();
  return out;
}

bool decode_record(uint16_t type, std::span<const uint8_t> payload, LogRecord* out) {
  if (type < 1 || type > 3) return false;
  Reader rd(payload);
  out->kind = static_cast<LogRecord::Kind>(type);
  out->slot = rd.u64();
  out->ballot.round = rd.u64();
  out->ballot.node = rd.u32();
  out->value = make_bytes(rd.bytes());
  return rd.done();
}

}  // namespace

size_t record_bytes_max(const StorageOptions& options) {
  return options.wal_buffer_bytes / 2;
}

size_t batch_record_bytes(size_t value_bytes) {
  // In a group of one: count, kind, length, then slot, ballot, length, value.
  return 4 + 1 + 4 + 8 + 8 + 4 + 4 + value_bytes + kGroupSlackBytes;
}

uint64_t membership_hash(uint64_t cluster_id, const std::vector<NodeId>& members) {
  std::vector<NodeId> sorted = members;
  std::sort(sorted.begin(), sorted.end());
  Writer w;
  w.u64(cluster_id);
  for (NodeId m : sorted)
    w.u32(m);
  return value_digest(w.take());
}

PaxosStorage::PaxosStorage(StorageOptions o)
    : opt_(std::move(o)), fs_(opt_.fs ? *opt_.fs : posix_file_system()) {}

PaxosStorage::~PaxosStorage() = default;

Status PaxosStorage::check_identity() {
  const std::string path = join_path(opt_.dir, "IDENTITY");
  const uint64_t mhash = membership_hash(opt_.cluster_id, opt_.members);
  if (!fs_.exists(path)) {
    if (!opt_.bootstrap) {
      return error(Code::failed_precondition,
                   "data directory " + opt_.dir +
                       " has no IDENTITY: refusing to start a replica with no memory of its "
                       "promises. Pass --bootstrap only when creating a new cluster; a replica "
                       "whose disk was lost must be replaced, not restarted empty.");
    }
    auto names = fs_.list(opt_.dir);
    if (names.ok()) {
      for (const auto& n : *names) {
        if (n != "LOCK" && n != "wal") {
          return error(Code::failed_precondition,
                       "--bootstrap needs an empty data directory; " + opt_.dir + " holds " + n);
        }
      }
    }
    std::string id(kIdentityBytes, '\0');
    auto* p = reinterpret_cast<uint8_t*>(id.data());
    put_u32(p, kIdentityMagic);
    put_u32(p + 4, kIdentityVersion);
    put_u64(p + 8, opt_.cluster_id);
    put_u32(p + 16, opt_.self);
    put_u64(p + 20, mhash);
    put_u32(p + 32, crc32c(p, 32));
    DTX_RETURN_IF_ERROR(write_file_atomically(fs_, opt_.dir, "IDENTITY", id));
    spdlog::info("paxos storage {}: bootstrapped replica {} of cluster {}", opt_.dir, opt_.self,
                 opt_.cluster_id);
    return ok_status();
  }
  auto id = read_file(fs_, path);
  if (!id.ok()) return id.status();
  const auto* p = reinterpret_cast<const uint8_t*>(id->data());
  if (id->size() != kIdentityBytes || get_u32(p) != kIdentityMagic ||
      get_u32(p + 32) != crc32c(p, 32)) {
    return error(Code::corruption, path + " is damaged");
  }
  if (get_u32(p + 4) != kIdentityVersion) {
    return error(Code::failed_precondition,
                 opt_.dir + " holds data format " + std::to_string(get_u32(p + 4)) +
                     "; this dtx reads format " + std::to_string(kIdentityVersion));
  }
  if (get_u64(p + 8) != opt_.cluster_id || get_u32(p + 16) != opt_.self) {
    return error(Code::failed_precondition,
                 opt_.dir + " belongs to replica " + std::to_string(get_u32(p + 16)) +
                     " of cluster " + std::to_string(get_u64(p + 8)) + ", not replica " +
                     std::to_string(opt_.self) + " of cluster " + std::to_string(opt_.cluster_id));
  }
  if (get_u64(p + 20) != mhash) {
    return error(Code::failed_precondition,
                 opt_.dir + " was created for a different membership of the cluster");
  }
  return ok_status();
}

Status PaxosStorage::write_vote(const Ballot& b) {
  ++vote_seq_;
  std::string v(kVoteBytes, '\0');
  auto* p = reinterpret_cast<uint8_t*>(v.data());
  put_u32(p, kVoteMagic);
  put_u32(p + 4, kFileVersion);
  put_u64(p + 8, vote_seq_);
  put_u64(p + 16, b.round);
  put_u32(p + 24, b.node);
  put_u32(p + 28, crc32c(p, 28));
  const std::string path = join_path(opt_.dir, vote_seq_ % 2 ? "vote.1" : "vote.0");
  auto f = fs_.open(path, OpenMode::read_write);
  if (!f.ok()) return f.status();
  DTX_RETURN_IF_ERROR(write_all(**f, 0, view(v)));
  return (*f)->sync();
}

Status PaxosStorage::write_snapshot_file(Slot index, const std::string& data) {
  std::string s(kSnapshotHeaderBytes, '\0');
  auto* p = reinterpret_cast<uint8_t*>(s.data());
  put_u32(p, kSnapshotMagic);
  put_u32(p + 4, kFileVersion);
  put_u64(p + 8, index);
  put_u64(p + 16, data.size());
  put_u32(p + 24, crc32c(data));
  put_u32(p + 28, crc32c(p, 28));
  s += data;
  return write_file_atomically(fs_, opt_.dir, "snapshot", s);
}

Result<std::unique_ptr<PaxosStorage>> PaxosStorage::open(const StorageOptions& options,
                                                         Recovered* rec) {
  std::unique_ptr<PaxosStorage> st(new PaxosStorage(options));
  FileSystem& fs = st->fs_;
  DTX_RETURN_IF_ERROR(fs.make_dirs(options.dir));
  DTX_RETURN_IF_ERROR(st->check_identity());
  *rec = Recovered{};

  // The promise: the valid copy with the higher sequence.
  bool created = false;
  for (const char* name : {"vote.0", "vote.1"}) {
    const std::string path = join_path(options.dir, name);
    if (!fs.exists(path)) {
      auto f = fs.open(path, OpenMode::create_exclusive);
      if (!f.ok()) return f.status();
      DTX_RETURN_IF_ERROR((*f)->sync());
      created = true;
      continue;
    }
    auto v = read_file(fs, path);
    if (!v.ok()) return v.status();
    const auto* p = reinterpret_cast<const uint8_t*>(v->data());
    if (v->size() < kVoteBytes || get_u32(p) != kVoteMagic || get_u32(p + 28) != crc32c(p, 28)) {
      continue;  // never written, or torn: the other copy holds the promise
    }
    const uint64_t seq = get_u64(p + 8);
    if (seq > st->vote_seq_) {
      st->vote_seq_ = seq;
      rec->promised = Ballot{get_u64(p + 16), get_u32(p + 24)};
    }
  }
  if (created) DTX_RETURN_IF_ERROR(fs.sync_dir(options.dir));

  // The snapshot.
  const std::string snap_path = join_path(options.dir, "snapshot");
  if (fs.exists(snap_path)) {
    auto s = read_file(fs, snap_path);
    if (!s.ok()) return s.status();
    const auto* p = reinterpret_cast<const uint8_t*>(s->data());
    if (s->size() < kSnapshotHeaderBytes || get_u32(p) != kSnapshotMagic ||
        get_u32(p + 28) != crc32c(p, 28) || get_u64(p + 16) != s->size() - kSnapshotHeaderBytes ||
        get_u32(p + 24) !=
            crc32c(s->data() + kSnapshotHeaderBytes, s->size() - kSnapshotHeaderBytes)) {
      return error(Code::corruption, snap_path + " is damaged");
    }
    rec->snapshot_index = get_u64(p + 8);
    rec->snapshot = make_bytes(s->substr(kSnapshotHeaderBytes));
    st->snapshot_index_ = rec->snapshot_index;
  }

  // The log.
  wal::Options wo;
  wo.dir = join_path(options.dir, "wal");
  wo.fs = options.fs;
  wo.segment_bytes = options.segment_bytes;
  wo.on_fatal = options.on_fatal;
  wo.callback_executor = options.callback_executor;
  wo.buffer_bytes = options.wal_buffer_bytes;
  wo.record_payload_bytes_max = static_cast<uint32_t>(options.wal_buffer_bytes / 2);
  wo.segment_bytes = std::max<uint64_t>(wo.segment_bytes, wo.buffer_bytes + 4096);
  auto log = wal::SegmentedLog::open(wo);
  if (!log.ok()) return log.status();
  st->log_ = std::move(*log);
  auto reader = st->log_->read_from(st->log_->first_lsn());
  if (!reader.ok()) return reader.status();
  for (;;) {
    auto r = (*reader)->next();
    if (!r.ok()) return r.status();
    if (!r->has_value()) break;
    if ((*r)->type == kSyncMarker) continue;
    const auto bad = [&] {
      return error(Code::corruption,
                   "undecodable paxos record at LSN " + std::to_string((*r)->lsn));
    };
    if ((*r)->type == kGroup) {
      Reader g((*r)->payload);
      const uint32_t n = g.count(5);
      for (uint32_t i = 0; i < n && g.ok(); ++i) {
        const uint8_t kind = g.u8();
        const std::string body = g.bytes();
        LogRecord lr;
        if (!g.ok() || !decode_record(kind, view(body), &lr)) return bad();
        st->note_lsn(lr, (*r)->lsn);
        rec->records.push_back(std::move(lr));
      }
      if (!g.done()) return bad();
      continue;
    }
    LogRecord lr;
    if (!decode_record((*r)->type, (*r)->payload, &lr)) return bad();
    st->note_lsn(lr, (*r)->lsn);
    rec->records.push_back(std::move(lr));
  }
  reader->reset();
  st->last_lsn_ = st->log_->next_lsn() - 1;
  spdlog::info("paxos storage {}: promise {}, snapshot at {}, {} log records", options.dir,
               rec->promised.describe(), rec->snapshot_index, rec->records.size());
  return st;
}

void PaxosStorage::note_lsn(const LogRecord& r, uint64_t lsn) {
  if (r.kind == LogRecord::Kind::commit) return;
  std::lock_guard lock(mu_);
  if (r.slot > snapshot_index_) lsn_of_slot_[r.slot] = lsn;
}

void PaxosStorage::persist(const Ready& ready, std::function<void()> done, bool flush_here) {
  auto fatal = [&](const Status& s) {
    spdlog::critical("paxos storage {}: {}", opt_.dir, s.describe());
    if (opt_.on_fatal) {
      opt_.on_fatal(s);
    } else {
      spdlog::default_logger()->flush();
      std::abort();
    }
  };
  if (ready.promise && !ready.promise->is_zero()) {
    if (Status s = write_vote(*ready.promise); !s.ok()) return fatal(s);
  }
  if (ready.install) {
    if (Status s = save_snapshot(ready.install->index, *ready.install->data); !s.ok()) {
      return fatal(s);
    }
  }
  // Records, then a completion once the last one (and all before) is
  // durable.
  const std::vector<std::string> groups =
      encode_groups(ready.records, record_bytes_max(opt_) - kGroupSlackBytes);
  size_t next = 0;  // the first record of the group being appended
  for (size_t i = 0; i < groups.size(); ++i) {
    // Each record's LSN is noted before the append: with flush_here
    // `done` may run inside it, and whatever it starts (a snapshot, whose
    // truncation reads these LSNs) must find them. Only this thread
    // appends, so the LSN is the log's next one.
    const uint64_t expected_lsn = log_->next_lsn();
    Reader count(groups[i]);
    for (uint32_t k = count.u32(); k > 0; --k)
      note_lsn(ready.records[next++], expected_lsn);
    wal::AppendCallback cb;
    if (i + 1 == groups.size()) {
      cb = [done](uint64_t, const Status& s) {
        if (s.ok()) done();
      };
    }
    auto lsn = cb && flush_here ? log_->append_flush_here(kGroup, view(groups[i]), std::move(cb))
                                : log_->append(kGroup, view(groups[i]), std::move(cb));
    if (!lsn.ok()) return fatal(lsn.status());
    if (*lsn != expected_lsn) {
      return fatal(error(Code::internal, "a second thread appends to the log: LSN " +
                                             std::to_string(*lsn) + ", expected " +
                                             std::to_string(expected_lsn)));
    }
    last_lsn_ = *lsn;
  }
  if (groups.empty()) {
    wal::AppendCallback cb = [done](uint64_t, const Status& s) {
      if (s.ok()) done();
    };
    auto lsn = flush_here ? log_->append_flush_here(kSyncMarker, {}, std::move(cb))
                          : log_->append(kSyncMarker, {}, std::move(cb));
    if (!lsn.ok()) return fatal(lsn.status());
    last_lsn_ = *lsn;
  }
}

Status PaxosStorage::save_snapshot(Slot index, const std::string& data) {
  // One writer at a time, from the index check to the truncation: two
  // writers would share snapshot.tmp, and an older snapshot renamed into
  // place after a newer one truncated the log would lose every slot between
  // them (P3, P6).
  std::lock_guard writer(snapshot_writer_mu_);
  {
    std::lock_guard lock(mu_);
    if (index <= snapshot_index_) return ok_status();
  }
  DTX_RETURN_IF_ERROR(write_snapshot_file(index, data));
  {
    std::lock_guard lock(mu_);
    snapshot_index_ = std::max(snapshot_index_, index);
    lsn_of_slot_.erase(lsn_of_slot_.begin(), lsn_of_slot_.upper_bound(snapshot_index_));
  }
  maybe_truncate();
  return ok_status();
}

// Drop whole log segments that hold nothing the snapshot does not cover:
// below the oldest latest-record of any slot above the snapshot.
void PaxosStorage::maybe_truncate() {
  uint64_t keep_from;
  {
    std::lock_guard lock(mu_);
    keep_from = log_->next_lsn();
    for (const auto& [slot, lsn] : lsn_of_slot_)
      keep_from = std::min(keep_from, lsn);
  }
  if (Status s = log_->truncate_prefix(keep_from); !s.ok()) {
    spdlog::warn("paxos storage {}: truncation: {}", opt_.dir, s.describe());
  }
}

Slot PaxosStorage::snapshot_index() const {
  std::lock_guard lock(mu_);
  return snapshot_index_;
}

}  // namespace dtx::consensus
