# rest/: routing, JSON and auth as values; server and client on real
# sockets on 127.0.0.1.
add_executable(dtx-rest-tests
  unit/rest_client_test.cc
  unit/rest_json_auth_test.cc
  unit/rest_router_test.cc
  unit/rest_server_test.cc
)
target_link_libraries(dtx-rest-tests PRIVATE dtx_rest GTest::gtest GTest::gtest_main)
gtest_discover_tests(dtx-rest-tests DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 120)
