// Goal: the pure Multi-Paxos core keeps the protocol's promises in scripted
// scenarios (the simulator covers the random ones).
#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <memory>

#include "consensus/core/messages.h"
#include "consensus/core/replica.h"

namespace dtx::consensus {
namespace {

// A tiny synchronous cluster: persists at once, delivers in FIFO order, and
// lets a test drop or hold messages.
class Cluster {
 public:
  explicit Cluster(int n, PlantedBugs bugs = {}) {
    for (int i = 1; i <= n; ++i)
      members_.push_back(static_cast<NodeId>(i));
    for (NodeId id : members_) {
      Config c;
      c.cluster_id = 1;
      c.self = id;
      c.members = members_;
      c.election_ticks = 10;
      c.seed = id * 7;
      c.bugs = bugs;
      replicas_[id] = std::make_unique<Replica>(c, Recovered{});
      storage_[id] = Recovered{};
      configs_[id] = c;
    }
  }
  Replica& r(NodeId id) { return *replicas_[id]; }
  std::function<bool(const Message&)> drop = [](const Message&) { return false; };
  std::vector<std::pair<NodeId, Ready::Applied>> applied;
  std::map<NodeId, std::optional<std::pair<Ballot, Slot>>> serving;

  void pump() {
    for (int rounds = 0; rounds < 10000; ++rounds) {
      bool any = false;
      for (auto& [id, rep] : replicas_) {
        if (!rep) continue;
        while (rep->has_ready()) {
          any = true;
          Ready rd = rep->take_ready();
          Recovered& disk = storage_[id];
          if (rd.promise) disk.promised = *rd.promise;
          for (auto& rec : rd.records)
            disk.records.push_back(rec);
          for (auto& a : rd.apply)
            applied.emplace_back(id, a);
          if (rd.serving) serving[id] = rd.serving;
          for (auto& m : rd.send)
            inflight_.push_back(m);
          for (auto& m : rd.send_after_persist)
            inflight_.push_back(m);
          if (rd.persist_id) rep->on_persisted(rd.persist_id);
        }
      }
      if (!inflight_.empty()) {
        Message m = inflight_.front();
        inflight_.pop_front();
        any = true;
        if (!drop(m) && replicas_[m.to]) replicas_[m.to]->step(m);
      }
      if (!any) return;
    }
    FAIL() << "cluster did not settle";
  }
  void tick_all(int n) {
    for (int i = 0; i < n; ++i) {
      for (auto& [id, rep] : replicas_) {
        if (rep) rep->tick();
      }
      pump();
    }
  }
  // Ticks until some replica serves; returns it.
  NodeId elect() {
    for (int i = 0; i < 200; ++i) {
      tick_all(1);
      for (auto& [id, rep] : replicas_) {
        if (rep && rep->status().serving) return id;
      }
    }
    ADD_FAILURE() << "no leader";
    return 0;
  }
  void crash(NodeId id) { replicas_[id].reset(); }
  void restart(NodeId id) { replicas_[id] = std::make_unique<Replica>(configs_[id], storage_[id]); }
  Recovered& disk(NodeId id) { return storage_[id]; }

 private:
  std::vector<NodeId> members_;
  std::map<NodeId, std::unique_ptr<Replica>> replicas_;
  std::map<NodeId, Recovered> storage_;
  std::map<NodeId, Config> configs_;
  std::deque<Message> inflight_;
};

std::vector<std::string> commands_applied(const Cluster& c, NodeId id) {
  std::vector<std::string> out;
  for (const auto& [node, a] : c.applied) {
    if (node != id) continue;
    Value v;
    EXPECT_TRUE(decode_value(*a.value, &v));
    for (const Command& cmd : v.commands)
      out.push_back(cmd.payload);
  }
  return out;
}

TEST(PaxosMessages, every_message_round_trips_and_garbage_is_refused) {
  std::vector<Payload> payloads = {
      Phase1a{5},
      Phase1b{2, 4, {SlotValue{5, Ballot{3, 1}, false, make_bytes("v5")}}},
      Phase2a{{SlotValue{6, Ballot{3, 1}, false, make_bytes("v6")}}, 5},
      Phase2b{{6, 7}},
      Nack{Ballot{9, 2}},
      Heartbeat{7, 11},
      HeartbeatAck{11, 7},
      Fetch{1, 9},
      FetchReply{{SlotValue{1, {}, true, make_bytes("x")}}, 0, 9},
      SnapshotFetch{4, 128},
      SnapshotChunk{4, 1000, 128, "chunk"},
  };
  for (const Payload& p : payloads) {
    Message m{2, 3, Ballot{3, 1}, p};
    std::string wire = encode_message(m);
    auto back = decode_message(
        std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(wire.data()), wire.size()), 3);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(back->describe(), m.describe());
    EXPECT_EQ(encode_message(*back), wire);
    // Every truncation is refused, never read past.
    for (size_t n = 0; n < wire.size(); ++n) {
      auto cut = decode_message(
          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(wire.data()), n), 3);
      EXPECT_FALSE(cut.ok()) << payload_name(p) << " cut at " << n;
    }
  }
  std::string forged = encode_message(Message{1, 2, {}, Phase2b{{1}}});
  forged[forged.size() - 12] = '\x7f';  // a count far larger than the input
  EXPECT_FALSE(decode_message(std::span<const uint8_t>(
                                  reinterpret_cast<const uint8_t*>(forged.data()), forged.size()),
                              2)
                   .ok());
}

