#include "participant/sqlite/sqlite_completeness.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <set>

#include "participant/sqlite/sqlite_guard.h"

namespace dtx::participant::sqlite {
namespace {

using Row = std::vector<StoredValue>;

// Reads one row by rowid, or nullopt when there is none.
Result<std::optional<Row>> fetch(sqlite3* db, sqlite3_stmt* stmt, int64_t rowid) {
  sqlite3_reset(stmt);
  sqlite3_bind_int64(stmt, 1, rowid);
  int rc = sqlite3_step(stmt);
  if (rc == SQLITE_DONE) return std::optional<Row>();
  if (rc != SQLITE_ROW) return error(Code::io_error, "sqlite: " + describe_last_error(db));
  Row row;
  for (int c = 0; c < sqlite3_column_count(stmt); ++c)
    row.push_back(stored_column(stmt, c));
  return std::optional<Row>(std::move(row));
}

// The rowid of the row with this key, or nullopt.
Result<std::optional<int64_t>> rowid_of(sqlite3* db, sqlite3_stmt* stmt,
                                        const std::vector<StoredValue>& key) {
  sqlite3_reset(stmt);
  sqlite3_clear_bindings(stmt);
  for (size_t i = 0; i < key.size(); ++i)
    bind_stored(stmt, static_cast<int>(i) + 1, key[i]);
  int rc = sqlite3_step(stmt);
  if (rc == SQLITE_DONE) return std::optional<int64_t>();
  if (rc != SQLITE_ROW) return error(Code::io_error, "sqlite: " + describe_last_error(db));
  return std::optional<int64_t>(sqlite3_column_int64(stmt, 0));
}

// Holds a read transaction on the reader, so every lookup sees one snapshot.
class ReadTxn {
 public:
  explicit ReadTxn(sqlite3* db) : db_(db) {}
  Status begin() {
    DTX_RETURN_IF_ERROR(exec_simple(db_, "BEGIN"));
    open_ = true;
    return ok_status();
  }
  ~ReadTxn() {
    if (open_) (void)exec_simple(db_, "ROLLBACK");
  }

 private:
  sqlite3* db_;
  bool open_ = false;
};

}  // namespace

void RowTracker::install(sqlite3* db) {
  sqlite3_update_hook(db, &RowTracker::on_update, this);
}

void RowTracker::uninstall(sqlite3* db) {
  sqlite3_update_hook(db, nullptr, nullptr);
}

void RowTracker::on_update(void* self, int, const char* schema, const char* table,
                           sqlite3_int64 rowid) {
  auto* t = static_cast<RowTracker*>(self);
  if (t->overflowed_ || schema == nullptr || std::string_view(schema) != "main") return;
  t->rows_[table].push_back(rowid);
  // Compact when the raw count has doubled since the last compaction, so a
  // branch that updates a few rows many times stays small.
  if (++t->count_ > 2 * std::max<size_t>(t->compacted_, 1024)) t->compact();
}

void RowTracker::compact() {
  size_t distinct = 0;
  for (auto& [table, ids] : rows_) {
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    distinct += ids.size();
  }
  count_ = compacted_ = distinct;
  if (distinct > rows_max_) overflowed_ = true;
}

void RowTracker::finish() {
  compact();
}

Result<std::string> check_complete(sqlite3* writer, sqlite3* reader, const RowTracker& tracker,
                                   const std::vector<Change>& changes) {
  ReadTxn txn(reader);
  DTX_RETURN_IF_ERROR(txn.begin());
  for (const auto& [table, rowids] : tracker.rows()) {
    auto shape = table_shape(writer, table);
    if (!shape.ok()) return shape.status();
    if (!shape->exists) continue;
    const std::string by_rowid =
        fmt::format("SELECT * FROM main.{} WHERE rowid = ?1", quote_ident(table));
    auto now_stmt = prepare_internal(writer, by_rowid);
    auto before_stmt = prepare_internal(reader, by_rowid);
    if (!now_stmt.ok()) return now_stmt.status();
    if (!before_stmt.ok()) return before_stmt.status();

    // Rows whose content the branch changed, as they were and as they are.
    struct Changed {
      int64_t rowid;
      bool was_there;
      bool is_there;
    };
    std::vector<Changed> changed;
    for (int64_t rowid : rowids) {
      auto now = fetch(writer, now_stmt->get(), rowid);
      auto before = fetch(reader, before_stmt->get(), rowid);
      if (!now.ok()) return now.status();
      if (!before.ok()) return before.status();
      if (*now != *before) changed.push_back({rowid, before->has_value(), now->has_value()});
    }
    if (changed.empty()) continue;

    // The rows the changeset accounts for, found by key: a DELETE or UPDATE
    // accounts for the row as it was (looked up before the branch), an
    // INSERT or UPDATE for the row as it is (looked up in the branch).
    // Change::key() lists the key in column order.
    std::vector<int> key_columns = shape->pk_columns;
    std::sort(key_columns.begin(), key_columns.end());
    std::string where;
    for (size_t i = 0; i < key_columns.size(); ++i) {
      where += fmt::format("{}{} = ?{}", i ? " AND " : "",
                           quote_ident(shape->columns[key_columns[i]]), i + 1);
    }
    const std::string by_key =
        fmt::format("SELECT rowid FROM main.{} WHERE {}", quote_ident(table), where);
    auto key_now = prepare_internal(writer, by_key);
    auto key_before = prepare_internal(reader, by_key);
    if (!key_now.ok()) return key_now.status();
    if (!key_before.ok()) return key_before.status();
    std::set<int64_t> old_rows, new_rows;
    for (const auto& c : changes) {
      if (c.table != table) continue;
      const auto key = c.key();
      if (c.op != SQLITE_INSERT) {
        auto rowid = rowid_of(reader, key_before->get(), key);
        if (!rowid.ok()) return rowid.status();
        if (*rowid) old_rows.insert(**rowid);
      }
      if (c.op != SQLITE_DELETE) {
        auto rowid = rowid_of(writer, key_now->get(), key);
        if (!rowid.ok()) return rowid.status();
        if (*rowid) new_rows.insert(**rowid);
      }
    }
    for (const auto& r : changed) {
      if ((r.was_there && !old_rows.contains(r.rowid)) ||
          (r.is_there && !new_rows.contains(r.rowid))) {
        return fmt::format(
            "the row with rowid {} of table {} changed but the changeset does not hold that "
            "change ({} side missing): SQLite's session extension skips rows with a NULL in a "
            "PRIMARY KEY column; declare the key NOT NULL",
            r.rowid, table, r.was_there && !old_rows.contains(r.rowid) ? "old" : "new");
      }
    }
  }
  return std::string();
}

}  // namespace dtx::participant::sqlite
