#include "participant/sqlite/sqlite_wal_records.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/bytes.h"
#include "common/fs.h"
#include "wal/format.h"

namespace dtx::participant::sqlite {
namespace {

class Writer {
 public:
  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v) { put(v, 2); }
  void u32(uint32_t v) { put(v, 4); }
  void u64(uint64_t v) { put(v, 8); }
  void bytes(std::span<const uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void str16(const std::string& s) {
    assert(!s.empty() && s.size() <= kTxidBytesMax);
    u16(static_cast<uint16_t>(s.size()));
    bytes(as_bytes(s));
  }
  void blob32(std::span<const uint8_t> b) {
    u32(static_cast<uint32_t>(b.size()));
    bytes(b);
  }
  std::vector<uint8_t> take() { return std::move(out_); }

 private:
  void put(uint64_t v, int n) {
    for (int i = 0; i < n; ++i)
      out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  std::vector<uint8_t> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const uint8_t> b) : b_(b) {}
  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == b_.size(); }
  uint8_t u8() { return static_cast<uint8_t>(take(1)); }
  uint16_t u16() { return static_cast<uint16_t>(take(2)); }
  uint32_t u32() { return static_cast<uint32_t>(take(4)); }
  uint64_t u64() { return take(8); }
  std::span<const uint8_t> bytes(size_t n) {
    if (!ok_ || b_.size() - pos_ < n) {
      ok_ = false;
      return {};
    }
    auto s = b_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  std::string str16() {
    uint16_t n = u16();
    if (n == 0 || n > kTxidBytesMax) ok_ = false;
    return to_string(bytes(n));
  }
  std::vector<uint8_t> blob32() {
    auto b = bytes(u32());
    return {b.begin(), b.end()};
  }

 private:
  uint64_t take(size_t n) {
    auto s = bytes(n);
    uint64_t v = 0;
    for (size_t i = 0; i < s.size(); ++i)
      v |= uint64_t{s[i]} << (8 * i);
    return v;
  }
  std::span<const uint8_t> b_;
  size_t pos_ = 0;
  bool ok_ = true;
};

Result<std::vector<uint8_t>> read_whole(FileSystem& fs, const std::string& path) {
  auto f = fs.open(path, OpenMode::read_only);
  if (!f.ok()) return f.status();
  auto size = (*f)->size();
  if (!size.ok()) return size.status();
  std::vector<uint8_t> bytes(*size);
  DTX_RETURN_IF_ERROR(read_exact(**f, 0, bytes));
  return bytes;
}

}  // namespace

const char* record_type_name(RecordType t) {
  switch (t) {
    case RecordType::prepared:
      return "PREPARED";
    case RecordType::committed:
      return "COMMITTED";
    case RecordType::aborted:
      return "ABORTED";
    case RecordType::resolved:
      return "RESOLVED";
    case RecordType::fence:
      return "FENCE";
  }
  return "?";
}

std::vector<uint8_t> encode_prepared(const std::string& txid, std::span<const uint8_t> redo,
                                     std::span<const uint8_t> undo, int64_t prepared_at_ms) {
  Writer w;
  w.str16(txid);
  w.blob32(redo);
  w.blob32(undo);
  w.u64(static_cast<uint64_t>(prepared_at_ms));
  return w.take();
}

std::vector<uint8_t> encode_decided(const std::string& txid) {
  Writer w;
  w.str16(txid);
  return w.take();
}

std::vector<uint8_t> encode_resolved(const std::string& txid, Outcome outcome) {
  Writer w;
  w.str16(txid);
  w.u8(outcome == Outcome::committed ? 1 : 2);
  return w.take();
}

std::vector<uint8_t> encode_fence(const txn::BallotId& ballot) {
  Writer w;
  w.u64(ballot.round);
  w.u32(ballot.node);
  return w.take();
}

Result<AgentRecord> decode_record(uint64_t lsn, uint16_t type, std::span<const uint8_t> payload) {
  AgentRecord rec;
  rec.lsn = lsn;
  Reader r(payload);
  switch (type) {
    case static_cast<uint16_t>(RecordType::prepared):
      rec.type = RecordType::prepared;
      rec.txid = r.str16();
      rec.redo = r.blob32();
      rec.undo = r.blob32();
      rec.prepared_at_ms = static_cast<int64_t>(r.u64());
      break;
    case static_cast<uint16_t>(RecordType::committed):
    case static_cast<uint16_t>(RecordType::aborted):
      rec.type = static_cast<RecordType>(type);
      rec.txid = r.str16();
      break;
    case static_cast<uint16_t>(RecordType::resolved): {
      rec.type = RecordType::resolved;
      rec.txid = r.str16();
      uint8_t o = r.u8();
      if (o != 1 && o != 2) return error(Code::corruption, fmt::format("lsn {}: bad outcome", lsn));
      rec.outcome = o == 1 ? Outcome::committed : Outcome::aborted;
      break;
    }
    case static_cast<uint16_t>(RecordType::fence):
      rec.type = RecordType::fence;
      rec.ballot.round = r.u64();
      rec.ballot.node = r.u32();
      break;
    default:
      return error(Code::corruption, fmt::format("lsn {}: unknown record type {}", lsn, type));
  }
  if (!r.ok() || !r.at_end()) {
    return error(Code::corruption, fmt::format("lsn {}: {} record does not decode", lsn,
                                               record_type_name(static_cast<RecordType>(type))));
  }
  return rec;
}

Result<std::vector<AgentRecord>> read_log_read_only(const std::string& dir) {
  FileSystem& fs = posix_file_system();
  auto names = fs.list(dir);
  if (!names.ok()) return names.status();
  std::vector<std::string> segs;
  for (const auto& n : *names) {
    if (n.size() == 20 && n.ends_with(".wal")) segs.push_back(n);
  }
  std::sort(segs.begin(), segs.end());
  std::vector<AgentRecord> out;
  bool ended = false;  // a torn tail or a never-used segment was seen
  uint64_t next_lsn = 0;
  for (const auto& name : segs) {
    const std::string path = join_path(dir, name);
    auto bytes = read_whole(fs, path);
    if (!bytes.ok()) return bytes.status();
    wal::SegmentHeader h;
    std::string detail;
    wal::HeaderCheck hc = wal::decode_segment_header(*bytes, &h, &detail);
    if (hc != wal::HeaderCheck::ok) {
      ended = true;  // preallocated, or a header whose write was torn
      continue;
    }
    if (ended || (next_lsn != 0 && h.first_lsn != next_lsn)) {
      return error(Code::corruption, "wal " + path + ": records after the end of the log");
    }
    const uint32_t seed = wal::crc_seed(h.log_id);
    Status bad;
    auto scan = wal::scan_segment(*bytes, seed, h.first_lsn, wal::kRecordPayloadBytesCeiling,
                                  [&](size_t, const std::vector<wal::Record>& records) {
                                    for (const auto& r : records) {
                                      if (!bad.ok()) return;
                                      auto rec = decode_record(r.lsn, r.type, r.payload);
                                      if (!rec.ok()) {
                                        bad = error(Code::corruption,
                                                    "wal " + path + ": " + rec.status().message());
                                        return;
                                      }
                                      out.push_back(std::move(*rec));
                                    }
                                  });
    if (!bad.ok()) return bad;
    if (scan.end == wal::SegmentEnd::corrupt) {
      return error(Code::corruption, fmt::format("wal {}: damaged at offset {}: {}", path,
                                                 scan.end_offset, scan.detail));
    }
    if (scan.end == wal::SegmentEnd::torn) ended = true;
    next_lsn = scan.next_lsn;
  }
  return out;
}

}  // namespace dtx::participant::sqlite
