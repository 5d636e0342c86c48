// dtx-wal-bench: how fast the write-ahead log makes records durable, against
// the raw cost of the disk measured in the same run.
//
// Raw baseline: one writer appends a record with pwrite and fdatasync's it,
// record after record, into a zero-filled file (no WAL code at all). WAL
// rows: 1, 8 and 64 threads calling append_sync, and 64 asynchronous
// appenders on one event-loop thread (each appends again from its
// completion). Runs alternate raw and WAL; each row's ratio is the median of
// the per-pair ratios.
#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "wal/segmented_log.h"

namespace {

using namespace dtx;
using Clk = std::chrono::steady_clock;

struct RunResult {
  double records_per_batch = 0;
  double sync_us = 0;  // mean fdatasync of a batch
  double records_per_s = 0;
  double p50_us = 0;
  double p99_us = 0;
};

double percentile(std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  size_t k = static_cast<size_t>(p * static_cast<double>(v.size() - 1));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(k), v.end());
  return static_cast<double>(v[k]) / 1000.0;
}

RunResult summarize(std::vector<int64_t> lat_ns, double seconds) {
  RunResult r;
  r.records_per_s = static_cast<double>(lat_ns.size()) / seconds;
  r.p50_us = percentile(lat_ns, 0.50);
  r.p99_us = percentile(lat_ns, 0.99);
  return r;
}

[[noreturn]] void die(const std::string& what) {
  fmt::print(stderr, "dtx-wal-bench: {}\n", what);
  std::exit(1);
}

// --- raw baseline -----------------------------------------------------------

RunResult run_raw(const std::string& path, size_t file_bytes, size_t record_bytes, double seconds) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) die("open " + path);
  std::vector<char> rec(record_bytes, 'r');
  std::vector<int64_t> lat;
  lat.reserve(1 << 16);
  uint64_t off = 0;
  const auto start = Clk::now();
  const auto end = start + std::chrono::duration<double>(seconds);
  for (auto now = start; now < end;) {
    if (off + record_bytes > file_bytes) off = 0;
    if (::pwrite(fd, rec.data(), rec.size(), static_cast<off_t>(off)) !=
        static_cast<ssize_t>(rec.size())) {
      die("raw pwrite failed");
    }
    if (::fdatasync(fd) != 0) die("raw fdatasync failed");
    off += record_bytes;
    auto t = Clk::now();
    lat.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(t - now).count());
    now = t;
  }
  ::close(fd);
  return summarize(std::move(lat), std::chrono::duration<double>(Clk::now() - start).count());
}

void make_zero_file(const std::string& path, size_t bytes) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) die("create " + path);
  std::vector<char> zeros(1 << 20, 0);
  for (size_t off = 0; off < bytes; off += zeros.size()) {
    if (::pwrite(fd, zeros.data(), zeros.size(), static_cast<off_t>(off)) < 0) die("zero fill");
  }
  if (::fsync(fd) != 0) die("fsync");
  ::close(fd);
}

// --- a minimal event loop for the asynchronous row -----------------------------

class EventLoop {
 public:
  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      q_.push_back(std::move(fn));
    }
    cv_.notify_one();
  }
  void run(const std::atomic<bool>& stop) {
    std::deque<std::function<void()>> batch;
    while (!stop.load()) {
      {
        std::unique_lock lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(10), [&] { return !q_.empty(); });
        batch.swap(q_);
      }
      for (auto& fn : batch)
        fn();
      batch.clear();
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
};

// --- WAL rows -----------------------------------------------------------------

std::unique_ptr<wal::SegmentedLog> open_fresh(const std::string& dir, EventLoop* loop) {
  std::filesystem::remove_all(dir);
  wal::Options o;
  o.dir = dir;
  if (loop) o.callback_executor = [loop](std::function<void()> fn) { loop->post(std::move(fn)); };
  auto log = wal::SegmentedLog::open(o);
  if (!log.ok()) die(log.status().describe());
  if (Status s = (*log)->wait_preallocated(); !s.ok()) die(s.describe());
  return std::move(*log);
}

RunResult run_wal_threads(const std::string& dir, int threads, size_t record_bytes,
                          double seconds) {
  auto log = open_fresh(dir, nullptr);
  std::vector<std::vector<int64_t>> lat(threads);
  std::atomic<bool> stop{false};
  std::vector<std::thread> ts;
  const auto start = Clk::now();
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      std::vector<uint8_t> rec(record_bytes, static_cast<uint8_t>('a' + t % 26));
      lat[t].reserve(1 << 16);
      while (!stop.load(std::memory_order_relaxed)) {
        auto t0 = Clk::now();
        auto lsn = log->append_sync(1, rec);
        if (!lsn.ok()) die(lsn.status().describe());
        lat[t].push_back(
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clk::now() - t0).count());
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& th : ts)
    th.join();
  const double elapsed = std::chrono::duration<double>(Clk::now() - start).count();
  std::vector<int64_t> all;
  for (auto& v : lat)
    all.insert(all.end(), v.begin(), v.end());
  RunResult r = summarize(std::move(all), elapsed);
  auto st = log->stats();
  r.records_per_batch = static_cast<double>(st.records) / static_cast<double>(st.batches);
  r.sync_us = static_cast<double>(st.batch_sync_ns) / 1000.0 / static_cast<double>(st.batches);
  return r;
}

