// Cedar's extension functions (docs/policy.md, "Extension types"), with the semantics of the
// Cedar reference implementation (cedar-policy 4.13): the constructors ip, decimal, datetime and
// duration, and the methods of their values. Internal to the policy module: the parser resolves
// a call to an ExtensionFunction once, at load; the evaluator and ValueFromJson apply it.
//
// Everything here is a pure function of its arguments: no state, safe from any thread. Every
// input may be untrusted (policy text, request JSON): a malformed one is an error, never a
// crash, and each parser runs in time linear in its input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "mandate/core/result.h"
#include "mandate/policy/value.h"

namespace mandate::policy {

enum class ExtensionFunction : uint8_t {
  // Constructors, called as functions: ip("..."), decimal("..."), datetime("..."), duration("...").
  kIp,
  kDecimal,
  kDatetime,
  kDuration,
  // ipaddr methods.
  kIsIpv4,
  kIsIpv6,
  kIsLoopback,
  kIsMulticast,
  kIsInRange,
  // decimal methods.
  kLessThan,
  kLessThanOrEqual,
  kGreaterThan,
  kGreaterThanOrEqual,
  // datetime and duration methods.
  kOffset,
  kDurationSince,
  kToDate,
  kToTime,
  kToDays,
  kToHours,
  kToMinutes,
  kToSeconds,
  kToMilliseconds,
};

struct ExtensionFunctionInfo {
  ExtensionFunction function;
  std::string_view name;  // as written in Cedar: "ip", "isInRange"
  size_t arity;           // arguments, the receiver of a method included
  bool is_method;         // called as x.name(...), else as name(...)
};

// The extension function called `name`, or nullptr when there is none.
const ExtensionFunctionInfo* FindExtensionFunction(std::string_view name);
const ExtensionFunctionInfo& InfoOf(ExtensionFunction function);

// The most arguments any extension function takes (a method's receiver included).
inline constexpr size_t kExtensionArityMax = 2;

// The error of calling `function` with `got` arguments (not its arity).
core::Error WrongArgumentCount(ExtensionFunction function, size_t got);

// Applies `function` to `args` (a method's receiver first). Errors (kBadRequest, messages
// without a location, as the reference words them where it matters): a wrong number of
// arguments; a type error ("type error: expected ipaddr, got string"); a constructor argument
// that is not a valid literal of its type; an overflow (decimal or duration literals out of
// range, datetime arithmetic beyond 64-bit milliseconds).
core::Result<Value> CallExtensionFunction(ExtensionFunction function,
                                          std::span<const Value* const> args);

// The constructors' parsers, exactly as the reference accepts their strings. Errors
// (kBadRequest): why the string is not a valid literal.
//   ip:       an IPv4 or IPv6 address as Rust's std::net parses it (no leading zeros in IPv4
//             octets, no embedded IPv4 in IPv6, no zone), optionally "/prefix" (decimal, no
//             leading zero, at most 32 or 128); at most 43 bytes.
//   decimal:  -?[0-9]+\.[0-9]{1,4} within the range of a 64-bit integer scaled by 10^4.
//   datetime: YYYY-MM-DD, optionally followed by Thh:mm:ss, optional .SSS, and Z or (+|-)hhmm
//             (offset below 24h, minutes below 60); a real date; no leap second.
//   duration: -?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?, not empty, within 64-bit
//             milliseconds.
core::Result<ExtensionValue> ParseIp(std::string_view s);
core::Result<ExtensionValue> ParseDecimal(std::string_view s);
core::Result<ExtensionValue> ParseDatetime(std::string_view s);
core::Result<ExtensionValue> ParseDuration(std::string_view s);

// The string its constructor takes back to an equal value: "10.0.0.0/8", "-1.5000",
// "2024-10-15T00:00:00.000Z", "-90000ms". A datetime outside years 0000-9999 has no such
// string (nullopt): write it as datetime("1970-01-01").offset(duration(<milliseconds>)).
std::optional<std::string> ConstructorArgument(const ExtensionValue& v);

// The constructor of values of `type`: ip, decimal, datetime, duration.
std::string_view ConstructorName(ExtensionType type);

}  // namespace mandate::policy
