// Lint for policy sets (`mandate policy check`, docs/policy.md "Checking policies"): warnings
// about policies that parse and evaluate but are probably not what their author meant. Lint
// never changes a decision; the engine evaluates what it is given.
//
// Rules (each warning names its rule):
//   allow-all                     a permit with no constraint on principal, action or resource
//                                 and no condition: it allows everything to everyone;
//   unreachable-permit            a permit that an unconditional forbid covers entirely (each
//                                 of the forbid's scope constraints is unconstrained or the same
//                                 as the permit's), so it can never allow anything;
//   destructive-without-approval  a permit without @approval that can match a destructive
//                                 action: any action, Action::"destructive", an action whose
//                                 configured class is destructive, or an upstream group with a
//                                 tool configured destructive;
//   unknown-name                  an entity literal (in a scope or a condition) naming a human
//                                 or agent that is not registered, or a group that no registered
//                                 human or agent belongs to. Checked only when the context knows
//                                 the registry. (Actions are the schema's business: an unknown
//                                 action is a validation error, validator.h unknown-action.)
//
// Thread safety: a pure function of its arguments.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "mandate/core/action.h"
#include "mandate/policy/policy_set.h"

namespace mandate::policy {

struct LintContext {
  std::set<std::string> upstreams;                          // configured upstream names
  std::map<std::string, core::ActionClass> tool_classes;    // "<upstream>:<tool>" -> class, from config
  std::optional<std::set<std::string>> humans;              // registered humans; nullopt: unknown
  std::optional<std::set<std::string>> agents;              // registered agents; nullopt: unknown
  std::optional<std::set<std::string>> groups;              // groups of those; nullopt: unknown
};

struct LintWarning {
  std::string rule;      // e.g. "allow-all"
  std::string policy_id;
  SourceLocation location;
  std::string message;   // one sentence
  std::string ToString() const;  // "<file:line:col>: warning: [rule] <policy id>: message"
};

// Warnings in policy order (then rule order within a policy).
std::vector<LintWarning> Lint(const PolicySet& set, const LintContext& context);

}  // namespace mandate::policy
