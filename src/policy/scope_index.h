// ScopeIndex: the policies of a set indexed by their scope (principal / action / resource
// constraints), so that an authorization evaluates only the policies that can apply to its
// request, and its cost follows their number rather than the size of the set (docs/policy.md,
// "How the engine finds the policies that apply"). Internal to the policy module.
//
// Each policy is filed under one key, taken from the first of its constraints, in this order,
// that names entities or a type:
//   1. principal == E, principal in E, principal is T in E      -> principal entity E
//   2. resource == E, resource in E, resource is T in E         -> resource entity E
//   3. action == E, action in E, action in [E1, ...]            -> action entities E, E1, ...
//   4. principal is T -> principal type T;  5. resource is T -> resource type T;
//   6. action is T    -> action type T
//   7. none of these (all three unconstrained)                  -> unconstrained
// A policy with `action in []` can never apply and is filed nowhere.
//
// Exactness. A scope constraint on entity E is satisfied only when E is the request's entity or
// one of its ancestors, and one on type T only when the request's entity has type T. So a
// policy whose key is not among the request's entities, their ancestors and their types is not
// satisfied: Candidates returns a superset of the satisfied policies, and evaluating only the
// candidates gives the answer of evaluating every policy, provided scope matching cannot fail
// for the request, i.e. the ancestors of its principal, action and resource were all computed
// (a walk over core::kEntityAncestorsMax fails; the caller then evaluates every policy, so the
// errors it reports stay those of the reference).
//
// Immutable once built; any number of threads may call Candidates concurrently.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "mandate/policy/authorize.h"
#include "mandate/policy/entities.h"
#include "mandate/policy/policy_set.h"
#include "mandate/policy/value.h"

namespace mandate::policy {

class ScopeIndex {
 public:
  // Indexes `policies` by position. Requires policies.size() <= core::kPoliciesMax.
  explicit ScopeIndex(const std::vector<Policy>& policies);

  // One of the request's three entities and its transitive ancestors.
  struct RequestEntity {
    const EntityUid* uid;
    const std::vector<const EntityUid*>* ancestors;
  };

  // Replaces *out with the positions of every policy that may apply to a request with these
  // entities, ascending, without repeats. *out's capacity is reused.
  void Candidates(RequestEntity principal, RequestEntity action, RequestEntity resource,
                  std::vector<uint32_t>* out) const;

 private:
  // The policies keyed on one of the three scope slots.
  struct Slot {
    std::unordered_map<EntityUid, std::vector<uint32_t>, EntityUidHash> by_entity;
    std::unordered_map<std::string, std::vector<uint32_t>> by_type;

    void Collect(RequestEntity e, std::vector<uint32_t>* out) const;
  };

  Slot principal_;
  Slot action_;
  Slot resource_;
  std::vector<uint32_t> unconstrained_;
  // Whether a policy may be filed under several keys (action in [E1, E2]): Candidates must
  // then remove repeats.
  bool multi_keyed_ = false;
};

// IsAuthorized without the index: every policy of the set evaluated in order, the reference's
// way. IsAuthorized falls back to it when an ancestor walk fails; tests and the policy_eval fuzz
// target check that IsAuthorized always answers exactly as it does.
Response AuthorizeEveryPolicy(const PolicySet& policies, const Request& request,
                              const Entities& entities);

}  // namespace mandate::policy
