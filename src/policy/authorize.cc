#include "mandate/policy/authorize.h"

#include <cstdint>
#include <vector>

#include "policy/evaluator.h"
#include "policy/scope_index.h"

namespace mandate::policy {
namespace {

void Evaluate(Evaluator& evaluator, const Policy& p, Response* response) {
  core::Result<bool> satisfied = evaluator.Satisfied(p);
  if (!satisfied.ok()) {
    response->errors.push_back(p.id + ": " + satisfied.error().message);
    return;
  }
  if (*satisfied) (p.is_forbid ? response->forbids : response->permits).push_back(p.id);
}

// Forbid overrides permit; no satisfied permit is a denial. As the reference's diagnostics,
// only the policies that determined the decision are listed.
void Decide(Response* response) {
  response->allow = response->forbids.empty() && !response->permits.empty();
  if (!response->allow) response->permits.clear();
}

}  // namespace

Response AuthorizeEveryPolicy(const PolicySet& policies, const Request& request,
                              const Entities& entities) {
  Response response;
  if (!request.context.is_record()) {
    response.errors.push_back("request: context must be a record");
    return response;
  }
  Evaluator evaluator(request, entities);
  for (const Policy& p : policies.policies()) Evaluate(evaluator, p, &response);
  Decide(&response);
  return response;
}

Response IsAuthorized(const PolicySet& policies, const Request& request, const Entities& entities) {
  const ScopeIndex* index = policies.scope_index();
  if (index == nullptr || !request.context.is_record()) {
    return AuthorizeEveryPolicy(policies, request, entities);
  }
  Evaluator evaluator(request, entities);
  const std::vector<const EntityUid*>* principal = evaluator.RequestAncestors(Var::kPrincipal);
  const std::vector<const EntityUid*>* action = evaluator.RequestAncestors(Var::kAction);
  const std::vector<const EntityUid*>* resource = evaluator.RequestAncestors(Var::kResource);
  if (principal == nullptr || action == nullptr || resource == nullptr) {
    // An ancestor walk failed: every policy, so that each reports the error as the reference
    // does.
    return AuthorizeEveryPolicy(policies, request, entities);
  }
  // Only the policies whose scope can match (exact: scope_index.h). The buffer is per thread so
  // that a decision allocates nothing for it once warm.
  thread_local std::vector<uint32_t> candidates;
  index->Candidates({&request.principal, principal}, {&request.action, action},
                    {&request.resource, resource}, &candidates);
  Response response;
  for (uint32_t i : candidates) Evaluate(evaluator, policies.policies()[i], &response);
  Decide(&response);
  return response;
}

}  // namespace mandate::policy
