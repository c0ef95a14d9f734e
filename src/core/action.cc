#include "mandate/core/action.h"

#include "mandate/core/decision.h"

namespace mandate::core {

std::string_view ActionClassName(ActionClass c) {
  switch (c) {
    case ActionClass::kRead:
      return "read";
    case ActionClass::kWrite:
      return "write";
    case ActionClass::kDestructive:
      return "destructive";
  }
  return "destructive";
}

std::optional<ActionClass> ActionClassFromName(std::string_view name) {
  if (name == "read") return ActionClass::kRead;
  if (name == "write") return ActionClass::kWrite;
  if (name == "destructive") return ActionClass::kDestructive;
  return std::nullopt;
}

std::string EntityRef::ToString() const {
  std::string out = type;
  out.append("::");
  AppendJsonString(id, &out);
  return out;
}

std::string_view DecisionKindName(Decision::Kind k) {
  switch (k) {
    case Decision::Kind::kAllow:
      return "allow";
    case Decision::Kind::kDeny:
      return "deny";
    case Decision::Kind::kApprovalRequired:
      return "approval_required";
  }
  return "deny";
}

Json Decision::ToJson() const {
  Json j = Json::MakeObject();
  j.Set("id", id);
  j.Set("decision", std::string(DecisionKindName(kind)));
  j.Set("code", kind == Kind::kAllow ? Json() : Json(std::string(PublicCode(code))));
  j.Set("reason", reason);
  j.Set("action", action);
  j.Set("resource", resource);
  j.Set("scope_ok", scope_ok);
  Json arr = Json::MakeArray();
  for (const PrincipalCheck& c : checks) {
    Json cj = Json::MakeObject();
    cj.Set("principal", c.principal);
    cj.Set("decision", c.allow ? "allow" : (c.approval_required ? "approval_required" : "deny"));
    cj.Set("permits", Json::StringArray(c.permits));
    cj.Set("forbids", Json::StringArray(c.forbids));
    cj.Set("errors", Json::StringArray(c.errors));
    arr.Push(std::move(cj));
  }
  j.Set("checks", std::move(arr));
  j.Set("approval", approval ? Json(*approval) : Json());
  j.Set("budgets", budgets);
  j.Set("plan_step", plan_step);
  return j;
}

}  // namespace mandate::core
