// Entities: the entity store a Cedar authorization reads (DESIGN.md section 5): each entity's
// attributes (a record), its tags (a record read by `.getTag(k)` / `.hasTag(k)`) and its direct
// parents. `in` is answered by walking parents transitively; no precomputed closure is needed,
// so entities may be added in any order.
//
// Thread safety: Add is not thread-safe; all const methods may run concurrently once the store
// is no longer modified (a per-request store, or a long-lived snapshot).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "mandate/core/json.h"
#include "mandate/core/result.h"
#include "mandate/policy/value.h"

namespace mandate::policy {

class Entities {
 public:
  // Adds one entity. `attrs` and `tags` must be records (a tag's key is its name, any value
  // its value; the default is no tag); `parents` are its direct parents (they need not be in
  // the store). Errors: kBadRequest when attrs or tags is not a record or there are more than
  // core::kEntityAncestorsMax parents; kConflict when `uid` was already added (the store is
  // left unchanged on error).
  core::Status Add(EntityUid uid, Value attrs, std::vector<EntityUid> parents,
                   Value tags = Value());

  bool Contains(const EntityUid& uid) const;
  size_t size() const { return entries_.size(); }

  // The entity's attribute record, or nullptr when the entity is not in the store. The pointer
  // stays valid until the store is modified or destroyed.
  const Value* Attrs(const EntityUid& uid) const;
  // The entity's tags (a record, empty when it has none), or nullptr when the entity is not in
  // the store. Same lifetime as Attrs.
  const Value* Tags(const EntityUid& uid) const;
  // The entity's direct parents, or nullptr when the entity is not in the store.
  const std::vector<EntityUid>* Parents(const EntityUid& uid) const;

  // Calls `visit` once for every distinct transitive ancestor of `uid` (not `uid` itself),
  // breadth first, until `visit` returns false. The reference passed to `visit` stays valid
  // until the store is modified. Error (kBadRequest): the walk met more than
  // core::kEntityAncestorsMax distinct ancestors (the hierarchy is too large to trust).
  core::Status ForEachAncestor(const EntityUid& uid,
                               const std::function<bool(const EntityUid&)>& visit) const;

  // Whether `ancestor` is a transitive ancestor of `child` (Cedar's `child in ancestor` for
  // child != ancestor). Error as ForEachAncestor.
  core::Result<bool> IsDescendantChecked(const EntityUid& child, const EntityUid& ancestor) const;
  // As IsDescendantChecked, answering false when the walk exceeds its bound.
  bool IsDescendant(const EntityUid& child, const EntityUid& ancestor) const;

 private:
  struct Entry {
    Value attrs;
    std::vector<EntityUid> parents;
    Value tags;
  };
  std::unordered_map<EntityUid, Entry, EntityUidHash> entries_;
};

// Builds a store from entities in the Cedar JSON entity format (docs.cedarpolicy.com, "Entities
// & context syntax"): an array of
//   {"uid": {"type": T, "id": I}, "attrs": {...}, "parents": [{"type": T, "id": I}, ...],
//    "tags": {...}}
// where a uid may also be written {"__entity": {"type": T, "id": I}}, "attrs", "parents" and
// "tags" may be left out (empty), and attribute and tag values are read by ValueFromJson
// (extension values as {"__extn": ...}). Errors (kBadRequest): not an array, an entry that is
// not an object or has another member, a malformed uid, attrs or tags that are not objects,
// parents that is not an array, any error of ValueFromJson; kPayloadTooLarge above
// `entities_max` entries; kConflict when a uid occurs twice (the reference accepts two
// identical entries, Mandate refuses any repeat).
core::Result<Entities> EntitiesFromJson(const core::Json& j, size_t entities_max);

// An entity uid in Cedar JSON: {"type": T, "id": I}, or the escape {"__entity": {"type": T,
// "id": I}} as the object's only member. Error (kBadRequest): "<what>: expected {"type":
// string, "id": string}".
core::Result<EntityUid> EntityUidFromJson(const core::Json& j, std::string_view what);

}  // namespace mandate::policy
