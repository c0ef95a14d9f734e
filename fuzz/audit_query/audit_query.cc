// Fuzz target: the parameters of GET /admin/v1/audit, /audit/replay and /audit/export
// (server::ParseAuditQuery, server::ParseAuditTime) on arbitrary bytes. Invariants (a violation
// traps): a refusal is kBadRequest; an accepted query has every text filter 1 to
// kAuditIndexFieldBytesMax bytes of UTF-8 or empty, a limit in range, since < until when both
// are set, and a format of "", jsonl or otlp; an accepted RFC 3339 or Unix-seconds time parses
// to the same value whatever "now" is.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/core/error_code.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"
#include "server/audit_query.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

bool FieldOk(const std::string& s) {
  return s.empty() || (s.size() <= mandate::core::kAuditIndexFieldBytesMax && mandate::core::IsValidUtf8(s));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using mandate::core::ErrorCode;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  constexpr int64_t kNow = 1767000000LL * 1000000;
  static const std::vector<std::string_view> kAll = {"limit", "run",   "sid",   "agent",     "human", "action",
                                                     "type",  "since", "until", "after_seq", "format"};
  auto q = mandate::server::ParseAuditQuery(input, kAll, mandate::core::kAdminAuditPageMax, kNow);
  if (!q.ok()) {
    Check(q.error().code == ErrorCode::kBadRequest);
  } else {
    const auto& f = q->filter;
    for (const std::string* s : {&f.run, &f.sid, &f.agent, &f.human, &f.action, &f.type}) Check(FieldOk(*s));
    Check(!q->limit || (*q->limit >= 1 && *q->limit <= mandate::core::kAdminAuditPageMax));
    Check(!(f.since_us && f.until_us) || *f.since_us < *f.until_us);
    Check(q->format.empty() || q->format == "jsonl" || q->format == "otlp");
  }
  auto t = mandate::server::ParseAuditTime(input, kNow);
  if (!t.ok()) {
    Check(t.error().code == ErrorCode::kBadRequest);
  } else if (!input.empty() && input.back() >= '0' && input.back() <= '9') {
    // Not a duration: absolute, so independent of now.
    auto again = mandate::server::ParseAuditTime(input, 0);
    Check(again.ok() && *again == *t);
  }
  return 0;
}
