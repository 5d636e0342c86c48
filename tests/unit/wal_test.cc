// Goal: SegmentedLog appends, reads, rotates, truncates and fails exactly as
// wal/segmented_log.h promises, on the real file system and on SimFileSystem.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/bytes.h"
#include "tests/support/sim_fs.h"
#include "tests/support/temp_dir.h"
#include "wal/segmented_log.h"

namespace dtx::wal {
namespace {

using sim::SimFileSystem;

Options small_options(const std::string& dir, FileSystem* fs = nullptr) {
  Options o;
  o.dir = dir;
  o.fs = fs;
  o.segment_bytes = 64 * 1024;
  o.buffer_bytes = 16 * 1024;
  o.record_payload_bytes_max = 4 * 1024;
  return o;
}

std::string payload_for(uint64_t i) {
  return "record-" + std::to_string(i) + std::string(i % 97, static_cast<char>('a' + i % 26));
}

std::vector<std::pair<uint64_t, std::string>> read_all(SegmentedLog& log, uint64_t from) {
  std::vector<std::pair<uint64_t, std::string>> out;
  auto reader = log.read_from(from);
  EXPECT_TRUE(reader.ok()) << reader.status();
  if (!reader.ok()) return out;
  for (;;) {
    auto r = (*reader)->next();
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok() || !r->has_value()) break;
    out.emplace_back((*r)->lsn, to_string((*r)->payload));
  }
  return out;
}

TEST(SegmentedLog, round_trip_on_disk_and_reopen_after_clean_close) {
  testing::TempDir dir;
  uint64_t log_id;
  {
    auto log = SegmentedLog::open(small_options(dir.path()));
    ASSERT_TRUE(log.ok()) << log.status();
    log_id = (*log)->log_id();
    for (uint64_t i = 1; i <= 200; ++i) {
      auto lsn = (*log)->append_sync(1, as_bytes(payload_for(i)));
      ASSERT_TRUE(lsn.ok()) << lsn.status();
      ASSERT_EQ(*lsn, i);
    }
    auto recs = read_all(**log, 1);
    ASSERT_EQ(recs.size(), 200u);
    for (uint64_t i = 1; i <= 200; ++i)
      EXPECT_EQ(recs[i - 1].second, payload_for(i));
    EXPECT_TRUE((*log)->close().ok());
  }
  auto log = SegmentedLog::open(small_options(dir.path()));
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_EQ((*log)->log_id(), log_id);
  EXPECT_EQ((*log)->next_lsn(), 201u);
  EXPECT_EQ((*log)->durable_lsn(), 200u);
  auto recs = read_all(**log, 150);
  ASSERT_EQ(recs.size(), 51u);
  EXPECT_EQ(recs.front().first, 150u);
  EXPECT_EQ(recs.front().second, payload_for(150));
  auto lsn = (*log)->append_sync(1, as_bytes(std::string("after reopen")));
  ASSERT_TRUE(lsn.ok());
  EXPECT_EQ(*lsn, 201u);
}

TEST(SegmentedLog, rotates_segments_and_reads_across_them) {
  SimFileSystem fs(3);
  auto log = SegmentedLog::open(small_options("/wal", &fs));
  ASSERT_TRUE(log.ok()) << log.status();
  std::string big(3000, 'z');
  for (int i = 0; i < 100; ++i)
    ASSERT_TRUE((*log)->append_sync(2, as_bytes(big)).ok());
  auto names = fs.list("/wal");
  ASSERT_TRUE(names.ok());
  size_t segs = std::count_if(names->begin(), names->end(),
                              [](const std::string& n) { return n.ends_with(".wal"); });
  EXPECT_GE(segs, 5u) << "300 kB of records in 64 kB segments";
  EXPECT_EQ(read_all(**log, 1).size(), 100u);
  log->reset();
  auto again = SegmentedLog::open(small_options("/wal", &fs));
  ASSERT_TRUE(again.ok()) << again.status();
  auto recs = read_all(**again, 1);
  ASSERT_EQ(recs.size(), 100u);
  for (size_t i = 0; i < recs.size(); ++i) {
    EXPECT_EQ(recs[i].first, i + 1);
    EXPECT_EQ(recs[i].second, big);
  }
}

TEST(SegmentedLog, prefix_truncation_waits_for_a_pinned_reader) {
  SimFileSystem fs(4);
  auto log = SegmentedLog::open(small_options("/wal", &fs));
  ASSERT_TRUE(log.ok());
  std::string big(3000, 'q');
  for (int i = 0; i < 100; ++i)
    ASSERT_TRUE((*log)->append_sync(2, as_bytes(big)).ok());
  ASSERT_TRUE(fs.exists("/wal/0000000000000001.wal"));

  auto reader = (*log)->read_from(1);
  ASSERT_TRUE(reader.ok());
  auto first = (*reader)->next();
  ASSERT_TRUE(first.ok() && first->has_value());
  EXPECT_EQ((*first)->lsn, 1u);

  ASSERT_TRUE((*log)->truncate_prefix(80).ok());
  EXPECT_GT((*log)->first_lsn(), 1u);
  EXPECT_LE((*log)->first_lsn(), 80u);
  // The pinned segment (and all after it) survive; a new reader below the
  // new start is told the records are gone.
  EXPECT_TRUE(fs.exists("/wal/0000000000000001.wal"));
  auto too_old = (*log)->read_from(1);
  ASSERT_FALSE(too_old.ok());
  EXPECT_EQ(too_old.status().code(), Code::compacted);

  // The pinned reader still reads everything, and frees segments as it goes.
  uint64_t n = 1;
  for (;;) {
    auto r = (*reader)->next();
    ASSERT_TRUE(r.ok()) << r.status();
    if (!r->has_value()) break;
    ASSERT_EQ((*r)->lsn, ++n);
  }
  EXPECT_EQ(n, 100u);
  reader->reset();
  EXPECT_FALSE(fs.exists("/wal/0000000000000001.wal"));
  EXPECT_GT((*log)->stats().segments_removed, 0u);
  auto from_start = read_all(**log, (*log)->first_lsn());
  EXPECT_EQ(from_start.back().first, 100u);

  // Reopen: the log starts at the first surviving segment.
  const uint64_t start = (*log)->first_lsn();
  log->reset();
  auto again = SegmentedLog::open(small_options("/wal", &fs));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->first_lsn(), start);
  EXPECT_EQ((*again)->next_lsn(), 101u);
}

