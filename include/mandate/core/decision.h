// Decision: the explainable record of one authorization (DESIGN.md section 5). It is what the
// audit log stores and what admin answers and `policy explain --json` print.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "mandate/core/error_code.h"
#include "mandate/core/json.h"

namespace mandate::core {

// The policy outcome for one principal (the human, or one agent of the chain).
struct PrincipalCheck {
  std::string principal;               // e.g. Human::"alice"
  bool allow = false;
  bool approval_required = false;      // only @approval permits matched
  std::vector<std::string> permits;    // determining permit ids (@id, else file:index)
  std::vector<std::string> forbids;    // determining forbid ids
  std::vector<std::string> errors;     // evaluation errors (the policy was skipped)
  std::vector<std::string> approval_groups;  // groups named by the matching @approval permits
};

struct Decision {
  enum class Kind : uint8_t { kAllow, kDeny, kApprovalRequired };

  std::string id;            // "dec_..."
  Kind kind = Kind::kDeny;   // default deny
  ErrorCode code = ErrorCode::kPolicyDenied;  // meaningful unless kind == kAllow
  std::string reason;        // one human-readable sentence
  std::string action;        // action id
  std::string resource;      // Cedar literal of the resource
  bool scope_ok = false;
  std::vector<PrincipalCheck> checks;
  std::optional<std::string> approval;   // approval group or id, when relevant
  Json budgets = Json::MakeArray();
  Json plan_step;                        // null when no plan

  bool allowed() const { return kind == Kind::kAllow; }
  Json ToJson() const;
};

std::string_view DecisionKindName(Decision::Kind k);  // "allow" | "deny" | "approval_required"

}  // namespace mandate::core
