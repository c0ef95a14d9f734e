// Entities: the entity store a Cedar authorization reads (DESIGN.md section 5): each entity's
// attributes (a record) and its direct parents. `in` is answered by walking parents
// transitively; no precomputed closure is needed, so entities may be added in any order.
//
// Thread safety: Add is not thread-safe; all const methods may run concurrently once the store
// is no longer modified (a per-request store, or a long-lived snapshot).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "mandate/core/result.h"
#include "mandate/policy/value.h"

namespace mandate::policy {

class Entities {
 public:
  // Adds one entity. `attrs` must be a record; `parents` are its direct parents (they need not
  // be in the store). Errors: kBadRequest when attrs is not a record or there are more than
  // core::kEntityAncestorsMax parents; kConflict when `uid` was already added (the store is
  // left unchanged on error).
  core::Status Add(EntityUid uid, Value attrs, std::vector<EntityUid> parents);

  bool Contains(const EntityUid& uid) const;
  size_t size() const { return entries_.size(); }

  // The entity's attribute record, or nullptr when the entity is not in the store. The pointer
  // stays valid until the store is modified or destroyed.
  const Value* Attrs(const EntityUid& uid) const;
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
  };
  std::unordered_map<EntityUid, Entry, EntityUidHash> entries_;
};

}  // namespace mandate::policy
