# The participant: unit tests of the branch machine; integration tests of the
# agent process against real PostgreSQL and SQLite.
add_executable(dtx-participant-tests unit/branch_machine_test.cc)
target_link_libraries(dtx-participant-tests PRIVATE dtx_participant_core GTest::gtest GTest::gtest_main)
gtest_discover_tests(dtx-participant-tests DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 120)
