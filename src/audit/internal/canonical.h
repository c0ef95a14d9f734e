// A single-pass check that an audit line is exactly a record in canonical form, for the
// verifier's hot loop (docs/formats/audit.md, "Records"; the canonical form is the one
// core::Json::Canonical() writes, see include/mandate/core/json.h).
//
// ScanCanonicalRecord(line) answers, without building a DOM or re-serializing,
//
//   auto v = core::Json::Parse(line, max_bytes);
//   v.ok() && v->is_object() && v->Canonical() == line
//
// and pulls out the three members the log adds ("seq", "ts", "prev") on the way. The two
// must never disagree: src/audit/internal/canonical_test.cc and fuzz/audit_canonical/ check it
// differentially against that expression.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "mandate/core/limits.h"

namespace mandate::audit::internal {

struct CanonicalScan {
  // Whether the line is a JSON object in exact canonical form that core::Json::Parse accepts:
  // at most max_bytes bytes, valid UTF-8, nesting at most core::kJsonDepthMax (the root object
  // at depth 1, every value one deeper than its container), no whitespace, object keys
  // strictly increasing by the bytes of their decoded values (so no duplicates), strings
  // escaped minimally, integers in int64 range written exactly (no "-0", no leading zeros),
  // other numbers written as core::Json writes the double they parse to.
  bool ok = false;
  // When !ok: a static description of the first thing found wrong and its byte offset in the
  // line (0 for invalid UTF-8, which is checked over the whole line). A line can be unparsable
  // or merely non-canonical; this does not say which (ask core::Json::Parse for the precise
  // story: failures are rare, so the slow path is fine).
  std::string_view problem;
  size_t offset = 0;

  // Top-level members only (a "seq" nested in another member is not taken). Meaningful only
  // when ok. has_seq / has_ts: the member is present and an integer. has_prev: the member is
  // present and a string; `prev` is its bytes between the quotes, pointing into `line`. In
  // canonical form a string without a backslash is its own value, and a string with one
  // contains a control byte, '"' or '\' (the only characters escaped), so it is never hex.
  bool has_seq = false;
  int64_t seq = 0;
  bool has_ts = false;
  int64_t ts = 0;
  bool has_prev = false;
  std::string_view prev;
};

// Scans `line` (one record, without its '\n'). max_bytes is Parse's: 0 means
// core::kJsonBytesMax; ChainChecker parses with core::kAuditRecordBytesMax. Never fails
// otherwise; allocates nothing (numbers with a fraction or an exponent are re-formatted in a
// stack buffer). Recursion is bounded by core::kJsonDepthMax. The result's string_views point
// into `line` or at static text. Thread-safe (no shared state).
CanonicalScan ScanCanonicalRecord(std::string_view line,
                                  size_t max_bytes = core::kAuditRecordBytesMax);

}  // namespace mandate::audit::internal
