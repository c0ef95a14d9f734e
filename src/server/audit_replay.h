// Audit records as text for people: one line per record (`mandate audit tail`, `audit query`)
// and a run as a timeline (`mandate audit replay RUN`). The records are those the admin API
// returns (docs/formats/audit.md); nothing here reads files or the network.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mandate/core/json.h"

namespace mandate::server {

// "#<seq> <UTC time> <type> ..." with what matters for the type: a call's action, decision,
// code, agent and human; a completion's status and latency; a session's sid, agent and
// human; a revocation's kind and subject; a policy load's digest.
std::string FormatAuditLine(const core::Json& record);

// Unix microseconds as "2026-11-22T17:05:00.123Z".
std::string FormatAuditTime(int64_t unix_micros);

// A run as a timeline, oldest first: a header naming the run, who started it for whom and
// when; then one entry per record, at its time relative to the run's first record, indented
// by the delegation depth of its session: sessions started and delegated (agent, chain, on
// whose behalf, scope), each call asked (agent and chain, human, action with its scrubbed
// arguments cut to a summary), what was decided and why (decision, code, reason, the policies
// that determined it, approvals, budgets and plan steps when present), what happened (status,
// latency, error, side effects), cancellations, refused delegations and revocations.
// `truncated`: the run had more records than were read (a last line says so).
std::string FormatReplayTimeline(const std::string& run, const std::vector<core::Json>& records,
                                 bool truncated);

}  // namespace mandate::server
