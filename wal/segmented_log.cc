#include "wal/segmented_log.h"

#include <spdlog/spdlog.h>

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "common/bytes.h"

namespace dtx::wal {
namespace {

constexpr size_t kZeroChunkBytes = 1u << 20;
constexpr size_t kReadWindowBytes = 1u << 20;

std::string seg_name(uint64_t seq) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016" PRIx64 ".wal", seq);
  return buf;
}

// Parses "<16 hex digits>.wal"; 0 if the name is something else.
uint64_t parse_seg_name(const std::string& name) {
  if (name.size() != 20 || name.compare(16, 4, ".wal") != 0) return 0;
  uint64_t seq = 0;
  for (size_t i = 0; i < 16; ++i) {
    char c = name[i];
    int v = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (v < 0) return 0;
    seq = seq * 16 + static_cast<uint64_t>(v);
  }
  return seq;
}

Status corruption_at(const std::string& path, size_t offset, const std::string& what) {
  return error(Code::corruption, "write-ahead log segment " + path + " at offset " +
                                     std::to_string(offset) + ": " + what);
}

Result<std::vector<uint8_t>> read_whole(FileSystem& fs, const std::string& path) {
  auto file = fs.open(path, OpenMode::read_only);
  if (!file.ok()) return file.status();
  auto size = (*file)->size();
  if (!size.ok()) return size.status();
  std::vector<uint8_t> bytes(*size);
  DTX_RETURN_IF_ERROR(read_exact(**file, 0, bytes));
  return bytes;
}

bool all_zero(std::span<const uint8_t> b) {
  return std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0; });
}

}  // namespace

// ---------------------------------------------------------------------------
// Opening and recovery

SegmentedLog::SegmentedLog(Options options)
    : opt_(std::move(options)), fs_(opt_.fs ? *opt_.fs : posix_file_system()) {}

Result<std::unique_ptr<SegmentedLog>> SegmentedLog::open(Options options) {
  if (options.dir.empty()) return error(Code::invalid_argument, "wal: no directory given");
  if (options.record_payload_bytes_max == 0 ||
      options.record_payload_bytes_max > kRecordPayloadBytesCeiling) {
    return error(Code::invalid_argument, "wal: record_payload_bytes_max out of range");
  }
  if (options.buffer_bytes > (1ull << 31) ||
      options.buffer_bytes <
          kBatchHeaderBytes + kRecordHeaderBytes + options.record_payload_bytes_max) {
    return error(Code::invalid_argument,
                 "wal: buffer_bytes must hold one largest record and stay below 2 GiB");
  }
  if (options.segment_bytes < kSegmentHeaderBytes + options.buffer_bytes) {
    return error(Code::invalid_argument, "wal: segment_bytes must hold a full buffer");
  }
  std::unique_ptr<SegmentedLog> log(new SegmentedLog(std::move(options)));
  DTX_RETURN_IF_ERROR(log->fs_.make_dirs(log->opt_.dir));
  auto lock = log->fs_.lock(join_path(log->opt_.dir, "LOCK"));
  if (!lock.ok()) {
    return error(lock.status().code(),
                 "wal: cannot lock " + log->opt_.dir + ": " + lock.status().message());
  }
  log->lock_ = std::move(*lock);
  DTX_RETURN_IF_ERROR(log->recover());
  log->filling_.bytes.reserve(log->opt_.buffer_bytes);
  log->filling_.bytes.resize(kBatchHeaderBytes);
  log->flushing_buf_.bytes.reserve(log->opt_.buffer_bytes);
  log->flushing_buf_.bytes.resize(kBatchHeaderBytes);
  log->prealloc_wanted_ = true;
  log->next_create_seq_ = log->segments_.back().seq + 1;
  if (log->opt_.preallocate_in_background) {
    log->preallocator_ = std::thread([l = log.get()] { l->preallocator_loop(); });
  }
  log->flusher_ = std::thread([l = log.get()] { l->flusher_loop(); });
  return log;
}

std::string SegmentedLog::segment_path(uint64_t seq) const {
  return join_path(opt_.dir, seg_name(seq));
}

