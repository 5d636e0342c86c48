#include "cli/bench.h"

#include <fmt/format.h>
#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>

#include <unistd.h>

#include "rest/client.h"

namespace dtx::cli {

namespace {

using Clock = std::chrono::steady_clock;

int64_t us_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count();
}

struct Row {
  std::string mode;
  int clients = 0;
  double tps = 0;
  double p50_ms = 0, p99_ms = 0, p999_ms = 0;
  uint64_t ok = 0, failed = 0;
  double ratio = 0;  // tps / the baseline's at the same client count
};

double percentile(std::vector<int64_t>& v, double p) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return static_cast<double>(v[i]) / 1000.0;
}

// One libpq connection for the baseline, with the few async calls it needs.
class PgConn {
 public:
  explicit PgConn(const std::string& url) : c_(PQconnectdb(url.c_str())) {}
  ~PgConn() { PQfinish(c_); }
  bool ok() const { return PQstatus(c_) == CONNECTION_OK; }
  std::string error() const { return PQerrorMessage(c_); }
  bool send(const std::string& sql) { return PQsendQuery(c_, sql.c_str()) == 1; }
  int socket() const { return PQsocket(c_); }
  PGconn* raw() { return c_; }
  // Reads what arrived; true once every result of the query is in. *ok
  // becomes false if a statement failed. last_tag() is the command tag of
  // the query's last statement.
  bool poll_done(bool* ok) {
    if (PQconsumeInput(c_) == 0) {
      *ok = false;
      return true;
    }
    while (PQisBusy(c_) == 0) {
      PGresult* r = PQgetResult(c_);
      if (r == nullptr) return true;
      const ExecStatusType st = PQresultStatus(r);
      if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) *ok = false;
      last_ = PQcmdStatus(r);
      PQclear(r);
    }
    return false;
  }
  const std::string& last_tag() const { return last_; }

 private:
  PGconn* c_;
  std::string last_;
};

// Runs the queries on both connections at once; true if both succeeded and
// each ended with the command tag `tag` (PREPARE TRANSACTION in a failed
// block answers ROLLBACK with no error: A2).
bool both(PgConn& a, PgConn& b, const std::string& sql_a, const std::string& sql_b,
          const char* tag) {
  if (!a.send(sql_a) || !b.send(sql_b)) return false;
  bool ok = true, done_a = false, done_b = false;
  while (!done_a || !done_b) {
    pollfd fds[2] = {{a.socket(), POLLIN, 0}, {b.socket(), POLLIN, 0}};
    ::poll(fds, 2, 1000);
    if (!done_a) done_a = a.poll_done(&ok);
    if (!done_b) done_b = b.poll_done(&ok);
  }
  return ok && a.last_tag() == tag && b.last_tag() == tag;
}

class Bench {
 public:
  explicit Bench(const BenchOptions& o) : o_(o) {}

  int run() {
    if (!prepare_tables()) return 4;
    if (!find_leader()) return 4;
    std::vector<Row> rows;
    uint64_t run_no = static_cast<uint64_t>(::getpid()) << 16;
    for (int c : o_.clients) {
      double baseline = 0;
      for (const std::string& mode : o_.modes) {
        Row r = measure(mode, c, ++run_no);
        if (mode == "direct") baseline = r.tps;
        r.ratio = baseline > 0 ? r.tps / baseline : 0;
        print_row(r);
        rows.push_back(r);
      }
    }
    write_outputs(rows);
    return 0;
  }

 private:
  bool prepare_tables() {
    const int accounts = 2 * *std::max_element(o_.clients.begin(), o_.clients.end()) + 2;
    for (const std::string& url : {o_.pg_a, o_.pg_b}) {
      PgConn c(url);
      if (!c.ok()) {
        std::fprintf(stderr, "dtx bench: cannot connect to %s: %s", url.c_str(), c.error().c_str());
        return false;
      }
      const std::string sql = fmt::format(
          "CREATE TABLE IF NOT EXISTS {0} (id int PRIMARY KEY, balance bigint NOT NULL); "
          "INSERT INTO {0} SELECT g, 1000000000000 FROM generate_series(1, {1}) g "
          "ON CONFLICT (id) DO NOTHING",
          o_.table, accounts);
      PGresult* r = PQexec(c.raw(), sql.c_str());
      const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
      if (!ok) std::fprintf(stderr, "dtx bench: %s: %s", url.c_str(), PQresultErrorMessage(r));
      PQclear(r);
      if (!ok) return false;
    }
    return true;
  }

