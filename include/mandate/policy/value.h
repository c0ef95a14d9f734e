// Cedar values and entity identifiers (DESIGN.md section 5, docs/policy.md).
//
// A Value is one of the Cedar types: Bool, Long (int64), String, Entity (an EntityUid), Set,
// Record, or a value of one of Cedar's extension types (ipaddr, decimal, datetime, duration;
// docs/policy.md, "Extension types"). Cedar has no null and no floating point.
//
// Values are immutable after construction. Sets and records share their elements through
// reference-counted pointers, so copying a Value is cheap (a string copy at most) and a Value
// may be read from many threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "mandate/core/json.h"
#include "mandate/core/result.h"

namespace mandate::policy {

// The unique id of an entity: its type (possibly namespaced, "Acme::Agent") and its id.
struct EntityUid {
  std::string type;
  std::string id;

  // The Cedar literal, e.g. Agent::"triage-bot" (the id is escaped like a Cedar string).
  std::string ToString() const;

  bool operator==(const EntityUid& other) const = default;
};

struct EntityUidHash {
  size_t operator()(const EntityUid& uid) const;
};

// Cedar's extension types. Their values are made by the extension functions of
// src/policy/extensions.h (ip("10.0.0.0/8"), decimal("1.25"), datetime("2024-10-15"),
// duration("1h30m")) or read from JSON as {"__extn": {"fn": ..., "arg": ...}}.
enum class ExtensionType : uint8_t { kIpAddr, kDecimal, kDatetime, kDuration };

// "ipaddr", "decimal", "datetime", "duration": the names Cedar gives the types.
std::string_view ExtensionTypeName(ExtensionType type);

// One extension value. Two values are equal exactly when Cedar says so: an ipaddr by address
// and prefix length (ip("10.0.0.1") == ip("10.0.0.1/32"), ip("10.0.0.1/24") !=
// ip("10.0.0.0/24")), the others by their number (decimal("1.0") == decimal("1.00")).
struct ExtensionValue {
  ExtensionType type = ExtensionType::kDecimal;
  // decimal: the value times 10^4 (4 fractional digits); datetime: milliseconds since the Unix
  // epoch, leap seconds not counted; duration: milliseconds. Unused (0) for an ipaddr.
  int64_t number = 0;
  // ipaddr only: an IPv4 address is in the low 32 bits of ip_low (ip_high = 0); an IPv6 address
  // is ip_high (its first 64 bits) then ip_low. ip_prefix is the CIDR prefix length: at most
  // 32 (IPv4) or 128 (IPv6), and 32 or 128 for a single address.
  bool ip_v6 = false;
  uint8_t ip_prefix = 0;
  uint64_t ip_high = 0;
  uint64_t ip_low = 0;

  bool operator==(const ExtensionValue& other) const = default;
};

class Value {
 public:
  // Declared in the order values of different kinds sort in (see Compare).
  enum class Kind : uint8_t { kBool, kLong, kString, kEntity, kSet, kRecord, kExtension };
  // A set's elements: sorted by Compare, no two equal.
  using SetElements = std::vector<Value>;
  using RecordFields = std::map<std::string, Value, std::less<>>;

  // The empty record (the natural default for a request context).
  Value() = default;

  static Value Bool(bool b);
  static Value Long(int64_t i);
  static Value String(std::string s);
  static Value Entity(EntityUid uid);
  // Sorts the elements and removes duplicates: Cedar sets have no order and no repeats.
  static Value Set(std::vector<Value> elements);
  static Value Record(RecordFields fields);
  static Value Extension(ExtensionValue ext);

  Kind kind() const;
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_long() const { return kind() == Kind::kLong; }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_entity() const { return kind() == Kind::kEntity; }
  bool is_set() const { return kind() == Kind::kSet; }
  bool is_record() const { return kind() == Kind::kRecord; }
  bool is_extension() const { return kind() == Kind::kExtension; }
  // Whether this is an extension value of type `type`.
  bool is_extension(ExtensionType type) const {
    return is_extension() && as_extension().type == type;
  }

