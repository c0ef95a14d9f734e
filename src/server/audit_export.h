// Audit records as OpenTelemetry traces: the OTLP/JSON encoding of an
// ExportTraceServiceRequest (opentelemetry-proto, collector/trace/v1), what
// `GET /admin/v1/audit/export?format=otlp` and `mandate audit export --format otlp` write
// (docs/formats/audit.md, "Query, replay and export").
//
// One trace per run: traceId = the first 16 bytes of SHA-256(run). One span per session
// (spanId = first 8 bytes of SHA-256(sid)), from its session.started / session.delegated
// record to its last record, parented on its parent session's span (the root session's span
// has none). One span per call (spanId = first 8 bytes of SHA-256(decision_id)), from
// call.decided to call.completed / call.cancelled, parented on its session's span. Other
// records of a session or call (revocations, refreshes, approvals...) become span events.
// Ids are lowercase hex and 64-bit integers decimal strings, as the OTLP/JSON encoding
// requires; enums (kind, status code) are integers.
//
// Thread safety: an OtlpTraceBuilder is a value; use one per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "mandate/core/json.h"

namespace mandate::server {

class OtlpTraceBuilder {
 public:
  // Adds one audit record (parsed, as stored). Records must come in seq order. Records
  // without a string "run" are not part of any trace and are ignored.
  void Add(const core::Json& record);
  // Marks the traces as cut short (the run had more records than were read): the root
  // session spans get the attribute mandate.truncated = true.
  void MarkTruncated() { truncated_ = true; }
  size_t span_count() const { return spans_.size(); }

  // The ExportTraceServiceRequest: {"resourceSpans":[{"resource":{service.name=mandate},
  // "scopeSpans":[{"scope":{"name":"mandate.audit"},"spans":[...]}]}]}, spans in the order
  // they started in the log.
  core::Json Build() const;

 private:
  struct Span {
    std::string trace_id;
    std::string span_id;
    std::string parent_span_id;  // empty: a root span
    std::string parent_sid;      // sessions: the parent session, for end propagation
    std::string name;
    int kind = 1;
    uint64_t start_nanos = 0;
    uint64_t end_nanos = 0;
    std::vector<std::pair<std::string, core::Json>> attributes;  // key -> OTLP AnyValue
    core::Json events = core::Json::MakeArray();
    int status_code = 0;  // 0 unset, 1 ok, 2 error
    std::string status_message;
    bool root_session = false;
  };

  Span* SessionSpan(const core::Json& record, const std::string& run, const std::string& sid,
                    uint64_t at_nanos);
  Span* CallSpan(const core::Json& record, const std::string& run, const std::string& decision_id,
                 uint64_t at_nanos);
  static void SetAttribute(Span* span, const std::string& key, core::Json any_value);
  static void AddEvent(Span* span, const core::Json& record, uint64_t at_nanos);

  std::vector<Span> spans_;
  std::map<std::string, size_t> sessions_;  // sid -> index in spans_
  std::map<std::string, size_t> calls_;     // decision_id -> index in spans_
  bool truncated_ = false;
};

// OTLP/JSON helpers, exposed for tests: lowercase hex of the first `bytes` bytes of
// SHA-256(text), never all zeros (an all-zero id is invalid in OTLP).
std::string OtlpId(const std::string& text, size_t bytes);

}  // namespace mandate::server
