// Finding audit records through the audit index: the parameters of GET /admin/v1/audit,
// /audit/replay and /audit/export, and reading a page of records from the log at the
// positions the index gives (docs/formats/audit.md, "Query, replay and export").
//
// Thread safety: pure functions, plus ReadAuditPage/RunRecords which only read the store
// and the log's files (safe while the log is being written).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/audit/reader.h"
#include "mandate/core/json.h"
#include "mandate/core/result.h"
#include "mandate/store/store.h"

namespace mandate::server {

// A time given to `since` / `until`, as Unix microseconds: an RFC 3339 date-time
// ("2026-11-22T17:05:00Z", "2026-11-22T19:05:00.250+02:00"), Unix seconds ("1767000000",
// fractions allowed), or a duration before `now_micros` ("90s", "15m", "2h", "7d").
// Errors: kBadRequest naming the accepted forms.
core::Result<int64_t> ParseAuditTime(std::string_view text, int64_t now_micros);

struct AuditQuery {
  store::AuditIndexFilter filter;  // limit left at its default; see `limit`
  std::optional<size_t> limit;     // as given
  bool filtered = false;           // any parameter but limit (and format) was given
  std::string format;              // export: "jsonl" (default) or "otlp"
};

// Parses a query string (without '?'; form-encoded: '+' is a space, so send '+' as %2B)
// whose parameters must all be in `allowed`: run, sid, agent, human, action, type (1 to
// kAuditIndexFieldBytesMax bytes), since, until (ParseAuditTime; since < until), after_seq
// (a decimal seq), limit (1..`limit_max`), format (jsonl | otlp).
// Errors: kBadRequest naming the parameter (unknown, repeated, empty or invalid).
core::Result<AuditQuery> ParseAuditQuery(std::string_view query,
                                         const std::vector<std::string_view>& allowed,
                                         size_t limit_max, int64_t now_micros);

struct AuditPage {
  std::vector<core::Json> records;         // parsed, in the filter's order
  std::vector<std::string> lines;          // the same records as stored (byte-exact)
  std::optional<uint64_t> next_after_seq;  // set when more records may match
};

// Up to `limit` records matching `filter` (its limit is replaced), and fewer when they would
// pass `bytes_max` (always at least one): the index gives the positions, the log the bytes.
// next_after_seq is the last record's seq when the page was cut by `limit` or `bytes_max`.
// Errors: the store's; kInternal when the log no longer holds an indexed record where the
// index says (the index rebuilds on the next start).
core::Result<AuditPage> ReadAuditPage(store::Store& store, audit::RecordReader& reader,
                                      store::AuditIndexFilter filter, size_t limit,
                                      size_t bytes_max);

// The revocations that reached run `run` without naming it: session.revoked records of kind
// agent, human or task whose subject is an agent or human of one of the run's sessions, or
// the run's task, logged after the run started, with seq in (after_seq, up_to_seq] (up_to_seq
// nullopt: no upper bound). At most kAuditIndexQueryRowsMax revocations are examined.
// Errors: as ReadAuditPage.
core::Result<std::vector<core::Json>> RelatedRevocations(store::Store& store,
                                                         audit::RecordReader& reader,
                                                         const std::string& run,
                                                         std::optional<uint64_t> after_seq,
                                                         std::optional<uint64_t> up_to_seq);

}  // namespace mandate::server
