// Plans (DESIGN.md sections 1 and 6): a session declares the calls it intends to make, and once
// the plan is active every call of that session must fit it. This module parses plan
// documents (ParsePlan) and keeps the book of plans (PlanBook): one current plan per session,
// the count each step has admitted, the plan's budget envelope, approval and supersession.
// Wiring (POST /v1/plans, GET /v1/plans/<id>, the pipeline's plan stage, evaluating each step
// against policy up front to decide `auto_approved`, the admin API, the CLI, the audit log) is
// the integrator's.
//
// The plan document (what the agent POSTs, JSON):
//   {
//     "steps": [                                   required, 1..kPlanStepsMax steps
//       {"action": "<upstream>:<tool>",            required
//        "when": "<Cedar condition>",              optional: the step only admits calls for
//                                                  which it is true; `context.args` is the
//                                                  call's arguments, e.g.
//                                                  context.args.amount <= 100 &&
//                                                  context.args.currency == "EUR"
//        "max_count": N}                           optional, 1..kPlanStepCountMax, default 1
//     ],
//     "budget": {"calls": N, "<metric>": N, ...},  optional envelope: caps over the plan's
//                                                  lifetime, metric names [a-z][a-z0-9_]*
//     "ttl_seconds": N                             optional, 1..kPlanTtlSecondsMax, default max
//   }
// Unknown members are refused (at every level).
//
// Admission while a session has a plan. Admit(sid, action, args) looks at the session's
// current plan:
//   - no plan ever submitted for the session: admitted, StepMatch::planned == false (plans are
//     opt-in; the other pipeline stages still apply);
//   - the plan is pending_approval: kPlanViolation "plan awaiting approval";
//   - the plan was rejected, or has expired: kPlanViolation "plan rejected" / "plan expired".
//     Fail closed: a session that declared a plan stays bound to it until it submits a new
//     one; an expired or rejected plan does not fall back to "no plan";
//   - the plan is active: the first step (in plan order) whose action equals the call's
//     action, whose `when` holds, and whose count is below max_count admits the call and one
//     count is consumed; the budget envelope is charged ("calls" 1, other metrics from the
//     caller's estimate). Otherwise kPlanViolation naming why: the action is not in the plan;
//     the condition of step i is not met (a condition whose evaluation errors, e.g. a missing
//     argument or a type error, is not met; so are conditions on arguments that are not valid
//     Cedar values, such as floating-point numbers or null); step i is exhausted ("used N of
//     N"); or the envelope's metric is exhausted.
// Counting is exact under concurrency: with max_count N, however many threads call Admit at
// once, exactly N are admitted. Release(match) gives the count and the envelope charge back
// (for a call refused later in the pipeline and never forwarded).
//
// Lifecycle of one plan (`state`):
//     pending_approval --Activate--> active
//            \--Reject--> rejected
//     pending_approval | active --(the session submits another plan)--> superseded
//     pending_approval | active --(expires_at passes)--> expired (lazily, no event)
// A superseded plan no longer governs its session; the new one does. Bounded memory: the book
// holds at most kPlansMax plans. When it is full, Submit forgets the oldest plan that no longer
// governs its session (superseded, including the one this Submit supersedes; Get then answers
// null for it) or whose session can no longer call (expires_at + kTokenTtlSecondsMax +
// kTokenClockSkewSeconds passed: no token of that session can still be valid, so its "no plan"
// is harmless). When nothing can be forgotten, Submit fails with kConflict (fail closed).
//
// Audit events: every Submit, Activate, Reject and supersession produces events, JSON objects
// handed to `on_event` in the order the changes happened, each exactly once:
//   plan.submitted  {"type": "plan.submitted", "plan": "pln_...", "sid", "run", "agent", "human",
//                    "steps": [{"action", "when": "<text>" | null, "max_count": N,
//                               "approval_group": "<group>" | null}, ...],
//                    "budget": {"<metric>": N, ...} ({} when none), "ttl_seconds": N,
//                    "created_at", "expires_at": Unix microseconds,
//                    "auto_approved": bool, "supersedes": "pln_..." | null}
//   plan.decided    {"type": "plan.decided", "plan", "sid", "run", "agent", "human",
//                    "decision": "approved" | "rejected" | "superseded",
//                    "by": approver ("auto" for an auto-approved plan, "" for superseded),
//                    "reason": "..." (rejected; "" otherwise),
//                    "superseded_by": "pln_..." | null}
// A Submit that supersedes emits, in this order: plan.submitted (new), plan.decided superseded
// (old), then plan.decided approved by "auto" (new) when auto-approved. Admissions are not
// events: the call's decision record names the plan and step (StepMatch).
//
// Thread safety: every method may be called concurrently from any thread. One mutex guards
// the book; conditions are evaluated outside it. `on_event` is called outside that mutex, one
// event at a time, from whichever thread caused the change; it must not call back into the
// book (it would deadlock).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "mandate/core/clock.h"
#include "mandate/core/json.h"
#include "mandate/core/result.h"
#include "mandate/policy/policy_set.h"

