// The coordinator's side of the agent API (txn/agent_api.h): an AgentCall
// from the drivers becomes an HTTP request with the fencing fields (this
// leader's ballot, the agent's id) and the watermark; the agent's answer, or
// the client's failure, becomes an AgentReply.
//
// How a failed request maps (rest/client.h says how far each got):
//   unavailable, busy (never sent)     -> Delivery::not_sent
//   timeout                            -> Delivery::unknown, timed_out
//   io_error, closed                   -> Delivery::unknown
//   a 200 whose body does not decode   -> Delivery::unknown (it may have run)
//   any other HTTP status              -> answered, with the error body
//
// Threading: pure functions; called on the agent client's threads.
#pragma once

#include "common/status.h"
#include "coordinator/core/driver.h"
#include "rest/client.h"

namespace dtx::coordinator {

rest::ClientRequest encode_call(const AgentCall& c);
AgentReply decode_reply(AgentCall::Kind kind, const Result<rest::Response>& r);

}  // namespace dtx::coordinator
