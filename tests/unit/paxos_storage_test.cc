// Goal: a replica's durable state survives restarts and crashes exactly as
// consensus/storage.h promises (P3, P4, P6).
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "consensus/storage.h"
#include "tests/support/sim_fs.h"

namespace dtx::consensus {
namespace {

using sim::SimFileSystem;

StorageOptions options(SimFileSystem& fs, bool bootstrap = false) {
  StorageOptions o;
  o.dir = "/data";
  o.cluster_id = 9;
  o.self = 2;
  o.members = {1, 2, 3};
  o.bootstrap = bootstrap;
  o.fs = &fs;
  o.segment_bytes = 256 * 1024;
  o.wal_buffer_bytes = 64 * 1024;
  o.on_fatal = [](const Status& s) { FAIL() << "storage failed: " << s.describe(); };
  return o;
}

// Persists a Ready and waits for its completion.
void persist_and_wait(PaxosStorage& st, const Ready& r) {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  st.persist(r, [&] {
    std::lock_guard lock(mu);
    done = true;
    cv.notify_all();
  });
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return done; }));
}

LogRecord accept(Slot s, Ballot b, const std::string& v) {
  return LogRecord{LogRecord::Kind::accept, s, b, make_bytes(v)};
}

TEST(PaxosStorage, refuses_an_empty_directory_without_bootstrap) {
  SimFileSystem fs;
  Recovered rec;
  auto st = PaxosStorage::open(options(fs), &rec);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.status().code(), Code::failed_precondition);
  EXPECT_NE(st.status().message().find("--bootstrap"), std::string::npos);
  ASSERT_TRUE(PaxosStorage::open(options(fs, true), &rec).ok());
  // Once stamped, it opens without --bootstrap...
  EXPECT_TRUE(PaxosStorage::open(options(fs), &rec).ok());
  // ...but not as another replica, cluster or membership.
  StorageOptions other = options(fs);
  other.self = 3;
  EXPECT_EQ(PaxosStorage::open(other, &rec).status().code(), Code::failed_precondition);
  other = options(fs);
  other.cluster_id = 10;
  EXPECT_EQ(PaxosStorage::open(other, &rec).status().code(), Code::failed_precondition);
  other = options(fs);
  other.members = {1, 2, 3, 4, 5};
  EXPECT_EQ(PaxosStorage::open(other, &rec).status().code(), Code::failed_precondition);
}

TEST(PaxosStorage, bootstrap_refuses_a_directory_with_other_files) {
  SimFileSystem fs;
  ASSERT_TRUE(fs.make_dirs("/data").ok());
  ASSERT_TRUE(fs.open("/data/stray", OpenMode::create_exclusive).ok());
  Recovered rec;
  auto st = PaxosStorage::open(options(fs, true), &rec);
  EXPECT_EQ(st.status().code(), Code::failed_precondition);
}

TEST(PaxosStorage, promise_and_records_survive_a_crash_once_persisted) {
  SimFileSystem fs(3);
  {
    Recovered rec;
    auto st = PaxosStorage::open(options(fs, true), &rec);
    ASSERT_TRUE(st.ok()) << st.status();
    Ready r;
    r.promise = Ballot{4, 1};
    r.records = {accept(1, {4, 1}, "a"), accept(2, {4, 1}, "b"),
                 LogRecord{LogRecord::Kind::commit, 1, {}, nullptr}};
    persist_and_wait(**st, r);
    Ready r2;
    r2.promise = Ballot{5, 3};
    r2.records = {LogRecord{LogRecord::Kind::chosen, 2, {}, make_bytes("b")}};
    persist_and_wait(**st, r2);
    fs.crash(SimFileSystem::PageLoss::all_unsynced, SimFileSystem::DirLoss::all_unsynced);
  }
  fs.restart();
  Recovered rec;
  auto st = PaxosStorage::open(options(fs), &rec);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(rec.promised, (Ballot{5, 3}));
  ASSERT_EQ(rec.records.size(), 4u);
  EXPECT_EQ(rec.records[0].slot, 1u);
  EXPECT_EQ(*rec.records[1].value, "b");
  EXPECT_EQ(rec.records[2].kind, LogRecord::Kind::commit);
  EXPECT_EQ(rec.records[3].kind, LogRecord::Kind::chosen);
}

