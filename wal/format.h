// The on-disk format of dtx's write-ahead log, version 1, and its pure
// encoder and decoder. SegmentedLog (segmented_log.h) writes and recovers
// logs in this format; dtx-wal-dump prints them; tests/fuzz fuzzes the
// decoder. Nothing here does I/O.
//
// ---------------------------------------------------------------------------
// Files
//   A log lives in one directory:
//     <dir>/LOCK                 flock'd by the process that has the log open
//     <dir>/<seq:016x>.wal       segments, seq = 1, 2, 3, ... with no gaps
//   The live segments are a contiguous range of seqs. Prefix truncation
//   removes the lowest seqs; the highest may be a preallocated segment that
//   holds no records yet (its header is all zeros).
//
// Integers are little-endian. CRCs are CRC-32C (common/crc32c.h), seeded
// with the log's 64-bit log id: seed = crc32c(log_id as 8 bytes). A record
// or batch copied from another log therefore never checks out here.
//
// Segment (a file of segment_bytes, zero-filled when created):
//   [0, 64)    segment header
//        0  u32  magic   0x57585444 ("DTXW")
//        4  u32  format version (1)
//        8  u64  log id (random, chosen when the log is created)
//       16  u64  seq (the number in the file name)
//       24  u64  first LSN (LSN of the first record in this segment)
//       32  u64  segment_bytes
//       40  ...  zero
//       60  u32  crc32c of bytes [0, 60), seeded with 0 (the log id is
//                 not yet known when the header is read)
//   [64, end)  batches, back to back, then zeros to the end of the file.
//
// Batch: everything written by one flush, made durable by one fdatasync.
//        0  u32  magic   0x42585444 ("DTXB")
//        4  u32  crc32c of the 32 header bytes with this field zero (seeded)
//        8  u64  first LSN
//       16  u32  record count (>= 1)
//       20  u32  body bytes (the records that follow; sum of record sizes)
//       24  u64  zero (reserved)
//   then `count` records:
//        0  u32  payload length
//        4  u32  crc32c: over payload, then bytes [8, 20) of this header
//                 (seeded); the payload comes first so appenders can checksum
//                 it before they hold the log's lock
//        8  u64  LSN (first LSN + index in batch: the continuity check)
//       16  u16  type (chosen by the log's user; 0 is reserved)
//       18  u16  flags (zero)
//       20  ...  payload
//
// ---------------------------------------------------------------------------
// Crash recovery (rules W1 and W2 of CORRECTNESS.md)
//   Batch n+1 is written only after batch n's fdatasync returned, and a
//   segment's header is written and fdatasync'd before its first batch. So a
//   crash can tear only the last batch of the last segment. On open:
//   - every batch before the last one must be valid: header crc, magic,
//     first LSN continuing the previous batch, every record's crc, length and
//     LSN. A non-last segment ends with its last valid batch followed by
//     zeros.
//   - at the first invalid batch of the last segment, the log looks for any
//     valid batch header (with this log's seed) after it. If there is one, or
//     if any later segment holds data, the bad batch was synced and later
//     damaged: open fails with Code::corruption naming the segment and
//     offset. Otherwise it is a torn tail: it is cut off, its bytes are
//     zeroed and synced, and appends continue from there.
//   - a segment header that is all zeros is a preallocated segment with no
//     records (allowed only after the last segment with records); one that is
//     invalid but non-zero is corruption, unless it is the last segment and
//     nothing but zeros follows it (a torn header write: no record was
//     acknowledged in it).
// ---------------------------------------------------------------------------
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace dtx::wal {

inline constexpr uint32_t kSegmentMagic = 0x57585444;  // "DTXW"
inline constexpr uint32_t kBatchMagic = 0x42585444;    // "DTXB"
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr size_t kSegmentHeaderBytes = 64;
inline constexpr size_t kBatchHeaderBytes = 32;
inline constexpr size_t kRecordHeaderBytes = 20;
// Hard ceiling on one record's payload, whatever the options say.
inline constexpr uint32_t kRecordPayloadBytesCeiling = 64u << 20;

struct SegmentHeader {
  uint64_t log_id = 0;
  uint64_t seq = 0;
  uint64_t first_lsn = 0;
  uint64_t segment_bytes = 0;
};

void encode_segment_header(const SegmentHeader& h, uint8_t out[kSegmentHeaderBytes]);

enum class HeaderCheck { ok, zero, invalid };
// Decodes a segment header; `detail` says what is wrong when invalid.
HeaderCheck decode_segment_header(std::span<const uint8_t> bytes, SegmentHeader* out,
                                  std::string* detail);

uint32_t crc_seed(uint64_t log_id);

// The record crc of a payload, computed in two steps (see the format above).
uint32_t payload_crc(uint32_t seed, std::span<const uint8_t> payload);
uint32_t record_crc(uint32_t payload_crc, uint64_t lsn, uint16_t type, uint16_t flags);

// Writes a record header (payload follows it) at out.
void encode_record_header(uint8_t out[kRecordHeaderBytes], uint32_t payload_bytes, uint32_t crc,
                          uint64_t lsn, uint16_t type);
// Fills in the batch header at out; body is the kBatchHeaderBytes..end part.
void encode_batch_header(uint8_t out[kBatchHeaderBytes], uint32_t seed, uint64_t first_lsn,
                         uint32_t count, uint32_t body_bytes);

struct Record {
  uint64_t lsn = 0;
  uint16_t type = 0;
  std::span<const uint8_t> payload;  // points into the decoded buffer
};

enum class BatchCheck {
  ok,          // a complete, valid batch
  zero,        // the header is all zeros: the end of the written part
  bad_header,  // magic or header crc wrong: torn, or damaged
  bad_lsn,     // header valid but its first LSN does not continue the log
  bad_body,    // header valid, a record is damaged or cut short
};

struct BatchDecode {
  BatchCheck check = BatchCheck::bad_header;
  uint64_t first_lsn = 0;
  uint32_t count = 0;
  size_t batch_bytes = 0;  // header + body, when the header is valid
  std::string detail;      // what exactly failed, for error messages
};

// Decodes the batch at the start of `bytes`. expected_lsn is the LSN the
// batch must start with. Records are appended to *records (may be null)
// only when the whole batch is valid. Never reads outside `bytes`.
BatchDecode decode_batch(std::span<const uint8_t> bytes, uint32_t seed, uint64_t expected_lsn,
                         uint32_t record_payload_bytes_max, std::vector<Record>* records);

// True when a batch header with a valid crc under this seed, whose first LSN
// is at least min_lsn, starts at `bytes`.
bool is_batch_header_at(std::span<const uint8_t> bytes, uint32_t seed, uint64_t min_lsn);

const char* batch_check_name(BatchCheck c);

// How the written part of a segment ends.
enum class SegmentEnd {
  clean,    // the last valid batch is followed by zeros only
  torn,     // followed by garbage, and no valid batch header after it
  corrupt,  // an invalid batch with a valid batch header somewhere after it
};

struct SegmentScan {
  SegmentEnd end = SegmentEnd::clean;
  size_t end_offset = kSegmentHeaderBytes;  // just after the last valid batch
  uint64_t next_lsn = 0;                    // the LSN after the last valid record
  uint64_t batches = 0;
  uint64_t records = 0;
  size_t garbage_end = 0;         // torn/corrupt: one past the last non-zero byte
  size_t later_batch_offset = 0;  // corrupt: where the later valid batch header is
  std::string detail;             // torn/corrupt: what is wrong at end_offset
};

// Scans a whole segment image (header included) whose first record has
// first_lsn. on_batch, if given, sees each valid batch's offset and records.
SegmentScan scan_segment(
    std::span<const uint8_t> segment, uint32_t seed, uint64_t first_lsn,
    uint32_t record_payload_bytes_max,
    const std::function<void(size_t offset, const std::vector<Record>&)>& on_batch = nullptr);

}  // namespace dtx::wal
