# The simulator's library: seeded Rng, the event queue, named fault mixes,
# the simulated network and disk, Paxos replicas on them (SimPaxosNode, on
# the executor the node uses). Other simulations link it.
add_library(dtx_sim
  sim/sim_events.cc
  sim/sim_faults.cc
  sim/sim_network.cc
  sim/sim_disk.cc
  sim/sim_paxos_storage.cc
  sim/sim_paxos_node.cc
)
target_link_libraries(dtx_sim PUBLIC dtx_consensus_executor dtx_test_support)

# Multi-Paxos: the key-value scenario on the library, and the unit tests.
add_library(dtx_paxos_sim sim/paxos_sim.cc)
target_link_libraries(dtx_paxos_sim PUBLIC dtx_sim)

add_executable(dtx-sim sim/dtx_sim_main.cc)
target_link_libraries(dtx-sim PRIVATE dtx_paxos_sim CLI11::CLI11 spdlog::spdlog fmt::fmt)

add_executable(dtx-consensus-tests unit/consensus_core_test.cc unit/paxos_sim_test.cc
  unit/paxos_storage_test.cc unit/paxos_node_test.cc)
target_link_libraries(dtx-consensus-tests PRIVATE dtx_paxos_sim dtx_consensus dtx_test_support
  GTest::gtest GTest::gtest_main)
gtest_discover_tests(dtx-consensus-tests DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 600)

# The quick simulation set scripts/test runs.
add_test(NAME sim.paxos_3_replicas COMMAND dtx-sim --seeds 2000 --replicas 3)
add_test(NAME sim.paxos_5_replicas COMMAND dtx-sim --seeds 500 --replicas 5)
# Faults only to followers: leadership must never move (P9).
add_test(NAME sim.paxos_followers_3_replicas COMMAND dtx-sim --seeds 500 --faults followers)
add_test(NAME sim.paxos_followers_5_replicas
  COMMAND dtx-sim --seeds 200 --replicas 5 --faults followers)
set_tests_properties(sim.paxos_3_replicas sim.paxos_5_replicas sim.paxos_followers_3_replicas
  sim.paxos_followers_5_replicas PROPERTIES TIMEOUT 600)

# Integration: real dtx-paxos-kv processes over loopback TCP.
add_executable(dtx-consensus-integration-tests integration/paxos_cluster_test.cc)
target_link_libraries(dtx-consensus-integration-tests PRIVATE dtx_rest dtx_test_support
  GTest::gtest GTest::gtest_main)
add_dependencies(dtx-consensus-integration-tests dtx-paxos-kv)
gtest_discover_tests(dtx-consensus-integration-tests DISCOVERY_TIMEOUT 60
  PROPERTIES TIMEOUT 300 LABELS integration)
