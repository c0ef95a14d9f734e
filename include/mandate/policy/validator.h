// Validation of policies against the schema of Mandate's requests (schema.h; docs/policy.md,
// "Schema and validation"), modelled on Cedar's strict validation mode: each policy is
// type-checked for every request the schema allows (each action that applies, with each of its
// principal and resource types and its context), and what would fail at evaluation, or can
// never match, is reported before the policy is loaded.
//
// Errors (what Cedar's validator also rejects):
//   unknown-action           an Action entity the schema does not declare (did you mean ...?)
//   unknown-entity-type      an entity literal or `is` type the schema does not declare
//   unknown-attribute        reading an attribute a record or entity does not have (did you
//                            mean ...?), e.g. a typo in context.args.<name>
//   unsafe-optional-attribute reading an optional attribute (an argument the inputSchema does
//                            not require, a model member) without a `has` test guarding it
//   type-error               an operand of the wrong type (`<` on a string, `&&` on a long,
//                            `like` on a set, ...), operands of `==` whose types cannot be
//                            equal, set elements or if-branches of different types, a
//                            condition that is not a boolean
//   empty-set                an empty set literal `[]` (its element type is unknown)
// Warnings:
//   no-applicable-action     the scope matches no request at all (e.g. principal in
//                            Upstream::"x": no principal is ever in an upstream)
//   impossible-policy        the policy is false for every request the schema allows
//   validation-incomplete    validation stopped at core::kPolicyValidationStepsMax
//
// The rules of Cedar's type checker that this one follows: attribute tests (`has`) make the
// attribute safe to read on the right of `&&` and in the `then` branch of an `if`; a `&&`
// whose left side is false, an `||` whose left side is true and the branch an `if` cannot take
// are not type-checked (as in Cedar, a policy such as `action == Action::"a:x" && context.args.y`
// is checked only against a:x); `==` on entities of different types is false, not an error;
// `in` between entity types that cannot be related is false. A finding that occurs for several
// actions is reported once, naming one action and counting the others.
//
// Unknown types (schema.h) take part in nothing: any use of an unknown attribute, of the
// arguments of a tool without an inputSchema, and of expression kinds this validator does not
// know (the default branch; e.g. extension functions) is accepted without a finding.
//
// Not checked: whether humans, agents and groups exist (lint.h, unknown-name), templates (the
// parser refuses them), Cedar's "levels" of entity dereference, and the value ranges of
// arguments (the inputSchema's minimum, maxLength, enum values: only types are mapped).
//
// Thread safety: a pure function of its arguments.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "mandate/core/limits.h"
#include "mandate/policy/policy_set.h"
#include "mandate/policy/schema.h"

namespace mandate::policy {

struct ValidationFinding {
  enum class Severity : uint8_t { kError, kWarning };
  Severity severity = Severity::kError;
  std::string rule;  // e.g. "unknown-attribute"
  std::string policy_id;
  SourceLocation location;  // where the offending expression or literal is written
  std::string message;      // one sentence, with "did you mean" where there is a close name

  // "<file:line:col>: error: [rule] <policy id>: message" ("warning" for warnings).
  std::string ToString() const;
};

// Findings in policy order, then by position in the policy.
std::vector<ValidationFinding> Validate(const PolicySet& set, const Schema& schema);
// `steps_max` bounds the work (tests lower it); when it runs out, the policy being checked gets a
// validation-incomplete warning and the rest are not checked.
std::vector<ValidationFinding> Validate(const std::vector<Policy>& policies, const Schema& schema,
                                        size_t steps_max = core::kPolicyValidationStepsMax);

// The candidate closest to `name` by edit distance (a transposition counts as one edit), when
// close enough to be a likely typo (at most a third of the name's length, at least 1, at most 3
// edits); else empty. Names shorter than 3 characters get no suggestion.
std::string ClosestName(std::string_view name, const std::vector<std::string_view>& candidates);

}  // namespace mandate::policy
