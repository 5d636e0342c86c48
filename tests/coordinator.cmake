# The coordinator's pure core: the transaction table and the drivers.
if(TARGET dtx_coordinator_core)
  add_executable(dtx-coordinator-tests
    unit/coordinator_table_test.cc
    unit/coordinator_driver_test.cc
  )
  target_link_libraries(dtx-coordinator-tests PRIVATE dtx_coordinator_core GTest::gtest
    GTest::gtest_main)
  gtest_discover_tests(dtx-coordinator-tests DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 120)
endif()

# Integration: three dtx-coordinator processes, a PostgreSQL agent and a
# SQLite agent, checked in the databases themselves.
if(TARGET dtx-coordinator AND TARGET dtx-agent AND TARGET dtx)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(PQXX_CLUSTER REQUIRED IMPORTED_TARGET libpqxx)
  find_package(SQLite3 REQUIRED)
  add_executable(dtx-coordinator-integration-tests integration/coordinator_test.cc)
  target_link_libraries(dtx-coordinator-integration-tests PRIVATE dtx_rest dtx_test_support
    PkgConfig::PQXX_CLUSTER SQLite::SQLite3 GTest::gtest GTest::gtest_main)
  add_dependencies(dtx-coordinator-integration-tests dtx-coordinator dtx-agent dtx)
  gtest_discover_tests(dtx-coordinator-integration-tests DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT 300 LABELS integration)
endif()

# docs/api.md's curl examples, run against a real cluster (needs curl, jq).
if(TARGET dtx-coordinator AND TARGET dtx-agent)
  add_executable(dtx-api-doc-tests integration/api_doc_test.cc)
  target_link_libraries(dtx-api-doc-tests PRIVATE dtx_rest dtx_test_support
    PkgConfig::PQXX_CLUSTER SQLite::SQLite3 GTest::gtest GTest::gtest_main)
  target_compile_definitions(dtx-api-doc-tests PRIVATE DTX_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  add_dependencies(dtx-api-doc-tests dtx-coordinator dtx-agent)
  gtest_discover_tests(dtx-api-doc-tests DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT 300 LABELS integration)
endif()

# The commit simulation: coordinator cores on simulated Paxos replicas,
# agents on simulated databases, clients, faults, one seed (tests/sim).
if(TARGET dtx_sim)
  add_library(dtx_commit_sim sim/commit_sim.cc)
  target_link_libraries(dtx_commit_sim PUBLIC dtx_sim dtx_coordinator_core dtx_participant_core)
  add_executable(dtx-commit-sim sim/commit_sim_main.cc)
  target_link_libraries(dtx-commit-sim PRIVATE dtx_commit_sim CLI11::CLI11)
  # `dtx-sim --scenario commit` runs it.
  if(TARGET dtx-sim)
    add_dependencies(dtx-sim dtx-commit-sim)
  endif()
  add_executable(dtx-commit-sim-tests unit/commit_sim_test.cc)
  target_link_libraries(dtx-commit-sim-tests PRIVATE dtx_commit_sim GTest::gtest GTest::gtest_main)
  gtest_discover_tests(dtx-commit-sim-tests DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 600)
  # Long runs: thousands of seeds under every fault, and under heavy loss.
  add_test(NAME sim.commit_default COMMAND dtx-commit-sim --seeds 2000)
  add_test(NAME sim.commit_lossy COMMAND dtx-commit-sim --seeds 300 --start 5000 --faults lossy)
  set_tests_properties(sim.commit_default sim.commit_lossy PROPERTIES TIMEOUT 900)
endif()