RunResult run_wal_async(const std::string& dir, int appenders, size_t record_bytes,
                        double seconds) {
  EventLoop loop;
  auto log = open_fresh(dir, &loop);
  std::atomic<bool> stop{false}, stopping{false};
  std::vector<int64_t> lat;
  lat.reserve(1 << 18);
  std::vector<uint8_t> rec(record_bytes, 'z');
  std::atomic<int> in_flight{0};
  // Each appender appends again from its completion, on the loop thread.
  std::function<void()> start_one = [&] {
    auto t0 = Clk::now();
    in_flight++;
    auto lsn = log->append(1, rec, [&, t0](uint64_t, const Status& s) {
      if (!s.ok()) die(s.describe());
      in_flight--;
      lat.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(Clk::now() - t0).count());
      if (!stopping.load()) start_one();
    });
    if (!lsn.ok()) die(lsn.status().describe());
  };
  const auto start = Clk::now();
  std::thread loop_thread([&] { loop.run(stop); });
  for (int i = 0; i < appenders; ++i)
    loop.post(start_one);
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stopping = true;
  const double elapsed = std::chrono::duration<double>(Clk::now() - start).count();
  while (in_flight.load() > 0)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  stop = true;
  loop_thread.join();
  RunResult r = summarize(std::move(lat), elapsed);
  auto st = log->stats();
  r.records_per_batch = static_cast<double>(st.records) / static_cast<double>(st.batches);
  r.sync_us = static_cast<double>(st.batch_sync_ns) / 1000.0 / static_cast<double>(st.batches);
  return r;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Benchmark the dtx write-ahead log against raw write+fdatasync on the same disk."};
  std::string dir = "var/bench-wal";
  double seconds = 1.0;
  int pairs = 5;
  size_t record_bytes = 100;
  app.add_option("--dir", dir, "scratch directory on the disk to measure")->default_val(dir);
  app.add_option("--seconds", seconds, "length of each run")->default_val(seconds);
  app.add_option("--pairs", pairs, "raw/WAL run pairs per row (>= 5 for quoted figures)")
      ->default_val(pairs)
      ->check(CLI::PositiveNumber);
  app.add_option("--record-bytes", record_bytes, "payload bytes per record")
      ->default_val(record_bytes);
  std::vector<std::string> only;
  app.add_option("--rows", only, "run only these rows: 1, 8, 64, async (default: all)")
      ->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::warn);

  std::filesystem::create_directories(dir);
  const std::string raw_path = dir + "/raw.dat";
  const std::string wal_dir = dir + "/wal";
  const size_t raw_bytes = 64u << 20;
  make_zero_file(raw_path, raw_bytes);

  struct Row {
    std::string name;
    std::function<RunResult()> run;
  };
  std::vector<Row> all_rows = {
      {"1 thread", [&] { return run_wal_threads(wal_dir, 1, record_bytes, seconds); }},
      {"8 threads", [&] { return run_wal_threads(wal_dir, 8, record_bytes, seconds); }},
      {"64 threads", [&] { return run_wal_threads(wal_dir, 64, record_bytes, seconds); }},
      {"64 async, 1 loop", [&] { return run_wal_async(wal_dir, 64, record_bytes, seconds); }},
  };
  const std::vector<std::string> keys = {"1", "8", "64", "async"};
  std::vector<Row> rows;
  for (size_t i = 0; i < all_rows.size(); ++i) {
    if (only.empty() || std::find(only.begin(), only.end(), keys[i]) != only.end()) {
      rows.push_back(all_rows[i]);
    }
  }
  if (rows.empty()) die("--rows: expected some of 1, 8, 64, async");

  fmt::print("dtx-wal-bench: {}-byte records, fdatasync on, {} pairs of {:.1f} s runs, in {}\n",
             record_bytes, pairs, seconds, dir);
  fmt::print("{:<18} {:>12} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>10} {:>8}\n", "appenders",
             "records/s", "p50 us", "p99 us", "rec/batch", "sync us", "raw rec/s", "raw p50",
             "raw p99", "x raw");
  for (auto& row : rows) {
    std::vector<double> ratios, per_batch, sync_us, wal_rps, wal_p50, wal_p99, raw_rps, raw_p50,
        raw_p99;
    for (int p = 0; p < pairs; ++p) {
      RunResult raw = run_raw(raw_path, raw_bytes, record_bytes, seconds);
      RunResult w = row.run();
      ratios.push_back(w.records_per_s / raw.records_per_s);
      wal_rps.push_back(w.records_per_s);
      per_batch.push_back(w.records_per_batch);
      sync_us.push_back(w.sync_us);
      wal_p50.push_back(w.p50_us);
      wal_p99.push_back(w.p99_us);
      raw_rps.push_back(raw.records_per_s);
      raw_p50.push_back(raw.p50_us);
      raw_p99.push_back(raw.p99_us);
    }
    fmt::print(
        "{:<18} {:>12.0f} {:>10.0f} {:>10.0f} {:>10.1f} {:>10.0f} {:>12.0f} {:>10.0f} {:>10.0f} "
        "{:>7.2f}x\n",
        row.name, median(wal_rps), median(wal_p50), median(wal_p99), median(per_batch),
        median(sync_us), median(raw_rps), median(raw_p50), median(raw_p99), median(ratios));
    std::fflush(stdout);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
