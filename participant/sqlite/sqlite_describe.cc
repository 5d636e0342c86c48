// describe_prepared: what an operator needs to repair a heuristic outcome by
// hand, read from the agent WAL without touching it.
#include <fmt/chrono.h>
#include <fmt/format.h>

#include <ctime>
#include <set>

#include "participant/sqlite/sqlite_changeset.h"
#include "participant/sqlite/sqlite_guard.h"
#include "participant/sqlite/sqlite_resource.h"
#include "participant/sqlite/sqlite_wal_records.h"

namespace dtx::participant::sqlite {
namespace {

std::span<const uint8_t> bytes_of(const std::vector<uint8_t>& v) {
  return {v.data(), v.size()};
}

// Column names of the tables the changes touch, from the database at
// db_path opened read-only; empty when it cannot be read.
ColumnNames names_from(const std::string& db_path, const std::vector<Change>& changes,
                       std::string* note) {
  ColumnNames names;
  if (db_path.empty()) return names;
  auto db = open_connection(db_path, SQLITE_OPEN_READONLY);
  if (!db.ok()) {
    *note = "(column names unavailable: " + db.status().message() + ")\n";
    return names;
  }
  std::set<std::string> tables;
  for (const auto& c : changes)
    tables.insert(c.table);
  for (const auto& t : tables) {
    auto shape = table_shape(db->get(), t);
    if (shape.ok() && shape->exists) names[t] = shape->columns;
  }
  return names;
}

std::string utc(int64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z", tm, static_cast<int>(ms % 1000));
}

}  // namespace

Result<std::string> describe_prepared(const std::string& wal_dir, const std::string& txid) {
  return describe_prepared(wal_dir, txid, "");
}

Result<std::string> describe_prepared(const std::string& wal_dir, const std::string& txid,
                                      const std::string& db_path) {
  auto records = read_log_read_only(wal_dir);
  if (!records.ok()) return records.status();
  const AgentRecord* prepared = nullptr;
  const AgentRecord* decision = nullptr;
  for (const auto& r : *records) {
    if (r.txid != txid) continue;
    if (r.type == RecordType::prepared) {
      prepared = &r;
      decision = nullptr;
    } else if (prepared != nullptr) {
      decision = &r;
    }
  }
  if (prepared == nullptr) {
    return error(Code::not_found, "txid=" + txid + ": no PREPARED record in the agent WAL " +
                                      wal_dir + " (a decided branch's records may be truncated)");
  }
  auto redo = decode_changeset(bytes_of(prepared->redo));
  if (!redo.ok()) return redo.status();
  auto undo = decode_changeset(bytes_of(prepared->undo));
  if (!undo.ok()) return undo.status();

  std::string note;
  ColumnNames names = names_from(db_path, *redo, &note);
  std::string out = fmt::format("txid={}: PREPARED at agent WAL lsn {}, {}\n", txid, prepared->lsn,
                                utc(prepared->prepared_at_ms));
  if (decision == nullptr) {
    out += "decision: none recorded: in doubt\n";
  } else if (decision->type == RecordType::resolved) {
    out += fmt::format("decision: settled by an operator as {} (lsn {})\n",
                       outcome_name(decision->outcome), decision->lsn);
  } else {
    out += fmt::format("decision: {} (lsn {})\n", record_type_name(decision->type), decision->lsn);
  }
  out += note;
  out += fmt::format("redo ({} change(s); re-creates the branch):\n", redo->size());
  out += render_changes(*redo, names, "  ");
  out +=
      fmt::format("undo ({} change(s); applied after the redo, removes it again):\n", undo->size());
  out += render_changes(*undo, names, "  ");
  return out;
}

}  // namespace dtx::participant::sqlite
