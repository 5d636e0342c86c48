// ApiClient: how the dtx command line talks to a coordinator group. It
// sends a request to the first coordinator that answers, follows 307
// redirects to the leader (a follower did nothing with the request, so
// sending it on is safe), and goes on to the next coordinator only when a
// request was certainly not sent (connection refused). It never re-sends a
// request whose fate is unknown.
//
// Threading: one thread (the CLI's).
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "rest/client.h"

namespace dtx::cli {

class ApiClient {
 public:
  // `coordinators`: host:port of each replica (any order); `token`: the
  // bearer token to present.
  ApiClient(std::vector<std::string> coordinators, std::string token, int64_t timeout_ms);

  // GET or POST `target` with `body`; extra headers (Idempotency-Key).
  Result<rest::Response> call(rest::Method method, const std::string& target,
                              const std::string& body = "", const rest::Headers& headers = {});

 private:
  std::vector<std::string> coordinators_;
  int64_t timeout_ms_;
  rest::Client client_;
};

// "host:port" from "http://host:port/path..." (a Location), or "" if malformed.
std::string peer_of_url(std::string_view url);

}  // namespace dtx::cli
