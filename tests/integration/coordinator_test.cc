// Goal: a real coordinator group (three dtx-coordinator processes) commits
// and aborts transfers between a PostgreSQL and a SQLite database through
// real agents, keeps one outcome on both databases when its leader is
// killed before or after the decision, resolves a stopped agent's branches
// when it returns, runs a keyed submit once across a failover, and answers
// bad requests with their statuses. Every outcome is checked in the
// databases themselves.
#include "tests/integration/cluster_fixture.h"

namespace dtx::testing {
namespace {

using Cluster = LocalCluster;

std::string outcome_of(const json::object& o) {
  return o.contains("outcome") && o.at("outcome").is_string()
             ? std::string(o.at("outcome").as_string())
             : "";
}

TEST(CoordinatorCluster, transfers_commit_and_abort_on_both_databases) {
  Cluster c;
  c.start();
  // 2PC commit.
  std::string tx = c.transfer(100, 1, 1);
  int st = 0;
  auto r = c.post("/v1/transactions/" + tx + "/commit", json::object{}, &st);
  ASSERT_EQ(st, 200) << json::serialize(r);
  EXPECT_EQ(outcome_of(r), "committed");
  EXPECT_EQ(c.pg_balance(1), 900);
  EXPECT_TRUE(Cluster::eventually([&] { return c.sqlite_balance(1) == 1100; }));

  // 3PC commit, answered only after every agent applied it.
  tx = c.transfer(50, 2, 2, "3pc");
  r = c.post("/v1/transactions/" + tx + "/commit", json::object{{"wait", "completed"}}, &st);
  ASSERT_EQ(st, 200) << json::serialize(r);
  EXPECT_EQ(c.pg_balance(2), 950);
  EXPECT_EQ(c.sqlite_balance(2), 1050) << "read-your-writes after wait=completed";

  // Abort by the client: nothing changes anywhere.
  tx = c.transfer(70, 3, 3);
  r = c.post("/v1/transactions/" + tx + "/abort", json::object{}, &st);
  EXPECT_EQ(st, 200);
  EXPECT_EQ(outcome_of(r), "aborted");
  EXPECT_EQ(c.pg_balance(3), 1000);
  EXPECT_EQ(c.sqlite_balance(3), 1000);

  // A constraint violation on one side: the commit answers 409 aborted
  // naming the participant and SQLSTATE, and the other side is untouched.
  tx = c.begin();
  EXPECT_EQ(c.exec(tx, c.sqlite_name(), c.sqlite_update(), json::array{5, 4}), 200);
  EXPECT_EQ(c.exec(tx, c.pg_name(), c.pg_update(), json::array{-5000, 4}), 422);
  r = c.post("/v1/transactions/" + tx + "/commit", json::object{}, &st);
  EXPECT_EQ(st, 409) << json::serialize(r);
  EXPECT_EQ(outcome_of(r), "aborted");
  EXPECT_EQ(r["reason"].as_object()["participant"].as_string(), c.pg_name());
  EXPECT_EQ(r["reason"].as_object()["sqlstate"].as_string(), "23514");
  EXPECT_TRUE(Cluster::eventually([&] { return c.sqlite_balance(4) == 1000; }));
  EXPECT_EQ(c.pg_balance(4), 1000);

  // Status reads the register.
  auto s = c.get("/v1/transactions/" + tx, &st);
  EXPECT_EQ(st, 200);
  EXPECT_EQ(outcome_of(s), "aborted");
  EXPECT_TRUE(Cluster::eventually([&] { return c.pg_prepared() == 0; }));
}

TEST(CoordinatorCluster, a_one_shot_submit_commits_in_one_request) {
  Cluster c;
  c.start();
  json::object body{
      {"protocol", "2pc"},
      {"branches",
       json::array{
           json::object{{"participant", c.pg_name()},
                        {"statements", json::array{json::object{{"sql", c.pg_update()},
                                                                {"params", json::array{-10, 5}}}}}},
           json::object{
               {"participant", c.sqlite_name()},
               {"statements", json::array{json::object{{"sql", c.sqlite_update()},
                                                       {"params", json::array{10, 5}}}}}}}}};
  int st = 0;
  auto r = c.post("/v1/submit", body, &st);
  ASSERT_EQ(st, 200) << json::serialize(r);
  EXPECT_EQ(outcome_of(r), "committed");
  ASSERT_EQ(r["results"].as_array().size(), 2u);
  EXPECT_EQ(c.pg_balance(5), 990);
  EXPECT_TRUE(Cluster::eventually([&] { return c.sqlite_balance(5) == 1010; }));
}

TEST(CoordinatorCluster, followers_redirect_and_answer_inquiries_from_their_table) {
  Cluster c;
  c.start();
  const int leader = c.wait_leader();
  const int follower = leader == 1 ? 2 : 1;
  // A begin sent to a follower is redirected to the leader (307).
  rest::ClientRequest req;
  req.method = rest::Method::post;
  req.target = "/v1/transactions";
  req.body = "{}";
  auto r = c.client().request_sync(c.api(follower), req);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 307);
  EXPECT_EQ(std::string(*r->headers.get("Location")),
            "http://" + c.api(leader) + "/v1/transactions");
  // A decided txid's outcome, asked of a follower with the cluster token.
  const std::string tx = c.transfer(1, 6, 6);
  int st = 0;
  c.post("/v1/transactions/" + tx + "/commit", json::object{}, &st);
  ASSERT_EQ(st, 200);
  Result<rest::Response> q = error(Code::unavailable, "");
  ASSERT_TRUE(Cluster::eventually([&] {
    q = c.admin().get(c.api(follower), "/v1/transactions/" + tx + "/outcome", 2000);
    return q.ok() && q->status == 200;
  }));
  EXPECT_EQ(outcome_of(json::parse(q->body).as_object()), "committed");
  // The client token may not ask (inquiries are the agents').
  q = c.client().get(c.api(follower), "/v1/transactions/" + tx + "/outcome", 2000);
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->status, 403);
}

