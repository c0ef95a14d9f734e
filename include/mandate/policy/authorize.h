// Cedar authorization (DESIGN.md section 5): one request against a PolicySet and an entity
// store, with the semantics of the Cedar reference implementation:
//   - a policy is satisfied when its scope matches and every `when` condition is true and
//     every `unless` condition is false;
//   - a policy whose evaluation errors (type error, missing attribute, unknown entity,
//     overflow, step limit...) is skipped: it counts as neither satisfied nor unsatisfied, and
//     the error is reported with the policy id;
//   - deny if any forbid is satisfied; else allow if at least one permit is satisfied; else
//     deny (default deny).
// Note the consequence of Cedar's rule: a forbid that errors does not deny. A caller that must
// fail closed on errors (STYLE.md: the gateway) denies when Response::errors is not empty.
//
// Thread safety: IsAuthorized only reads its arguments; any number of calls may run
// concurrently on the same PolicySet and Entities.
#pragma once

#include <string>
#include <vector>

#include "mandate/policy/entities.h"
#include "mandate/policy/policy_set.h"
#include "mandate/policy/value.h"

namespace mandate::policy {

struct Request {
  EntityUid principal;
  EntityUid action;
  EntityUid resource;
  Value context;  // must be a record; the default is the empty record
};

struct Response {
  bool allow = false;
  // Ids of the satisfied permits; filled only when allowed (they determine the decision).
  std::vector<std::string> permits;
  // Ids of the satisfied forbids; filled only when denied by a forbid.
  std::vector<std::string> forbids;
  // "<policy id>: <message> at <file>:<line>:<column>" for every policy skipped on error, in
  // policy order. A context that is not a record denies with the single error
  // "request: context must be a record".
  std::vector<std::string> errors;
};

// Evaluates every policy of `policies` for `request`. Policies are evaluated in set order, each
// bounded by core::kPolicyEvalStepsMax evaluation steps. Never fails: errors are in the
// response, and a response with no satisfied permit is a denial.
Response IsAuthorized(const PolicySet& policies, const Request& request, const Entities& entities);

}  // namespace mandate::policy
