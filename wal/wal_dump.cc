// dtx-wal-dump: prints a write-ahead log directory, segment by segment, and
// checks it as recovery would, without changing a byte. Exit status: 0 when
// the log is sound (a torn tail, which the next open cuts, is reported but
// is sound), 2 when it is corrupt, 1 when it cannot be read.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "common/fs.h"
#include "wal/format.h"

namespace {

using namespace dtx;
using namespace dtx::wal;

std::string hex_prefix(std::span<const uint8_t> b, size_t n) {
  std::string s;
  for (size_t i = 0; i < std::min(n, b.size()); ++i)
    s += fmt::format("{:02x}", b[i]);
  if (b.size() > n) s += "...";
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Print and check a dtx write-ahead log directory (read-only)."};
  std::string dir;
  bool batches = false, records = false;
  size_t payload_bytes = 16;
  app.add_option("dir", dir, "the log directory (holds <seq>.wal segments)")->required();
  app.add_flag("--batches", batches, "print every batch");
  app.add_flag("--records", records, "print every record (implies --batches)");
  app.add_option("--payload-bytes", payload_bytes, "payload bytes shown per record, in hex")
      ->default_val(16);
  CLI11_PARSE(app, argc, argv);
  if (records) batches = true;

  FileSystem& fs = posix_file_system();
  auto names = fs.list(dir);
  if (!names.ok()) {
    fmt::print(stderr, "dtx-wal-dump: {}\n", names.status().describe());
    return 1;
  }
  std::vector<std::string> segs;
  for (auto& n : *names) {
    if (n.size() == 20 && n.ends_with(".wal")) segs.push_back(n);
  }
  std::sort(segs.begin(), segs.end());
  if (segs.empty()) {
    fmt::print("{}: no segments\n", dir);
    return 0;
  }

  uint64_t log_id = 0;
  uint32_t seed = 0;
  uint64_t expected_lsn = 0;
  uint64_t total_records = 0;
  int rc = 0;
  for (size_t i = 0; i < segs.size(); ++i) {
    const std::string path = join_path(dir, segs[i]);
    auto file = fs.open(path, OpenMode::read_only);
    if (!file.ok()) {
      fmt::print(stderr, "dtx-wal-dump: {}\n", file.status().describe());
      return 1;
    }
    auto size = (*file)->size();
    std::vector<uint8_t> bytes(size.ok() ? *size : 0);
    if (!size.ok() || !read_exact(**file, 0, bytes).ok()) {
      fmt::print(stderr, "dtx-wal-dump: cannot read {}\n", path);
      return 1;
    }
    SegmentHeader h;
    std::string detail;
    HeaderCheck hc = decode_segment_header(bytes, &h, &detail);
    if (hc == HeaderCheck::zero) {
      fmt::print("{}: preallocated, no records ({} bytes)\n", segs[i], bytes.size());
      continue;
    }
    if (hc == HeaderCheck::invalid) {
      fmt::print("{}: CORRUPT header: {}\n", segs[i], detail);
      rc = 2;
      break;
    }
    if (log_id == 0) {
      log_id = h.log_id;
      seed = crc_seed(log_id);
      expected_lsn = h.first_lsn;
    }
    fmt::print("{}: log {:016x} seq {} first LSN {} size {}\n", segs[i], h.log_id, h.seq,
               h.first_lsn, h.segment_bytes);
    if (h.log_id != log_id) {
      fmt::print("  CORRUPT: belongs to log {:016x}\n", h.log_id);
      rc = 2;
      break;
    }
    if (h.first_lsn != expected_lsn) {
      fmt::print("  CORRUPT: starts at LSN {}, previous segment ends before LSN {}\n", h.first_lsn,
                 expected_lsn);
      rc = 2;
      break;
    }
    auto on_batch = [&](size_t off, const std::vector<Record>& recs) {
      if (!batches) return;
      fmt::print("  batch @{} LSN {}..{} ({} records)\n", off, recs.front().lsn, recs.back().lsn,
                 recs.size());
      if (!records) return;
      for (const Record& r : recs) {
        fmt::print("    LSN {} type {} {} bytes {}\n", r.lsn, r.type, r.payload.size(),
                   hex_prefix(r.payload, payload_bytes));
      }
    };
    SegmentScan scan = scan_segment(bytes, seed, h.first_lsn, kRecordPayloadBytesCeiling, on_batch);
    total_records += scan.records;
    fmt::print("  {} batches, {} records, LSN {}..{}, {} bytes used\n", scan.batches, scan.records,
               h.first_lsn, scan.next_lsn - 1, scan.end_offset);
    expected_lsn = scan.next_lsn;
    if (scan.end == SegmentEnd::corrupt) {
      fmt::print("  CORRUPT at offset {}: {} (a valid batch follows at offset {})\n",
                 scan.end_offset, scan.detail, scan.later_batch_offset);
      rc = 2;
      break;
    }
    if (scan.end == SegmentEnd::torn) {
      const bool last = i + 1 == segs.size();
      fmt::print("  {} at offset {}: {} ({} bytes)\n",
                 last ? "torn tail (cut at the next open)" : "CORRUPT: garbage", scan.end_offset,
                 scan.detail, scan.garbage_end - scan.end_offset);
      if (!last) {
        rc = 2;
        break;
      }
    }
  }
  fmt::print("{} records in {} segments{}\n", total_records, segs.size(),
             rc == 2 ? ", LOG IS CORRUPT" : "");
  return rc;
}
