// Goal: PostgreSQL restarting in the middle of a branch makes the branch vote
// no, with nothing autocommitted, and the agent serves new branches after it
// (A1: branch sessions never reconnect). Runs alone: it restarts the server
// every other test uses.
#include "tests/integration/agent_fixture.h"

namespace dtx::participant {
namespace {

using namespace std::chrono_literals;

class PgRestart : public AgentFixture {};

TEST_P(PgRestart, a_branch_cut_by_a_server_restart_votes_no_and_nothing_autocommits) {
  start_agent();
  const std::string t = tx("cut");
  ASSERT_EQ(exec(t, transfer_sql(), {int64_t{-40}, int64_t{1}})->status, 200);
  ASSERT_EQ(std::system(DTX_SOURCE_DIR "/scripts/pg-local restart"), 0)
      << "could not restart PostgreSQL";
  pg_ = std::make_unique<pqxx::connection>(pg_url());
  // The next statement (and prepare) must fail, not run on a new session.
  auto r = exec(t, transfer_sql(), {int64_t{-1}, int64_t{2}});
  ASSERT_TRUE(r.ok());
  EXPECT_NE(r->status, 200) << r->body;
  EXPECT_EQ(prepare(t), "no");
  EXPECT_EQ(balance(1), 100) << "nothing of the cut branch autocommitted";
  EXPECT_EQ(balance(2), 100);
  // New branches work on fresh sessions.
  std::string next;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  int status = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    // A first exec that fails dooms its branch (it used its seq): each try
    // is a new branch.
    next = tx("after");
    auto e = exec(next, transfer_sql(), {int64_t{-2}, int64_t{1}});
    status = e.ok() ? e->status : 0;
    if (status == 200) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(status, 200) << agent_.log();
  ASSERT_EQ(prepare(next), "yes");
  EXPECT_EQ(decide(next, "commit"), "committed");
  EXPECT_EQ(balance(1), 98);
}

INSTANTIATE_TEST_SUITE_P(Db, PgRestart, ::testing::Values(Db::postgres),
                         [](const ::testing::TestParamInfo<Db>&) {
                           return std::string("postgres");
                         });

}  // namespace
}  // namespace dtx::participant
