// /metrics (Prometheus text) and /v1/cluster, built on the loop thread from
// the drivers' counters, the table and the node's status.
#include <fmt/format.h>

#include "coordinator/coordinator_impl.h"

namespace dtx::coordinator {

std::string Coordinator::Impl::metrics_text() {
  std::string out;
  auto line = [&out](std::string_view s) {
    out += s;
    out += '\n';
  };
  const DriverStats& s = driver->stats();
  const Now t = now();
  line("# HELP dtx_transactions_total Transactions decided by this replica as leader.");
  line("# TYPE dtx_transactions_total counter");
  line(fmt::format("dtx_transactions_total{{protocol=\"2pc\",outcome=\"committed\"}} {}",
                   s.committed_2pc));
  line(fmt::format("dtx_transactions_total{{protocol=\"2pc\",outcome=\"aborted\"}} {}",
                   s.aborted_2pc));
  line(fmt::format("dtx_transactions_total{{protocol=\"3pc\",outcome=\"committed\"}} {}",
                   s.committed_3pc));
  line(fmt::format("dtx_transactions_total{{protocol=\"3pc\",outcome=\"aborted\"}} {}",
                   s.aborted_3pc));
  line("# HELP dtx_transactions_begun_total Transactions begun (interactive and one-shot).");
  line("# TYPE dtx_transactions_begun_total counter");
  line(fmt::format("dtx_transactions_begun_total {}", s.begun));
  line("# HELP dtx_transactions_in_flight Transactions this leader drives now.");
  line("# TYPE dtx_transactions_in_flight gauge");
  line(fmt::format("dtx_transactions_in_flight {}", driver->in_flight()));
  line(
      "# HELP dtx_overloaded_total Requests refused because too many transactions were in "
      "flight.");
  line("# TYPE dtx_overloaded_total counter");
  line(fmt::format("dtx_overloaded_total {}", s.overloaded));

  line("# HELP dtx_commit_latency_seconds From commit (or submit) to the decision applied.");
  line("# TYPE dtx_commit_latency_seconds histogram");
  uint64_t cum = 0;
  for (size_t i = 0; i < std::size(LatencyHistogram::kBoundsUs); ++i) {
    cum += commit_latency.counts[i];
    line(fmt::format("dtx_commit_latency_seconds_bucket{{le=\"{}\"}} {}",
                     LatencyHistogram::kBoundsUs[i] / 1e6, cum));
  }
  line(fmt::format("dtx_commit_latency_seconds_bucket{{le=\"+Inf\"}} {}", commit_latency.total));
  line(fmt::format("dtx_commit_latency_seconds_sum {}", commit_latency.sum_us / 1e6));
  line(fmt::format("dtx_commit_latency_seconds_count {}", commit_latency.total));

  line(
      "# HELP dtx_in_doubt_branches Branches prepared and not yet acknowledged, per "
      "participant.");
  line("# TYPE dtx_in_doubt_branches gauge");
  const auto doubt = driver->in_doubt_by_participant(t);
  for (const auto& [name, d] : doubt) {
    line(fmt::format("dtx_in_doubt_branches{{participant=\"{}\"}} {}", name, d.branches));
  }
  line(
      "# HELP dtx_in_doubt_oldest_seconds How long the oldest in-doubt branch has been "
      "prepared.");
  line("# TYPE dtx_in_doubt_oldest_seconds gauge");
  for (const auto& [name, d] : doubt) {
    line(fmt::format("dtx_in_doubt_oldest_seconds{{participant=\"{}\"}} {}", name,
                     d.oldest_prepared_ms / 1e3));
  }
  line("# HELP dtx_inquiries_total Outcome inquiries from agents answered here.");
  line("# TYPE dtx_inquiries_total counter");
  line(fmt::format("dtx_inquiries_total {}", s.inquiries));
  line("# HELP dtx_decisions_resent_total Decisions sent again to an agent.");
  line("# TYPE dtx_decisions_resent_total counter");
  line(fmt::format("dtx_decisions_resent_total {}", s.decisions_resent));
  line(
      "# HELP dtx_heuristic_hazards_total Agents that acknowledged another outcome than the "
      "decision.");
  line("# TYPE dtx_heuristic_hazards_total counter");
  line(fmt::format("dtx_heuristic_hazards_total {}", s.hazards));
  line("# HELP dtx_heuristic_hazards_open Transactions with a hazard no operator cleared.");
  line("# TYPE dtx_heuristic_hazards_open gauge");
  line(fmt::format("dtx_heuristic_hazards_open {}", table->hazards().size()));
  line("# HELP dtx_leader_terms_total Terms this replica served as leader.");
  line("# TYPE dtx_leader_terms_total counter");
  line(fmt::format("dtx_leader_terms_total {}", s.leader_terms));

  const consensus::NodeStatus st = node->status();
  line("# HELP dtx_paxos_role 1 for this replica's role.");
  line("# TYPE dtx_paxos_role gauge");
  for (auto role :
       {consensus::Role::follower, consensus::Role::candidate, consensus::Role::leader}) {
    line(fmt::format("dtx_paxos_role{{role=\"{}\"}} {}", consensus::role_name(role),
                     st.role == role ? 1 : 0));
  }
  line("# TYPE dtx_paxos_serving gauge");
  line(fmt::format("dtx_paxos_serving {}", st.serving && driver->serving() ? 1 : 0));
  line("# TYPE dtx_paxos_ballot_round gauge");
  line(fmt::format("dtx_paxos_ballot_round {}", st.ballot.round));
  line("# HELP dtx_paxos_fsync_total fdatasync calls of this replica's Paxos log.");
  line("# TYPE dtx_paxos_fsync_total counter");
  line(fmt::format("dtx_paxos_fsync_total {}", st.log_syncs));
  line(
      "# HELP dtx_paxos_fsync_seconds_total time spent in them (divide by the count: mean "
      "fsync latency).");
  line("# TYPE dtx_paxos_fsync_seconds_total counter");
  line(fmt::format("dtx_paxos_fsync_seconds_total {:.6f}",
                   static_cast<double>(st.log_sync_ns) / 1e9));
  line("# TYPE dtx_paxos_commit_index gauge");
  line(fmt::format("dtx_paxos_commit_index {}", st.commit_index));
  line("# TYPE dtx_paxos_applied_index gauge");
  line(fmt::format("dtx_paxos_applied_index {}", st.applied_index));
  line("# TYPE dtx_paxos_snapshot_index gauge");
  line(fmt::format("dtx_paxos_snapshot_index {}", st.snapshot_index));
  line(
      "# HELP dtx_paxos_applied_commands_total Records applied; divided by slots, the batch "
      "size.");
  line("# TYPE dtx_paxos_applied_commands_total counter");
  line(fmt::format("dtx_paxos_applied_commands_total {}", applied_commands));
  line("# TYPE dtx_paxos_applied_slots_total counter");
  line(fmt::format("dtx_paxos_applied_slots_total {}", applied_slots));
  line(
      "# HELP dtx_proposals_refused_total Proposals that did not apply (busy, leadership "
      "change).");
  line("# TYPE dtx_proposals_refused_total counter");
  line(fmt::format("dtx_proposals_refused_total {}", proposals_refused));

  line("# HELP dtx_table_transactions Decided transactions the table keeps.");
  line("# TYPE dtx_table_transactions gauge");
  line(fmt::format("dtx_table_transactions {}", table->entries().size()));
  line("# TYPE dtx_table_open_transactions gauge");
  line(fmt::format("dtx_table_open_transactions {}", table->open().size()));
  line("# TYPE dtx_table_forgotten_total counter");
  line(fmt::format("dtx_table_forgotten_total {}", table->counts().forgotten));

  line("# HELP dtx_agent_up 1 when the participant's agent answered /readyz at the last check.");
  line("# TYPE dtx_agent_up gauge");
  {
    std::lock_guard<std::mutex> g(health_mu);
    for (const auto& [name, h] : health) {
      line(fmt::format("dtx_agent_up{{participant=\"{}\"}} {}", name, h.healthy ? 1 : 0));
    }
  }
  line("# TYPE dtx_agent_calls_total counter");
  line(fmt::format("dtx_agent_calls_total {}", agent_calls.load()));
  line("# TYPE dtx_agent_call_failures_total counter");
  line(fmt::format("dtx_agent_call_failures_total {}", agent_call_failures.load()));
  return out;
}

boost::json::object Coordinator::Impl::cluster_json() {
  const consensus::NodeStatus st = node->status();
  boost::json::object body;
  body["cluster"] = opt.config.cluster;
  body["self"] = opt.id;
  if (st.leader) {
    body["leader"] = *st.leader;
    if (const ReplicaAddress* l = opt.config.replica(*st.leader)) {
      body["leader_url"] = "http://" + l->api;
    }
  } else {
    body["leader"] = nullptr;
  }
  body["ballot"] = st.ballot.describe();
  body["serving"] = st.serving && driver->serving();
  boost::json::array reps;
  for (const auto& r : opt.config.replicas) {
    boost::json::object o;
    o["id"] = r.id;
    o["url"] = "http://" + r.api;
    if (r.id == opt.id) {
      o["role"] = consensus::role_name(st.role);
      o["commit_index"] = st.commit_index;
      o["applied_index"] = st.applied_index;
    } else {
      o["role"] = st.leader && *st.leader == r.id ? "leader" : "follower";
    }
    reps.push_back(std::move(o));
  }
  body["replicas"] = std::move(reps);
  boost::json::array parts;
  std::lock_guard<std::mutex> g(health_mu);
  for (const auto& [name, e] : table->registry()) {
    boost::json::object o;
    o["name"] = name;
    o["agent_id"] = e.agent_id;
    o["url"] = e.url;
    auto h = health.find(name);
    if (h != health.end()) {
      o["healthy"] = h->second.healthy;
      o["checked_at_ms"] = h->second.checked_at_ms;
    } else {
      o["healthy"] = nullptr;
    }
    parts.push_back(std::move(o));
  }
  body["participants"] = std::move(parts);
  body["watermark"] = table->watermark().valid() ? table->watermark().str() : "";
  body["in_flight"] = driver->in_flight();
  return body;
}

}  // namespace dtx::coordinator
