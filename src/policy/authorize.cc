#include "mandate/policy/authorize.h"

#include "policy/evaluator.h"

namespace mandate::policy {

Response IsAuthorized(const PolicySet& policies, const Request& request, const Entities& entities) {
  Response response;
  if (!request.context.is_record()) {
    response.errors.push_back("request: context must be a record");
    return response;
  }
  Evaluator evaluator(request, entities);
  for (const Policy& p : policies.policies()) {
    core::Result<bool> satisfied = evaluator.Satisfied(p);
    if (!satisfied.ok()) {
      response.errors.push_back(p.id + ": " + satisfied.error().message);
      continue;
    }
    if (*satisfied) (p.is_forbid ? response.forbids : response.permits).push_back(p.id);
  }
  // Forbid overrides permit; no satisfied permit is a denial.
  response.allow = response.forbids.empty() && !response.permits.empty();
  // As the reference's diagnostics: only the policies that determined the decision.
  if (!response.allow) response.permits.clear();
  return response;
}

}  // namespace mandate::policy