namespace mandate::plan {

struct PlanStep {
  std::string action;  // "<upstream>:<tool>"
  std::string when;    // the condition's text; empty when the step has none
  int64_t max_count = 1;
  // Set by the integrator, not parsed: the approval group that had to approve this step up
  // front because policy permits its action only through an @approval permit of that group
  // (empty otherwise). Once the plan is active, a call admitted by this step that needs that
  // group's approval is approved by the plan (the approvers saw the action, the condition and
  // the count); a call needing another group's approval still asks for it.
  std::string approval_group;
  // `when` parsed as the single policy `permit(principal, action, resource) when { <when> };`
  // (shared, immutable); nullptr when the step has no condition.
  std::shared_ptr<const policy::PolicySet> condition;
};

struct PlanSpec {
  std::vector<PlanStep> steps;
  // The budget envelope: metric -> cap over the plan's lifetime, in document order.
  std::vector<std::pair<std::string, int64_t>> budget;
  int64_t ttl_seconds = 0;  // as given, or kPlanTtlSecondsMax
};

// Parses a plan document (format above). Errors (kBadRequest), naming the member, e.g.
// "steps[1].max_count: must be an integer from 1 to 10000":
//   the document or a step is not an object; an unknown member; `steps` missing, not an array,
//   empty or longer than kPlanStepsMax; `action` missing, not a string, or not
//   "<upstream>:<tool>" (each part 1..kNameBytesMax bytes, no ':' in the upstream, no control
//   characters or spaces); `when` not a string, empty, longer than kPlanConditionBytesMax, or
//   not a Cedar condition: the parser's message, located inside the condition text, e.g.
//   "steps[0].when:1:22: expected an expression, found '}'"; `max_count` not an integer in
//   1..kPlanStepCountMax; `budget` not an object, empty, more than kPlanBudgetMetricsMax
//   metrics, a metric name not [a-z][a-z0-9_]* of at most kConfigNameBytesMax bytes, a cap not
//   an integer >= 0; `ttl_seconds` not an integer in 1..kPlanTtlSecondsMax.
core::Result<PlanSpec> ParsePlan(const core::Json& document);

enum class PlanState : uint8_t { kPendingApproval, kActive, kRejected, kSuperseded, kExpired };

// "pending_approval" | "active" | "rejected" | "superseded" | "expired".
std::string_view PlanStateName(PlanState state);

// Who submits a plan. Strings are valid UTF-8, 1..kPlanFieldBytesMax bytes.
struct PlanOwner {
  std::string sid;  // the session the plan governs
  std::string run;  // root session of its delegation tree
  std::string agent;
  std::string human;  // the human the agent acts for
};

// What Admit found. For a planned call, pass it to Release if the call is not forwarded.
struct StepMatch {
  bool planned = false;  // false: the session has no plan (nothing was consumed)
  std::string plan_id;
  size_t step = 0;   // 0-based index of the step that admitted the call
  int64_t used = 0;  // the step's count including this call
  int64_t max_count = 0;
  std::string approval_group;  // the step's approval_group (see PlanStep)
  // What was charged to the envelope (metric -> amount), to be given back by Release.
  std::vector<std::pair<std::string, int64_t>> charged;
};

// Receives every audit event (shapes above).
using PlanEventSink = std::function<void(const core::Json& event)>;

class PlanBook {
 public:
  // `clock` must outlive the book; `on_event` may be empty (events are then dropped).
  explicit PlanBook(const core::Clock& clock, PlanEventSink on_event = {});
  ~PlanBook();
  PlanBook(const PlanBook&) = delete;
  PlanBook& operator=(const PlanBook&) = delete;

