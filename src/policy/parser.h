// The Cedar parser: tokens -> policies with their condition ASTs (ast.h). Recursive descent
// over the grammar of the Cedar reference (docs.cedarpolicy.com, "Grammar for Cedar syntax");
// every recursion is bounded by core::kPolicyAstDepthMax.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "mandate/core/result.h"
#include "mandate/policy/policy_set.h"
#include "policy/ast.h"

namespace mandate::policy {

// Parses every policy of one file. `display_name` names the file in errors and locations;
// `id_file` is the name used in generated ids ("<id_file>:<index>"). Errors (kBadRequest):
// "<display_name>:<line>:<column>: <message>"; kPayloadTooLarge above core::kPoliciesMax
// policies. Ids are not checked for uniqueness here (PolicySet does that).
core::Result<std::vector<Policy>> ParsePolicies(std::string_view text,
                                                std::string_view display_name,
                                                std::string_view id_file);

// Parses one standalone expression (the whole text), e.g. for tests and `policy explain`.
core::Result<std::unique_ptr<Expr>> ParseExpression(std::string_view text,
                                                    std::string_view display_name);

}  // namespace mandate::policy