Status SegmentedLog::recover() {
  auto names = fs_.list(opt_.dir);
  if (!names.ok()) return names.status();
  std::vector<uint64_t> seqs;
  for (const auto& n : *names) {
    if (uint64_t seq = parse_seg_name(n)) seqs.push_back(seq);
  }
  std::sort(seqs.begin(), seqs.end());
  for (size_t i = 1; i < seqs.size(); ++i) {
    if (seqs[i] != seqs[i - 1] + 1) {
      return error(Code::corruption, "wal " + opt_.dir + ": segment " + seg_name(seqs[i - 1] + 1) +
                                         " is missing between " + seg_name(seqs[i - 1]) + " and " +
                                         seg_name(seqs[i]));
    }
  }

  // Trailing segments with an all-zero header were preallocated and never
  // used; a torn header on the very last one means its rotation never
  // finished. Neither holds an acknowledged record: remove them.
  bool removed = false;
  while (!seqs.empty()) {
    const std::string path = segment_path(seqs.back());
    auto bytes = read_whole(fs_, path);
    if (!bytes.ok()) return bytes.status();
    SegmentHeader h;
    std::string detail;
    HeaderCheck hc = decode_segment_header(*bytes, &h, &detail);
    if (hc == HeaderCheck::ok) break;
    std::span<const uint8_t> rest(*bytes);
    rest = rest.subspan(std::min(rest.size(), kSegmentHeaderBytes));
    if (!all_zero(rest)) {
      return corruption_at(path, 0,
                           hc == HeaderCheck::zero ? "zero header but data after it" : detail);
    }
    DTX_RETURN_IF_ERROR(fs_.remove(path));
    seqs.pop_back();
    removed = true;
  }
  if (removed) DTX_RETURN_IF_ERROR(fs_.sync_dir(opt_.dir));

  if (seqs.empty()) {
    // A new log.
    log_id_ = opt_.log_id;
    if (log_id_ == 0) {
      std::random_device rd;
      log_id_ = (uint64_t{rd()} << 32) | rd();
      if (log_id_ == 0) log_id_ = 1;
    }
    seed_ = crc_seed(log_id_);
    DTX_RETURN_IF_ERROR(create_segment_file(1));
    DTX_RETURN_IF_ERROR(start_segment(1, 1));
    next_lsn_ = 1;
    start_lsn_ = 1;
    spdlog::info("wal {}: created log {:016x}", opt_.dir, log_id_);
    return ok_status();
  }

  uint64_t expected_lsn = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    DTX_RETURN_IF_ERROR(recover_segment(seqs[i], i + 1 == seqs.size(), &expected_lsn));
  }
  next_lsn_ = expected_lsn;
  durable_lsn_.store(expected_lsn - 1);
  start_lsn_ = segments_.front().first_lsn;
  filling_.first_lsn = next_lsn_;

  const Segment& last = segments_.back();
  auto file = fs_.open(segment_path(last.seq), OpenMode::read_write);
  if (!file.ok()) return file.status();
  active_file_ = std::move(*file);
  active_seq_ = last.seq;
  active_offset_ = last.durable_end;
  spdlog::info("wal {}: opened log {:016x}, segments {}..{}, LSN {}..{}", opt_.dir, log_id_,
               segments_.front().seq, last.seq, start_lsn_, next_lsn_ - 1);
  return ok_status();
}

