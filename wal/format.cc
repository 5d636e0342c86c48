#include "wal/format.h"

#include <algorithm>
#include <cstring>

#include "common/bytes.h"
#include "common/crc32c.h"

namespace dtx::wal {

void encode_segment_header(const SegmentHeader& h, uint8_t out[kSegmentHeaderBytes]) {
  std::memset(out, 0, kSegmentHeaderBytes);
  put_u32(out + 0, kSegmentMagic);
  put_u32(out + 4, kFormatVersion);
  put_u64(out + 8, h.log_id);
  put_u64(out + 16, h.seq);
  put_u64(out + 24, h.first_lsn);
  put_u64(out + 32, h.segment_bytes);
  put_u32(out + 60, crc32c(out, 60));
}

HeaderCheck decode_segment_header(std::span<const uint8_t> bytes, SegmentHeader* out,
                                  std::string* detail) {
  if (bytes.size() < kSegmentHeaderBytes) {
    if (detail) *detail = "segment shorter than its header";
    return HeaderCheck::invalid;
  }
  const uint8_t* p = bytes.data();
  if (std::all_of(p, p + kSegmentHeaderBytes, [](uint8_t b) { return b == 0; })) {
    return HeaderCheck::zero;
  }
  if (get_u32(p) != kSegmentMagic) {
    if (detail) *detail = "bad segment magic";
    return HeaderCheck::invalid;
  }
  if (get_u32(p + 60) != crc32c(p, 60)) {
    if (detail) *detail = "bad segment header crc";
    return HeaderCheck::invalid;
  }
  if (get_u32(p + 4) != kFormatVersion) {
    if (detail) *detail = "unsupported format version " + std::to_string(get_u32(p + 4));
    return HeaderCheck::invalid;
  }
  out->log_id = get_u64(p + 8);
  out->seq = get_u64(p + 16);
  out->first_lsn = get_u64(p + 24);
  out->segment_bytes = get_u64(p + 32);
  return HeaderCheck::ok;
}

uint32_t crc_seed(uint64_t log_id) {
  uint8_t b[8];
  put_u64(b, log_id);
  return crc32c(b, 8);
}

uint32_t payload_crc(uint32_t seed, std::span<const uint8_t> payload) {
  return crc32c(payload.data(), payload.size(), seed);
}

uint32_t record_crc(uint32_t pcrc, uint64_t lsn, uint16_t type, uint16_t flags) {
  uint8_t b[12];
  put_u64(b, lsn);
  put_u16(b + 8, type);
  put_u16(b + 10, flags);
  return crc32c(b, 12, pcrc);
}

void encode_record_header(uint8_t out[kRecordHeaderBytes], uint32_t payload_bytes, uint32_t crc,
                          uint64_t lsn, uint16_t type) {
  put_u32(out + 0, payload_bytes);
  put_u32(out + 4, crc);
  put_u64(out + 8, lsn);
  put_u16(out + 16, type);
  put_u16(out + 18, 0);
}

namespace {

uint32_t batch_header_crc(const uint8_t* h, uint32_t seed) {
  uint8_t copy[kBatchHeaderBytes];
  std::memcpy(copy, h, kBatchHeaderBytes);
  put_u32(copy + 4, 0);
  return crc32c(copy, kBatchHeaderBytes, seed);
}

}  // namespace

void encode_batch_header(uint8_t out[kBatchHeaderBytes], uint32_t seed, uint64_t first_lsn,
                         uint32_t count, uint32_t body_bytes) {
  put_u32(out + 0, kBatchMagic);
  put_u32(out + 4, 0);
  put_u64(out + 8, first_lsn);
  put_u32(out + 16, count);
  put_u32(out + 20, body_bytes);
  put_u64(out + 24, 0);
  put_u32(out + 4, batch_header_crc(out, seed));
}

bool is_batch_header_at(std::span<const uint8_t> bytes, uint32_t seed, uint64_t min_lsn) {
  if (bytes.size() < kBatchHeaderBytes) return false;
  const uint8_t* p = bytes.data();
  return get_u32(p) == kBatchMagic && get_u32(p + 4) == batch_header_crc(p, seed) &&
         get_u64(p + 8) >= min_lsn && get_u32(p + 16) > 0;
}

BatchDecode decode_batch(std::span<const uint8_t> bytes, uint32_t seed, uint64_t expected_lsn,
                         uint32_t record_payload_bytes_max, std::vector<Record>* records) {
  BatchDecode d;
  if (bytes.size() < kBatchHeaderBytes) {
    bool all_zero = std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; });
    d.check = all_zero ? BatchCheck::zero : BatchCheck::bad_header;
    d.detail = "fewer bytes left than a batch header";
    return d;
  }
  const uint8_t* p = bytes.data();
  if (std::all_of(p, p + kBatchHeaderBytes, [](uint8_t b) { return b == 0; })) {
    d.check = BatchCheck::zero;
    return d;
  }
  if (get_u32(p) != kBatchMagic) {
    d.detail = "bad batch magic";
    return d;
  }
  if (get_u32(p + 4) != batch_header_crc(p, seed)) {
    d.detail = "bad batch header crc";
    return d;
  }
  d.first_lsn = get_u64(p + 8);
  d.count = get_u32(p + 16);
  const uint32_t body = get_u32(p + 20);
  if (d.count == 0 || get_u64(p + 24) != 0) {
    d.detail = "malformed batch header";
    return d;
  }
  d.batch_bytes = kBatchHeaderBytes + size_t{body};
  if (d.first_lsn != expected_lsn) {
    d.check = BatchCheck::bad_lsn;
    d.detail = "batch starts at LSN " + std::to_string(d.first_lsn) + ", expected " +
               std::to_string(expected_lsn);
    return d;
  }
  d.check = BatchCheck::bad_body;
  if (body > bytes.size() - kBatchHeaderBytes) {
    d.detail = "batch body runs past the end of the segment";
    return d;
  }
  const size_t records_before = records ? records->size() : 0;
  size_t off = kBatchHeaderBytes;
  const size_t end = d.batch_bytes;
  for (uint32_t i = 0; i < d.count; ++i) {
    if (end - off < kRecordHeaderBytes) {
      d.detail = "record " + std::to_string(i) + " header cut short";
      if (records) records->resize(records_before);
      return d;
    }
    const uint8_t* r = p + off;
    const uint32_t len = get_u32(r);
    const uint64_t lsn = get_u64(r + 8);
    if (len > record_payload_bytes_max || len > end - off - kRecordHeaderBytes) {
      d.detail = "record " + std::to_string(i) + " length " + std::to_string(len) + " too large";
      if (records) records->resize(records_before);
      return d;
    }
    if (lsn != d.first_lsn + i) {
      d.detail = "record " + std::to_string(i) + " has LSN " + std::to_string(lsn) + ", expected " +
                 std::to_string(d.first_lsn + i);
      if (records) records->resize(records_before);
      return d;
    }
    std::span<const uint8_t> payload(r + kRecordHeaderBytes, len);
    const uint32_t crc =
        record_crc(payload_crc(seed, payload), lsn, get_u16(r + 16), get_u16(r + 18));
    if (crc != get_u32(r + 4)) {
      d.detail = "record " + std::to_string(i) + " (LSN " + std::to_string(lsn) + ") bad crc";
      if (records) records->resize(records_before);
      return d;
    }
    if (records) records->push_back(Record{lsn, get_u16(r + 16), payload});
    off += kRecordHeaderBytes + len;
  }
  if (off != end) {
    d.detail = "batch body has " + std::to_string(end - off) + " bytes after its last record";
    if (records) records->resize(records_before);
    return d;
  }
  d.check = BatchCheck::ok;
  return d;
}