  // Accessors; calling the one for another kind is a programming error (aborts).
  bool as_bool() const;
  int64_t as_long() const;
  const std::string& as_string() const;
  const EntityUid& as_entity() const;
  const SetElements& as_set() const;
  const RecordFields& as_record() const;
  const ExtensionValue& as_extension() const;

  // The record field `name`; nullptr when absent or when this is not a record.
  const Value* FindAttr(std::string_view name) const;
  // Whether this set holds an element equal to `v` (O(log n)); false when not a set.
  bool SetContains(const Value& v) const;

  // Cedar syntax: true, -3, "a\"b", Agent::"x", [1, 2], {"k": "v"}, ip("10.0.0.1/32"),
  // decimal("1.5000"), datetime("2024-10-15T00:00:00.000Z"), duration("90000ms").
  std::string ToString() const;

 private:
  using SetPtr = std::shared_ptr<const SetElements>;      // nullptr = empty
  using RecordPtr = std::shared_ptr<const RecordFields>;  // nullptr = empty
  // Invariant: the variant index equals static_cast<size_t>(Kind).
  std::variant<bool, int64_t, std::string, EntityUid, SetPtr, RecordPtr, ExtensionValue> v_{
      std::in_place_index<static_cast<size_t>(Kind::kRecord)>};
};

// A total order over values: first by kind, then by content (sets and records
// lexicographically over their sorted elements/fields). Returns <0, 0 or >0.
// Two values are equal in the Cedar sense exactly when Compare returns 0.
int Compare(const Value& a, const Value& b);
inline bool operator==(const Value& a, const Value& b) { return Compare(a, b) == 0; }
inline bool operator!=(const Value& a, const Value& b) { return Compare(a, b) != 0; }

// "bool", "long", "string", "entity", "set", "record", "extension".
std::string_view KindName(Value::Kind kind);
// The Cedar type of `v` as errors name it: KindName, or the extension type's name ("ipaddr").
std::string_view TypeName(const Value& v);

// Converts JSON to a Cedar value: object -> record, array -> set, integer -> long,
// string -> string, bool -> bool, {"__entity": {"type": T, "id": I}} -> entity (the Cedar
// JSON entity escape; it must be the object's only member), and the Cedar JSON extension
// escape {"__extn": {"fn": F, "arg": A}} or {"__extn": {"fn": F, "args": [A, ...]}} -> the
// result of the extension function F applied to the converted arguments, as in the reference:
// usually a constructor ({"fn": "ip", "arg": "10.0.0.1"}), but any extension function may be
// named ({"fn": "offset", "args": [datetime, duration]}). It must be the object's only member,
// and its object holds exactly "fn" and one of "arg" and "args".
// Errors (kBadRequest): a double or null anywhere (Cedar has neither), a malformed __entity or
// __extn (the reference reads some malformed escapes as plain records; Mandate refuses them),
// an unknown extension function, an extension function that fails (a malformed argument such
// as ip("10.0.0.256"), a type error, an overflow), a duplicate object key, or nesting deeper
// than core::kJsonDepthMax.
core::Result<Value> ValueFromJson(const core::Json& j);

// As ValueFromJson, but JSON is taken literally: "__entity" and "__extn" are ordinary record
// attributes, never escapes. For data an agent writes, such as a tool call's arguments
// (context.args): an agent must not be able to make an argument compare equal to an entity
// (`context.args.owner == principal`) or pass an extension value where a policy expects the
// plain string it would get from any other client. Errors: as ValueFromJson, less those of
// the escapes.
core::Result<Value> ValueFromPlainJson(const core::Json& j);

// The inverse of ValueFromJson: entities become {"__entity": {...}}, extension values
// {"__extn": {"fn": "ip", "arg": "10.0.0.1/32"}} (a datetime outside years 0000-9999, which
// only `offset` can make, becomes {"__extn": {"fn": "offset", "args": [datetime 1970-01-01,
// its duration]}}). ValueFromJson(ValueToJson(v)) == v for every value.
core::Json ValueToJson(const Value& v);

}  // namespace mandate::policy

template <>
struct std::hash<mandate::policy::EntityUid> {
  size_t operator()(const mandate::policy::EntityUid& uid) const {
    return mandate::policy::EntityUidHash()(uid);
  }
};
