// SegmentedLog: dtx's write-ahead log. Every Paxos replica keeps its
// acceptor state in one and every agent its votes, redo images and
// decisions. The on-disk format and the crash-recovery rules are in
// wal/format.h; read them first.
//
// Guarantees
//   - An append completes (wait_durable returns ok, the callback runs with
//     ok) only after the fdatasync covering its batch returned ok. Records
//     become durable in LSN order and LSNs have no gaps.
//   - Group commit: one flush at a time writes everything appended since the
//     last one as one batch with one write and one fdatasync. While it syncs,
//     new appends collect in a second buffer. Batching adapts to load: the
//     flusher thread gathers until as many records are pending as the last
//     batch carried (the appenders it just released come back), for at most
//     about one fdatasync's time; a lone blocking appender that finds the log
//     idle writes and syncs its record on its own thread, with no hand-off
//     and no timer, and so does a lone append_flush_here (an event loop's).
//   - After a failed write or fdatasync the log is failed for good (W5): no
//     further append is accepted, every waiter gets Code::closed, and
//     Options::on_fatal runs (by default: log and abort the process).
//   - Segments are created zero-filled by a background thread ahead of need,
//     fsync'd, and their directory fsync'd before a record lands in them
//     (W3).
//   - Readers pin the segments they read; truncate_prefix never deletes a
//     pinned segment, and a reader asking for an LSN below the truncation
//     point gets Code::compacted (W4).
//
// Threading: every public method is thread-safe. Callbacks run on the
// thread that flushed their batch (the flusher thread, or a blocking
// appender that flushed its cohort itself), or are handed, one closure per
// batch, to Options::callback_executor when set; they must not block on the
// log.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/fs.h"
#include "common/status.h"
#include "wal/format.h"

namespace dtx::wal {

using AppendCallback = std::function<void(uint64_t lsn, const Status& status)>;

struct Options {
  std::string dir;
  // Size of each segment file; records never span segments.
  uint64_t segment_bytes = 64ull << 20;
  // Capacity of each of the two append buffers (one filling, one flushing).
  // An appender that finds the filling buffer full waits for the flush.
  size_t buffer_bytes = 4u << 20;
  // Largest payload accepted by append(); must fit a buffer and a segment.
  uint32_t record_payload_bytes_max = 1u << 20;
  // The log id of a new log; 0 picks a random one. An existing log keeps its
  // own.
  uint64_t log_id = 0;
  // The file system; null means POSIX.
  FileSystem* fs = nullptr;
  // Runs on the flushing thread when a write or fdatasync fails. Default:
  // log a critical line and abort the process (W5).
  std::function<void(const Status&)> on_fatal;
  // When set, async completions of one batch are handed to it as one
  // closure (e.g. posted to an event loop) instead of run on the flushing
  // thread.
  std::function<void(std::function<void()>)> callback_executor;
  // Create the next segment in a background thread ahead of need (true), or
  // synchronously when the flusher needs it (deterministic tests).
  bool preallocate_in_background = true;
};

struct LogStats {
  uint64_t records = 0;
  uint64_t batches = 0;
  uint64_t bytes = 0;          // bytes written, batch headers included
  uint64_t syncs = 0;          // fdatasync calls by the flusher (batches + rotations)
  uint64_t batch_sync_ns = 0;  // time spent in the batches' fdatasync calls
  uint64_t segments_created = 0;
  uint64_t segments_removed = 0;
  uint64_t torn_bytes_cut = 0;  // at open: bytes of a torn tail cut off
};

class SegmentedLog;

// Iterates records from an LSN up to the durable end, across segments.
// Holds a pin on the segment it is in. Must be destroyed before its log.
class LogReader {
 public:
  ~LogReader();
  LogReader(const LogReader&) = delete;
  LogReader& operator=(const LogReader&) = delete;

  // The next durable record, or nullopt at the current durable end (call
  // again later to see records made durable since). The payload stays valid
  // until the next call.
  Result<std::optional<Record>> next();

 private:
  friend class SegmentedLog;
  LogReader(SegmentedLog& log, uint64_t next_lsn, uint64_t pinned_seq);
  Status open_segment(uint64_t seq);
  // Makes window_ cover file bytes [off, off + n) of the current segment.
  Status ensure(size_t off, size_t n, size_t durable_end);

