#include "server/plans.h"

#include <set>
#include <utility>

#include "mandate/core/crypto.h"
#include "mandate/core/limits.h"

namespace mandate::server {

namespace {

using core::ErrorCode;
using core::Json;

// The plan as approvers see it, and as the approval's hash covers it.
Json ApprovalView(const std::string& plan_id, const Json& shown) {
  Json v = Json::MakeObject();
  v.Set("plan", plan_id);
  for (const char* k : {"steps", "budget", "ttl_seconds", "expires_at"}) {
    if (const Json* m = shown.Find(k)) v.Set(k, *m);
  }
  return v;
}

}  // namespace

core::Result<Json> PlanService::Submit(const gateway::Caller& caller, const Json& document) {
  MANDATE_ASSIGN_OR_RETURN(plan::PlanSpec spec, plan::ParsePlan(document));

  // Every step up front, with its arguments unknown.
  std::vector<std::pair<std::string, std::string>> groups;  // group -> the policy that asked
  for (size_t i = 0; i < spec.steps.size(); ++i) {
    plan::PlanStep& step = spec.steps[i];
    const size_t colon = step.action.find(':');  // ParsePlan checked "<upstream>:<tool>"
    auto action = deps_.action_for(std::string_view(step.action).substr(0, colon),
                                   std::string_view(step.action).substr(colon + 1), Json::MakeObject());
    const std::string where = "steps[" + std::to_string(i) + "] (" + step.action + ")";
    if (!action.ok()) {
      return core::MakeError(ErrorCode::kBadRequest, where + ": " + action.error().message);
    }
    gateway::StepVerdict v = deps_.pipeline->DecideStep(caller, *action);
    switch (v.kind) {
      case gateway::StepVerdict::Kind::kDeny: {
        const std::string message = "plan refused: " + where + ": " + v.reason;
        Json r = Json::MakeObject();
        r.Set("type", "plan.refused");
        r.Set("run", caller.run());
        r.Set("sid", caller.sid());
        r.Set("agent", caller.agent());
        r.Set("human", caller.human());
        r.Set("step", static_cast<int64_t>(i));
        r.Set("action", step.action);
        r.Set("code", std::string(core::PublicCode(v.code)));
        r.Set("reason", v.reason);
        if (auto rec = deps_.pipeline->Record(std::move(r)); !rec.ok()) return rec.error();
        return core::MakeError(v.code, message);
      }
      case gateway::StepVerdict::Kind::kApproval: {
        step.approval_group = v.approval_group;
        bool seen = false;
        for (const auto& [g, p] : groups) seen = seen || g == v.approval_group;
        if (!seen) groups.emplace_back(v.approval_group, v.policy);
        break;
      }
      case gateway::StepVerdict::Kind::kAllow:
      case gateway::StepVerdict::Kind::kConditional:
        break;
    }
  }
  if (!groups.empty() && deps_.approvals == nullptr) {
    return core::MakeError(ErrorCode::kApprovalRequired,
                           "the plan needs the approval of " + groups.front().first +
                               " but no approval group is configured");
  }

  plan::PlanOwner owner{caller.sid(), caller.run(), caller.agent(), caller.human()};
  std::lock_guard<std::mutex> lock(mu_);
  if (pending_.size() >= core::kPlansMax) {
    // Bounded: decided or expired plans are forgotten here.
    std::vector<std::string> ids;
    for (const auto& [id, p] : pending_) ids.push_back(id);
    for (const std::string& id : ids) SyncLocked(id);
  }
  MANDATE_ASSIGN_OR_RETURN(std::string id, deps_.plans->Submit(owner, std::move(spec), groups.empty()));
  if (!groups.empty()) {
    const Json shown = deps_.plans->Get(id);
    Json view = ApprovalView(id, shown);
    Pending pending;
    for (const auto& [group, policy] : groups) {
      approval::ApprovalRequest req;
      req.run = caller.run();
      req.sid = caller.sid();
      req.agent = caller.agent();
      req.human = caller.human();
      req.task = caller.claims->task;
      req.action_id = std::string(kPlanApprovalAction);
      req.args_display = view;
      req.args_sha256 = core::Sha256Hex(view.Canonical());
      req.group = group;
      req.policy = policy;
      auto ticket = deps_.approvals->Request(req);
      if (!ticket.ok()) {
        // Fail closed: a plan whose approvers cannot be asked never becomes active.
        const std::string why = "the approval of " + group + " cannot be asked for: " + ticket.error().message;
        (void)deps_.plans->Reject(id, "mandate", why.substr(0, core::kPlanFieldBytesMax));
        for (const std::string& a : pending.approval_ids) {
          (void)deps_.approvals->Deny(a, "mandate", "the plan was rejected: " + why.substr(0, 200));
        }
        const ErrorCode code = ticket.error().code == ErrorCode::kNotFound ? ErrorCode::kApprovalRequired
                                                                          : ticket.error().code;
        return core::MakeError(code, "plan " + id + " rejected: " + why);
      }
      pending.approval_ids.push_back(ticket->id);
      plan_of_approval_.emplace(ticket->id, id);
    }
    pending_.emplace(id, std::move(pending));
  }
  return ShowLocked(id, nullptr).value_or(Json());
}

void PlanService::OnApprovalDecided(std::string_view approval_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = plan_of_approval_.find(std::string(approval_id));
  if (it == plan_of_approval_.end()) return;
  SyncLocked(std::string(it->second));
}

void PlanService::SyncLocked(const std::string& plan_id) {
  auto it = pending_.find(plan_id);
  if (it == pending_.end()) return;
  const Json shown = deps_.plans->Get(plan_id);
  bool decided = shown.is_null() || shown.GetString("state") != "pending_approval";
  if (!decided) {
    bool all_granted = true;
    std::string refusal;
    std::string refused_by = "mandate";
    std::set<std::string> approvers;
    for (const std::string& a : it->second.approval_ids) {
      auto view = deps_.approvals->Get(a);
      const std::string state = view ? view->GetString("state") : "expired";
      if (state == "denied") {
        refused_by = view->GetString("denied_by");
        refusal = "approval " + a + " was denied: " + view->GetString("reason");
        break;
      }
      if (state == "expired") {
        refusal = "approval " + a + " expired before it was granted";
        break;
      }
      if (state != "granted" && state != "used") all_granted = false;
      if (view) {
        if (const Json* list = view->FindArray("approvers")) {
          for (const Json& who : list->as_array()) {
            if (who.is_string()) approvers.insert(who.as_string());
          }
        }
      }
    }
    if (!refusal.empty()) {
      (void)deps_.plans->Reject(plan_id, refused_by, refusal.substr(0, core::kPlanFieldBytesMax));
      decided = true;
    } else if (all_granted) {
      // Each grant is taken by the plan (so it cannot lapse unused), then the plan starts.
      for (const std::string& a : it->second.approval_ids) (void)deps_.approvals->Wait(a, 0);
      std::string by;
      for (const std::string& who : approvers) by += (by.empty() ? "" : ",") + who;
      if (by.size() > core::kPlanFieldBytesMax) by.resize(core::kPlanFieldBytesMax);
      (void)deps_.plans->Activate(plan_id, by.empty() ? "approvers" : by);
      decided = true;
    }
  }
  if (decided) {
    for (const std::string& a : it->second.approval_ids) plan_of_approval_.erase(a);
    pending_.erase(it);
  }
}

std::optional<Json> PlanService::Show(std::string_view id, const std::string* sid) {
  std::lock_guard<std::mutex> lock(mu_);
  return ShowLocked(id, sid);
}

std::optional<Json> PlanService::ShowLocked(std::string_view id, const std::string* sid) {
  Json shown = deps_.plans->Get(id);
  if (shown.is_null() || (sid != nullptr && shown.GetString("sid") != *sid)) return std::nullopt;
  const std::string key(id);
  if (pending_.count(key) != 0) {
    SyncLocked(key);  // an approval may have expired since
    shown = deps_.plans->Get(id);
  }
  if (auto it = pending_.find(key); it != pending_.end()) {
    Json list = Json::MakeArray();
    for (const std::string& a : it->second.approval_ids) {
      auto view = deps_.approvals->Get(a);
      Json one = Json::MakeObject();
      one.Set("id", a);
      one.Set("group", view ? view->GetString("group") : std::string());
      one.Set("state", view ? view->GetString("state") : std::string("expired"));
      list.Push(std::move(one));
    }
    shown.Set("approvals", std::move(list));
  }
  return shown;
}

}  // namespace mandate::server
