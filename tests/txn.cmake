# txn/: txids, the exec digest, SQL values in JSON and the agent API's
# messages (round trips and refusals).
add_executable(dtx-txn-tests unit/txn_test.cc unit/txn_agent_api_test.cc)
target_link_libraries(dtx-txn-tests PRIVATE dtx_txn GTest::gtest GTest::gtest_main)
gtest_discover_tests(dtx-txn-tests DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 120)