TEST(Replica, elects_a_leader_that_serves_after_its_barrier_and_replicates) {
  Cluster c(3);
  NodeId leader = c.elect();
  ASSERT_NE(leader, 0u);
  ASSERT_TRUE(c.serving[leader].has_value());
  EXPECT_EQ(c.serving[leader]->first.node, leader);
  for (int i = 0; i < 5; ++i)
    ASSERT_TRUE(c.r(leader).propose("cmd" + std::to_string(i)).ok());
  c.pump();
  c.tick_all(2);  // heartbeats carry the commit index to followers
  for (NodeId id : {1u, 2u, 3u}) {
    EXPECT_EQ(commands_applied(c, id),
              (std::vector<std::string>{"cmd0", "cmd1", "cmd2", "cmd3", "cmd4"}))
        << "replica " << id;
  }
}

TEST(Replica, a_follower_refuses_proposals_and_names_the_leader) {
  Cluster c(3);
  NodeId leader = c.elect();
  NodeId follower = leader == 1 ? 2 : 1;
  auto r = c.r(follower).propose("x");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::failed_precondition);
  EXPECT_EQ(c.r(follower).status().leader, leader);
}

TEST(Replica, a_2b_leaves_only_after_the_acceptance_is_durable) {
  Config cfg;
  cfg.self = 2;
  cfg.members = {1, 2, 3};
  Replica r(cfg, Recovered{});
  Message m{1, 2, Ballot{1, 1}, Phase2a{{SlotValue{1, Ballot{1, 1}, false, make_bytes("v")}}, 0}};
  r.step(m);
  Ready rd = r.take_ready();
  ASSERT_NE(rd.persist_id, 0u);
  ASSERT_TRUE(rd.promise.has_value()) << "a higher ballot in a 2a raises the promise durably (P3)";
  EXPECT_EQ(*rd.promise, (Ballot{1, 1}));
  ASSERT_EQ(rd.records.size(), 1u);
  for (const Message& s : rd.send) {
    EXPECT_FALSE(std::holds_alternative<Phase2b>(s.payload)) << "2b sent before the fsync";
  }
  ASSERT_EQ(rd.send_after_persist.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<Phase2b>(rd.send_after_persist[0].payload));
}

TEST(Replica, votes_are_counted_per_distinct_acceptor) {
  Cluster c(5);
  NodeId leader = c.elect();
  const Slot before = c.r(leader).status().commit_index;
  // Only one follower answers, but its 2b arrives three times.
  NodeId only = leader == 1 ? 2 : 1;
  int copies = 0;
  c.drop = [&](const Message& m) {
    if (std::holds_alternative<Phase2b>(m.payload) && m.from != only) return true;
    if (std::holds_alternative<Phase2b>(m.payload)) ++copies;
    return false;
  };
  ASSERT_TRUE(c.r(leader).propose("once").ok());
  c.pump();
  Message dup{only, leader, c.r(leader).status().ballot, Phase2b{{c.r(leader).status().last_slot}}};
  c.r(leader).step(dup);
  c.r(leader).step(dup);
  c.pump();
  EXPECT_GT(copies, 0);
  EXPECT_EQ(c.r(leader).status().commit_index, before)
      << "leader + one follower (counted thrice) is not a majority of 5";
}