// The leader is killed (SIGKILL) just before it proposes a commit decision:
// both branches are prepared, nothing is decided. The new leader's sweep
// finds them and aborts them in the log; both databases end unchanged.
TEST(CoordinatorCluster, leader_killed_before_the_decision_aborts_everywhere) {
  Cluster c(Cluster::with_fault("before_decision"));
  c.start();
  const int leader = c.wait_leader();
  const std::string tx = c.transfer(200, 7, 7);
  int st = 0;
  c.post("/v1/transactions/" + tx + "/commit", json::object{}, &st);
  EXPECT_NE(st, 200) << "the leader died before deciding";
  ASSERT_TRUE(c.coordinator(leader).wait(10s).has_value());
  const int next = c.wait_leader(20s, leader);
  ASSERT_NE(next, 0);
  json::object s;
  ASSERT_TRUE(Cluster::eventually([&] {
    s = c.get("/v1/transactions/" + tx, &st);
    return st == 200 && outcome_of(s) == "aborted";
  })) << json::serialize(s);
  EXPECT_TRUE(Cluster::eventually([&] { return c.pg_prepared() == 0; }));
  EXPECT_TRUE(Cluster::eventually([&] { return c.sqlite_balance(7) == 1000; }));
  EXPECT_EQ(c.pg_balance(7), 1000);
}

// One participant: the one-phase fast path, on both databases. Nothing is
// ever prepared, and the outcome is in the database at once.
TEST(CoordinatorCluster, a_one_participant_transaction_commits_in_one_phase) {
  Cluster c;
  c.start();
  c.wait_leader();
  const std::string tx = c.begin();
  ASSERT_EQ(c.exec(tx, c.pg_name(), c.pg_update(), json::array{-5, 3}), 200);
  ASSERT_EQ(c.exec(tx, c.pg_name(), c.pg_update(), json::array{5, 4}), 200);
  int st = 0;
  auto r = c.post("/v1/transactions/" + tx + "/commit", json::object{}, &st);
  ASSERT_EQ(st, 200) << json::serialize(r);
  EXPECT_EQ(c.pg_balance(3), 995);
  EXPECT_EQ(c.pg_balance(4), 1005);
  EXPECT_EQ(c.pg_prepared(), 0);
  // One-shot on SQLite, no key: one phase too.
  r = c.post("/v1/submit",
             json::object{
                 {"branches",
                  json::array{json::object{
                      {"participant", c.sqlite_name()},
                      {"statements", json::array{json::object{{"sql", c.sqlite_update()},
                                                              {"params", json::array{7, 9}}}}}}}}},
             &st);
  ASSERT_EQ(st, 200) << json::serialize(r);
  EXPECT_EQ(c.sqlite_balance(9), 1007);
  // The register records both after the fact (status from any replica).
  json::object s;
  EXPECT_TRUE(Cluster::eventually([&] {
    s = c.get("/v1/transactions/" + tx, &st);
    return st == 200 && s["state"] == "completed";
  })) << json::serialize(s);
  EXPECT_EQ(outcome_of(s), "committed");
  // The Paxos log's fsyncs are counted, with their time (mean latency).
  auto m = c.call(rest::Method::get, "/metrics");
  ASSERT_TRUE(m.ok());
  const auto at = m->body.find("\ndtx_paxos_fsync_total ");
  ASSERT_NE(at, std::string::npos) << m->body;
  EXPECT_GT(std::stoll(m->body.substr(at + 23)), 0) << m->body.substr(at, 40);
  EXPECT_NE(m->body.find("\ndtx_paxos_fsync_seconds_total "), std::string::npos);
}