  // Records a plan for owner.sid and makes it the session's current plan: active when
  // `auto_approved`, else pending_approval (the integrator then calls Activate or Reject after
  // the approvers decide). The session's previous plan, if pending or active, is superseded.
  // Returns the new plan id ("pln_..."). Emits plan.submitted (and the plan.decided events
  // described above). Errors: kBadRequest when an owner field is empty, longer than
  // kPlanFieldBytesMax or not valid UTF-8, or the spec is empty (no steps); kConflict when the
  // book holds kPlansMax plans and none can be forgotten (nothing changes).
  core::Result<std::string> Submit(const PlanOwner& owner, PlanSpec spec, bool auto_approved);

  // pending_approval -> active, emitting plan.decided "approved" by `approver`.
  // Errors: kNotFound (unknown id); kConflict when the plan is not pending_approval (already
  // decided, superseded or expired; the message says which). kBadRequest on a bad approver.
  core::Status Activate(std::string_view id, std::string_view approver);
  // pending_approval -> rejected, emitting plan.decided "rejected". Same errors; reason may be
  // empty (at most kPlanFieldBytesMax bytes).
  core::Status Reject(std::string_view id, std::string_view approver, std::string_view reason);

  // Matches one call of session `sid` against its current plan (rules above). `estimate` is
  // the call's expected cost per envelope metric other than "calls" (missing metrics cost 0;
  // negative amounts are refused with kBadRequest). Errors: kPlanViolation as described above.
  core::Result<StepMatch> Admit(std::string_view sid, std::string_view action_id,
                                const core::Json& args,
                                const std::map<std::string, int64_t>& estimate = {});

  // Gives back what `match` consumed (its step's count and envelope charges), if its plan is
  // still known. A match with planned == false is ignored. Call at most once per match.
  void Release(const StepMatch& match);

  // The plan as JSON (null when unknown): {"plan", "state", "sid", "run", "agent", "human",
  // "steps": [{"action", "when", "max_count", "approval_group", "used"}], "budget": {"<metric>": {"limit",
  // "used"}}, "ttl_seconds", "created_at", "expires_at", "auto_approved", "superseded_by"}.
  core::Json Get(std::string_view id);
  // The session's current plan as Get shows it; null when the session has none.
  core::Json ForSession(std::string_view sid);

  // Plans currently held (for tests and metrics).
  size_t size();

 private:
  struct Entry;

  std::shared_ptr<Entry> FindLocked(std::string_view id) const;
  void RefreshLocked(Entry& e, int64_t now) const;
  bool MakeRoomLocked(int64_t now, std::string_view replacing_sid);
  core::Json ToJsonLocked(const Entry& e) const;
  core::Json DecidedEventLocked(const Entry& e, std::string_view decision, std::string_view by,
                                std::string_view reason) const;
  core::Status Decide(std::string_view id, std::string_view approver, std::string_view reason,
                      bool approve);
  void Deliver(bool have_events);

  const core::Clock& clock_;
  PlanEventSink on_event_;

  std::mutex mu_;  // guards everything below
  std::unordered_map<std::string, std::shared_ptr<Entry>> by_id_;
  std::unordered_map<std::string, std::string> current_by_sid_;  // sid -> plan id
  std::map<uint64_t, std::string> by_seq_;                       // submission order -> plan id
  uint64_t next_seq_ = 1;
  std::vector<core::Json> outbox_;

  std::mutex deliver_mu_;  // one deliverer at a time, so events keep their order
};

}  // namespace mandate::plan