  SegmentedLog& log_;
  uint64_t next_lsn_;  // the next LSN to return
  uint64_t seq_;       // the pinned segment
  std::unique_ptr<File> file_;
  uint64_t batch_lsn_ = 0;       // LSN the batch at offset_ must start with
  size_t offset_ = 0;            // file offset of the next batch to decode
  std::vector<uint8_t> window_;  // file bytes [window_base_, window_base_ + size)
  size_t window_base_ = 0;
  std::vector<Record> batch_;  // decoded records of the current batch
  size_t batch_index_ = 0;
};

class SegmentedLog {
 public:
  // Opens the log in options.dir, creating it if empty; recovers as
  // described in wal/format.h. Fails with Code::corruption naming segment
  // and offset if a synced batch is damaged, Code::busy if another process
  // holds the log.
  static Result<std::unique_ptr<SegmentedLog>> open(Options options);

  // Flushes what was appended, stops the threads. Appends after close fail.
  ~SegmentedLog();
  SegmentedLog(const SegmentedLog&) = delete;
  SegmentedLog& operator=(const SegmentedLog&) = delete;

  // Copies the record into the append buffer and returns its LSN at once.
  // The record is durable when wait_durable(lsn) returns ok or when cb runs
  // with ok. Blocks only while both buffers are full (back-pressure).
  // type must be non-zero; payload no larger than record_payload_bytes_max.
  Result<uint64_t> append(uint16_t type, std::span<const uint8_t> payload,
                          AppendCallback cb = nullptr);
  // append + wait_durable: returns the LSN once the record is durable.
  Result<uint64_t> append_sync(uint16_t type, std::span<const uint8_t> payload);
  // append, for an event loop that must not block on other threads: when no
  // flush is running and this record completes the expected cohort (a lone
  // appender at low load), writes and syncs the batch on the calling thread
  // and runs that batch's callbacks here, before returning, not through
  // Options::callback_executor: no hand-off to the flusher thread and back.
  // Otherwise exactly append(): the flusher thread syncs the record and cb
  // runs as for append(). Either way cb runs only once the record is
  // durable. The caller blocks for at most one write and fdatasync.
  Result<uint64_t> append_flush_here(uint16_t type, std::span<const uint8_t> payload,
                                     AppendCallback cb);
  // Blocks until every record up to lsn is durable; Code::closed if the log
  // failed or closed first.
  Status wait_durable(uint64_t lsn);

  // Every record with an LSN <= durable_lsn() is on disk.
  uint64_t durable_lsn() const { return durable_lsn_.load(std::memory_order_acquire); }
  // The LSN the next append will get.
  uint64_t next_lsn() const;
  // The lowest LSN a new reader may start at.
  uint64_t first_lsn() const;
  uint64_t log_id() const { return log_id_; }
  LogStats stats() const;
  // The failure that stopped the log, or ok.
  Status failure() const;

  // A reader from lsn (first_lsn() <= lsn <= next_lsn()).
  Result<std::unique_ptr<LogReader>> read_from(uint64_t lsn);

  // Drops every whole segment all of whose records are below lsn. Segments
  // pinned by readers go when their readers move on. The segment being
  // written is never dropped.
  Status truncate_prefix(uint64_t lsn);

  // Waits until the next segment is preallocated (benchmarks start timing
  // from a quiet disk).
  Status wait_preallocated();

  // Flushes pending appends and stops the threads; idempotent.
  Status close();

 private:
  friend class LogReader;
  struct Segment {
    uint64_t seq;
    uint64_t first_lsn;
    uint64_t file_bytes;  // size of the segment file
    size_t durable_end;   // bytes of the file holding synced batches
  };
  // What a reader needs to know about one segment.
  struct SegmentView {
    bool found = false;
    uint64_t first_lsn = 0;
    size_t durable_end = 0;
    bool has_next = false;
  };
  SegmentView view_segment(uint64_t seq) const;
  Status move_pin(uint64_t from_seq, uint64_t to_seq);
  struct Buffer {
    std::vector<uint8_t> bytes;  // starts with room for the batch header
    uint64_t first_lsn = 0;
    uint32_t count = 0;
    std::vector<std::pair<uint64_t, AppendCallback>> callbacks;
  };