// The leader is killed right after the agent committed in one phase, before
// the COMMIT record is written: the next leader, asked for the status,
// probes the agents (raising their fence) and finds the commit.
TEST(CoordinatorCluster, a_one_phase_commit_survives_the_leader_dying_before_its_record) {
  Cluster c(Cluster::with_fault("before_decision"));
  c.start();
  const int leader = c.wait_leader();
  const std::string tx = c.begin();
  ASSERT_EQ(c.exec(tx, c.pg_name(), c.pg_update(), json::array{-11, 5}), 200);
  int st = 0;
  c.post("/v1/transactions/" + tx + "/commit", json::object{}, &st);
  ASSERT_TRUE(c.coordinator(leader).wait(10s).has_value()) << "the fault fired";
  EXPECT_EQ(c.pg_balance(5), 989) << "committed in the database before the leader died";
  const int next = c.wait_leader(20s, leader);
  ASSERT_NE(next, 0);
  json::object s;
  ASSERT_TRUE(Cluster::eventually([&] {
    s = c.get("/v1/transactions/" + tx, &st);
    return st == 200 && outcome_of(s) == "committed";
  })) << json::serialize(s);
  EXPECT_EQ(c.pg_balance(5), 989);
  EXPECT_EQ(c.pg_prepared(), 0);
}

// The leader is killed just after the commit decision is applied, before
// any agent heard it, and an agent is stopped meanwhile: the new leader
// re-drives the decision; the stopped agent's branch stays in doubt until
// it returns, then commits without an operator.
TEST(CoordinatorCluster, leader_killed_after_the_decision_commits_everywhere) {
  Cluster c(Cluster::with_fault("after_decision"));
  c.start();
  const int leader = c.wait_leader();
  const std::string tx = c.transfer(300, 8, 8);
  int st = 0;
  c.post("/v1/transactions/" + tx + "/commit", json::object{}, &st);
  EXPECT_NE(st, 200);
  ASSERT_TRUE(c.coordinator(leader).wait(10s).has_value());
  c.sqlite_agent().signal(SIGSTOP);
  const int next = c.wait_leader(20s, leader);
  ASSERT_NE(next, 0);
  // Decided, committed on PostgreSQL, in doubt on the stopped SQLite agent.
  json::object s;
  ASSERT_TRUE(Cluster::eventually([&] {
    s = c.get("/v1/transactions/" + tx, &st);
    return st == 200 && outcome_of(s) == "committed";
  })) << json::serialize(s);
  EXPECT_TRUE(Cluster::eventually([&] { return c.pg_balance(8) == 700; }));
  auto doubt = c.call(rest::Method::get, "/v1/admin/in-doubt", "", {}, true);
  ASSERT_TRUE(doubt.ok());
  EXPECT_NE(doubt->body.find(tx), std::string::npos) << doubt->body;
  EXPECT_EQ(c.sqlite_balance(8), 1000);
  c.sqlite_agent().signal(SIGCONT);
  EXPECT_TRUE(Cluster::eventually([&] { return c.sqlite_balance(8) == 1300; }));
  EXPECT_TRUE(Cluster::eventually([&] {
    s = c.get("/v1/transactions/" + tx, &st);
    return s["state"] == "completed";
  })) << json::serialize(s);
}

