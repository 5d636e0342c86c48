// Goal: after any crash the WAL keeps every acknowledged record and refuses
// to open, naming the place, when synced data is damaged (W1-W3).
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/bytes.h"
#include "tests/support/sim_fs.h"
#include "wal/segmented_log.h"

namespace dtx::wal {
namespace {

using sim::SimFileSystem;
using PageLoss = SimFileSystem::PageLoss;
using DirLoss = SimFileSystem::DirLoss;

constexpr const char* kSeg1 = "/wal/0000000000000001.wal";

Options opts(SimFileSystem& fs, uint64_t segment_bytes = 64 * 1024) {
  Options o;
  o.dir = "/wal";
  o.fs = &fs;
  o.segment_bytes = segment_bytes;
  o.buffer_bytes = 16 * 1024;
  o.record_payload_bytes_max = 4 * 1024;
  o.on_fatal = [](const Status&) {};  // a crashed file system fails the log; the test goes on
  return o;
}

std::string payload_for(uint64_t i) {
  return "p" + std::to_string(i) + ":" + std::string(i * 7 % 300, static_cast<char>('A' + i % 26));
}

std::map<uint64_t, std::string> read_all(SegmentedLog& log) {
  std::map<uint64_t, std::string> out;
  auto reader = log.read_from(log.first_lsn());
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return out;
  for (;;) {
    auto r = (*reader)->next();
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok() || !r->has_value()) break;
    out[(*r)->lsn] = to_string((*r)->payload);
  }
  return out;
}

// Appends records 1..n, one batch each, and returns each batch's start offset.
std::vector<size_t> write_batches(SimFileSystem& fs, uint64_t n) {
  auto log = SegmentedLog::open(opts(fs));
  EXPECT_TRUE(log.ok());
  for (uint64_t i = 1; i <= n; ++i)
    EXPECT_TRUE((*log)->append_sync(1, as_bytes(payload_for(i))).ok());
  log->reset();
  // Recover the batch boundaries from the image.
  auto img = fs.durable_bytes(kSeg1);
  std::vector<size_t> starts;
  EXPECT_GE(img.size(), kSegmentHeaderBytes) << "segment 1 is not durable";
  if (img.size() < kSegmentHeaderBytes) return starts;
  const uint32_t seed = crc_seed(get_u64(img.data() + 8));
  scan_segment(img, seed, 1, 1 << 20,
               [&](size_t off, const std::vector<Record>&) { starts.push_back(off); });
  return starts;
}

TEST(WalRecovery, tail_cut_at_every_byte_of_the_last_batch) {
  constexpr uint64_t kRecords = 6;
  SimFileSystem probe(1);
  auto starts = write_batches(probe, kRecords);
  ASSERT_EQ(starts.size(), kRecords);
  ASSERT_FALSE(::testing::Test::HasFailure());
  const size_t last_start = starts.back();
  const size_t last_end =
      last_start + kBatchHeaderBytes + kRecordHeaderBytes + payload_for(kRecords).size();
  for (size_t cut = last_start; cut < last_end; ++cut) {
    SimFileSystem fs(1);
    write_batches(fs, kRecords);
    std::vector<uint8_t> zeros(last_end - cut, 0);
    fs.poke(kSeg1, cut, zeros);  // the bytes from `cut` on never reached the disk
    auto log = SegmentedLog::open(opts(fs));
    ASSERT_TRUE(log.ok()) << "cut at " << cut << ": " << log.status();
    auto recs = read_all(**log);
    ASSERT_EQ(recs.size(), kRecords - 1) << "cut at " << cut;
    for (uint64_t i = 1; i < kRecords; ++i)
      ASSERT_EQ(recs[i], payload_for(i));
    ASSERT_EQ((*log)->next_lsn(), kRecords);
    // Appending after the cut reuses the torn LSN, and a second reopen is clean.
    ASSERT_TRUE((*log)->append_sync(1, as_bytes(std::string("after-cut"))).ok());
    log->reset();
    auto again = SegmentedLog::open(opts(fs));
    ASSERT_TRUE(again.ok()) << again.status();
    auto recs2 = read_all(**again);
    ASSERT_EQ(recs2.size(), kRecords);
    ASSERT_EQ(recs2[kRecords], "after-cut");
  }
}

TEST(WalRecovery, garbage_left_by_a_torn_tail_never_resurfaces) {
  // A long torn batch followed, after recovery, by a short one: the stale
  // bytes beyond the short batch must be gone, or a later recovery could read
  // them.
  SimFileSystem fs(2);
  auto starts = write_batches(fs, 3);
  ASSERT_EQ(starts.size(), 3u);
  std::string junk(2000, '\x5a');
  fs.poke(kSeg1, starts.back() + 200, as_bytes(junk));  // damage inside/after the last batch
  {
    auto log = SegmentedLog::open(opts(fs));
    ASSERT_TRUE(log.ok()) << log.status();
    EXPECT_GT((*log)->stats().torn_bytes_cut, 0u);
    ASSERT_TRUE((*log)->append_sync(1, as_bytes(std::string("s"))).ok());
  }
  auto img = fs.durable_bytes(kSeg1);
  EXPECT_EQ(std::search(img.begin(), img.end(), junk.begin(), junk.begin() + 64), img.end());
  auto log = SegmentedLog::open(opts(fs));
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ((*log)->stats().torn_bytes_cut, 0u);
}

TEST(WalRecovery, bit_flip_in_a_synced_record_followed_by_a_batch_refuses_to_open) {
  for (int which : {0, 2, 4}) {
    SimFileSystem fs(3);
    auto starts = write_batches(fs, 6);
    ASSERT_EQ(starts.size(), 6u);
    auto before = fs.durable_bytes(kSeg1);
    const size_t at = starts[which] + kBatchHeaderBytes + kRecordHeaderBytes + 1;
    uint8_t b = before[at] ^ 0x04;
    fs.poke(kSeg1, at, {&b, 1});
    auto damaged = fs.durable_bytes(kSeg1);
    auto log = SegmentedLog::open(opts(fs));
    ASSERT_FALSE(log.ok()) << "batch " << which;
    EXPECT_EQ(log.status().code(), Code::corruption);
    const std::string& msg = log.status().message();
    EXPECT_NE(msg.find("0000000000000001.wal"), std::string::npos) << msg;
    EXPECT_NE(msg.find("offset " + std::to_string(starts[which])), std::string::npos) << msg;
    EXPECT_EQ(fs.durable_bytes(kSeg1), damaged) << "a refused open must not change the log";
  }
}

TEST(WalRecovery, bit_flip_in_a_batch_header_followed_by_a_batch_refuses_to_open) {
  SimFileSystem fs(4);
  auto starts = write_batches(fs, 5);
  ASSERT_EQ(starts.size(), 5u);
  auto img = fs.durable_bytes(kSeg1);
  uint8_t b = img[starts[1] + 17] ^ 0x80;  // the record count
  fs.poke(kSeg1, starts[1] + 17, {&b, 1});
  auto log = SegmentedLog::open(opts(fs));
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), Code::corruption);
  EXPECT_NE(log.status().message().find("offset " + std::to_string(starts[1])), std::string::npos)
      << log.status();
}

