// Goal: consensus::Node keeps the promises node.h makes to the coordinator:
// a payload too large for a slot is refused at propose and the group lives
// on (P10); after stop() every pending callback runs; the applied stream
// carries term starts on every replica; callbacks run on the loop thread.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "consensus/node.h"
#include "tests/support/process.h"
#include "tests/support/temp_dir.h"

namespace dtx::consensus {
namespace {

using namespace std::chrono_literals;

// Three nodes in this process on loopback, each with its own data directory
// and a log of what its state machine saw.
class Group {
 public:
  Group() {
    for (NodeId id = 1; id <= 3; ++id)
      addrs_[id] = "127.0.0.1:" + std::to_string(testing::free_port());
    for (NodeId id = 1; id <= 3; ++id)
      start(id, true);
  }
  ~Group() {
    for (auto& [id, n] : nodes_) {
      if (n) n->stop();
    }
  }

  void start(NodeId id, bool bootstrap) {
    NodeOptions o;
    o.cluster_id = 5;
    o.self = id;
    o.replicas = addrs_;
    o.data_dir = dir_.sub("data" + std::to_string(id));
    o.bootstrap = bootstrap;
    o.secret = "node-test-secret-0123456789";
    o.tick_ms = 5;
    NodeCallbacks cb;
    cb.apply = [this, id](const AppliedEntry& e) {
      std::lock_guard lock(mu_);
      // On the node's loop thread, always the same one.
      EXPECT_NE(std::this_thread::get_id(), test_thread_);
      auto [it, first] = loop_thread_.emplace(id, std::this_thread::get_id());
      EXPECT_EQ(it->second, std::this_thread::get_id());
      entries_[id].push_back(e.kind == AppliedEntry::Kind::term_start
                                 ? "term " + e.ballot.describe()
                                 : "cmd " + e.command->payload);
      cv_.notify_all();
    };
    auto n = Node::start(o, cb);
    ASSERT_TRUE(n.ok()) << n.status();
    nodes_[id] = std::move(*n);
  }
  Node& node(NodeId id) { return *nodes_[id]; }
  void stop(NodeId id) { nodes_[id]->stop(); }

  NodeId leader(std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      for (auto& [id, n] : nodes_) {
        if (n && n->status().serving) return id;
      }
      std::this_thread::sleep_for(5ms);
    }
    return 0;
  }

  ProposeResult propose(NodeId id, std::string payload) {
    std::promise<ProposeResult> p;
    node(id).propose(std::move(payload), [&](ProposeResult r) { p.set_value(r); });
    auto f = p.get_future();
    EXPECT_EQ(f.wait_for(10s), std::future_status::ready);
    return f.get();
  }

  // Waits until replica `id` applied `count` entries; returns them.
  std::vector<std::string> entries(NodeId id, size_t count) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, 10s, [&] { return entries_[id].size() >= count; });
    return entries_[id];
  }

 private:
  testing::TempDir dir_{"dtx-paxos-node"};
  std::map<NodeId, std::string> addrs_;
  std::map<NodeId, std::unique_ptr<Node>> nodes_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<NodeId, std::vector<std::string>> entries_;
  std::map<NodeId, std::thread::id> loop_thread_;
  const std::thread::id test_thread_ = std::this_thread::get_id();
};

TEST(PaxosNode, an_oversized_proposal_is_refused_and_the_group_lives_on) {
  Group g;
  const NodeId l = g.leader();
  ASSERT_NE(l, 0u);
  const size_t max = g.node(l).command_bytes_max();
  EXPECT_EQ(max, Config{}.command_bytes_max());
  EXPECT_GT(max, 1000u * 1000u);
  // Before P10 this became a slot value no write-ahead log accepts, and
  // every replica stopped on it.
  ProposeResult r = g.propose(l, std::string(5u << 20, 'x'));
  EXPECT_EQ(r.outcome, ProposeResult::Outcome::too_large);
  r = g.propose(l, std::string(max + 1, 'x'));
  EXPECT_EQ(r.outcome, ProposeResult::Outcome::too_large);
  r = g.propose(l, std::string(max, 'y'));
  EXPECT_EQ(r.outcome, ProposeResult::Outcome::applied);
  r = g.propose(l, "small");
  ASSERT_EQ(r.outcome, ProposeResult::Outcome::applied);
  for (NodeId id = 1; id <= 3; ++id) {
    auto e = g.entries(id, 3);
    ASSERT_EQ(e.size(), 3u) << "replica " << id;
    EXPECT_EQ(e.back(), "cmd small");
  }
}