SegmentScan scan_segment(std::span<const uint8_t> segment, uint32_t seed, uint64_t first_lsn,
                         uint32_t record_payload_bytes_max,
                         const std::function<void(size_t, const std::vector<Record>&)>& on_batch) {
  SegmentScan s;
  s.next_lsn = first_lsn;
  size_t off = kSegmentHeaderBytes;
  std::vector<Record> records;
  while (off < segment.size()) {
    records.clear();
    BatchDecode d = decode_batch(segment.subspan(off), seed, s.next_lsn, record_payload_bytes_max,
                                 on_batch ? &records : nullptr);
    if (d.check != BatchCheck::ok) {
      s.detail = d.check == BatchCheck::zero ? "zero batch header" : d.detail;
      break;
    }
    if (on_batch) on_batch(off, records);
    s.batches += 1;
    s.records += d.count;
    s.next_lsn += d.count;
    off += d.batch_bytes;
  }
  s.end_offset = std::min(off, segment.size());
  // What follows the last valid batch: zeros (a clean end), or garbage.
  size_t last_nonzero = segment.size();
  while (last_nonzero > s.end_offset && segment[last_nonzero - 1] == 0)
    --last_nonzero;
  if (last_nonzero == s.end_offset) {
    s.end = SegmentEnd::clean;
    s.detail.clear();
    return s;
  }
  s.garbage_end = last_nonzero;
  // Garbage. If a valid batch header of this log, at or beyond the next LSN,
  // starts anywhere after the bad spot, the bad batch had been synced before
  // that one was written: real corruption, not a torn write (W1).
  for (size_t p = s.end_offset + 1; p + kBatchHeaderBytes <= last_nonzero + kBatchHeaderBytes &&
                                    p + kBatchHeaderBytes <= segment.size();
       ++p) {
    if (segment[p] != (kBatchMagic & 0xff)) continue;
    if (is_batch_header_at(segment.subspan(p), seed, s.next_lsn)) {
      s.end = SegmentEnd::corrupt;
      s.later_batch_offset = p;
      return s;
    }
  }
  s.end = SegmentEnd::torn;
  return s;
}

const char* batch_check_name(BatchCheck c) {
  switch (c) {
    case BatchCheck::ok:
      return "ok";
    case BatchCheck::zero:
      return "zero";
    case BatchCheck::bad_header:
      return "bad_header";
    case BatchCheck::bad_lsn:
      return "bad_lsn";
    case BatchCheck::bad_body:
      return "bad_body";
  }
  return "?";
}

}  // namespace dtx::wal