TEST(SegmentedLog, reader_follows_the_tail_as_records_become_durable) {
  SimFileSystem fs(5);
  auto log = SegmentedLog::open(small_options("/wal", &fs));
  ASSERT_TRUE(log.ok());
  auto reader = (*log)->read_from(1);
  ASSERT_TRUE(reader.ok());
  auto none = (*reader)->next();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  ASSERT_TRUE((*log)->append_sync(1, as_bytes(std::string("a"))).ok());
  auto one = (*reader)->next();
  ASSERT_TRUE(one.ok() && one->has_value());
  EXPECT_EQ(to_string((*one)->payload), "a");
}

TEST(SegmentedLog, many_concurrent_appenders_each_durable_exactly_once_in_lsn_order) {
  testing::TempDir dir;
  Options o = small_options(dir.path());
  o.segment_bytes = 1 << 20;
  auto log = SegmentedLog::open(o);
  ASSERT_TRUE(log.ok()) << log.status();
  constexpr int kThreads = 16, kPerThread = 200;
  std::mutex mu;
  std::map<uint64_t, std::string> completed;  // lsn -> payload, from callbacks
  std::atomic<int> duplicate_completions{0};
  std::vector<std::thread> threads;
  std::vector<std::vector<uint64_t>> lsns(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string p = "t" + std::to_string(t) + "-" + std::to_string(i);
        auto lsn = (*log)->append(1, as_bytes(p), [&, p](uint64_t l, const Status& s) {
          ASSERT_TRUE(s.ok());
          std::lock_guard lock(mu);
          if (!completed.emplace(l, p).second) duplicate_completions++;
        });
        ASSERT_TRUE(lsn.ok());
        ASSERT_TRUE((*log)->wait_durable(*lsn).ok());
        ASSERT_GE((*log)->durable_lsn(), *lsn);
        lsns[t].push_back(*lsn);
      }
    });
  }
  for (auto& th : threads)
    th.join();
  const uint64_t batches = (*log)->stats().batches;
  ASSERT_TRUE((*log)->close().ok());  // every callback has run
  EXPECT_EQ(duplicate_completions.load(), 0);
  ASSERT_EQ(completed.size(), size_t{kThreads * kPerThread});
  for (auto& v : lsns)
    EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));
  auto recs = read_all(**log, 1);
  ASSERT_EQ(recs.size(), size_t{kThreads * kPerThread});
  std::set<std::string> seen;
  for (size_t i = 0; i < recs.size(); ++i) {
    EXPECT_EQ(recs[i].first, i + 1);
    EXPECT_EQ(completed[recs[i].first], recs[i].second);
    EXPECT_TRUE(seen.insert(recs[i].second).second) << "record written twice";
  }
  EXPECT_LT(batches, uint64_t{kThreads * kPerThread}) << "concurrent appenders share batches";
}