TEST(Replica, a_follower_never_applies_a_value_accepted_from_an_old_leader) {
  // P2: replica 3 accepted v_old for slot s from leader A; leader B chose
  // v_new there. B's commit index must make 3 fetch, not apply v_old.
  Config cfg;
  cfg.self = 3;
  cfg.members = {1, 2, 3};
  Replica r(cfg, Recovered{});
  r.step(Message{1, 3, Ballot{1, 1},
                 Phase2a{{SlotValue{1, Ballot{1, 1}, false, make_bytes("old")}}, 0}});
  (void)r.take_ready();
  r.step(Message{2, 3, Ballot{2, 2}, Heartbeat{1, 1}});
  Ready rd = r.take_ready();
  EXPECT_TRUE(rd.apply.empty()) << "applied a stale value";
  bool fetched = false;
  for (const Message& m : rd.send)
    fetched |= std::holds_alternative<Fetch>(m.payload) && m.to == 2;
  EXPECT_TRUE(fetched);
  r.step(
      Message{2, 3, Ballot{2, 2}, FetchReply{{SlotValue{1, {}, true, make_bytes("new")}}, 0, 1}});
  rd = r.take_ready();
  ASSERT_EQ(rd.apply.size(), 1u);
  EXPECT_EQ(*rd.apply[0].value, "new");
}

TEST(Replica, restart_keeps_the_promise_and_picks_a_higher_round) {
  Cluster c(3);
  NodeId leader = c.elect();
  const Ballot b = c.r(leader).status().ballot;
  NodeId f = leader == 1 ? 2 : 1;
  c.crash(f);
  c.restart(f);
  EXPECT_GE(c.r(f).status().promised, b) << "the promise survives a restart (P3)";
  // A stale proposal from below the promise is refused.
  Message low{3, f, Ballot{0, 3},
              Phase2a{{SlotValue{99, Ballot{0, 3}, false, make_bytes("z")}}, 0}};
  c.r(f).step(low);
  Ready rd = c.r(f).take_ready();
  ASSERT_EQ(rd.send.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<Nack>(rd.send[0].payload));
  EXPECT_TRUE(rd.records.empty());
}

TEST(Replica, new_leader_reproposes_accepted_values_and_fills_only_true_holes) {
  Cluster c(3);
  NodeId a = c.elect();
  ASSERT_TRUE(c.r(a).propose("keep-me").ok());
  // The 2a reaches one follower only; the value is chosen (leader + one).
  c.pump();
  const Slot s = c.r(a).status().last_slot;
  c.crash(a);
  NodeId b = c.elect();
  ASSERT_NE(b, a);
  c.tick_all(3);
  bool found = false;
  for (const std::string& cmd : commands_applied(c, b))
    found |= cmd == "keep-me";
  EXPECT_TRUE(found) << "slot " << s << " lost its chosen value across the failover";
}

TEST(Replica, check_quorum_makes_an_isolated_leader_step_down) {
  Cluster c(3);
  NodeId leader = c.elect();
  c.drop = [&](const Message& m) { return m.from == leader || m.to == leader; };
  c.tick_all(40);
  EXPECT_NE(c.r(leader).status().role, Role::leader);
  EXPECT_FALSE(c.r(leader).status().serving);
}

TEST(Replica, read_index_is_answered_only_after_a_majority_confirms) {
  Cluster c(3);
  NodeId leader = c.elect();
  bool cut = true;
  c.drop = [&](const Message& m) { return cut && std::holds_alternative<HeartbeatAck>(m.payload); };
  ASSERT_TRUE(c.r(leader).read_index(42).ok());
  Ready rd = c.r(leader).take_ready();
  for (const Message& m : rd.send)
    c.r(m.to).step(m);
  c.pump();
  EXPECT_TRUE(c.r(leader).take_ready().reads_ready.empty());
  cut = false;
  ASSERT_TRUE(c.r(leader).read_index(43).ok());
  std::vector<uint64_t> ready;
  for (int i = 0; i < 10 && ready.empty(); ++i) {
    Ready r = c.r(leader).take_ready();
    for (auto& [id, idx] : r.reads_ready)
      ready.push_back(id);
    for (const Message& m : r.send) {
      c.r(m.to).step(m);
      Ready fr = c.r(m.to).take_ready();
      for (const Message& back : fr.send)
        c.r(back.to).step(back);
    }
  }
  EXPECT_FALSE(ready.empty());
}

}  // namespace
}  // namespace dtx::consensus