Status SegmentedLog::recover_segment(uint64_t seq, bool is_last, uint64_t* expected_lsn) {
  const std::string path = segment_path(seq);
  auto bytes = read_whole(fs_, path);
  if (!bytes.ok()) return bytes.status();
  SegmentHeader h;
  std::string detail;
  if (decode_segment_header(*bytes, &h, &detail) != HeaderCheck::ok) {
    return corruption_at(path, 0, detail.empty() ? "zero segment header" : detail);
  }
  if (segments_.empty()) {
    log_id_ = h.log_id;
    seed_ = crc_seed(log_id_);
    *expected_lsn = h.first_lsn;
  }
  if (h.log_id != log_id_) return corruption_at(path, 8, "segment belongs to another log");
  if (h.seq != seq) return corruption_at(path, 16, "header names segment " + seg_name(h.seq));
  if (h.first_lsn != *expected_lsn) {
    return corruption_at(path, 24,
                         "segment starts at LSN " + std::to_string(h.first_lsn) +
                             " but the previous segment ends before LSN " +
                             std::to_string(*expected_lsn));
  }
  if (h.segment_bytes != bytes->size()) {
    return corruption_at(path, 32,
                         "segment is " + std::to_string(bytes->size()) + " bytes, header says " +
                             std::to_string(h.segment_bytes));
  }

  SegmentScan scan = scan_segment(*bytes, seed_, h.first_lsn, kRecordPayloadBytesCeiling);
  if (scan.end == SegmentEnd::corrupt) {
    return corruption_at(path, scan.end_offset,
                         scan.detail + " (a valid batch follows at offset " +
                             std::to_string(scan.later_batch_offset) + ")");
  }
  if (scan.end == SegmentEnd::torn) {
    if (!is_last) {
      return corruption_at(path, scan.end_offset,
                           scan.detail + " in a segment that is followed by another");
    }
    // The torn tail of the last batch: nothing in it was acknowledged. Zero
    // it so later recoveries never see its bytes again, and make that
    // durable before appending after it.
    auto file = fs_.open(path, OpenMode::read_write);
    if (!file.ok()) return file.status();
    std::vector<uint8_t> zeros(scan.garbage_end - scan.end_offset, 0);
    DTX_RETURN_IF_ERROR(write_all(**file, scan.end_offset, zeros));
    DTX_RETURN_IF_ERROR((*file)->datasync());
    stats_.torn_bytes_cut += zeros.size();
    spdlog::warn("wal {}: cut a torn tail of {} bytes at offset {} of segment {} ({})", opt_.dir,
                 zeros.size(), scan.end_offset, seg_name(seq), scan.detail);
  }
  segments_.push_back(Segment{seq, h.first_lsn, h.segment_bytes, scan.end_offset});
  *expected_lsn = scan.next_lsn;
  return ok_status();
}

Status SegmentedLog::create_segment_file(uint64_t seq) {
  const std::string path = segment_path(seq);
  auto file = fs_.open(path, OpenMode::create_exclusive);
  if (!file.ok()) return file.status();
  // Zeros written for real, not fallocate'd: fdatasync into written extents
  // needs no journal work, which keeps group commit fast (W3).
  std::vector<uint8_t> zeros(std::min<uint64_t>(kZeroChunkBytes, opt_.segment_bytes), 0);
  for (uint64_t off = 0; off < opt_.segment_bytes; off += zeros.size()) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(zeros.size(), opt_.segment_bytes - off));
    DTX_RETURN_IF_ERROR(write_all(**file, off, std::span<const uint8_t>(zeros.data(), n)));
  }
  DTX_RETURN_IF_ERROR((*file)->sync());
  file->reset();
  DTX_RETURN_IF_ERROR(fs_.sync_dir(opt_.dir));
  std::lock_guard lock(seg_mu_);
  stats_.segments_created += 1;
  return ok_status();
}

// Makes a preallocated segment the active one: its header is written and
// synced before any batch goes in, so a damaged header is never mistaken for
// a torn write of acknowledged data.
Status SegmentedLog::start_segment(uint64_t seq, uint64_t first_lsn) {
  auto file = fs_.open(segment_path(seq), OpenMode::read_write);
  if (!file.ok()) return file.status();
  auto size = (*file)->size();
  if (!size.ok()) return size.status();
  uint8_t header[kSegmentHeaderBytes];
  encode_segment_header(SegmentHeader{log_id_, seq, first_lsn, *size}, header);
  DTX_RETURN_IF_ERROR(write_all(**file, 0, header));
  DTX_RETURN_IF_ERROR((*file)->datasync());
  active_file_ = std::move(*file);
  active_seq_ = seq;
  active_offset_ = kSegmentHeaderBytes;
  std::lock_guard lock(seg_mu_);
  segments_.push_back(Segment{seq, first_lsn, *size, kSegmentHeaderBytes});
  stats_.syncs += 1;
  return ok_status();
}

// ---------------------------------------------------------------------------
// Appending

Status SegmentedLog::check_append(uint16_t type, std::span<const uint8_t> payload) {
  if (type == 0) return error(Code::invalid_argument, "wal: record type 0 is reserved");
  if (payload.size() > opt_.record_payload_bytes_max) {
    return error(Code::invalid_argument, "wal: record of " + std::to_string(payload.size()) +
                                             " bytes exceeds the limit of " +
                                             std::to_string(opt_.record_payload_bytes_max));
  }
  return ok_status();
}

