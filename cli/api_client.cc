#include "cli/api_client.h"

namespace dtx::cli {

namespace {

rest::ClientOptions options(std::string token, int64_t timeout_ms) {
  rest::ClientOptions o;
  o.bearer_token = std::move(token);
  o.default_timeout_ms = timeout_ms;
  o.connections_per_peer_max = 4;
  return o;
}

}  // namespace

std::string peer_of_url(std::string_view url) {
  if (url.substr(0, 7) == "http://") url.remove_prefix(7);
  const auto slash = url.find('/');
  std::string_view peer = url.substr(0, slash);
  if (peer.empty() || peer.find(':') == std::string_view::npos) return "";
  return std::string(peer);
}

ApiClient::ApiClient(std::vector<std::string> coordinators, std::string token, int64_t timeout_ms)
    : coordinators_(std::move(coordinators)),
      timeout_ms_(timeout_ms),
      client_(options(std::move(token), timeout_ms)) {}

Result<rest::Response> ApiClient::call(rest::Method method, const std::string& target,
                                       const std::string& body, const rest::Headers& headers) {
  Status last = error(Code::unavailable, "no coordinator given");
  for (const std::string& first : coordinators_) {
    std::string peer = first;
    for (int hops = 0; hops < 5; ++hops) {
      rest::ClientRequest req;
      req.method = method;
      req.target = target;
      req.body = body;
      req.headers = headers;
      req.timeout_ms = timeout_ms_;
      auto r = client_.request_sync(peer, std::move(req));
      if (!r.ok()) {
        last = error(r.status().code(), peer + ": " + r.status().message());
        // Only a request that was certainly not sent may go elsewhere.
        if (r.status().code() == Code::unavailable) break;
        return last;
      }
      if (r->status == 307) {
        auto loc = r->headers.get("Location");
        const std::string next = loc ? peer_of_url(*loc) : "";
        if (next.empty() || next == peer) return r;
        peer = next;
        continue;
      }
      if (r->status == 503 && r->error_code() == "no_leader") {
        last = error(Code::unavailable, peer + ": no leader known");
        break;
      }
      return r;
    }
  }
  return last;
}

}  // namespace dtx::cli