TEST(WalRecovery, damage_in_an_earlier_segment_refuses_to_open) {
  SimFileSystem fs(5);
  {
    auto log = SegmentedLog::open(opts(fs));
    ASSERT_TRUE(log.ok());
    std::string big(3000, 'b');
    for (int i = 0; i < 60; ++i)
      ASSERT_TRUE((*log)->append_sync(1, as_bytes(big)).ok());
  }
  ASSERT_TRUE(fs.exists("/wal/0000000000000002.wal"));
  // The last batch of segment 1 is damaged: it looks like a torn tail inside
  // its segment, but segment 2 holds data, so it was synced.
  auto img = fs.durable_bytes(kSeg1);
  ASSERT_GE(img.size(), kSegmentHeaderBytes);
  size_t last = 0;
  scan_segment(img, crc_seed(get_u64(img.data() + 8)), 1, 1 << 20,
               [&](size_t off, const std::vector<Record>&) { last = off; });
  uint8_t b = img[last + 100] ^ 1;
  fs.poke(kSeg1, last + 100, {&b, 1});
  auto log = SegmentedLog::open(opts(fs));
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), Code::corruption);
  EXPECT_NE(log.status().message().find("0000000000000001.wal"), std::string::npos);
}

TEST(WalRecovery, missing_segment_in_the_middle_refuses_to_open) {
  SimFileSystem fs(6);
  {
    auto log = SegmentedLog::open(opts(fs));
    ASSERT_TRUE(log.ok());
    std::string big(3000, 'm');
    for (int i = 0; i < 80; ++i)
      ASSERT_TRUE((*log)->append_sync(1, as_bytes(big)).ok());
  }
  ASSERT_TRUE(fs.remove("/wal/0000000000000002.wal").ok());
  auto log = SegmentedLog::open(opts(fs));
  ASSERT_FALSE(log.ok());
  EXPECT_EQ(log.status().code(), Code::corruption);
  EXPECT_NE(log.status().message().find("0000000000000002.wal is missing"), std::string::npos)
      << log.status();
}

TEST(SimFileSystem, an_unsynced_directory_entry_is_really_lost) {
  // Shows the crash model has teeth: without sync_dir a new file vanishes
  // even though its data was fdatasync'd.
  SimFileSystem fs(7);
  ASSERT_TRUE(fs.make_dirs("/d").ok());
  auto f = fs.open("/d/new", OpenMode::create_exclusive);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(write_all(**f, 0, as_bytes(std::string("data"))).ok());
  ASSERT_TRUE((*f)->datasync().ok());
  fs.crash(PageLoss::all_unsynced, DirLoss::all_unsynced);
  fs.restart();
  EXPECT_FALSE(fs.exists("/d/new"));
}