Status SegmentedLog::closed_status() const {
  if (failed_.load()) return error(Code::closed, "wal failed: " + failure_.describe());
  return error(Code::closed, "wal is closed");
}

uint64_t SegmentedLog::add_record(std::unique_lock<std::mutex>& lock, uint16_t type,
                                  std::span<const uint8_t> payload, uint32_t pcrc,
                                  AppendCallback cb) {
  const size_t need = kRecordHeaderBytes + payload.size();
  space_cv_.wait(lock, [&] {
    return failed_.load() || closing_ || filling_.bytes.size() + need <= opt_.buffer_bytes;
  });
  if (failed_.load() || closing_) return 0;
  const uint64_t lsn = next_lsn_++;
  if (filling_.count == 0) filling_.first_lsn = lsn;
  const size_t at = filling_.bytes.size();
  filling_.bytes.resize(at + need);
  encode_record_header(filling_.bytes.data() + at, static_cast<uint32_t>(payload.size()),
                       record_crc(pcrc, lsn, type, 0), lsn, type);
  if (!payload.empty()) {
    std::memcpy(filling_.bytes.data() + at + kRecordHeaderBytes, payload.data(), payload.size());
  }
  filling_.count += 1;
  if (cb) filling_.callbacks.emplace_back(lsn, std::move(cb));
  return lsn;
}

Result<uint64_t> SegmentedLog::append(uint16_t type, std::span<const uint8_t> payload,
                                      AppendCallback cb) {
  DTX_RETURN_IF_ERROR(check_append(type, payload));
  // Checksum the payload before taking the lock; only the 12 bytes that
  // depend on the LSN are added under it.
  const uint32_t pcrc = payload_crc(seed_, payload);
  uint64_t lsn;
  bool wake;
  {
    std::unique_lock lock(mu_);
    lsn = add_record(lock, type, payload, pcrc, std::move(cb));
    if (lsn == 0) return closed_status();
    // Wake the flusher when it is idle (first record) or gathering a cohort
    // that is now complete.
    wake = filling_.count == 1 || filling_.count == expected_batch_;
  }
  if (wake) flusher_cv_.notify_one();
  return lsn;
}

Result<uint64_t> SegmentedLog::append_sync(uint16_t type, std::span<const uint8_t> payload) {
  DTX_RETURN_IF_ERROR(check_append(type, payload));
  const uint32_t pcrc = payload_crc(seed_, payload);
  uint64_t lsn;
  {
    std::unique_lock lock(mu_);
    lsn = add_record(lock, type, payload, pcrc, nullptr);
    if (lsn == 0) return closed_status();
    // The appender that completes the expected cohort (a lone appender is a
    // cohort of one) writes and syncs the batch on its own thread when no
    // flush is running: no hand-off to the flusher thread and back.
    if (!flushing_ && filling_.count >= expected_batch_) {
      if (flush_holding_token(lock) < 0) return closed_status();
      return lsn;
    }
    if (filling_.count == 1) flusher_cv_.notify_one();  // start the gathering clock
  }
  DTX_RETURN_IF_ERROR(wait_durable_unchecked(lsn));
  return lsn;
}

Result<uint64_t> SegmentedLog::append_flush_here(uint16_t type, std::span<const uint8_t> payload,
                                                 AppendCallback cb) {
  DTX_RETURN_IF_ERROR(check_append(type, payload));
  const uint32_t pcrc = payload_crc(seed_, payload);
  uint64_t lsn;
  bool wake;
  Callbacks done;
  {
    std::unique_lock lock(mu_);
    lsn = add_record(lock, type, payload, pcrc, std::move(cb));
    if (lsn == 0) return closed_status();
    // As append_sync: the appender that completes the expected cohort
    // flushes it itself when no flush is running. Its callbacks (this
    // record's among them) run here, once the token and the lock are
    // released (a callback may append again), so an event loop learns of
    // the sync without a round trip through its own queue.
    if (!flushing_ && filling_.count >= expected_batch_) {
      if (flush_holding_token(lock, &done) < 0) return closed_status();
      lock.unlock();
      for (auto& [l, c] : done)
        c(l, ok_status());
      return lsn;
    }
    wake = filling_.count == 1 || filling_.count == expected_batch_;
  }
  if (wake) flusher_cv_.notify_one();
  return lsn;
}

