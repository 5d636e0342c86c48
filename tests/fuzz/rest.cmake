# rest/: the server's request path on raw bytes, and the JSON helper.
dtx_fuzz_target(dtx-fuzz-rest-request rest_request_fuzz.cc dtx_rest)
dtx_fuzz_target(dtx-fuzz-rest-json rest_json_fuzz.cc dtx_rest)
