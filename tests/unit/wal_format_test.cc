// Goal: the WAL's pure encoder and decoder accept exactly what they wrote
// and classify every kind of damage as wal/format.h says.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "wal/format.h"

namespace dtx::wal {
namespace {

constexpr uint64_t kLogId = 0x1234abcd5678ef01ull;

// Builds one batch holding the given payloads, starting at first_lsn.
std::vector<uint8_t> make_batch(uint32_t seed, uint64_t first_lsn,
                                const std::vector<std::string>& payloads) {
  std::vector<uint8_t> b(kBatchHeaderBytes);
  uint64_t lsn = first_lsn;
  for (const auto& p : payloads) {
    size_t at = b.size();
    b.resize(at + kRecordHeaderBytes + p.size());
    auto bytes = as_bytes(p);
    encode_record_header(b.data() + at, static_cast<uint32_t>(p.size()),
                         record_crc(payload_crc(seed, bytes), lsn, 7, 0), lsn, 7);
    std::memcpy(b.data() + at + kRecordHeaderBytes, p.data(), p.size());
    ++lsn;
  }
  encode_batch_header(b.data(), seed, first_lsn, static_cast<uint32_t>(payloads.size()),
                      static_cast<uint32_t>(b.size() - kBatchHeaderBytes));
  return b;
}

TEST(WalFormat, segment_header_round_trips_and_detects_damage) {
  uint8_t h[kSegmentHeaderBytes];
  encode_segment_header(SegmentHeader{kLogId, 3, 100, 1 << 20}, h);
  SegmentHeader out;
  std::string detail;
  ASSERT_EQ(decode_segment_header(h, &out, &detail), HeaderCheck::ok);
  EXPECT_EQ(out.log_id, kLogId);
  EXPECT_EQ(out.seq, 3u);
  EXPECT_EQ(out.first_lsn, 100u);
  h[20] ^= 1;
  EXPECT_EQ(decode_segment_header(h, &out, &detail), HeaderCheck::invalid);
  EXPECT_EQ(detail, "bad segment header crc");
  uint8_t zero[kSegmentHeaderBytes] = {};
  EXPECT_EQ(decode_segment_header(zero, &out, &detail), HeaderCheck::zero);
}

TEST(WalFormat, batch_round_trips) {
  const uint32_t seed = crc_seed(kLogId);
  auto b = make_batch(seed, 42, {"alpha", "", std::string(1000, 'x')});
  std::vector<Record> recs;
  BatchDecode d = decode_batch(b, seed, 42, 1 << 20, &recs);
  ASSERT_EQ(d.check, BatchCheck::ok) << d.detail;
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0].lsn, 42u);
  EXPECT_EQ(to_string(recs[0].payload), "alpha");
  EXPECT_EQ(recs[1].payload.size(), 0u);
  EXPECT_EQ(recs[2].lsn, 44u);
  EXPECT_EQ(recs[2].type, 7);
  EXPECT_EQ(d.batch_bytes, b.size());
}

TEST(WalFormat, every_single_bit_flip_is_detected) {
  const uint32_t seed = crc_seed(kLogId);
  auto good = make_batch(seed, 1, {"one", "two", "three"});
  for (size_t bit = 0; bit < good.size() * 8; ++bit) {
    auto b = good;
    b[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    std::vector<Record> recs;
    BatchDecode d = decode_batch(b, seed, 1, 1 << 20, &recs);
    ASSERT_NE(d.check, BatchCheck::ok) << "bit " << bit;
    EXPECT_TRUE(recs.empty()) << "records of a bad batch must not be returned";
  }
}

TEST(WalFormat, batch_from_another_log_or_position_is_rejected) {
  const uint32_t seed = crc_seed(kLogId);
  auto b = make_batch(seed, 10, {"x"});
  EXPECT_EQ(decode_batch(b, crc_seed(kLogId + 1), 10, 1 << 20, nullptr).check,
            BatchCheck::bad_header);
  EXPECT_EQ(decode_batch(b, seed, 11, 1 << 20, nullptr).check, BatchCheck::bad_lsn);
}

TEST(WalFormat, truncated_batch_is_bad_body_never_an_overread) {
  const uint32_t seed = crc_seed(kLogId);
  auto good = make_batch(seed, 1, {"some payload", "another"});
  for (size_t len = kBatchHeaderBytes; len < good.size(); ++len) {
    std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<long>(len));
    EXPECT_EQ(decode_batch(cut, seed, 1, 1 << 20, nullptr).check, BatchCheck::bad_body) << len;
  }
}

TEST(WalFormat, scan_tells_clean_end_torn_tail_and_corruption_apart) {
  const uint32_t seed = crc_seed(kLogId);
  std::vector<uint8_t> seg(8192, 0);
  uint8_t h[kSegmentHeaderBytes];
  encode_segment_header(SegmentHeader{kLogId, 1, 1, seg.size()}, h);
  std::memcpy(seg.data(), h, sizeof h);
  size_t off = kSegmentHeaderBytes;
  std::vector<size_t> starts;
  uint64_t lsn = 1;
  for (int i = 0; i < 4; ++i) {
    auto b = make_batch(seed, lsn, {"r" + std::to_string(i), "s" + std::to_string(i)});
    starts.push_back(off);
    std::memcpy(seg.data() + off, b.data(), b.size());
    off += b.size();
    lsn += 2;
  }
  SegmentScan s = scan_segment(seg, seed, 1, 1 << 20);
  EXPECT_EQ(s.end, SegmentEnd::clean);
  EXPECT_EQ(s.records, 8u);
  EXPECT_EQ(s.next_lsn, 9u);
  EXPECT_EQ(s.end_offset, off);

  auto torn = seg;  // last batch half written
  std::memset(torn.data() + starts[3] + 30, 0, off - starts[3] - 30);
  s = scan_segment(torn, seed, 1, 1 << 20);
  EXPECT_EQ(s.end, SegmentEnd::torn);
  EXPECT_EQ(s.end_offset, starts[3]);
  EXPECT_EQ(s.next_lsn, 7u);

  auto flipped = seg;  // a synced batch damaged, valid batches after it
  flipped[starts[1] + kBatchHeaderBytes + 22] ^= 0x10;
  s = scan_segment(flipped, seed, 1, 1 << 20);
  EXPECT_EQ(s.end, SegmentEnd::corrupt);
  EXPECT_EQ(s.end_offset, starts[1]);
  EXPECT_EQ(s.later_batch_offset, starts[2]);
}

}  // namespace
}  // namespace dtx::wal