// The same, but the SQLite agent is killed (kill -9) while the branch is
// prepared and restarted later: it recovers the branch from its log, asks
// the group for the outcome (GET /v1/transactions/{txid}/outcome, answered
// from the register by whichever replica it reaches) and commits.
TEST(CoordinatorCluster, an_agent_killed_while_prepared_recovers_and_asks_the_group) {
  Cluster c(Cluster::with_fault("after_decision"));
  c.start();
  const int leader = c.wait_leader();
  const std::string tx = c.transfer(120, 3, 3);
  int st = 0;
  c.post("/v1/transactions/" + tx + "/commit", json::object{}, &st);
  ASSERT_TRUE(c.coordinator(leader).wait(10s).has_value());
  c.sqlite_agent().kill_and_wait();
  ASSERT_NE(c.wait_leader(20s, leader), 0);
  EXPECT_TRUE(Cluster::eventually([&] { return c.pg_balance(3) == 880; }));
  EXPECT_EQ(c.sqlite_balance(3), 1000);
  c.start_sqlite_agent();
  EXPECT_TRUE(Cluster::eventually([&] { return c.sqlite_balance(3) == 1120; }))
      << c.sqlite_agent().log();
  json::object s;
  EXPECT_TRUE(Cluster::eventually([&] {
    s = c.get("/v1/transactions/" + tx, &st);
    return s["state"] == "completed";
  })) << json::serialize(s);
}

// A one-shot submit with an Idempotency-Key, retried after the leader died
// (before deciding, then after): it runs exactly once either way.
TEST(CoordinatorCluster, a_keyed_submit_retried_after_a_failover_runs_once) {
  for (const std::string fault : {"before_decision", "after_decision"}) {
    SCOPED_TRACE(fault);
    Cluster c(Cluster::with_fault(fault));
    c.start();
    const int leader = c.wait_leader();
    json::object body{
        {"branches",
         json::array{json::object{{"participant", c.pg_name()},
                                  {"statements",
                                   json::array{json::object{{"sql", c.pg_update()},
                                                            {"params", json::array{-25, 9}}}}}},
                     json::object{{"participant", c.sqlite_name()},
                                  {"statements",
                                   json::array{json::object{{"sql", c.sqlite_update()},
                                                            {"params", json::array{25, 9}}}}}}}}};
    rest::Headers h;
    h.set("Idempotency-Key", "transfer-9-" + fault);
    int st = 0;
    c.post("/v1/submit", body, &st, h);
    EXPECT_NE(st, 200);
    ASSERT_TRUE(c.coordinator(leader).wait(10s).has_value());
    ASSERT_NE(c.wait_leader(20s, leader), 0);
    json::object r;
    ASSERT_TRUE(Cluster::eventually([&] {
      r = c.post("/v1/submit", body, &st, h);
      return st == 200;
    })) << json::serialize(r);
    EXPECT_EQ(outcome_of(r), "committed");
    EXPECT_TRUE(Cluster::eventually([&] { return c.sqlite_balance(9) == 1025; }));
    EXPECT_EQ(c.pg_balance(9), 975);
    // And again: the same answer, nothing runs twice.
    auto again = c.post("/v1/submit", body, &st, h);
    EXPECT_EQ(st, 200);
    EXPECT_EQ(again["txid"], r["txid"]);
    EXPECT_EQ(c.pg_balance(9), 975);
    EXPECT_TRUE(Cluster::eventually([&] { return c.pg_prepared() == 0; }));
  }
}

