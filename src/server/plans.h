// Plans on the agent listener (DESIGN.md section 6): POST /v1/plans and GET /v1/plans/<id>.
// The book of plans (plan::PlanBook) keeps plans and matches calls; this service decides, when
// a plan is submitted, whether it may start at once or needs approvers, and moves it when
// they decide.
//
// Submission. Every step's action is evaluated up front for the submitting session with its
// arguments unknown (gateway::Pipeline::DecideStep):
//   - a step refused whatever its arguments (out of scope, forbidden, nothing permits it)
//     refuses the whole plan with that code (out_of_scope | policy_denied), naming the step,
//     and the refusal is audited (plan.refused); nothing is recorded in the book;
//   - a step permitted only through an @approval permit of group G needs G's approval of the
//     plan: one approval request per distinct group, through the approval book, for the
//     action "mandate:plan" with the plan (id, steps, budget, ttl) as the arguments the
//     approvers see and whose SHA-256 the approval covers. The plan is pending_approval until
//     every group granted (then active, and each such step's calls are approved by the plan)
//     or one denies or lets its request expire (then rejected);
//   - otherwise (every step permitted, or depending on arguments that only a call can show)
//     the plan is auto-approved and active at once. Calls are always authorized in full with
//     their real arguments: a plan only narrows what a session may do.
//
// Thread safety: every method may be called concurrently. Dependencies are not owned.
#pragma once

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "mandate/approval/approval.h"
#include "mandate/core/action.h"
#include "mandate/core/json.h"
#include "mandate/core/result.h"
#include "mandate/gateway/pipeline.h"
#include "mandate/plan/plan.h"

namespace mandate::server {

// The action id approvers see for a plan's approval request.
inline constexpr std::string_view kPlanApprovalAction = "mandate:plan";

struct PlanServiceDeps {
  const gateway::Pipeline* pipeline = nullptr;
  plan::PlanBook* plans = nullptr;
  approval::ApprovalBook* approvals = nullptr;  // null: a plan that needs approval is refused
  // The Action a call of `tool` on `upstream` would be decided as (the adapter's translation:
  // class, resource). Errors: kNotFound for an unknown upstream.
  std::function<core::Result<core::Action>(std::string_view upstream, std::string_view tool, core::Json args)>
      action_for;
};

class PlanService {
 public:
  explicit PlanService(PlanServiceDeps deps) : deps_(std::move(deps)) {}

  // POST /v1/plans. Returns the plan as Show does. Errors: kBadRequest (the document, an
  // unknown upstream), kOutOfScope / kPolicyDenied (a step no call could make),
  // kApprovalRequired (a step needs approval but no approval book or group can ask for it),
  // kConflict (too many plans or pending approvals).
  core::Result<core::Json> Submit(const gateway::Caller& caller, const core::Json& document);

  // The plan (plan::PlanBook::Get) with "approvals": [{"id","group","state"}...] for a plan
  // that needed approval. nullopt when unknown, or when `sid` is given and the plan is
  // another session's (so plan ids reveal nothing). Brings a pending plan up to date first.
  std::optional<core::Json> Show(std::string_view id, const std::string* sid = nullptr);

  // Called after a vote or denial on approval `approval_id` (the admin API): if it belongs
  // to a plan, activates the plan once every group granted, or rejects it after a denial or
  // an expiry. Any other approval id is ignored.
  void OnApprovalDecided(std::string_view approval_id);

 private:
  struct Pending {
    std::vector<std::string> approval_ids;  // one per group
  };
  // Require mu_. SyncLocked decides the plan if its approvals allow, and forgets it once
  // decided.
  void SyncLocked(const std::string& plan_id);
  std::optional<core::Json> ShowLocked(std::string_view id, const std::string* sid);

  PlanServiceDeps deps_;
  std::mutex mu_;
  std::unordered_map<std::string, Pending> pending_;             // plan id -> its approvals
  std::unordered_map<std::string, std::string> plan_of_approval_;  // approval id -> plan id
};

}  // namespace mandate::server