  bool find_leader() {
    rest::ClientOptions co;
    co.bearer_token = o_.token;
    rest::Client client(co);
    for (const std::string& c : o_.coordinators) {
      auto r = client.get(c, "/v1/cluster", 3000);
      if (!r.ok() || r->status != 200) continue;
      boost::system::error_code ec;
      auto v = boost::json::parse(r->body, ec);
      if (ec || !v.is_object()) continue;
      const auto& o = v.as_object();
      if (o.contains("leader_url") && o.at("leader_url").is_string()) {
        std::string url = o.at("leader_url").as_string().c_str();
        if (url.rfind("http://", 0) == 0) url = url.substr(7);
        leader_ = url;
        return true;
      }
    }
    std::fprintf(stderr, "dtx bench: no coordinator leader found among the given replicas\n");
    return false;
  }

  Row measure(const std::string& mode, int clients, uint64_t run_no) {
    std::atomic<bool> measuring{false}, stop{false};
    std::atomic<uint64_t> done{0};
    std::mutex mu;
    std::vector<int64_t> lat;
    uint64_t ok_total = 0, failed_total = 0;
    std::vector<std::thread> threads;
    rest::ClientOptions co;
    co.bearer_token = o_.token;
    co.connections_per_peer_max = static_cast<size_t>(clients) + 4;
    co.io_threads = clients >= 16 ? 2 : 1;
    auto http = std::make_shared<rest::Client>(co);
    for (int i = 0; i < clients; ++i) {
      threads.emplace_back([&, i] {
        std::vector<int64_t> mine;
        uint64_t ok = 0, failed = 0;
        std::unique_ptr<PgConn> a, b;
        if (mode == "direct") {
          a = std::make_unique<PgConn>(o_.pg_a);
          b = std::make_unique<PgConn>(o_.pg_b);
          if (!a->ok() || !b->ok()) return;
        }
        const int from = 2 * i + 1, to = 2 * i + 2;
        for (uint64_t n = 0; !stop.load(std::memory_order_relaxed); ++n) {
          const auto t0 = Clock::now();
          bool good = false;
          if (mode == "direct") {
            // (a failed direct transfer is counted; its reason is the database's)
            const std::string gid = fmt::format("dtxbench-{}-{}-{}", run_no, i, n);
            good = both(*a, *b,
                        fmt::format("BEGIN; UPDATE {} SET balance = balance - 1 WHERE id = {}; "
                                    "PREPARE TRANSACTION '{}a'",
                                    o_.table, from, gid),
                        fmt::format("BEGIN; UPDATE {} SET balance = balance + 1 WHERE id = {}; "
                                    "PREPARE TRANSACTION '{}b'",
                                    o_.table, to, gid),
                        "PREPARE TRANSACTION") &&
                   both(*a, *b, fmt::format("COMMIT PREPARED '{}a'", gid),
                        fmt::format("COMMIT PREPARED '{}b'", gid), "COMMIT PREPARED");
          } else {
            good = submit(*http, mode, from, to);
          }
          if (measuring.load(std::memory_order_relaxed)) {
            if (good) {
              ++ok;
              mine.push_back(us_since(t0));
              done.fetch_add(1, std::memory_order_relaxed);
            } else {
              ++failed;
            }
          }
        }
        std::lock_guard<std::mutex> g(mu);
        lat.insert(lat.end(), mine.begin(), mine.end());
        ok_total += ok;
        failed_total += failed;
      });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(o_.warmup_seconds));
    measuring = true;
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration<double>(o_.seconds);
    while (Clock::now() < end) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      if (o_.progress) {
        const double s = static_cast<double>(us_since(start)) / 1e6;
        std::fprintf(stderr, "\r  %-6s %3d clients  %5.1f s  %8.0f tx/s   ", mode.c_str(), clients,
                     s, s > 0 ? static_cast<double>(done.load()) / s : 0.0);
      }
    }
    measuring = false;
    const double secs = static_cast<double>(us_since(start)) / 1e6;
    stop = true;
    for (auto& t : threads)
      t.join();
    if (o_.progress) std::fprintf(stderr, "\r%70s\r", "");
    Row r;
    r.mode = mode;
    r.clients = clients;
    r.ok = ok_total;
    r.failed = failed_total;
    r.tps = static_cast<double>(ok_total) / secs;
    r.p50_ms = percentile(lat, 0.50);
    r.p99_ms = percentile(lat, 0.99);
    r.p999_ms = percentile(lat, 0.999);
    return r;
  }

  // The first failure's reason, for the report.
  void note_failure(const std::string& why) {
    std::lock_guard<std::mutex> g(why_mu_);
    if (first_failure_.empty()) first_failure_ = why;
  }

  bool submit(rest::Client& http, const std::string& protocol, int from, int to) {
    boost::json::object body{
        {"protocol", protocol},
        {"branches",
         boost::json::array{
             boost::json::object{
                 {"participant", o_.participant_a},
                 {"statements",
                  boost::json::array{boost::json::object{
                      {"sql", "UPDATE " + o_.table + " SET balance = balance - $1 WHERE id = $2"},
                      {"params", boost::json::array{1, from}}}}}},
             boost::json::object{
                 {"participant", o_.participant_b},
                 {"statements",
                  boost::json::array{boost::json::object{
                      {"sql", "UPDATE " + o_.table + " SET balance = balance + $1 WHERE id = $2"},
                      {"params", boost::json::array{1, to}}}}}}}}};
    auto r = http.post(leader_, "/v1/submit", boost::json::serialize(body), 30'000);
    if (r.ok() && r->status == 200) return true;
    note_failure(r.ok() ? fmt::format("{} {}", r->status, r->body.substr(0, 300))
                        : r.status().describe());
    return false;
  }

  static void print_header() {
    std::printf("%-7s %7s %10s %9s %9s %9s %12s %8s\n", "mode", "clients", "tx/s", "p50 ms",
                "p99 ms", "p999 ms", "x baseline", "failed");
  }
  void print_row(const Row& r) {
    if (!header_printed_) {
      print_header();
      header_printed_ = true;
    }
    std::printf("%-7s %7d %10.0f %9.2f %9.2f %9.2f %12s %8lu\n", r.mode.c_str(), r.clients, r.tps,
                r.p50_ms, r.p99_ms, r.p999_ms,
                r.mode == "direct" ? "-" : fmt::format("{:.2f}x", r.ratio).c_str(),
                static_cast<unsigned long>(r.failed));
    std::lock_guard<std::mutex> g(why_mu_);
    if (r.failed > 0 && !first_failure_.empty()) {
      std::printf("        first failure: %s\n", first_failure_.c_str());
    }
    first_failure_.clear();
    std::fflush(stdout);
  }

  void write_outputs(const std::vector<Row>& rows) {
    std::error_code ec;
    std::filesystem::create_directories(o_.out_dir, ec);
    boost::json::array arr;
    std::string md =
        "| mode | clients | tx/s | p50 ms | p99 ms | p999 ms | × direct 2PC |\n"
        "|---|---|---|---|---|---|---|\n";
    for (const Row& r : rows) {
      arr.push_back(boost::json::object{{"mode", r.mode},
                                        {"clients", r.clients},
                                        {"tps", r.tps},
                                        {"p50_ms", r.p50_ms},
                                        {"p99_ms", r.p99_ms},
                                        {"p999_ms", r.p999_ms},
                                        {"ratio_to_direct", r.ratio},
                                        {"failed", r.failed}});
      md += fmt::format("| {} | {} | {:.0f} | {:.2f} | {:.2f} | {:.2f} | {} |\n", r.mode, r.clients,
                        r.tps, r.p50_ms, r.p99_ms, r.p999_ms,
                        r.mode == "direct" ? "-" : fmt::format("{:.2f}x", r.ratio));
    }
    std::ofstream(o_.out_dir + "/bench.json")
        << boost::json::serialize(
               boost::json::object{{"seconds", o_.seconds}, {"table", o_.table}, {"rows", arr}})
        << "\n";
    std::ofstream(o_.out_dir + "/bench.md") << md;
    std::ofstream(o_.out_dir + "/bench.svg") << svg(rows);
    std::printf("wrote %s/bench.json, bench.md and bench.svg\n", o_.out_dir.c_str());
  }

  // Two charts side by side: throughput and p50/p99 latency against clients
  // (log scale on x), one line per mode.
  std::string svg(const std::vector<Row>& rows) const {
    const int W = 900, H = 380, pad = 50, cw = (W - 3 * pad) / 2, ch = H - 2 * pad;
    std::vector<int> xs = o_.clients;
    double max_tps = 1, max_ms = 1;
    for (const Row& r : rows) {
      max_tps = std::max(max_tps, r.tps);
      max_ms = std::max(max_ms, r.p99_ms);
    }
    auto xpos = [&](int clients, int x0) {
      size_t i = static_cast<size_t>(std::find(xs.begin(), xs.end(), clients) - xs.begin());
      return x0 +
             (xs.size() > 1 ? static_cast<int>(i) * cw / static_cast<int>(xs.size() - 1) : cw / 2);
    };
    const char* colors[] = {"#444", "#1f77b4", "#d62728", "#2ca02c"};
    std::string s = fmt::format(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' font-family='sans-serif' "
        "font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n",
        W, H);
    for (int chart = 0; chart < 2; ++chart) {
      const int x0 = pad + chart * (cw + pad), y0 = pad;
      s += fmt::format("<text x='{}' y='{}' font-weight='bold'>{}</text>\n", x0, y0 - 20,
                       chart == 0 ? "transactions/s" : "latency ms (p50 solid, p99 dashed)");
      s += fmt::format("<rect x='{}' y='{}' width='{}' height='{}' fill='none' stroke='#ccc'/>\n",
                       x0, y0, cw, ch);
      for (int c : xs) {
        s += fmt::format("<text x='{}' y='{}' text-anchor='middle'>{}</text>\n", xpos(c, x0),
                         y0 + ch + 16, c);
      }
      const double top = chart == 0 ? max_tps : max_ms;
      s +=
          fmt::format("<text x='{}' y='{}' text-anchor='end'>{:.0f}</text>\n", x0 - 4, y0 + 4, top);
      for (size_t m = 0; m < o_.modes.size(); ++m) {
        for (int which = 0; which < (chart == 0 ? 1 : 2); ++which) {
          std::string pts;
          for (const Row& r : rows) {
            if (r.mode != o_.modes[m]) continue;
            const double v = chart == 0 ? r.tps : (which == 0 ? r.p50_ms : r.p99_ms);
            pts += fmt::format("{},{} ", xpos(r.clients, x0),
                               y0 + ch - static_cast<int>(v / top * ch));
          }
          s += fmt::format("<polyline points='{}' fill='none' stroke='{}' stroke-width='2'{}/>\n",
                           pts, colors[m % 4], which == 1 ? " stroke-dasharray='5,4'" : "");
        }
        s += fmt::format(
            "<text x='{}' y='{}' fill='{}'>{}</text>\n", x0 + 8, y0 + 16 + 14 * static_cast<int>(m),
            colors[m % 4],
            o_.modes[m] == "direct" ? "direct 2PC (no coordinator)" : "dtx " + o_.modes[m]);
      }
    }
    s += fmt::format("<text x='{}' y='{}'>clients</text>\n</svg>\n", W / 2, H - 8);
    return s;
  }

  const BenchOptions& o_;
  std::string leader_;
  bool header_printed_ = false;
  std::mutex why_mu_;
  std::string first_failure_;
};

}  // namespace

int run_bench(const BenchOptions& o) {
  Bench b(o);
  return b.run();
}

}  // namespace dtx::cli