TEST(CoordinatorCluster, bad_requests_get_their_status_and_change_nothing) {
  Cluster c;
  c.start();
  const int leader = c.wait_leader();
  auto raw = [&](rest::Method m, const std::string& target, const std::string& body,
                 rest::Client& cl) {
    rest::ClientRequest req;
    req.method = m;
    req.target = target;
    req.body = body;
    auto r = cl.request_sync(c.api(leader), req);
    EXPECT_TRUE(r.ok()) << target << ": " << r.status().describe();
    return r.ok() ? r->status : -1;
  };
  rest::Client anonymous;
  EXPECT_EQ(raw(rest::Method::post, "/v1/transactions", "{}", anonymous), 401);
  rest::ClientOptions wrong;
  wrong.bearer_token = "not-the-token-at-all-0000";
  rest::Client stranger(wrong);
  EXPECT_EQ(raw(rest::Method::post, "/v1/transactions", "{}", stranger), 403);
  EXPECT_EQ(raw(rest::Method::post, "/v1/transactions", "{not json", c.client()), 400);
  EXPECT_EQ(raw(rest::Method::post, "/v1/transactions", R"({"protocol":"4pc"})", c.client()), 400);
  EXPECT_EQ(raw(rest::Method::post, "/v1/transactions", R"({"timeout_ms":-1})", c.client()), 400);
  EXPECT_EQ(raw(rest::Method::get, "/v1/transactions/" + c.cluster() + ".99.9.1", "", c.client()),
            404);
  EXPECT_EQ(raw(rest::Method::get, "/v1/transactions/nonsense", "", c.client()), 404);
  const std::string tx = c.begin();
  EXPECT_EQ(c.exec(tx, "nobody", "UPDATE x SET y = 1", json::array{}), 404);
  EXPECT_EQ(raw(rest::Method::post, "/v1/transactions/" + tx + "/exec",
                R"({"participant":")" + c.pg_name() + R"(","sql":""})", c.client()),
            400);
  EXPECT_EQ(raw(rest::Method::post, "/v1/transactions/" + tx + "/exec",
                R"({"participant":")" + c.pg_name() + R"(","sql":"SELECT 1","params":[[1]]})",
                c.client()),
            400);
  EXPECT_EQ(raw(rest::Method::post, "/v1/submit", R"({"branches":[]})", c.client()), 400);
  {
    // Over the 4 MiB body limit: 413 before the body is read. (curl reads an
    // answer that comes while it still sends; dtx's client does not.)
    const std::string big = c.dir() + "/big-body";
    std::ofstream(big) << std::string((4 << 20) + 1000, ' ');
    Process curl =
        Process::spawn("/usr/bin/curl",
                       {"-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H",
                        std::string("Authorization: Bearer ") + Cluster::kClientToken,
                        "--data-binary", "@" + big, "http://" + c.api(leader) + "/v1/transactions"},
                       c.dir() + "/curl.out");
    ASSERT_TRUE(curl.wait(30s).has_value());
    EXPECT_EQ(curl.log(), "413");
  }
  EXPECT_EQ(raw(rest::Method::get, "/v1/admin/in-doubt", "", c.client()), 403);
  // Nothing changed, and the transaction is still usable.
  EXPECT_EQ(c.exec(tx, c.pg_name(), c.pg_update(), json::array{-1, 10}), 200);
  int st = 0;
  c.post("/v1/transactions/" + tx + "/abort", json::object{}, &st);
  EXPECT_EQ(st, 200);
  for (int i = 1; i <= Cluster::kAccounts; ++i)
    EXPECT_EQ(c.pg_balance(i), 1000);
}

TEST(CoordinatorCluster, the_dtx_command_line_commits_and_reports_outcomes) {
  Cluster c;
  c.start();
  const std::string coords = c.api(1) + "," + c.api(2) + "," + c.api(3);
  auto dtx = [&](std::vector<std::string> args, std::string* out = nullptr) {
    std::vector<std::string> full = {"--token-file", c.dir() + "/client-token"};
    for (int i = 1; i <= 3; ++i) {
      full.push_back("-c");
      full.push_back(c.api(i));
    }
    full.insert(full.end(), args.begin(), args.end());
    static int n = 0;
    const std::string log = c.dir() + "/dtx-cli-" + std::to_string(++n) + ".out";
    Process p = Process::spawn(bin_dir() + "/dtx", full, log);
    auto status = p.wait(30s);
    if (out) *out = p.log();
    return status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
  };
  (void)coords;
  std::string out;
  ASSERT_EQ(dtx({"begin"}, &out), 0) << out;
  const std::string tx = out.substr(0, out.find('\n'));
  ASSERT_EQ(dtx({"exec", tx, c.pg_name(), c.pg_update(), "-40", "10"}, &out), 0) << out;
  ASSERT_EQ(dtx({"exec", tx, c.sqlite_name(), c.sqlite_update(), "40", "10"}, &out), 0) << out;
  EXPECT_EQ(dtx({"commit", tx}, &out), 0) << out;
  EXPECT_NE(out.find("committed"), std::string::npos) << out;
  EXPECT_EQ(c.pg_balance(10), 960);
  // An aborted commit exits 1.
  ASSERT_EQ(dtx({"begin"}, &out), 0);
  const std::string tx2 = out.substr(0, out.find('\n'));
  EXPECT_EQ(dtx({"exec", tx2, c.pg_name(), c.pg_update(), "-99999", "10"}, &out), 2) << out;
  EXPECT_EQ(dtx({"commit", tx2}, &out), 1) << out;
  EXPECT_EQ(dtx({"status", tx}, &out), 0);
  EXPECT_NE(out.find("\"committed\""), std::string::npos) << out;
  EXPECT_EQ(dtx({"cluster"}, &out), 0);
  EXPECT_NE(out.find("\"leader\""), std::string::npos) << out;
}

}  // namespace
}  // namespace dtx::testing
