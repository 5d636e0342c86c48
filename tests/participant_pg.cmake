# participant/pg: PgResource against a real PostgreSQL, the one scripts/test
# starts (DTX_TEST_PG_URL; scripts/pg-local).
if(TARGET dtx_participant_pg)
  add_executable(dtx-pg-resource-tests integration/pg_resource_test.cc)
  target_link_libraries(dtx-pg-resource-tests PRIVATE dtx_participant_pg GTest::gtest
    GTest::gtest_main)
  gtest_discover_tests(dtx-pg-resource-tests DISCOVERY_TIMEOUT 60
    PROPERTIES TIMEOUT 300 LABELS integration)
endif()
