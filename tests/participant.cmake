# The participant: unit tests of the branch machine; integration tests of the
# agent process against real PostgreSQL and SQLite.
add_executable(dtx-participant-tests unit/branch_machine_test.cc)
target_link_libraries(dtx-participant-tests PRIVATE dtx_participant_core GTest::gtest GTest::gtest_main)
gtest_discover_tests(dtx-participant-tests DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 120)

# In-process: the agent's lanes, locks and timers on a fake database and a
# manual clock (no HTTP, no sleeping for timers).
add_executable(dtx-agent-inprocess-tests unit/agent_inprocess_test.cc)
target_link_libraries(dtx-agent-inprocess-tests PRIVATE dtx_participant GTest::gtest
  GTest::gtest_main)
gtest_discover_tests(dtx-agent-inprocess-tests DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 120)

# Integration: dtx-agent processes on a real PostgreSQL (DTX_TEST_PG_URL,
# started by scripts/test) and real SQLite files.
if(TARGET dtx-agent)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(PQXX_TEST REQUIRED IMPORTED_TARGET libpqxx)
  find_package(SQLite3 REQUIRED)
  add_executable(dtx-agent-integration-tests integration/agent_test.cc
    integration/agent_coordinator_test.cc)
  target_link_libraries(dtx-agent-integration-tests PRIVATE dtx_participant_core dtx_rest
    dtx_test_support PkgConfig::PQXX_TEST SQLite::SQLite3 GTest::gtest GTest::gtest_main)
  add_dependencies(dtx-agent-integration-tests dtx-agent)
  if(TARGET dtx-agent-bench)
    add_dependencies(dtx-agent-integration-tests dtx-agent-bench)
  endif()
  gtest_discover_tests(dtx-agent-integration-tests DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT 300 LABELS integration)
endif()

# Restarts the shared PostgreSQL server: runs alone.
if(TARGET dtx-agent)
  add_executable(dtx-agent-pg-restart-tests integration/agent_pg_restart_test.cc)
  target_link_libraries(dtx-agent-pg-restart-tests PRIVATE dtx_participant_core dtx_rest
    dtx_test_support PkgConfig::PQXX_TEST SQLite::SQLite3 GTest::gtest GTest::gtest_main)
  add_dependencies(dtx-agent-pg-restart-tests dtx-agent)
  target_compile_definitions(dtx-agent-pg-restart-tests PRIVATE DTX_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
  gtest_discover_tests(dtx-agent-pg-restart-tests DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT 300 RUN_SERIAL TRUE LABELS integration
    WORKING_DIRECTORY ${CMAKE_SOURCE_DIR})
endif()
