#include "participant/branch_table.h"

namespace dtx::participant {

namespace {

// The routes take canonical txids only, but a branch recovered at start-up
// may carry an older form (prepared before txids were structured): it gets
// no outcome record, and its repeats are answered from the database.
std::optional<txn::Txid> key_of(const std::string& txid) {
  auto t = txn::Txid::parse(txid);
  if (!t.ok()) return std::nullopt;
  return std::move(*t);
}

}  // namespace

std::shared_ptr<BranchSlot> BranchTable::find(const std::string& txid) const {
  std::lock_guard lock(mu_);
  auto it = branches_.find(txid);
  return it == branches_.end() ? nullptr : it->second;
}

BranchTable::OpenResult BranchTable::open(const std::string& txid,
                                          const std::function<BranchMachine()>& make,
                                          std::shared_ptr<BranchSlot>* slot) {
  std::lock_guard lock(mu_);
  if (auto it = branches_.find(txid); it != branches_.end()) {
    *slot = it->second;
    return OpenResult::existing;
  }
  if (auto key = key_of(txid); key && outcomes_.count(*key)) return OpenResult::finished;
  if (below_watermark_locked(txid)) return OpenResult::forgotten;
  *slot = std::make_shared<BranchSlot>(make());
  branches_.emplace(txid, *slot);
  return OpenResult::opened;
}

void BranchTable::add(const std::string& txid, std::shared_ptr<BranchSlot> slot) {
  std::lock_guard lock(mu_);
  branches_[txid] = std::move(slot);
}

void BranchTable::retire(const std::string& txid, Outcome outcome, int64_t now_ms, bool read_only) {
  std::lock_guard lock(mu_);
  branches_.erase(txid);
  record_locked(txid, outcome, now_ms, read_only);
}

bool BranchTable::remember(const std::string& txid, Outcome outcome, int64_t now_ms) {
  std::lock_guard lock(mu_);
  if (branches_.count(txid)) return false;
  record_locked(txid, outcome, now_ms);
  return true;
}

void BranchTable::record_locked(const std::string& txid, Outcome outcome, int64_t now_ms,
                                bool read_only) {
  std::optional<txn::Txid> key = key_of(txid);
  // Below the watermark nobody asks again: keeping it would only grow.
  if (!key || (watermark_ && *key < *watermark_)) return;
  if (outcomes_.emplace(*key, Record{outcome, now_ms, read_only}).second) {
    outcome_ages_.emplace_back(now_ms, std::move(*key));
  }
}

std::optional<Outcome> BranchTable::outcome(const std::string& txid) const {
  auto key = txn::Txid::parse(txid);
  if (!key.ok()) return std::nullopt;
  std::lock_guard lock(mu_);
  auto it = outcomes_.find(*key);
  if (it == outcomes_.end()) return std::nullopt;
  return it->second.outcome;
}

bool BranchTable::read_only(const std::string& txid) const {
  auto key = txn::Txid::parse(txid);
  if (!key.ok()) return false;
  std::lock_guard lock(mu_);
  auto it = outcomes_.find(*key);
  return it != outcomes_.end() && it->second.read_only;
}

std::vector<std::pair<std::string, std::shared_ptr<BranchSlot>>> BranchTable::all() const {
  std::lock_guard lock(mu_);
  return {branches_.begin(), branches_.end()};
}

std::vector<std::pair<std::string, std::shared_ptr<BranchSlot>>> BranchTable::page(
    const std::string& after, size_t limit, std::optional<std::string>* next) const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<std::string, std::shared_ptr<BranchSlot>>> out;
  auto it = after.empty() ? branches_.begin() : branches_.upper_bound(after);
  for (; it != branches_.end() && out.size() < limit; ++it)
    out.emplace_back(it->first, it->second);
  *next = it != branches_.end() && !out.empty() ? std::optional(out.back().first) : std::nullopt;
  return out;
}

size_t BranchTable::branches() const {
  std::lock_guard lock(mu_);
  return branches_.size();
}

size_t BranchTable::outcomes() const {
  std::lock_guard lock(mu_);
  return outcomes_.size();
}

bool BranchTable::raise_watermark(const txn::Txid& w) {
  std::lock_guard lock(mu_);
  if (watermark_ && !(*watermark_ < w)) return false;
  watermark_ = w;
  outcomes_.erase(outcomes_.begin(), outcomes_.lower_bound(w));
  std::erase_if(outcome_ages_, [&w](const auto& age) { return age.second < w; });
  return true;
}

std::optional<txn::Txid> BranchTable::watermark() const {
  std::lock_guard lock(mu_);
  return watermark_;
}

bool BranchTable::below_watermark(const std::string& txid) const {
  std::lock_guard lock(mu_);
  return below_watermark_locked(txid);
}

bool BranchTable::below_watermark_locked(const std::string& txid) const {
  if (!watermark_) return false;
  auto t = txn::Txid::parse(txid);
  return t.ok() && *t < *watermark_;
}

void BranchTable::expire(int64_t now_ms) {
  std::lock_guard lock(mu_);
  const int64_t cutoff = now_ms - limits_.retention_ms;
  while (!outcome_ages_.empty()) {
    auto& [at, key] = outcome_ages_.front();
    auto it = outcomes_.find(key);
    const bool gone = it == outcomes_.end();
    if (!gone && at > cutoff && outcomes_.size() <= limits_.outcomes_max) break;
    if (!gone) outcomes_.erase(it);
    outcome_ages_.pop_front();
  }
}

}  // namespace dtx::participant