TEST(PaxosStorage, a_torn_vote_write_falls_back_to_the_previous_promise) {
  SimFileSystem fs(4);
  {
    Recovered rec;
    auto st = PaxosStorage::open(options(fs, true), &rec);
    ASSERT_TRUE(st.ok());
    for (uint64_t round = 1; round <= 3; ++round) {
      Ready r;
      r.promise = Ballot{round, 1};
      persist_and_wait(**st, r);
    }
  }
  // The write of round 3 went to vote.1 (sequences 1, 2, 3 alternate 1, 0, 1):
  // tear it.
  uint8_t garbage[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  fs.poke("/data/vote.1", 12, garbage);
  Recovered rec;
  auto st = PaxosStorage::open(options(fs), &rec);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(rec.promised, (Ballot{2, 1}));
}

TEST(PaxosStorage, completions_come_in_persist_order) {
  SimFileSystem fs(5);
  Recovered rec;
  auto st = PaxosStorage::open(options(fs, true), &rec);
  ASSERT_TRUE(st.ok());
  std::mutex mu;
  std::vector<int> order;
  std::atomic<int> done{0};
  for (int i = 0; i < 50; ++i) {
    Ready r;
    if (i % 3 == 0) r.records = {accept(static_cast<Slot>(i + 1), {1, 1}, "v")};
    (*st)->persist(r, [&, i] {
      std::lock_guard lock(mu);
      order.push_back(i);
      done++;
    });
  }
  while (done.load() < 50)
    std::this_thread::yield();
  for (int i = 0; i < 50; ++i)
    EXPECT_EQ(order[i], i);
}

TEST(PaxosStorage, a_persist_flushed_here_is_durable_when_done_runs_before_persist_returns) {
  SimFileSystem fs(14);
  std::atomic<int> posted{0};
  StorageOptions o = options(fs, true);
  o.callback_executor = [&](std::function<void()> fn) {
    posted++;
    fn();
  };
  {
    Recovered rec;
    auto st = PaxosStorage::open(o, &rec);
    ASSERT_TRUE(st.ok()) << st.status();
    for (Slot s = 1; s <= 30; ++s) {
      Ready r;
      r.records = {accept(s, {2, 1}, "v" + std::to_string(s))};
      bool done = false;
      (*st)->persist(
          r, [&] { done = true; }, true);
      EXPECT_TRUE(done) << "slot " << s << ": an idle log syncs on the caller";
    }
    EXPECT_EQ(posted.load(), 0);
    fs.crash(SimFileSystem::PageLoss::all_unsynced, SimFileSystem::DirLoss::all_unsynced);
  }
  fs.restart();
  Recovered rec;
  auto st = PaxosStorage::open(options(fs), &rec);
  ASSERT_TRUE(st.ok()) << st.status();
  ASSERT_EQ(rec.records.size(), 30u);
  EXPECT_EQ(*rec.records[29].value, "v30");
}

TEST(PaxosStorage, snapshot_truncates_the_log_and_restarts_from_it) {
  SimFileSystem fs(6);
  const std::string big(3000, 'x');
  {
    Recovered rec;
    auto st = PaxosStorage::open(options(fs, true), &rec);
    ASSERT_TRUE(st.ok());
    for (Slot s = 1; s <= 400; ++s) {
      Ready r;
      r.records = {accept(s, {1, 1}, big + std::to_string(s))};
      persist_and_wait(**st, r);
    }
    const uint64_t first_before = (*st)->log().first_lsn();
    ASSERT_TRUE((*st)->save_snapshot(300, "image-at-300").ok());
    EXPECT_GT((*st)->log().first_lsn(), first_before) << "whole segments below the snapshot go";
    fs.crash(SimFileSystem::PageLoss::all_unsynced, SimFileSystem::DirLoss::all_unsynced);
  }
  fs.restart();
  Recovered rec;
  auto st = PaxosStorage::open(options(fs), &rec);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(rec.snapshot_index, 300u);
  EXPECT_EQ(*rec.snapshot, "image-at-300");
  std::set<Slot> above;
  for (const LogRecord& r : rec.records) {
    if (r.slot > 300) above.insert(r.slot);
  }
  EXPECT_EQ(above.size(), 100u) << "every record above the snapshot survives (P3)";
  EXPECT_LT(rec.records.size(), 400u);
}

// P6: a snapshot installed from a peer (on the loop, through persist) and
// the replica's own snapshot (on the snapshot thread) may be saved at the
// same moment. One of them is held inside its fsync while the other runs;
// both must succeed, the newer one must win, and what a restart finds must
// be consistent (no slot above the snapshot lost).
void race_install_and_local_snapshot(bool hold_local) {
  SimFileSystem fs(7);
  std::atomic<int> fatal{0};
  StorageOptions o = options(fs, true);
  o.on_fatal = [&](const Status&) { fatal++; };
  const std::string big(3000, 'x');
  {
    Recovered rec;
    auto st = PaxosStorage::open(o, &rec);
    ASSERT_TRUE(st.ok());
    for (Slot s = 1; s <= 400; ++s) {
      Ready r;
      r.records = {accept(s, {1, 1}, big + std::to_string(s))};
      persist_and_wait(**st, r);
    }
    // Hold the first fsync of snapshot.tmp made by the held side's thread.
    std::mutex mu;
    std::condition_variable cv;
    bool held = false, release = false;
    std::thread::id held_thread;
    fs.set_before_sync([&](const std::string& path) {
      if (path != "/data/snapshot.tmp") return;
      std::unique_lock lock(mu);
      if (held || std::this_thread::get_id() != held_thread) return;
      held = true;
      cv.notify_all();
      cv.wait(lock, [&] { return release; });
    });
    PaxosStorage& storage = **st;
    auto local = [&] { return storage.save_snapshot(300, "local-300"); };
    auto install = [&] {
      Ready r;
      r.install = Ready::Install{350, make_bytes("peer-350")};
      r.records = {accept(401, {1, 1}, "after")};
      std::promise<void> done;
      storage.persist(r, [&] { done.set_value(); });
      if (done.get_future().wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
        return error(Code::timeout, "the install never became durable");
      }
      return ok_status();
    };
    std::future<Status> first, second;
    {
      std::unique_lock lock(mu);
      first = std::async(std::launch::async, [&] {
        {
          std::lock_guard l(mu);
          held_thread = std::this_thread::get_id();
        }
        return hold_local ? local() : install();
      });
    }
    {
      std::unique_lock lock(mu);
      ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return held; }));
    }
    second = std::async(std::launch::async, [&] { return hold_local ? install() : local(); });
    // The second writer may wait for the first (one writer at a time) or
    // not; give it time to run as far as it can, then let the first go.
    second.wait_for(std::chrono::milliseconds(300));
    {
      std::lock_guard lock(mu);
      release = true;
      cv.notify_all();
    }
    EXPECT_TRUE(first.get().ok());
    EXPECT_TRUE(second.get().ok());
    fs.set_before_sync(nullptr);
    EXPECT_EQ(fatal.load(), 0) << "a snapshot write failed";
    EXPECT_EQ(storage.snapshot_index(), 350u);
    fs.crash(SimFileSystem::PageLoss::all_unsynced, SimFileSystem::DirLoss::all_unsynced);
  }
  fs.restart();
  Recovered rec;
  o.bootstrap = false;
  auto st = PaxosStorage::open(o, &rec);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(rec.snapshot_index, 350u);
  ASSERT_TRUE(rec.snapshot);
  EXPECT_EQ(*rec.snapshot, "peer-350");
  std::set<Slot> above;
  for (const LogRecord& r : rec.records) {
    if (r.slot > rec.snapshot_index) above.insert(r.slot);
  }
  EXPECT_EQ(above.size(), 51u) << "records above the snapshot lost (P3)";
}

TEST(PaxosStorage, a_peer_snapshot_installed_during_a_local_snapshot_is_kept) {
  race_install_and_local_snapshot(true);
}

TEST(PaxosStorage, a_local_snapshot_taken_during_a_peer_install_does_not_replace_it) {
  race_install_and_local_snapshot(false);
}

}  // namespace
}  // namespace dtx::consensus