TEST(PaxosNode, every_replica_applies_the_same_stream_with_term_starts) {
  Group g;
  const NodeId l = g.leader();
  ASSERT_NE(l, 0u);
  ASSERT_EQ(g.propose(l, "a").outcome, ProposeResult::Outcome::applied);
  ASSERT_EQ(g.propose(l, "b").outcome, ProposeResult::Outcome::applied);
  const std::string term = "term " + g.node(l).status().ballot.describe();
  for (NodeId id = 1; id <= 3; ++id) {
    EXPECT_EQ(g.entries(id, 3), (std::vector<std::string>{term, "cmd a", "cmd b"}))
        << "replica " << id;
  }
  // A follower refuses and names the leader.
  const NodeId f = l == 1 ? 2 : 1;
  ProposeResult r = g.propose(f, "c");
  EXPECT_EQ(r.outcome, ProposeResult::Outcome::not_leader);
  EXPECT_EQ(r.leader, l);
}

TEST(PaxosNode, stop_resolves_every_pending_callback) {
  Group g;
  const NodeId l = g.leader();
  ASSERT_NE(l, 0u);
  ASSERT_EQ(g.propose(l, "first").outcome, ProposeResult::Outcome::applied);
  // Without its followers the leader can queue but never choose.
  for (NodeId id = 1; id <= 3; ++id) {
    if (id != l) g.stop(id);
  }
  std::promise<ProposeResult> proposed;
  std::promise<Status> waited;
  std::promise<Status> read;
  g.node(l).propose("never", [&](ProposeResult r) { proposed.set_value(r); });
  g.node(l).wait_applied(1'000'000, [&](Status s) { waited.set_value(s); });
  g.node(l).read_index([&](Result<Slot> r) { read.set_value(r.status()); });
  std::this_thread::sleep_for(50ms);
  g.stop(l);
  auto pf = proposed.get_future();
  auto wf = waited.get_future();
  auto rf = read.get_future();
  ASSERT_EQ(pf.wait_for(1s), std::future_status::ready) << "propose callback never ran";
  ASSERT_EQ(wf.wait_for(1s), std::future_status::ready) << "wait_applied callback never ran";
  ASSERT_EQ(rf.wait_for(1s), std::future_status::ready) << "read_index callback never ran";
  const ProposeResult pr = pf.get();
  // Queued, then stopped: stopped (or unknown if leadership went first).
  EXPECT_TRUE(pr.outcome == ProposeResult::Outcome::stopped ||
              pr.outcome == ProposeResult::Outcome::unknown)
      << outcome_name(pr.outcome);
  EXPECT_EQ(wf.get().code(), Code::closed);
  const Status rs = rf.get();
  EXPECT_FALSE(rs.ok());
  // Calls after stop resolve at once.
  std::optional<ProposeResult> late;
  g.node(l).propose("late", [&](ProposeResult r) { late = r; });
  ASSERT_TRUE(late.has_value());
  EXPECT_EQ(late->outcome, ProposeResult::Outcome::stopped);
  std::optional<Status> late_wait;
  g.node(l).wait_applied(1, [&](Status s) { late_wait = s; });
  ASSERT_TRUE(late_wait.has_value());
  EXPECT_EQ(late_wait->code(), Code::closed);
}

}  // namespace
}  // namespace dtx::consensus
