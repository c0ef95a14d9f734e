// Fuzz target: audit::internal::ScanCanonicalRecord, the verifier's single-pass check that a
// line is a record in canonical form, against the definition it replaces:
//
//   Parse(line, max_bytes).ok() && it is an object && Canonical() == line
//
// Invariants (a violation traps, so libFuzzer saves the input):
//   - the two agree on every input, and on the canonical and the Dump() forms of every input
//     that parses (random bytes are rarely canonical; these are, or nearly);
//   - when they accept, the top-level seq and ts (integers) and prev (string, its raw text
//     being its canonical escaping) are those the DOM holds, and a rejection names a problem
//     at an offset inside the line.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "audit/internal/canonical.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"

namespace {

using mandate::audit::internal::CanonicalScan;
using mandate::audit::internal::ScanCanonicalRecord;
using mandate::core::Json;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

void CheckAgrees(std::string_view line) {
  const CanonicalScan scan = ScanCanonicalRecord(line);
  auto parsed = Json::Parse(line, mandate::core::kAuditRecordBytesMax);
  const bool want = parsed.ok() && parsed->is_object() && parsed->Canonical() == line;
  Check(scan.ok == want);
  if (!scan.ok) {
    Check(!scan.problem.empty() && scan.offset <= line.size());
    return;
  }
  const Json* seq = parsed->Find("seq");
  Check(scan.has_seq == (seq != nullptr && seq->is_int()));
  if (scan.has_seq) Check(scan.seq == seq->as_int());
  const Json* ts = parsed->Find("ts");
  Check(scan.has_ts == (ts != nullptr && ts->is_int()));
  if (scan.has_ts) Check(scan.ts == ts->as_int());
  const std::string* prev = parsed->FindString("prev");
  Check(scan.has_prev == (prev != nullptr));
  if (scan.has_prev) {
    std::string quoted;
    mandate::core::AppendJsonString(*prev, &quoted);
    Check(quoted.size() == scan.prev.size() + 2 &&
          quoted.compare(1, scan.prev.size(), scan.prev) == 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  CheckAgrees(text);
  auto parsed = Json::Parse(text);
  if (parsed.ok()) {
    CheckAgrees(parsed->Canonical());
    CheckAgrees(parsed->Dump());
  }
  return 0;
}