int64_t SegmentedLog::flush_holding_token(std::unique_lock<std::mutex>& lock,
                                          Callbacks* callbacks_out) {
  flushing_ = true;
  take_batch();
  lock.unlock();
  space_cv_.notify_all();
  const int64_t sync_ns = flush(flushing_buf_, callbacks_out != nullptr);
  if (callbacks_out && sync_ns >= 0) *callbacks_out = std::move(flushing_buf_.callbacks);
  lock.lock();
  finish_batch(sync_ns);
  batches_done_ += 1;
  token_cv_.notify_all();
  // Records that arrived meanwhile, a gathering flusher (its cohort just
  // changed) or a closing log need the flusher thread's attention.
  if (filling_.count > 0 || gathering_ || closing_) flusher_cv_.notify_one();
  return sync_ns;
}

Status SegmentedLog::wait_durable(uint64_t lsn) {
  if (durable_lsn_.load(std::memory_order_acquire) >= lsn) return ok_status();
  {
    std::lock_guard lock(mu_);
    if (lsn >= next_lsn_) {
      return error(Code::invalid_argument,
                   "wal: LSN " + std::to_string(lsn) + " was never appended");
    }
  }
  return wait_durable_unchecked(lsn);
}

Status SegmentedLog::wait_durable_unchecked(uint64_t lsn) {
  for (;;) {
    // Load the progress counter before testing, so a batch completing in
    // between changes it and the futex wait below returns at once.
    const uint32_t p = progress_.load(std::memory_order_seq_cst);
    if (durable_lsn_.load(std::memory_order_acquire) >= lsn) return ok_status();
    if (failed_.load(std::memory_order_acquire)) {
      std::lock_guard lock(mu_);
      return error(Code::closed, "wal failed: " + failure_.describe());
    }
    progress_waiters_.fetch_add(1, std::memory_order_seq_cst);
    if (progress_.load(std::memory_order_seq_cst) == p) {
      ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&progress_), FUTEX_WAIT_PRIVATE, p, nullptr,
                nullptr, 0);
    }
    progress_waiters_.fetch_sub(1, std::memory_order_relaxed);
  }
}

void SegmentedLog::publish_progress() {
  progress_.fetch_add(1, std::memory_order_seq_cst);
  if (progress_waiters_.load(std::memory_order_seq_cst) > 0) {
    ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&progress_), FUTEX_WAKE_PRIVATE, INT_MAX,
              nullptr, nullptr, 0);
  }
}

void SegmentedLog::take_batch() {
  std::swap(filling_, flushing_buf_);
  filling_.first_lsn = next_lsn_;
}

void SegmentedLog::finish_batch(int64_t sync_ns) {
  expected_batch_ = std::clamp<uint32_t>(flushing_buf_.count, 1, 4096);
  if (sync_ns > 0) {
    // Gather for about one fdatasync (a moving average), within bounds.
    gather_ns_ = std::clamp<int64_t>((gather_ns_ * 7 + sync_ns) / 8, 20'000, 2'000'000);
  }
  flushing_buf_.bytes.resize(kBatchHeaderBytes);
  flushing_buf_.count = 0;
  flushing_buf_.callbacks.clear();
  flushing_ = false;
}

void SegmentedLog::flusher_loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    flusher_cv_.wait(
        lock, [&] { return failed_.load() || (!flushing_ && (filling_.count > 0 || closing_)); });
    if (failed_.load() || filling_.count == 0) return;  // failed, or closing and drained
    // Gather the cohort the last batch released, for about one fdatasync.
    // A batch flushed meanwhile by a blocking appender starts a new cohort;
    // a half-full buffer or closing cuts the wait short.
    if (filling_.count < expected_batch_ && !closing_) {
      const uint64_t cohort = batches_done_;
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::nanoseconds(gather_ns_);
      gathering_ = true;
      flusher_cv_.wait_until(lock, deadline, [&] {
        return filling_.count >= expected_batch_ || closing_ || failed_.load() ||
               batches_done_ != cohort || filling_.bytes.size() >= opt_.buffer_bytes / 2;
      });
      gathering_ = false;
      if (failed_.load()) return;
      if (flushing_ || batches_done_ != cohort || filling_.count == 0) continue;
    }
    if (flush_holding_token(lock) < 0) return;
  }
}

