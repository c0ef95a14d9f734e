#include "mandate/policy/entities.h"

#include <unordered_set>
#include <utility>

#include "mandate/core/limits.h"

namespace mandate::policy {
namespace {

using core::ErrorCode;
using core::MakeError;

// The distinct entities met by one walk. Hierarchies are usually a handful of entities, so a
// linear scan beats hashing until the walk grows.
class VisitedSet {
 public:
  // Inserts `uid` (by value); false when it was already present.
  bool Insert(const EntityUid* uid) {
    if (hashed_.empty()) {
      for (const EntityUid* seen : small_) {
        if (*seen == *uid) return false;
      }
      small_.push_back(uid);
      if (small_.size() > kLinearMax) {
        for (const EntityUid* seen : small_) hashed_.insert(seen);
      }
      return true;
    }
    return hashed_.insert(uid).second;
  }
  size_t size() const { return small_.size() > kLinearMax ? hashed_.size() : small_.size(); }

 private:
  static constexpr size_t kLinearMax = 32;
  struct Hash {
    size_t operator()(const EntityUid* u) const { return EntityUidHash()(*u); }
  };
  struct Eq {
    bool operator()(const EntityUid* a, const EntityUid* b) const { return *a == *b; }
  };
  std::vector<const EntityUid*> small_;
  std::unordered_set<const EntityUid*, Hash, Eq> hashed_;
};

}  // namespace

core::Status Entities::Add(EntityUid uid, Value attrs, std::vector<EntityUid> parents,
                           Value tags) {
  if (!attrs.is_record()) {
    return MakeError(ErrorCode::kBadRequest, "attributes of " + uid.ToString() +
                                                 " must be a record, got " +
                                                 std::string(TypeName(attrs)));
  }
  if (!tags.is_record()) {
    return MakeError(ErrorCode::kBadRequest, "tags of " + uid.ToString() +
                                                 " must be a record, got " +
                                                 std::string(TypeName(tags)));
  }
  if (parents.size() > core::kEntityAncestorsMax) {
    return MakeError(ErrorCode::kBadRequest, uid.ToString() + " has more than " +
                                                 std::to_string(core::kEntityAncestorsMax) +
                                                 " parents");
  }
  if (entries_.count(uid) != 0) {
    return MakeError(ErrorCode::kConflict, "entity " + uid.ToString() + " added twice");
  }
  entries_.emplace(std::move(uid), Entry{std::move(attrs), std::move(parents), std::move(tags)});
  return core::OkStatus();
}

bool Entities::Contains(const EntityUid& uid) const { return entries_.count(uid) != 0; }

const Value* Entities::Attrs(const EntityUid& uid) const {
  auto it = entries_.find(uid);
  return it == entries_.end() ? nullptr : &it->second.attrs;
}

const Value* Entities::Tags(const EntityUid& uid) const {
  auto it = entries_.find(uid);
  return it == entries_.end() ? nullptr : &it->second.tags;
}

const std::vector<EntityUid>* Entities::Parents(const EntityUid& uid) const {
  auto it = entries_.find(uid);
  return it == entries_.end() ? nullptr : &it->second.parents;
}

core::Status Entities::ForEachAncestor(const EntityUid& uid,
                                       const std::function<bool(const EntityUid&)>& visit) const {
  auto start = entries_.find(uid);
  if (start == entries_.end()) return core::OkStatus();
  VisitedSet visited;
  visited.Insert(&start->first);
  // Invariant: every pointer in `frontier` refers to a parent stored in entries_, which stays
  // put while the store is not modified.
  std::vector<const EntityUid*> frontier;
  for (const EntityUid& p : start->second.parents) frontier.push_back(&p);
  size_t next = 0;
  while (next < frontier.size()) {
    const EntityUid* current = frontier[next++];
    if (!visited.Insert(current)) continue;
    // `visited` also holds `uid` itself, hence the +1.
    if (visited.size() > core::kEntityAncestorsMax + 1) {
      return MakeError(ErrorCode::kBadRequest,
                       "entity hierarchy above " + uid.ToString() + " has more than " +
                           std::to_string(core::kEntityAncestorsMax) + " ancestors");
    }
    if (!visit(*current)) return core::OkStatus();
    auto it = entries_.find(*current);
    if (it == entries_.end()) continue;
    for (const EntityUid& p : it->second.parents) frontier.push_back(&p);
  }
  return core::OkStatus();
}

core::Result<bool> Entities::IsDescendantChecked(const EntityUid& child,
                                                 const EntityUid& ancestor) const {
  bool found = false;
  MANDATE_RETURN_IF_ERROR(ForEachAncestor(child, [&](const EntityUid& a) {
    found = (a == ancestor);
    return !found;
  }));
  return found;
}

bool Entities::IsDescendant(const EntityUid& child, const EntityUid& ancestor) const {
  core::Result<bool> r = IsDescendantChecked(child, ancestor);
  return r.ok() && *r;
}

core::Result<EntityUid> EntityUidFromJson(const core::Json& j, std::string_view what) {
  const core::Json* inner = j.Find("__entity");
  const core::Json& uid = inner != nullptr && j.as_object().size() == 1 ? *inner : j;
  const std::string* type = uid.FindString("type");
  const std::string* id = uid.FindString("id");
  if (!uid.is_object() || type == nullptr || id == nullptr || uid.as_object().size() != 2) {
    return MakeError(ErrorCode::kBadRequest,
                     std::string(what) + ": expected {\"type\": string, \"id\": string}");
  }
  return EntityUid{*type, *id};
}

namespace {

// The value of member `key` of `entry`, which must be a JSON object; an empty record when the
// member is absent.
core::Result<Value> RecordMember(const core::Json& entry, std::string_view key,
                                 const EntityUid& uid) {
  const core::Json* j = entry.Find(key);
  if (j == nullptr) return Value();
  if (!j->is_object()) {
    return MakeError(ErrorCode::kBadRequest,
                     "\"" + std::string(key) + "\" of " + uid.ToString() + " must be an object");
  }
  core::Result<Value> v = ValueFromJson(*j);
  if (!v.ok()) {
    return MakeError(ErrorCode::kBadRequest, "\"" + std::string(key) + "\" of " +
                                                 uid.ToString() + ": " + v.error().message);
  }
  return v;
}

}  // namespace

core::Result<Entities> EntitiesFromJson(const core::Json& j, size_t entities_max) {
  Entities entities;
  if (!j.is_array()) return MakeError(ErrorCode::kBadRequest, "entities must be a JSON array");
  if (j.as_array().size() > entities_max) {
    return MakeError(ErrorCode::kPayloadTooLarge,
                     "more than " + std::to_string(entities_max) + " entities");
  }
  for (const core::Json& e : j.as_array()) {
    if (!e.is_object()) return MakeError(ErrorCode::kBadRequest, "an entity must be an object");
    for (const auto& [key, unused] : e.as_object()) {
      if (key != "uid" && key != "attrs" && key != "parents" && key != "tags") {
        return MakeError(ErrorCode::kBadRequest, "unknown member \"" + key +
                                                     "\" in an entity (expected uid, attrs, "
                                                     "parents, tags)");
      }
    }
    const core::Json* uid_json = e.Find("uid");
    if (uid_json == nullptr) return MakeError(ErrorCode::kBadRequest, "entity without \"uid\"");
    MANDATE_ASSIGN_OR_RETURN(EntityUid uid, EntityUidFromJson(*uid_json, "entity uid"));
    MANDATE_ASSIGN_OR_RETURN(Value attrs, RecordMember(e, "attrs", uid));
    MANDATE_ASSIGN_OR_RETURN(Value tags, RecordMember(e, "tags", uid));
    std::vector<EntityUid> parents;
    if (const core::Json* p = e.Find("parents")) {
      if (!p->is_array()) {
        return MakeError(ErrorCode::kBadRequest,
                         "\"parents\" of " + uid.ToString() + " must be an array");
      }
      for (const core::Json& parent : p->as_array()) {
        MANDATE_ASSIGN_OR_RETURN(EntityUid parent_uid, EntityUidFromJson(parent, "parent"));
        parents.push_back(std::move(parent_uid));
      }
    }
    MANDATE_RETURN_IF_ERROR(
        entities.Add(std::move(uid), std::move(attrs), std::move(parents), std::move(tags)));
  }
  return entities;
}

}  // namespace mandate::policy
