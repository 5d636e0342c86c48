// Fuzzes the WAL's record, batch and segment decoders (wal/format.h): on any
// input they must not read out of bounds, must accept only batches whose
// records check out, and must round-trip what the encoder writes.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "wal/format.h"

using namespace dtx::wal;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 9) return 0;
  const uint64_t log_id = data[0] | 1u;
  const uint32_t seed = crc_seed(log_id);
  const uint64_t expected = data[1] % 4;
  std::span<const uint8_t> in(data + 9, size - 9);

  // Arbitrary bytes as a batch and as a segment.
  std::vector<Record> recs;
  BatchDecode d = decode_batch(in, seed, expected, 1 << 16, &recs);
  if (d.check == BatchCheck::ok) {
    if (recs.size() != d.count || d.batch_bytes > in.size()) std::abort();
    for (size_t i = 0; i < recs.size(); ++i) {
      if (recs[i].lsn != expected + i) std::abort();
    }
  } else if (!recs.empty()) {
    std::abort();
  }
  SegmentHeader h;
  std::string detail;
  (void)decode_segment_header(in, &h, &detail);
  if (in.size() >= kSegmentHeaderBytes) {
    SegmentScan s = scan_segment(in, seed, expected, 1 << 16);
    if (s.end_offset > in.size()) std::abort();
  }

  // The input as payloads: encode a batch and decode it again.
  std::vector<uint8_t> batch(kBatchHeaderBytes);
  size_t n = 0;
  for (size_t off = 0; off < in.size(); ++n) {
    size_t len = std::min<size_t>(in[off] % 32, in.size() - off);
    auto p = in.subspan(off, len);
    size_t at = batch.size();
    batch.resize(at + kRecordHeaderBytes + len);
    encode_record_header(batch.data() + at, static_cast<uint32_t>(len),
                         record_crc(payload_crc(seed, p), 5 + n, 1, 0), 5 + n, 1);
    if (len) std::memcpy(batch.data() + at + kRecordHeaderBytes, p.data(), len);
    off += len ? len : 1;
  }
  if (n == 0) return 0;
  encode_batch_header(batch.data(), seed, 5, static_cast<uint32_t>(n),
                      static_cast<uint32_t>(batch.size() - kBatchHeaderBytes));
  recs.clear();
  BatchDecode r = decode_batch(batch, seed, 5, 1 << 16, &recs);
  if (r.check != BatchCheck::ok || recs.size() != n) std::abort();
  return 0;
}
