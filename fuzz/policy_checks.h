// Invariants of an authorization response, shared by the policy fuzz targets
// (fuzz/policy_parse, fuzz/policy_eval). A violation traps, so libFuzzer saves the input.
#pragma once

#include <string>

#include "mandate/policy/authorize.h"
#include "mandate/policy/policy_set.h"

namespace mandate::fuzz {

inline void Check(bool ok) {
  if (!ok) __builtin_trap();
}

inline bool SameResponse(const policy::Response& a, const policy::Response& b) {
  return a.allow == b.allow && a.permits == b.permits && a.forbids == b.forbids &&
         a.errors == b.errors;
}

// Allowed => some permit and no forbid listed; denied => no permit listed; listed ids are
// policies of the set with that effect; every error names a policy of the set ("<id>: ...").
inline void CheckResponse(const policy::PolicySet& set, const policy::Response& r) {
  if (r.allow) {
    Check(!r.permits.empty());
    Check(r.forbids.empty());
  } else {
    Check(r.permits.empty());
  }
  for (const std::string& id : r.permits) {
    const policy::Policy* p = set.Find(id);
    Check(p != nullptr && !p->is_forbid);
  }
  for (const std::string& id : r.forbids) {
    const policy::Policy* p = set.Find(id);
    Check(p != nullptr && p->is_forbid);
  }
  for (const std::string& err : r.errors) {
    bool named = false;
    for (const auto& p : set.policies()) {
      if (err.size() > p.id.size() + 1 && err.compare(0, p.id.size(), p.id) == 0 &&
          err.compare(p.id.size(), 2, ": ") == 0) {
        named = true;
        break;
      }
    }
    Check(named);
  }
}

}  // namespace mandate::fuzz