TEST(SegmentedLog, no_append_completes_before_its_fdatasync) {
  SimFileSystem fs(6);
  Options o = small_options("/wal", &fs);
  auto log = SegmentedLog::open(o);
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE((*log)->append_sync(1, as_bytes(std::string("warm"))).ok());
  ASSERT_TRUE((*log)->wait_preallocated().ok());

  // Hold every sync back until the test opens the gate.
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  bool open = false;
  std::atomic<int> syncs_waiting{0};
  fs.set_before_sync([&](const std::string&) {
    syncs_waiting++;
    std::unique_lock lock(gate_mu);
    gate_cv.wait(lock, [&] { return open; });
  });
  std::atomic<int> completed{0};
  std::atomic<int> completed_without_durable_bytes{0};
  std::vector<uint64_t> lsns;
  for (int i = 0; i < 20; ++i) {
    auto lsn =
        (*log)->append(1, as_bytes("held-" + std::to_string(i)), [&](uint64_t l, const Status& s) {
          EXPECT_TRUE(s.ok());
          // At completion the record must be in what a
          // crash would leave on disk.
          auto img = fs.durable_bytes("/wal/0000000000000001.wal");
          std::string needle = "held-" + std::to_string(l - 2);
          if (std::search(img.begin(), img.end(), needle.begin(), needle.end()) == img.end()) {
            completed_without_durable_bytes++;
          }
          completed++;
        });
    ASSERT_TRUE(lsn.ok());
    lsns.push_back(*lsn);
  }
  while (syncs_waiting.load() == 0)
    std::this_thread::yield();
  // The flusher is inside fdatasync: nothing may be reported durable.
  EXPECT_EQ(completed.load(), 0);
  EXPECT_LT((*log)->durable_lsn(), lsns.front());
  {
    std::lock_guard lock(gate_mu);
    open = true;
  }
  gate_cv.notify_all();
  ASSERT_TRUE((*log)->wait_durable(lsns.back()).ok());
  log->reset();  // joins the flusher: every callback has run
  EXPECT_EQ(completed.load(), 20);
  EXPECT_EQ(completed_without_durable_bytes.load(), 0);
}

TEST(SegmentedLog, failed_fsync_is_final_and_never_retried) {
  SimFileSystem fs(7);
  Options o = small_options("/wal", &fs);
  std::vector<Status> fatal;
  o.on_fatal = [&](const Status& s) { fatal.push_back(s); };
  auto log = SegmentedLog::open(o);
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE((*log)->append_sync(1, as_bytes(std::string("before"))).ok());
  ASSERT_TRUE((*log)->wait_preallocated().ok());  // no background sync to take the failure
  fs.fail_next_syncs(1);
  const uint64_t syncs_before = fs.syncs();
  auto failed = (*log)->append_sync(1, as_bytes(std::string("lost")));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), Code::closed);
  EXPECT_NE(failed.status().message().find("Input/output error"), std::string::npos);
  auto after = (*log)->append(1, as_bytes(std::string("refused")));
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.status().code(), Code::closed);
  log->reset();
  ASSERT_EQ(fatal.size(), 1u);
  EXPECT_EQ(fatal[0].code(), Code::io_error);
  EXPECT_EQ(fs.syncs(), syncs_before + 1) << "the failed fdatasync must not be retried";
  // A restart finds the record acknowledged before the failure.
  fs.crash(SimFileSystem::PageLoss::all_unsynced, SimFileSystem::DirLoss::all_unsynced);
  fs.restart();
  auto again = SegmentedLog::open(small_options("/wal", &fs));
  ASSERT_TRUE(again.ok()) << again.status();
  auto recs = read_all(**again, 1);
  ASSERT_GE(recs.size(), 1u);
  EXPECT_EQ(recs[0].second, "before");
  EXPECT_EQ(recs.size(), 1u) << "the page whose fsync failed never reached the disk";
}

