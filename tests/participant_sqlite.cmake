# participant/sqlite: SqliteResource on real SQLite files in temporary
# directories, crash recovery through fork()ed children.
add_executable(dtx-sqlite-resource-tests
  integration/sqlite_resource_test.cc
  integration/sqlite_recovery_test.cc
  integration/sqlite_test_support.cc
)
target_link_libraries(dtx-sqlite-resource-tests PRIVATE dtx_participant_sqlite dtx_test_support
  GTest::gtest GTest::gtest_main)
gtest_discover_tests(dtx-sqlite-resource-tests DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 300)
