// Fuzz target: core::Json::Parse on arbitrary bytes (every JSON that crosses a trust boundary:
// JSON-RPC bodies, JWT segments, upstream answers, config fragments goes through it).
//
// Invariants checked when a parse succeeds (a violation traps, so libFuzzer saves the input):
//   - Dump() re-parses, to a value equal to the first one;
//   - Dump() is stable after one round: Dump(Parse(Dump(v))) == Dump(v);
//   - Canonical() re-parses to an equal value and is a fixed point:
//     Parse(Canonical(v)).Canonical() == Canonical(v);
//   - Canonical() does not depend on member order: it equals the canonical form of the Dump
//     round trip (the same value);
//   - CheckedCanonicalTo() (which CheckSerializable() also is) passes exactly when the parser
//     reads Canonical() back to the same value, and then writes Canonical()'s bytes: on the
//     parsed value, and on the input bytes themselves as a string and as an object key (which
//     may be invalid UTF-8, hold any byte to escape, or duplicate the other key).
// Whatever Parse refuses must be refused with kBadRequest or kPayloadTooLarge.
// ParseMembers, at pointers taken from the input's own keys, gives Parse's members there.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/core/error_code.h"
#include "mandate/core/json.h"

namespace {

using mandate::core::ErrorCode;
using mandate::core::Json;

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

// CheckedCanonicalTo's verdict is the parser's on Canonical(), and its bytes are Canonical's.
void CheckCheckedCanonical(const Json& v) {
  const std::string canonical = v.Canonical();
  auto back = Json::Parse(canonical);
  const bool reads_back = back.ok() && *back == v;
  std::string out;
  const bool ok = v.CheckedCanonicalTo(&out).ok();
  Check(ok == reads_back);
  Check(v.CheckSerializable().ok() == reads_back);
  if (ok) Check(out == canonical);
}

// ParseMembers at pointers made of the input's own first keys (for the first member that is a
// non-empty object, one of its keys instead of the whole member) and an absent key gives
// exactly Parse's members there; a text Parse refuses is refused with the same code or
// accepted (the reason lies in members it does not build), never anything else.
void CheckParseMembers(std::string_view text, const mandate::core::Result<Json>& parsed) {
  std::vector<std::string> owned{"/absent\x01"};
  Json want = Json::MakeObject();
  bool nested_done = false;
  auto usable = [](const std::string& k) { return !k.empty() && k.find_first_of("/~") == std::string::npos; };
  if (parsed.ok() && parsed->is_object()) {
    for (const auto& [key, member] : parsed->as_object()) {
      if (owned.size() > 4) break;
      if (!usable(key)) continue;
      if (!nested_done && member.is_object() && !member.as_object().empty() &&
          usable(member.as_object().front().first)) {
        const auto& [inner, value] = member.as_object().front();
        owned.push_back("/" + key + "/" + inner);
        Json sub = Json::MakeObject();
        sub.Set(inner, value);
        want.Set(key, std::move(sub));
        nested_done = true;
        continue;
      }
      owned.push_back("/" + key);
      want.Set(key, member);
    }
  }
  // The "absent" key may be there after all.
  if (parsed.ok() && parsed->is_object()) {
    if (const Json* a = parsed->Find(owned.front().substr(1))) want.Set(owned.front().substr(1), *a);
  }
  const std::vector<std::string_view> pointers(owned.begin(), owned.end());
  auto some = Json::ParseMembers(text, pointers);
  if (!parsed.ok()) {
    if (!some.ok()) Check(some.error().code == parsed.error().code);
    return;
  }
  if (!parsed->is_object()) {
    Check(!some.ok() && some.error().code == ErrorCode::kBadRequest);
    return;
  }
  Check(some.ok());
  Check(*some == want);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const Json as_string{std::string(text)};
  CheckCheckedCanonical(as_string);
  // Built directly (not with Set): an input of "k" makes a duplicate key.
  const Json as_key(Json::Object{{std::string(text), Json(true)}, {"k", Json(1)}});
  CheckCheckedCanonical(as_key);
  auto parsed = Json::Parse(text);
  CheckParseMembers(text, parsed);
  if (!parsed.ok()) {
    Check(parsed.error().code == ErrorCode::kBadRequest ||
          parsed.error().code == ErrorCode::kPayloadTooLarge);
    return 0;
  }
  const Json& value = *parsed;

  const std::string dump = value.Dump();
  auto reparsed = Json::Parse(dump);
  Check(reparsed.ok());
  Check(*reparsed == value);
  Check(value == *reparsed);  // operator== must be symmetric
  Check(reparsed->Dump() == dump);

  const std::string canonical = value.Canonical();
  auto from_canonical = Json::Parse(canonical);
  Check(from_canonical.ok());
  Check(*from_canonical == value);
  Check(from_canonical->Canonical() == canonical);
  Check(reparsed->Canonical() == canonical);
  CheckCheckedCanonical(value);
  return 0;
}