TEST(SegmentedLog, short_writes_are_completed) {
  SimFileSystem fs(8);
  fs.set_short_write_probability(0.7);
  auto log = SegmentedLog::open(small_options("/wal", &fs));
  ASSERT_TRUE(log.ok()) << log.status();
  for (uint64_t i = 1; i <= 100; ++i) {
    ASSERT_TRUE((*log)->append_sync(1, as_bytes(payload_for(i))).ok());
  }
  log->reset();
  fs.set_short_write_probability(0);
  fs.crash(SimFileSystem::PageLoss::all_unsynced, SimFileSystem::DirLoss::all_unsynced);
  fs.restart();
  auto again = SegmentedLog::open(small_options("/wal", &fs));
  ASSERT_TRUE(again.ok()) << again.status();
  auto recs = read_all(**again, 1);
  ASSERT_EQ(recs.size(), 100u);
  for (uint64_t i = 1; i <= 100; ++i)
    EXPECT_EQ(recs[i - 1].second, payload_for(i));
}

TEST(SegmentedLog, bad_input_is_refused_with_a_clear_error) {
  SimFileSystem fs(9);
  auto log = SegmentedLog::open(small_options("/wal", &fs));
  ASSERT_TRUE(log.ok());
  auto zero = (*log)->append(0, {});
  ASSERT_FALSE(zero.ok());
  EXPECT_EQ(zero.status().code(), Code::invalid_argument);
  std::string huge(4 * 1024 + 1, 'x');
  auto big = (*log)->append(1, as_bytes(huge));
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), Code::invalid_argument);
  EXPECT_NE(big.status().message().find("exceeds the limit"), std::string::npos);
  auto empty = (*log)->append_sync(1, {});
  EXPECT_TRUE(empty.ok()) << "an empty payload is a valid record";
  auto beyond = (*log)->read_from(100);
  EXPECT_EQ(beyond.status().code(), Code::invalid_argument);
  EXPECT_EQ((*log)->wait_durable(100).code(), Code::invalid_argument);

  Options bad = small_options("/other", &fs);
  bad.buffer_bytes = 100;
  EXPECT_EQ(SegmentedLog::open(bad).status().code(), Code::invalid_argument);
}

TEST(SegmentedLog, a_second_process_cannot_open_the_same_log) {
  testing::TempDir dir;
  auto first = SegmentedLog::open(small_options(dir.path()));
  ASSERT_TRUE(first.ok());
  auto second = SegmentedLog::open(small_options(dir.path()));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), Code::busy);
}

TEST(SegmentedLog, async_callbacks_go_through_the_executor_once_per_batch) {
  SimFileSystem fs(10);
  Options o = small_options("/wal", &fs);
  std::atomic<int> posts{0};
  o.callback_executor = [&](std::function<void()> fn) {
    posts++;
    fn();
  };
  auto log = SegmentedLog::open(o);
  ASSERT_TRUE(log.ok());
  std::atomic<int> done{0};
  uint64_t last = 0;
  for (int i = 0; i < 50; ++i) {
    last = *(*log)->append(1, as_bytes(std::string("x")), [&](uint64_t, const Status& s) {
      EXPECT_TRUE(s.ok());
      done++;
    });
  }
  ASSERT_TRUE((*log)->wait_durable(last).ok());
  const uint64_t batches = (*log)->stats().batches;
  log->reset();
  EXPECT_EQ(done.load(), 50);
  // One closure per batch, not one per record.
  EXPECT_EQ(static_cast<uint64_t>(posts.load()), batches);
}

