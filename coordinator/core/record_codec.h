// Binary encoders of the pieces records and snapshots share (records.h has
// the format). Internal to coordinator/core.
#pragma once

#include "consensus/core/codec.h"
#include "coordinator/core/records.h"

namespace dtx::coordinator {

void put_ballot(consensus::Writer& w, const consensus::Ballot& b);
consensus::Ballot get_ballot(consensus::Reader& r);
void put_txid(consensus::Writer& w, const Txid& t);
Txid get_txid(consensus::Reader& r);
void put_decision(consensus::Writer& w, const DecisionRecord& d);
DecisionRecord get_decision(consensus::Reader& r);
void put_hazard(consensus::Writer& w, const HazardRecord& h);
HazardRecord get_hazard(consensus::Reader& r);

}  // namespace dtx::coordinator
