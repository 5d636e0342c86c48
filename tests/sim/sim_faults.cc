#include "tests/sim/sim_faults.h"

namespace dtx::sim {

namespace {

FaultMix default_mix() {
  FaultMix m;
  m.name = "default";
  m.loss = 0.05;
  m.duplicate = 0.02;
  m.late = 0.05;
  m.keep_for_replay = 0.01;
  m.crash = 35;
  m.partition = 25;
  m.pause = 15;
  m.heal = 15;
  m.replay = 10;
  m.disk_loss = 0.02;
  m.rare_paths = true;
  return m;
}

}  // namespace

std::optional<FaultMix> fault_mix(const std::string& name) {
  if (name == "none") {
    FaultMix m;
    m.name = name;
    return m;
  }
  if (name == "default") return default_mix();
  if (name == "followers") {
    FaultMix m = default_mix();
    m.name = name;
    m.disk_loss = 0;  // a wiped replica stays down: a majority must stay for the leader
    m.rare_paths = false;
    m.spare_leader = true;
    return m;
  }
  if (name == "lossy") {
    FaultMix m;
    m.name = name;
    m.loss = 0.2;
    m.duplicate = 0.1;
    m.late = 0.1;
    m.keep_for_replay = 0.05;
    m.replay = 1;
    return m;
  }
  return std::nullopt;
}

std::vector<std::string> fault_mix_names() {
  return {"none", "default", "followers", "lossy"};
}

}  // namespace dtx::sim