  explicit SegmentedLog(Options options);
  Status recover();
  Status recover_segment(uint64_t seq, bool is_last, uint64_t* expected_lsn);
  Status create_segment_file(uint64_t seq);
  Status start_segment(uint64_t seq, uint64_t first_lsn);
  void flusher_loop();
  // Adds the record to filling_; requires mu_. Returns the LSN.
  uint64_t add_record(std::unique_lock<std::mutex>& lock, uint16_t type,
                      std::span<const uint8_t> payload, uint32_t pcrc, AppendCallback cb);
  Status check_append(uint16_t type, std::span<const uint8_t> payload);
  Status closed_status() const;  // requires mu_
  // Takes the token (free, with records pending), flushes filling_ and
  // releases it. Returns the fdatasync's duration, or -1 if the log failed.
  // With callbacks_out, the batch's callbacks are moved there (to be run by
  // the caller once it released mu_) instead of run by flush() or handed to
  // Options::callback_executor.
  using Callbacks = std::vector<std::pair<uint64_t, AppendCallback>>;
  int64_t flush_holding_token(std::unique_lock<std::mutex>& lock,
                              Callbacks* callbacks_out = nullptr);
  Status wait_durable_unchecked(uint64_t lsn);
  // Takes filling_ as the next batch (requires mu_ and the token).
  void take_batch();
  // After a flush: frees the buffer, learns the cohort size, releases the
  // token (requires mu_).
  void finish_batch(int64_t sync_ns);
  void preallocator_loop();
  // Writes and syncs b; returns the fdatasync's duration, or -1 on failure.
  // keep_callbacks: leave b.callbacks to the caller.
  int64_t flush(Buffer& b, bool keep_callbacks);
  void fail(const Status& s);
  void release_pin(uint64_t seq);
  void maybe_remove_segments();  // requires seg_mu_
  std::string segment_path(uint64_t seq) const;

  Options opt_;
  FileSystem& fs_;
  uint64_t log_id_ = 0;
  uint32_t seed_ = 0;
  std::unique_ptr<FileLock> lock_;

  // Appenders and the flusher.
  mutable std::mutex mu_;
  std::condition_variable flusher_cv_;  // work for the flusher
  std::condition_variable space_cv_;    // room in the filling buffer
  Buffer filling_;
  uint64_t next_lsn_ = 1;
  bool closing_ = false;
  // The flush token: whoever holds it (the flusher thread, or a lone
  // append_sync caller) owns flushing_buf_ and the active segment.
  bool flushing_ = false;
  // Records in the last batch: the size of the cohort expected back next.
  uint32_t expected_batch_ = 1;
  // How long the flusher gathers for a cohort: about one fdatasync.
  int64_t gather_ns_ = 100'000;
  std::condition_variable token_cv_;  // the flush token was released
  uint64_t batches_done_ = 0;         // batches flushed (a new cohort each)
  bool gathering_ = false;            // the flusher thread is gathering a cohort

  std::atomic<uint64_t> durable_lsn_{0};
  // Bumped per batch and on failure; durability waiters sleep on it with a
  // plain futex (std::atomic::wait yields in a loop first, which costs a
  // context switch per yield when many appenders are runnable).
  std::atomic<uint32_t> progress_{0};
  std::atomic<uint32_t> progress_waiters_{0};
  void publish_progress();
  std::atomic<bool> failed_{false};
  Status failure_;  // guarded by mu_

  // Owned by the flusher thread.
  Buffer flushing_buf_;
  std::unique_ptr<File> active_file_;
  uint64_t active_seq_ = 0;
  size_t active_offset_ = 0;

  // Segments, pins and truncation.
  mutable std::mutex seg_mu_;
  std::condition_variable prealloc_cv_;
  std::deque<Segment> segments_;  // live segments with records or active
  std::multiset<uint64_t> pins_;
  uint64_t truncate_below_lsn_ = 0;  // requested by truncate_prefix
  uint64_t start_lsn_ = 1;           // lowest LSN a new reader may ask for
  uint64_t prealloc_seq_ = 0;        // seq of the ready preallocated segment, 0 if none
  uint64_t next_create_seq_ = 0;     // seq the next preallocated segment gets
  bool prealloc_wanted_ = false;
  bool prealloc_stop_ = false;
  Status prealloc_error_;
  LogStats stats_;  // guarded by seg_mu_

  std::thread flusher_;
  std::thread preallocator_;
  bool closed_ = false;
};

}  // namespace dtx::wal