int64_t SegmentedLog::flush(Buffer& b, bool keep_callbacks) {
  const size_t batch_bytes = b.bytes.size();
  encode_batch_header(b.bytes.data(), seed_, b.first_lsn, b.count,
                      static_cast<uint32_t>(batch_bytes - kBatchHeaderBytes));
  uint64_t active_bytes;
  {
    std::lock_guard lock(seg_mu_);
    active_bytes = segments_.back().file_bytes;
  }
  if (active_offset_ + batch_bytes > active_bytes) {
    // Rotate: the rest of this segment stays zero.
    uint64_t seq = 0;
    if (!opt_.preallocate_in_background) {
      seq = active_seq_ + 1;
      Status s = create_segment_file(seq);
      if (!s.ok()) {
        fail(s);
        return -1;
      }
    } else {
      std::unique_lock lock(seg_mu_);
      prealloc_cv_.wait(lock, [&] { return prealloc_seq_ != 0 || !prealloc_error_.ok(); });
      if (!prealloc_error_.ok()) {
        Status s = prealloc_error_;
        lock.unlock();
        fail(s);
        return -1;
      }
      seq = prealloc_seq_;
      prealloc_seq_ = 0;
      prealloc_wanted_ = true;
    }
    prealloc_cv_.notify_all();
    Status s = start_segment(seq, b.first_lsn);
    if (!s.ok()) {
      fail(s);
      return -1;
    }
  }
  Status s = write_all(*active_file_, active_offset_, b.bytes);
  const auto t0 = std::chrono::steady_clock::now();
  if (s.ok()) s = active_file_->datasync();
  const int64_t sync_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  if (!s.ok()) {
    fail(s);
    return -1;
  }
  active_offset_ += batch_bytes;
  {
    std::lock_guard lock(seg_mu_);
    segments_.back().durable_end = active_offset_;
    stats_.records += b.count;
    stats_.batches += 1;
    stats_.bytes += batch_bytes;
    stats_.syncs += 1;
    stats_.batch_sync_ns += static_cast<uint64_t>(sync_ns);
  }
  const uint64_t last = b.first_lsn + b.count - 1;
  durable_lsn_.store(last, std::memory_order_release);
  publish_progress();
  if (!b.callbacks.empty() && !keep_callbacks) {
    if (opt_.callback_executor) {
      opt_.callback_executor([cbs = std::move(b.callbacks)]() mutable {
        for (auto& [lsn, cb] : cbs)
          cb(lsn, ok_status());
      });
      b.callbacks = {};
    } else {
      for (auto& [lsn, cb] : b.callbacks)
        cb(lsn, ok_status());
    }
  }
  return std::max<int64_t>(sync_ns, 1);
}

void SegmentedLog::fail(const Status& s) {
  Status failure = error(Code::closed, "");
  std::vector<std::pair<uint64_t, AppendCallback>> orphans;
  {
    std::lock_guard lock(mu_);
    if (failure_.ok()) failure_ = s;
    failed_.store(true);
    orphans = std::move(flushing_buf_.callbacks);
    for (auto& c : filling_.callbacks)
      orphans.push_back(std::move(c));
    filling_.callbacks.clear();
    flushing_buf_.callbacks.clear();
    failure = error(Code::closed, "wal failed: " + failure_.describe());
  }
  spdlog::critical("wal {}: {}; the log accepts no more appends", opt_.dir, s.describe());
  space_cv_.notify_all();
  flusher_cv_.notify_all();
  publish_progress();
  for (auto& [lsn, cb] : orphans)
    cb(lsn, failure);
  if (opt_.on_fatal) {
    opt_.on_fatal(s);
  } else {
    spdlog::critical("wal {}: stopping the process: an fsync or write error is final", opt_.dir);
    spdlog::default_logger()->flush();
    std::abort();
  }
}

// ---------------------------------------------------------------------------
// Preallocation

void SegmentedLog::preallocator_loop() {
  std::unique_lock lock(seg_mu_);
  for (;;) {
    prealloc_cv_.wait(lock,
                      [&] { return prealloc_stop_ || (prealloc_wanted_ && prealloc_seq_ == 0); });
    if (prealloc_stop_) return;
    const uint64_t seq = next_create_seq_++;
    prealloc_wanted_ = false;
    lock.unlock();
    Status s = create_segment_file(seq);
    lock.lock();
    if (!s.ok()) {
      prealloc_error_ = s;
      prealloc_cv_.notify_all();
      return;
    }
    prealloc_seq_ = seq;
    prealloc_cv_.notify_all();
  }
}