TEST(SegmentedLog,
     append_flush_here_on_an_idle_log_syncs_on_the_caller_and_runs_its_callback_there) {
  SimFileSystem fs(11);
  Options o = small_options("/wal", &fs);
  std::atomic<int> posts{0};
  o.callback_executor = [&](std::function<void()> fn) {
    posts++;
    fn();
  };
  auto log = SegmentedLog::open(o);
  ASSERT_TRUE(log.ok());
  std::thread::id sync_thread;
  fs.set_before_sync([&](const std::string&) { sync_thread = std::this_thread::get_id(); });
  for (int i = 0; i < 5; ++i) {
    bool ran = false;
    std::thread::id ran_on;
    bool durable_at_callback = false;
    auto lsn = (*log)->append_flush_here(
        1, as_bytes("here-" + std::to_string(i)), [&](uint64_t l, const Status& s) {
          EXPECT_TRUE(s.ok());
          ran = true;
          ran_on = std::this_thread::get_id();
          auto img = fs.durable_bytes("/wal/0000000000000001.wal");
          const std::string needle = "here-" + std::to_string(i);
          durable_at_callback =
              std::search(img.begin(), img.end(), needle.begin(), needle.end()) != img.end() &&
              (*log)->durable_lsn() >= l;
        });
    ASSERT_TRUE(lsn.ok());
    // Synced and reported before append_flush_here returned, on this thread,
    // not through the executor.
    EXPECT_TRUE(ran);
    EXPECT_EQ(ran_on, std::this_thread::get_id());
    EXPECT_EQ(sync_thread, std::this_thread::get_id());
    EXPECT_TRUE(durable_at_callback);
  }
  EXPECT_EQ(posts.load(), 0);
}

TEST(SegmentedLog, append_flush_here_behind_a_running_flush_goes_to_the_flusher) {
  SimFileSystem fs(12);
  Options o = small_options("/wal", &fs);
  std::atomic<int> posts{0};
  o.callback_executor = [&](std::function<void()> fn) {
    posts++;
    fn();
  };
  auto log = SegmentedLog::open(o);
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE((*log)->wait_preallocated().ok());
  // The flusher thread holds the token inside fdatasync until the gate opens.
  std::mutex gate_mu;
  std::condition_variable gate_cv;
  bool open = false;
  std::atomic<int> syncs_waiting{0};
  fs.set_before_sync([&](const std::string&) {
    syncs_waiting++;
    std::unique_lock lock(gate_mu);
    gate_cv.wait(lock, [&] { return open; });
  });
  std::atomic<int> done{0};
  ASSERT_TRUE((*log)
                  ->append(1, as_bytes(std::string("first")),
                           [&](uint64_t, const Status& s) {
                             EXPECT_TRUE(s.ok());
                             done++;
                           })
                  .ok());
  while (syncs_waiting.load() == 0)
    std::this_thread::yield();
  // Must neither block on the running flush nor report anything durable.
  auto second =
      (*log)->append_flush_here(1, as_bytes(std::string("second")), [&](uint64_t, const Status& s) {
        EXPECT_TRUE(s.ok());
        done++;
      });
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(done.load(), 0);
  {
    std::lock_guard lock(gate_mu);
    open = true;
  }
  gate_cv.notify_all();
  ASSERT_TRUE((*log)->wait_durable(*second).ok());
  log->reset();
  EXPECT_EQ(done.load(), 2);
  EXPECT_GE(posts.load(), 2);  // both completions came through the executor
}

TEST(SegmentedLog, a_callback_run_by_append_flush_here_may_append_again) {
  SimFileSystem fs(13);
  Options o = small_options("/wal", &fs);
  o.callback_executor = [](std::function<void()> fn) { fn(); };
  auto log = SegmentedLog::open(o);
  ASSERT_TRUE(log.ok());
  // Each completion appends the next record with append_flush_here, as an
  // event loop that sends a message and persists again would: the token and
  // the lock must be free by then.
  int depth = 0;
  std::function<void(uint64_t, const Status&)> again = [&](uint64_t, const Status& s) {
    EXPECT_TRUE(s.ok());
    if (++depth < 20) {
      ASSERT_TRUE((*log)->append_flush_here(1, as_bytes(payload_for(depth)), again).ok());
    }
  };
  ASSERT_TRUE((*log)->append_flush_here(1, as_bytes(payload_for(0)), again).ok());
  EXPECT_EQ(depth, 20);
  auto all = read_all(**log, 1);
  ASSERT_EQ(all.size(), 20u);
  for (size_t i = 0; i < all.size(); ++i)
    EXPECT_EQ(all[i].second, payload_for(i));
}

}  // namespace
}  // namespace dtx::wal
