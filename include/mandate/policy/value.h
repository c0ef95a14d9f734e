// Cedar values and entity identifiers (DESIGN.md section 5, docs/policy.md).
//
// A Value is one of the Cedar types Mandate supports today: Bool, Long (int64), String,
// Entity (an EntityUid), Set and Record. Cedar has no null and no floating point. Extension
// types (ip, decimal, datetime) will be added as further kinds.
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

class Value {
 public:
  // Declared in the order values of different kinds sort in (see Compare).
  enum class Kind : uint8_t { kBool, kLong, kString, kEntity, kSet, kRecord };
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

  Kind kind() const;
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_long() const { return kind() == Kind::kLong; }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_entity() const { return kind() == Kind::kEntity; }
  bool is_set() const { return kind() == Kind::kSet; }
  bool is_record() const { return kind() == Kind::kRecord; }

  // Accessors; calling the one for another kind is a programming error (aborts).
  bool as_bool() const;
  int64_t as_long() const;
  const std::string& as_string() const;
  const EntityUid& as_entity() const;
  const SetElements& as_set() const;
  const RecordFields& as_record() const;

  // The record field `name`; nullptr when absent or when this is not a record.
  const Value* FindAttr(std::string_view name) const;
  // Whether this set holds an element equal to `v` (O(log n)); false when not a set.
  bool SetContains(const Value& v) const;

  // Cedar syntax: true, -3, "a\"b", Agent::"x", [1, 2], {"k": "v"}.
  std::string ToString() const;

 private:
  using SetPtr = std::shared_ptr<const SetElements>;      // nullptr = empty
  using RecordPtr = std::shared_ptr<const RecordFields>;  // nullptr = empty
  // Invariant: the variant index equals static_cast<size_t>(Kind).
  std::variant<bool, int64_t, std::string, EntityUid, SetPtr, RecordPtr> v_{
      std::in_place_index<static_cast<size_t>(Kind::kRecord)>};
};

// A total order over values: first by kind, then by content (sets and records
// lexicographically over their sorted elements/fields). Returns <0, 0 or >0.
// Two values are equal in the Cedar sense exactly when Compare returns 0.
int Compare(const Value& a, const Value& b);
inline bool operator==(const Value& a, const Value& b) { return Compare(a, b) == 0; }
inline bool operator!=(const Value& a, const Value& b) { return Compare(a, b) != 0; }

// "bool", "long", "string", "entity", "set", "record".
std::string_view KindName(Value::Kind kind);

// Converts JSON to a Cedar value: object -> record, array -> set, integer -> long,
// string -> string, bool -> bool, and {"__entity": {"type": T, "id": I}} -> entity (the Cedar
// JSON entity escape; it must be the object's only member).
// Errors (kBadRequest): a double or null anywhere (Cedar has neither), a malformed __entity,
// an "__extn" value (extension values are not supported yet), a duplicate object key, or
// nesting deeper than core::kJsonDepthMax.
core::Result<Value> ValueFromJson(const core::Json& j);

// The inverse of ValueFromJson (entities become {"__entity": {...}}).
core::Json ValueToJson(const Value& v);

}  // namespace mandate::policy

template <>
struct std::hash<mandate::policy::EntityUid> {
  size_t operator()(const mandate::policy::EntityUid& uid) const {
    return mandate::policy::EntityUidHash()(uid);
  }
};
