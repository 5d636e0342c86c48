#include "participant/pg/pg_sql.h"

#include <fmt/format.h>

#include <array>
#include <bit>
#include <cctype>
#include <charconv>
#include <cmath>

namespace dtx::participant::pg {

namespace {

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool is_word_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool is_word_char(char c) {
  return is_word_start(c) || (c >= '0' && c <= '9') || c == '$';
}
bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// Index of the first character at or after `i` that is not whitespace, a
// comment or a ';'. PostgreSQL's block comments nest; an unterminated one
// runs to the end of the text.
size_t skip_blanks(std::string_view s, size_t i) {
  while (i < s.size()) {
    if (is_space(s[i]) || s[i] == ';') {
      ++i;
    } else if (s.substr(i, 2) == "--") {
      size_t nl = s.find('\n', i);
      i = nl == std::string_view::npos ? s.size() : nl + 1;
    } else if (s.substr(i, 2) == "/*") {
      int depth = 0;
      while (i < s.size()) {
        if (s.substr(i, 2) == "/*") {
          ++depth;
          i += 2;
        } else if (s.substr(i, 2) == "*/") {
          i += 2;
          if (--depth == 0) break;
        } else {
          ++i;
        }
      }
    } else {
      break;
    }
  }
  return i;
}

bool contains(std::initializer_list<std::string_view> set, std::string_view word) {
  for (std::string_view w : set) {
    if (w == word) return true;
  }
  return false;
}

}  // namespace

std::optional<std::string> durability_problem(std::string_view fsync,
                                              std::string_view full_page_writes) {
  if (fsync == "on" && full_page_writes == "on") return std::nullopt;
  return fmt::format(
      "PostgreSQL runs with fsync={} and full_page_writes={}: a prepared branch (a yes vote) or "
      "a commit may be lost in a crash",
      fsync, full_page_writes);
}

size_t name_bytes_max(std::string_view what) {
  if (what == "txid") return txn::kTxidTextMax;
  if (what == "cluster id") return txn::kClusterIdMax;
  return kNameBytesMax;
}

Status check_name(std::string_view what, std::string_view value) {
  const size_t max = name_bytes_max(what);
  if (value.empty() || value.size() > max) {
    return error(Code::invalid_argument,
                 fmt::format("{} must be 1 to {} characters, not {}", what, max, value.size()));
  }
  for (char c : value) {
    if (!is_name_char(c)) {
      return error(Code::invalid_argument,
                   fmt::format("{} '{}' may hold only letters, digits, '.', '_' and '-'", what,
                               value.substr(0, kNameBytesMax)));
    }
  }
  return ok_status();
}

std::optional<std::string> txid_of_gid(std::string_view gid, std::string_view cluster,
                                       std::string_view agent) {
  const std::string prefix = fmt::format("dtx:{}:", cluster);
  const std::string suffix = fmt::format(":{}", agent);
  if (gid.size() <= prefix.size() + suffix.size() || !gid.starts_with(prefix) ||
      !gid.ends_with(suffix)) {
    return std::nullopt;
  }
  std::string_view txid = gid.substr(prefix.size(), gid.size() - prefix.size() - suffix.size());
  if (!check_name("txid", txid).ok()) return std::nullopt;
  return std::string(txid);
}

int64_t advisory_lock_key(std::string_view cluster, std::string_view agent) {
  return std::bit_cast<int64_t>(fnv1a64(fmt::format("dtx-agent:{}:{}", cluster, agent)));
}

int64_t marker_ddl_lock_key() {
  return std::bit_cast<int64_t>(fnv1a64("dtx:dtx_markers:ddl"));
}

std::vector<std::string> leading_words(std::string_view sql, size_t n) {
  std::vector<std::string> words;
  size_t i = 0;
  while (words.size() < n) {
    i = skip_blanks(sql, i);
    if (i >= sql.size() || !is_word_start(sql[i])) break;
    std::string word;
    while (i < sql.size() && is_word_char(sql[i])) {
      char c = sql[i++];
      word += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
    }
    words.push_back(std::move(word));
  }
  return words;
}

std::optional<std::string> statement_refusal(std::string_view sql) {
  if (skip_blanks(sql, 0) >= sql.size()) return "the statement is empty";
  const std::vector<std::string> w = leading_words(sql, 3);
  // A statement that starts with something other than a word, such as
  // "(SELECT 1) UNION ...", is a query: let it through.
  if (w.empty()) return std::nullopt;
  const std::string& first = w[0];
  if (contains({"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT", "PREPARE", "SAVEPOINT",
                "RELEASE"},
               first)) {
    return fmt::format(
        "{} would end or change the branch's transaction; dtx alone prepares, commits and rolls "
        "back branches",
        first);
  }
  if (first == "SET") {
    const std::string second = w.size() > 1 ? w[1] : "";
    const std::string third = w.size() > 2 ? w[2] : "";
    if (second == "CONSTRAINTS") return std::nullopt;
    if (second == "LOCAL" && third != "TRANSACTION" && third != "SESSION") return std::nullopt;
    return "only SET LOCAL <name> and SET CONSTRAINTS may run in a branch: other forms change the "
           "transaction's characteristics or the pooled session";
  }
  if (contains({"RESET", "DISCARD", "COPY", "LISTEN", "UNLISTEN", "LOAD"}, first)) {
    return fmt::format(
        "{} changes the pooled session or its protocol state; not allowed in a branch", first);
  }
  // The marker rows are the proof of a commit (A3), and dtx_fence holds the
  // highest coordinator ballot seen (fencing): a branch that wrote them
  // could forge or erase a commit, or let a deposed leader back in. Any
  // mention of either table as a word is refused (a guard, not a parser:
  // see docs/agent.md).
  static constexpr std::string_view kOwnTables[] = {"dtx_markers", "dtx_fence"};
  auto word_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '$';
  };
  for (std::string_view table : kOwnTables) {
    for (size_t i = 0; i + table.size() <= sql.size(); ++i) {
      bool match = true;
      for (size_t k = 0; k < table.size() && match; ++k) {
        match = std::tolower(static_cast<unsigned char>(sql[i + k])) == table[k];
      }
      if (!match) continue;
      const bool starts = i == 0 || !word_char(sql[i - 1]);
      const bool ends = i + table.size() == sql.size() || !word_char(sql[i + table.size()]);
      if (starts && ends) {
        return fmt::format(
            "{} is dtx's own table (it proves commits and fences deposed coordinators); "
            "branches may not use it",
            table);
      }
    }
  }
  return std::nullopt;
}