Status SegmentedLog::wait_preallocated() {
  if (!opt_.preallocate_in_background) return ok_status();
  std::unique_lock lock(seg_mu_);
  prealloc_cv_.wait(lock, [&] { return prealloc_seq_ != 0 || !prealloc_error_.ok(); });
  return prealloc_error_;
}

// ---------------------------------------------------------------------------
// State

uint64_t SegmentedLog::next_lsn() const {
  std::lock_guard lock(mu_);
  return next_lsn_;
}

uint64_t SegmentedLog::first_lsn() const {
  std::lock_guard lock(seg_mu_);
  return start_lsn_;
}

LogStats SegmentedLog::stats() const {
  std::lock_guard lock(seg_mu_);
  return stats_;
}

Status SegmentedLog::failure() const {
  std::lock_guard lock(mu_);
  return failure_;
}

Status SegmentedLog::close() {
  {
    std::lock_guard lock(mu_);
    if (closed_) return failure_;
    closed_ = true;
    closing_ = true;
  }
  flusher_cv_.notify_all();
  space_cv_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  {
    // A lone appender may still be flushing on its own thread.
    std::unique_lock lock(mu_);
    token_cv_.wait(lock, [&] { return !flushing_; });
  }
  {
    std::lock_guard lock(seg_mu_);
    prealloc_stop_ = true;
  }
  prealloc_cv_.notify_all();
  if (preallocator_.joinable()) preallocator_.join();
  active_file_.reset();
  {
    std::lock_guard lock(seg_mu_);
    assert(pins_.empty() && "a LogReader outlived its log");
  }
  lock_.reset();
  std::lock_guard lock(mu_);
  return failure_;
}

SegmentedLog::~SegmentedLog() {
  (void)close();
}

// ---------------------------------------------------------------------------
// Reading and truncation

Result<std::unique_ptr<LogReader>> SegmentedLog::read_from(uint64_t lsn) {
  const uint64_t next = next_lsn();
  std::lock_guard lock(seg_mu_);
  if (lsn < start_lsn_) {
    return error(Code::compacted, "wal: LSN " + std::to_string(lsn) +
                                      " was truncated; the log starts at " +
                                      std::to_string(start_lsn_));
  }
  if (lsn > next) {
    return error(Code::invalid_argument,
                 "wal: LSN " + std::to_string(lsn) + " is beyond the end " + std::to_string(next));
  }
  auto it = std::upper_bound(segments_.begin(), segments_.end(), lsn,
                             [](uint64_t l, const Segment& s) { return l < s.first_lsn; });
  assert(it != segments_.begin());
  const uint64_t seq = std::prev(it)->seq;
  pins_.insert(seq);
  return std::unique_ptr<LogReader>(new LogReader(*this, lsn, seq));
}

SegmentedLog::SegmentView SegmentedLog::view_segment(uint64_t seq) const {
  std::lock_guard lock(seg_mu_);
  SegmentView v;
  for (size_t i = 0; i < segments_.size(); ++i) {
    if (segments_[i].seq != seq) continue;
    v.found = true;
    v.first_lsn = segments_[i].first_lsn;
    v.durable_end = segments_[i].durable_end;
    v.has_next = i + 1 < segments_.size();
  }
  return v;
}

Status SegmentedLog::move_pin(uint64_t from_seq, uint64_t to_seq) {
  std::lock_guard lock(seg_mu_);
  pins_.insert(to_seq);
  pins_.erase(pins_.find(from_seq));
  maybe_remove_segments();
  return ok_status();
}

void SegmentedLog::release_pin(uint64_t seq) {
  std::lock_guard lock(seg_mu_);
  pins_.erase(pins_.find(seq));
  maybe_remove_segments();
}

