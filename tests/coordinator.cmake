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