std::string with_liveness_defaults(std::string_view conninfo) {
  static constexpr std::string_view kKeys[] = {"keepalives", "keepalives_idle",
                                               "keepalives_interval", "keepalives_count",
                                               "tcp_user_timeout"};
  static constexpr std::string_view kValues[] = {"1", "10", "5", "3", "30000"};
  std::string out(conninfo);
  const bool uri = conninfo.starts_with("postgresql://") || conninfo.starts_with("postgres://");
  for (size_t i = 0; i < std::size(kKeys); ++i) {
    const std::string key = std::string(kKeys[i]) + "=";
    // A key counts as named when it starts the string or follows a
    // separator of its form.
    bool named = false;
    for (size_t at = out.find(key); at != std::string::npos; at = out.find(key, at + 1)) {
      const char before = at == 0 ? ' ' : out[at - 1];
      if (before == ' ' || before == '?' || before == '&') named = true;
    }
    if (named) continue;
    if (uri) {
      out += out.find('?') == std::string::npos ? '?' : '&';
    } else if (!out.empty()) {
      out += ' ';
    }
    out += key + std::string(kValues[i]);
  }
  return out;
}

Result<std::vector<TextParam>> bind_params(const std::vector<SqlValue>& params) {
  std::vector<TextParam> out;
  out.reserve(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const SqlValue& v = params[i];
    if (std::holds_alternative<std::monostate>(v)) {
      out.emplace_back(std::nullopt);
    } else if (const bool* b = std::get_if<bool>(&v)) {
      out.emplace_back(*b ? "true" : "false");
    } else if (const int64_t* n = std::get_if<int64_t>(&v)) {
      out.emplace_back(fmt::format("{}", *n));
    } else if (const double* d = std::get_if<double>(&v)) {
      if (std::isnan(*d)) {
        out.emplace_back("NaN");
      } else if (std::isinf(*d)) {
        out.emplace_back(*d > 0 ? "Infinity" : "-Infinity");
      } else {
        out.emplace_back(fmt::format("{}", *d));  // shortest text that reads back the same
      }
    } else {
      const std::string& s = std::get<std::string>(v);
      if (s.find('\0') != std::string::npos) {
        return error(
            Code::invalid_argument,
            fmt::format("parameter ${} holds a NUL byte, which PostgreSQL text cannot store",
                        i + 1));
      }
      out.emplace_back(s);
    }
  }
  return out;
}

SqlValue column_value(uint32_t type_oid, std::string_view text, bool is_null) {
  if (is_null) return std::monostate{};
  switch (type_oid) {
    case kOidBool:
      if (text == "t") return true;
      if (text == "f") return false;
      break;
    case kOidInt2:
    case kOidInt4:
    case kOidInt8: {
      int64_t n = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
      if (ec == std::errc() && end == text.data() + text.size()) return n;
      break;
    }
    case kOidFloat4:
    case kOidFloat8: {
      // from_chars reads "NaN", "Infinity" and "-Infinity", as PostgreSQL
      // writes them, regardless of case.
      double d = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
      if (ec == std::errc() && end == text.data() + text.size()) return d;
      break;
    }
    default:
      break;
  }
  // numeric and every other type, and anything that did not read back.
  return std::string(text);
}

}  // namespace dtx::participant::pg