Status SegmentedLog::truncate_prefix(uint64_t lsn) {
  std::lock_guard lock(seg_mu_);
  truncate_below_lsn_ = std::max(truncate_below_lsn_, lsn);
  // Whole segments only: the new start is the first segment that still has
  // a record at or above lsn (never beyond the active one).
  for (size_t i = 0; i + 1 < segments_.size(); ++i) {
    if (segments_[i + 1].first_lsn <= truncate_below_lsn_) {
      start_lsn_ = std::max(start_lsn_, segments_[i + 1].first_lsn);
    }
  }
  maybe_remove_segments();
  return ok_status();
}

void SegmentedLog::maybe_remove_segments() {
  bool removed = false;
  while (segments_.size() > 1 && segments_[1].first_lsn <= truncate_below_lsn_ &&
         (pins_.empty() || *pins_.begin() > segments_[0].seq)) {
    const std::string path = segment_path(segments_[0].seq);
    Status s = fs_.remove(path);
    if (!s.ok()) {
      spdlog::error("wal {}: cannot remove truncated segment: {}", opt_.dir, s.describe());
      break;
    }
    // Sync each removal before the next, so a crash can only leave a prefix
    // of the truncated segments behind, never a gap.
    s = fs_.sync_dir(opt_.dir);
    if (!s.ok()) spdlog::error("wal {}: fsync of the directory: {}", opt_.dir, s.describe());
    segments_.pop_front();
    stats_.segments_removed += 1;
    removed = true;
  }
  if (removed) start_lsn_ = std::max(start_lsn_, segments_.front().first_lsn);
}

LogReader::LogReader(SegmentedLog& log, uint64_t next_lsn, uint64_t pinned_seq)
    : log_(log), next_lsn_(next_lsn), seq_(pinned_seq) {}

LogReader::~LogReader() {
  log_.release_pin(seq_);
}

Status LogReader::open_segment(uint64_t seq) {
  auto file = log_.fs_.open(log_.segment_path(seq), OpenMode::read_only);
  if (!file.ok()) return file.status();
  file_ = std::move(*file);
  offset_ = kSegmentHeaderBytes;
  window_.clear();
  window_base_ = 0;
  return ok_status();
}

Status LogReader::ensure(size_t off, size_t n, size_t durable_end) {
  if (off >= window_base_ && off + n <= window_base_ + window_.size()) return ok_status();
  const size_t len = std::min(std::max(n, kReadWindowBytes), durable_end - off);
  window_.resize(len);
  window_base_ = off;
  return read_exact(*file_, off, window_);
}

Result<std::optional<Record>> LogReader::next() {
  for (;;) {
    while (batch_index_ < batch_.size()) {
      const Record& r = batch_[batch_index_++];
      if (r.lsn < next_lsn_) continue;
      next_lsn_ = r.lsn + 1;
      return std::optional<Record>(r);
    }
    SegmentedLog::SegmentView v = log_.view_segment(seq_);
    assert(v.found && "a pinned segment is never removed");
    if (!file_) {
      DTX_RETURN_IF_ERROR(open_segment(seq_));
      batch_lsn_ = v.first_lsn;
    }
    if (offset_ < v.durable_end) {
      DTX_RETURN_IF_ERROR(ensure(offset_, kBatchHeaderBytes, v.durable_end));
      std::span<const uint8_t> at(window_.data() + (offset_ - window_base_),
                                  window_.size() - (offset_ - window_base_));
      size_t batch_bytes = kBatchHeaderBytes + get_u32(at.data() + 20);
      if (batch_bytes > v.durable_end - offset_) {
        return corruption_at(log_.segment_path(seq_), offset_, "batch runs past synced data");
      }
      DTX_RETURN_IF_ERROR(ensure(offset_, batch_bytes, v.durable_end));
      at = std::span<const uint8_t>(window_.data() + (offset_ - window_base_), batch_bytes);
      batch_.clear();
      batch_index_ = 0;
      BatchDecode d = decode_batch(at, log_.seed_, batch_lsn_, kRecordPayloadBytesCeiling, &batch_);
      if (d.check != BatchCheck::ok) {
        return corruption_at(log_.segment_path(seq_), offset_, d.detail);
      }
      offset_ += batch_bytes;
      batch_lsn_ += d.count;
      continue;
    }
    if (!v.has_next) return std::optional<Record>();
    // This segment is finished; move the pin to the next one.
    DTX_RETURN_IF_ERROR(log_.move_pin(seq_, seq_ + 1));
    seq_ += 1;
    file_.reset();
  }
}

}  // namespace dtx::wal