// Appenders run while the file system crashes at a random moment, losing
// unsynced pages (all or a random subset) and unsynced directory entries.
// After recovery every acknowledged record is there, intact, with contiguous
// LSNs. Small segments make crashes during rotation and preallocation common.
struct CrashSummary {
  size_t acked = 0;
  uint64_t torn_bytes_cut = 0;
  uint64_t segments_created = 0;
};

void crash_under_load(uint64_t seed, PageLoss pages, DirLoss dirs, CrashSummary* sum) {
  SimFileSystem fs(seed);
  std::mt19937_64 rng(seed);
  std::map<uint64_t, std::string> acked;  // what must survive
  std::mutex acked_mu;
  for (int round = 0; round < 4; ++round) {
    auto log = SegmentedLog::open(opts(fs, 32 * 1024));
    ASSERT_TRUE(log.ok()) << "seed " << seed << " round " << round << ": " << log.status();
    auto recs = read_all(**log);
    for (const auto& [lsn, p] : acked) {
      auto it = recs.find(lsn);
      ASSERT_NE(it, recs.end()) << "seed " << seed << ": acknowledged LSN " << lsn << " lost";
      ASSERT_EQ(it->second, p) << "seed " << seed << ": LSN " << lsn << " changed";
    }
    if (!recs.empty()) {
      ASSERT_EQ(recs.rbegin()->first - recs.begin()->first + 1, recs.size()) << "LSN gap";
    }
    sum->torn_bytes_cut += (*log)->stats().torn_bytes_cut;
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < 3; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; !stop.load(); ++i) {
          std::string p = "s" + std::to_string(seed) + "r" + std::to_string(round) + "t" +
                          std::to_string(t) + "i" + std::to_string(i) +
                          std::string((i * 131) % 2000, 'x');
          auto lsn = (*log)->append(1, as_bytes(p), [&, p](uint64_t l, const Status& s) {
            if (!s.ok()) return;
            std::lock_guard lock(acked_mu);
            acked[l] = p;
          });
          if (!lsn.ok() || !(*log)->wait_durable(*lsn).ok()) return;
        }
      });
    }
    // Crash at the start of a random sync: unsynced pages then exist for sure
    // (a batch written but not yet synced, or a segment being preallocated).
    std::atomic<int> countdown{static_cast<int>(1 + rng() % 80)};
    std::atomic<bool> crashed{false};
    fs.set_before_sync([&](const std::string&) {
      if (countdown.fetch_sub(1) == 1) {
        fs.crash(pages, dirs);
        crashed = true;
      }
    });
    while (!crashed.load())
      std::this_thread::yield();
    fs.set_before_sync(nullptr);
    stop = true;
    for (auto& th : threads)
      th.join();
    sum->segments_created += (*log)->stats().segments_created;
    log->reset();  // the crashed process is gone
    fs.restart();
  }
  std::lock_guard lock(acked_mu);
  sum->acked += acked.size();
}

TEST(WalRecovery, crash_losing_all_unsynced_pages_and_entries_keeps_acked_records) {
  CrashSummary sum;
  for (uint64_t seed = 100; seed < 140; ++seed) {
    crash_under_load(seed, PageLoss::all_unsynced, DirLoss::all_unsynced, &sum);
  }
  // The runs did real work: records acknowledged, segments rotated.
  EXPECT_GT(sum.acked, 1000u);
  EXPECT_GT(sum.segments_created, 80u);
}

TEST(WalRecovery, crash_losing_a_random_subset_of_unsynced_pages_keeps_acked_records) {
  CrashSummary sum;
  for (uint64_t seed = 200; seed < 240; ++seed) {
    crash_under_load(seed, PageLoss::random_unsynced, DirLoss::random_unsynced, &sum);
  }
  EXPECT_GT(sum.acked, 1000u);
  EXPECT_GT(sum.torn_bytes_cut, 0u) << "some crash should have torn a batch";
}

TEST(WalRecovery, lost_directory_entry_for_a_new_segment_loses_nothing_acked) {
  // Rotation every few records: every crash lands near a new segment whose
  // directory entry may not be durable.
  for (uint64_t seed = 300; seed < 310; ++seed) {
    SimFileSystem fs(seed);
    std::map<uint64_t, std::string> acked;
    {
      Options o = opts(fs, 20 * 1024);
      auto log = SegmentedLog::open(o);
      ASSERT_TRUE(log.ok());
      for (uint64_t i = 1; i <= 40 + seed % 7; ++i) {
        std::string p = payload_for(i) + std::string(3000, 'd');
        auto lsn = (*log)->append_sync(1, as_bytes(p));
        ASSERT_TRUE(lsn.ok());
        acked[*lsn] = p;
      }
      fs.crash(PageLoss::all_unsynced, DirLoss::all_unsynced);
    }
    fs.restart();
    auto log = SegmentedLog::open(opts(fs, 20 * 1024));
    ASSERT_TRUE(log.ok()) << log.status();
    auto recs = read_all(**log);
    ASSERT_EQ(recs, acked) << "seed " << seed;
  }
}

}  // namespace
}  // namespace dtx::wal
