#include "mandate/plan/plan.h"

#include <algorithm>
#include <cctype>
#include <limits>
#include <optional>

#include "mandate/core/check.h"
#include "mandate/core/crypto.h"
#include "mandate/core/limits.h"
#include "mandate/policy/authorize.h"
#include "mandate/policy/entities.h"
#include "mandate/policy/value.h"

namespace mandate::plan {
namespace {

using core::ErrorCode;
using core::Json;
using core::MakeError;

constexpr int64_t kMicros = 1000000;
// The file name the wrapped condition is parsed under; rewritten in messages (RelocateError).
constexpr std::string_view kWhenFile = "plan-step-when";
constexpr std::string_view kWhenPrefix = "permit(principal, action, resource) when {\n";

core::Error BadRequest(std::string message) {
  return MakeError(ErrorCode::kBadRequest, std::move(message));
}

core::Error Violation(std::string message) {
  return MakeError(ErrorCode::kPlanViolation, std::move(message));
}

bool IsMetricName(std::string_view s) {
  if (s.empty() || s.size() > core::kConfigNameBytesMax) return false;
  if (s[0] < 'a' || s[0] > 'z') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

// An action id part: 1..kNameBytesMax bytes, no ASCII control characters or spaces.
bool IsActionPart(std::string_view s) {
  if (s.empty() || s.size() > core::kNameBytesMax) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u != 0x7f;
  });
}

bool IsActionId(std::string_view s) {
  const size_t colon = s.find(':');
  if (colon == std::string_view::npos) return false;
  return IsActionPart(s.substr(0, colon)) && IsActionPart(s.substr(colon + 1));
}

size_t CountLines(std::string_view s) { return 1 + std::count(s.begin(), s.end(), '\n'); }

// Rewrites every "<kWhenFile>:<line>:<column>" of a parser message into a location inside the
// condition text ("<where>:<line - 1>:<column>"; the wrapper puts the condition on line 2), or
// "<where>:end" for a location past the condition (the wrapper's closing "};").
std::string RelocateError(std::string_view message, std::string_view where, size_t cond_lines) {
  std::string out;
  size_t pos = 0;
  while (pos < message.size()) {
    const size_t hit = message.find(kWhenFile, pos);
    if (hit == std::string_view::npos) break;
    out.append(message.substr(pos, hit - pos));
    size_t p = hit + kWhenFile.size();
    auto number = [&](uint64_t* value) {
      if (p >= message.size() || message[p] != ':') return false;
      size_t q = p + 1;
      uint64_t v = 0;
      while (q < message.size() && std::isdigit(static_cast<unsigned char>(message[q])) &&
             q - p < 10) {
        v = v * 10 + static_cast<uint64_t>(message[q] - '0');
        ++q;
      }
      if (q == p + 1) return false;
      *value = v;
      p = q;
      return true;
    };
    uint64_t line = 0;
    uint64_t column = 0;
    if (number(&line) && number(&column)) {
      if (line >= 2 && line - 1 <= cond_lines) {
        out += std::string(where) + ":" + std::to_string(line - 1) + ":" + std::to_string(column);
      } else {
        out += std::string(where) + ":end";
      }
    } else {
      out += std::string(where);
      p = hit + kWhenFile.size();
    }
    pos = p;
  }
  out.append(message.substr(std::min(pos, message.size())));
  return out;
}

core::Result<std::shared_ptr<const policy::PolicySet>> ParseCondition(const std::string& cond,
                                                                      const std::string& where) {
  std::string text(kWhenPrefix);
  text += cond;
  // The condition ends on its own line, so a `//` comment in it cannot swallow the "};".
  text += "\n};";
  auto set = policy::PolicySet::Parse(text, kWhenFile);
  if (!set.ok()) {
    return BadRequest(RelocateError(set.error().message, where, CountLines(cond)));
  }
  // The text must stay one condition of one policy: "true }; permit(...) when { true" or
  // "true } unless { false" would otherwise smuggle in more.
  if (set->size() != 1 || set->policies()[0].conditions.size() != 1 ||
      !set->policies()[0].annotations.empty()) {
    return BadRequest(where + ": must be a single Cedar condition (no braces closing it)");
  }
  return std::make_shared<const policy::PolicySet>(std::move(set).value());
}

core::Status CheckOnly(const Json& object, std::initializer_list<std::string_view> allowed,
                       const std::string& where) {
  for (const Json::Member& m : object.as_object()) {
    if (std::find(allowed.begin(), allowed.end(), m.first) == allowed.end()) {
      std::string name = m.first.size() > 64 ? m.first.substr(0, 64) + "..." : m.first;
      return BadRequest(where + ": unknown member '" + name + "'");
    }
  }
  return core::OkStatus();
}

core::Result<PlanStep> ParseStep(const Json& j, size_t index) {
  const std::string where = "steps[" + std::to_string(index) + "]";
  if (!j.is_object()) return BadRequest(where + ": must be an object");
  MANDATE_RETURN_IF_ERROR(CheckOnly(j, {"action", "when", "max_count"}, where));
  PlanStep step;
  const Json* action = j.Find("action");
  if (action == nullptr) return BadRequest(where + ".action: required");
  if (!action->is_string() || !IsActionId(action->as_string())) {
    return BadRequest(where + ".action: must be \"<upstream>:<tool>\" (each part 1 to " +
                      std::to_string(core::kNameBytesMax) + " bytes, no spaces)");
  }
  step.action = action->as_string();
  if (const Json* when = j.Find("when"); when != nullptr) {
    if (!when->is_string()) return BadRequest(where + ".when: must be a string");
    if (when->as_string().empty()) return BadRequest(where + ".when: must not be empty");
    if (when->as_string().size() > core::kPlanConditionBytesMax) {
      return BadRequest(where + ".when: longer than " +
                        std::to_string(core::kPlanConditionBytesMax) + " bytes");
    }
    step.when = when->as_string();
    MANDATE_ASSIGN_OR_RETURN(step.condition, ParseCondition(step.when, where + ".when"));
  }
  if (const Json* count = j.Find("max_count"); count != nullptr) {
    if (!count->is_int() || count->as_int() < 1 || count->as_int() > core::kPlanStepCountMax) {
      return BadRequest(where + ".max_count: must be an integer from 1 to " +
                        std::to_string(core::kPlanStepCountMax));
    }
    step.max_count = count->as_int();
  }
  return step;
}

int64_t SatAdd(int64_t a, int64_t b) {
  if (b > 0 && a > std::numeric_limits<int64_t>::max() - b) {
    return std::numeric_limits<int64_t>::max();
  }
  return a + b;
}

bool ValidField(std::string_view s) {
  return !s.empty() && s.size() <= core::kPlanFieldBytesMax && core::IsValidUtf8(s);
}

}  // namespace

core::Result<PlanSpec> ParsePlan(const Json& document) {
  if (!document.is_object()) return BadRequest("plan: must be a JSON object");
  MANDATE_RETURN_IF_ERROR(CheckOnly(document, {"steps", "budget", "ttl_seconds"}, "plan"));
  PlanSpec spec;
  const Json* steps = document.Find("steps");
  if (steps == nullptr) return BadRequest("steps: required");
  if (!steps->is_array()) return BadRequest("steps: must be an array");
  if (steps->as_array().empty()) return BadRequest("steps: must not be empty");
  if (steps->as_array().size() > core::kPlanStepsMax) {
    return BadRequest("steps: more than " + std::to_string(core::kPlanStepsMax) + " steps");
  }
  for (size_t i = 0; i < steps->as_array().size(); ++i) {
    MANDATE_ASSIGN_OR_RETURN(PlanStep step, ParseStep(steps->as_array()[i], i));
    spec.steps.push_back(std::move(step));
  }
  if (const Json* budget = document.Find("budget"); budget != nullptr) {
    if (!budget->is_object()) return BadRequest("budget: must be an object");
    if (budget->as_object().empty()) return BadRequest("budget: must not be empty");
    if (budget->as_object().size() > core::kPlanBudgetMetricsMax) {
      return BadRequest("budget: more than " + std::to_string(core::kPlanBudgetMetricsMax) +
                        " metrics");
    }
    for (const Json::Member& m : budget->as_object()) {
      if (!IsMetricName(m.first)) {
        return BadRequest("budget: metric names are [a-z][a-z0-9_]* of at most " +
                          std::to_string(core::kConfigNameBytesMax) + " bytes");
      }
      if (!m.second.is_int() || m.second.as_int() < 0) {
        return BadRequest("budget." + m.first + ": must be an integer >= 0");
      }
      spec.budget.emplace_back(m.first, m.second.as_int());
    }
  }
  spec.ttl_seconds = core::kPlanTtlSecondsMax;
  if (const Json* ttl = document.Find("ttl_seconds"); ttl != nullptr) {
    if (!ttl->is_int() || ttl->as_int() < 1 || ttl->as_int() > core::kPlanTtlSecondsMax) {
      return BadRequest("ttl_seconds: must be an integer from 1 to " +
                        std::to_string(core::kPlanTtlSecondsMax));
    }
    spec.ttl_seconds = ttl->as_int();
  }
  return spec;
}

std::string_view PlanStateName(PlanState state) {
  switch (state) {
    case PlanState::kPendingApproval:
      return "pending_approval";
    case PlanState::kActive:
      return "active";
    case PlanState::kRejected:
      return "rejected";
    case PlanState::kSuperseded:
      return "superseded";
    case PlanState::kExpired:
      return "expired";
  }
  return "unknown";
}

// --- PlanBook ----------------------------------------------------------------------------------

struct PlanBook::Entry {
  std::string id;
  uint64_t seq = 0;
  PlanOwner owner;
  // Immutable after Submit, so Admit may read it outside mu_.
  std::shared_ptr<const PlanSpec> spec;
  bool auto_approved = false;
  int64_t created_at = 0;
  int64_t expires_at = 0;
  // Guarded by mu_:
  PlanState state = PlanState::kPendingApproval;
  std::vector<int64_t> used;         // per step; Invariant: used[i] <= steps[i].max_count
  std::vector<int64_t> budget_used;  // per envelope metric; Invariant: <= its cap
  std::string superseded_by;
};

PlanBook::PlanBook(const core::Clock& clock, PlanEventSink on_event)
    : clock_(clock), on_event_(std::move(on_event)) {}

PlanBook::~PlanBook() = default;

std::shared_ptr<PlanBook::Entry> PlanBook::FindLocked(std::string_view id) const {
  auto it = by_id_.find(std::string(id));
  return it == by_id_.end() ? nullptr : it->second;
}

void PlanBook::RefreshLocked(Entry& e, int64_t now) const {
  if ((e.state == PlanState::kActive || e.state == PlanState::kPendingApproval) &&
      now >= e.expires_at) {
    e.state = PlanState::kExpired;
  }
}

// Forgets one plan to make room: the oldest that no longer governs its session (the current
// plan of `replacing_sid` is about to be superseded, so it counts as such), or whose session can
// no longer hold a valid token. False when none qualifies.
bool PlanBook::MakeRoomLocked(int64_t now, std::string_view replacing_sid) {
  const int64_t session_gone_micros =
      (core::kTokenTtlSecondsMax + core::kTokenClockSkewSeconds) * kMicros;
  std::optional<uint64_t> victim;
  for (const auto& [seq, id] : by_seq_) {
    const Entry& e = *by_id_.at(id);
    auto cur = current_by_sid_.find(e.owner.sid);
    const bool current =
        cur != current_by_sid_.end() && cur->second == e.id && e.owner.sid != replacing_sid;
    if (!current || now >= SatAdd(e.expires_at, session_gone_micros)) {
      victim = seq;
      break;
    }
  }
  if (!victim) return false;
  const std::string id = by_seq_.at(*victim);
  const std::shared_ptr<Entry> e = by_id_.at(id);
  auto cur = current_by_sid_.find(e->owner.sid);
  if (cur != current_by_sid_.end() && cur->second == id) current_by_sid_.erase(cur);
  by_seq_.erase(*victim);
  by_id_.erase(id);
  return true;
}

Json PlanBook::ToJsonLocked(const Entry& e) const {
  Json steps = Json::MakeArray();
  for (size_t i = 0; i < e.spec->steps.size(); ++i) {
    const PlanStep& s = e.spec->steps[i];
    Json step = Json::MakeObject();
    step.Set("action", s.action);
    step.Set("when", s.when.empty() ? Json() : Json(s.when));
    step.Set("max_count", s.max_count);
    step.Set("approval_group", s.approval_group.empty() ? Json() : Json(s.approval_group));
    step.Set("used", e.used[i]);
    steps.Push(std::move(step));
  }
  Json budget = Json::MakeObject();
  for (size_t i = 0; i < e.spec->budget.size(); ++i) {
    Json b = Json::MakeObject();
    b.Set("limit", e.spec->budget[i].second);
    b.Set("used", e.budget_used[i]);
    budget.Set(e.spec->budget[i].first, std::move(b));
  }
  Json v = Json::MakeObject();
  v.Set("plan", e.id);
  v.Set("state", PlanStateName(e.state));
  v.Set("sid", e.owner.sid);
  v.Set("run", e.owner.run);
  v.Set("agent", e.owner.agent);
  v.Set("human", e.owner.human);
  v.Set("steps", std::move(steps));
  v.Set("budget", std::move(budget));
  v.Set("ttl_seconds", e.spec->ttl_seconds);
  v.Set("created_at", e.created_at);
  v.Set("expires_at", e.expires_at);
  v.Set("auto_approved", e.auto_approved);
  v.Set("superseded_by", e.superseded_by.empty() ? Json() : Json(e.superseded_by));
  return v;
}

Json PlanBook::DecidedEventLocked(const Entry& e, std::string_view decision, std::string_view by,
                                  std::string_view reason) const {
  Json ev = Json::MakeObject();
  ev.Set("type", "plan.decided");
  ev.Set("plan", e.id);
  ev.Set("sid", e.owner.sid);
  ev.Set("run", e.owner.run);
  ev.Set("agent", e.owner.agent);
  ev.Set("human", e.owner.human);
  ev.Set("decision", decision);
  ev.Set("by", by);
  ev.Set("reason", reason);
  ev.Set("superseded_by", e.superseded_by.empty() ? Json() : Json(e.superseded_by));
  return ev;
}

void PlanBook::Deliver(bool have_events) {
  if (!have_events) return;
  // One deliverer at a time, draining the outbox in order: events reach on_event_ in the order
  // they were queued under mu_, whichever thread queued them, each exactly once.
  std::lock_guard<std::mutex> deliver(deliver_mu_);
  for (;;) {
    std::vector<Json> batch;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (outbox_.empty()) break;
      batch.swap(outbox_);
    }
    if (on_event_) {
      for (const Json& ev : batch) on_event_(ev);
    }
  }
}

core::Result<std::string> PlanBook::Submit(const PlanOwner& owner, PlanSpec spec,
                                           bool auto_approved) {
  for (const auto& [name, value] : {std::pair<const char*, const std::string*>{"sid", &owner.sid},
                                    {"run", &owner.run},
                                    {"agent", &owner.agent},
                                    {"human", &owner.human}}) {
    if (!ValidField(*value)) {
      return BadRequest(std::string("plan owner: ") + name + " must be 1 to " +
                        std::to_string(core::kPlanFieldBytesMax) + " bytes of UTF-8");
    }
  }
  if (spec.steps.empty()) return BadRequest("plan: no steps");
  if (spec.ttl_seconds <= 0 || spec.ttl_seconds > core::kPlanTtlSecondsMax) {
    spec.ttl_seconds = core::kPlanTtlSecondsMax;
  }
  auto e = std::make_shared<Entry>();
  e->id = core::NewId("pln");
  e->owner = owner;
  e->auto_approved = auto_approved;
  e->used.assign(spec.steps.size(), 0);
  e->budget_used.assign(spec.budget.size(), 0);
  e->spec = std::make_shared<const PlanSpec>(std::move(spec));
  e->state = auto_approved ? PlanState::kActive : PlanState::kPendingApproval;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int64_t now = clock_.NowUnixMicros();
    // The session's current plan (kept alive here even if forgotten to make room below).
    std::shared_ptr<Entry> old;
    if (auto cur = current_by_sid_.find(owner.sid); cur != current_by_sid_.end()) {
      old = FindLocked(cur->second);
      if (old) RefreshLocked(*old, now);
    }
    while (by_id_.size() >= core::kPlansMax) {
      if (!MakeRoomLocked(now, owner.sid)) {
        return MakeError(
            ErrorCode::kConflict,
            "too many plans (" + std::to_string(core::kPlansMax) + "); try again later");
      }
    }
    e->created_at = now;
    e->expires_at = SatAdd(now, e->spec->ttl_seconds * kMicros);
    e->seq = next_seq_++;

    const bool supersedes =
        old && (old->state == PlanState::kActive || old->state == PlanState::kPendingApproval);

    Json steps = Json::MakeArray();
    for (const PlanStep& s : e->spec->steps) {
      Json step = Json::MakeObject();
      step.Set("action", s.action);
      step.Set("when", s.when.empty() ? Json() : Json(s.when));
      step.Set("max_count", s.max_count);
      step.Set("approval_group", s.approval_group.empty() ? Json() : Json(s.approval_group));
      steps.Push(std::move(step));
    }
    Json budget = Json::MakeObject();
    for (const auto& [metric, cap] : e->spec->budget) budget.Set(metric, cap);
    Json ev = Json::MakeObject();
    ev.Set("type", "plan.submitted");
    ev.Set("plan", e->id);
    ev.Set("sid", owner.sid);
    ev.Set("run", owner.run);
    ev.Set("agent", owner.agent);
    ev.Set("human", owner.human);
    ev.Set("steps", std::move(steps));
    ev.Set("budget", std::move(budget));
    ev.Set("ttl_seconds", e->spec->ttl_seconds);
    ev.Set("created_at", e->created_at);
    ev.Set("expires_at", e->expires_at);
    ev.Set("auto_approved", auto_approved);
    ev.Set("supersedes", supersedes ? Json(old->id) : Json());
    outbox_.push_back(std::move(ev));

    if (supersedes) {
      old->state = PlanState::kSuperseded;
      old->superseded_by = e->id;
      outbox_.push_back(DecidedEventLocked(*old, "superseded", "", ""));
    }
    if (auto_approved) outbox_.push_back(DecidedEventLocked(*e, "approved", "auto", ""));

    current_by_sid_[owner.sid] = e->id;
    by_seq_.emplace(e->seq, e->id);
    by_id_.emplace(e->id, e);
  }
  Deliver(true);
  return e->id;
}

core::Status PlanBook::Decide(std::string_view id, std::string_view approver,
                              std::string_view reason, bool approve) {
  if (!ValidField(approver)) {
    return BadRequest("approver must be 1 to " + std::to_string(core::kPlanFieldBytesMax) +
                      " bytes of UTF-8");
  }
  if (reason.size() > core::kPlanFieldBytesMax || !core::IsValidUtf8(reason)) {
    return BadRequest("reason must be at most " + std::to_string(core::kPlanFieldBytesMax) +
                      " bytes of UTF-8");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::shared_ptr<Entry> e = FindLocked(id);
    if (!e) return MakeError(ErrorCode::kNotFound, "no plan " + std::string(id));
    RefreshLocked(*e, clock_.NowUnixMicros());
    if (e->state != PlanState::kPendingApproval) {
      return MakeError(ErrorCode::kConflict, "plan " + e->id + " is " +
                                                 std::string(PlanStateName(e->state)) +
                                                 ", not pending_approval");
    }
    e->state = approve ? PlanState::kActive : PlanState::kRejected;
    outbox_.push_back(
        DecidedEventLocked(*e, approve ? "approved" : "rejected", approver, approve ? "" : reason));
  }
  Deliver(true);
  return core::OkStatus();
}

core::Status PlanBook::Activate(std::string_view id, std::string_view approver) {
  return Decide(id, approver, "", true);
}

core::Status PlanBook::Reject(std::string_view id, std::string_view approver,
                              std::string_view reason) {
  return Decide(id, approver, reason, false);
}

core::Result<StepMatch> PlanBook::Admit(std::string_view sid, std::string_view action_id,
                                        const Json& args,
                                        const std::map<std::string, int64_t>& estimate) {
  for (const auto& [metric, amount] : estimate) {
    if (amount < 0) return BadRequest("plan: negative estimate for " + metric);
  }
  std::shared_ptr<Entry> e;
  std::shared_ptr<const PlanSpec> spec;
  std::string agent;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto cur = current_by_sid_.find(std::string(sid));
    if (cur == current_by_sid_.end()) return StepMatch{};  // no plan: opt-in
    e = FindLocked(cur->second);
    MANDATE_CHECK(e != nullptr);
    spec = e->spec;
    agent = e->owner.agent;
  }

  // Conditions are evaluated outside mu_ (each is bounded by kPolicyEvalStepsMax).
  // holds[i]: step i names this action and its condition (if any) holds; why[i]: why not.
  const size_t n = spec->steps.size();
  std::vector<bool> holds(n, false);
  std::vector<std::string> why(n);
  bool action_in_plan = false;
  std::optional<core::Result<policy::Value>> context;
  for (size_t i = 0; i < n; ++i) {
    const PlanStep& step = spec->steps[i];
    if (step.action != action_id) continue;
    action_in_plan = true;
    if (!step.condition) {
      holds[i] = true;
      continue;
    }
    if (!context) {
      auto value = policy::ValueFromPlainJson(args);
      if (value.ok()) {
        policy::Value::RecordFields fields;
        fields.emplace("args", std::move(value).value());
        context.emplace(policy::Value::Record(std::move(fields)));
      } else {
        context.emplace(std::move(value).error());
      }
    }
    if (!context->ok()) {
      why[i] = "arguments are not Cedar values: " + context->error().message;
      continue;
    }
    policy::Request request{policy::EntityUid{"Agent", agent},
                            policy::EntityUid{"Action", std::string(action_id)},
                            policy::EntityUid{"Plan", e->id}, context->value()};
    const policy::Entities no_entities;
    policy::Response r = policy::IsAuthorized(*step.condition, request, no_entities);
    if (r.allow && r.errors.empty()) {
      holds[i] = true;
    } else if (!r.errors.empty()) {
      why[i] = r.errors.front();
    }
  }

  std::lock_guard<std::mutex> lock(mu_);
  // The plan may have been superseded, decided or forgotten while conditions were evaluated:
  // decide against the session's current plan, and start over when it changed.
  auto cur = current_by_sid_.find(std::string(sid));
  if (cur == current_by_sid_.end()) return StepMatch{};
  if (cur->second != e->id) {
    return Violation("plan " + e->id + " was replaced while this call was matched; retry");
  }
  RefreshLocked(*e, clock_.NowUnixMicros());
  switch (e->state) {
    case PlanState::kActive:
      break;
    case PlanState::kPendingApproval:
      return Violation("plan " + e->id + " awaiting approval");
    case PlanState::kRejected:
      return Violation("plan " + e->id + " rejected; submit a new plan");
    case PlanState::kExpired:
      return Violation("plan " + e->id + " expired; submit a new plan");
    case PlanState::kSuperseded:
      return Violation("plan " + e->id + " superseded");
  }
  if (!action_in_plan) {
    return Violation("action " + std::string(action_id) + " is not in plan " + e->id);
  }
  std::string reasons;
  std::optional<size_t> chosen;
  for (size_t i = 0; i < n; ++i) {
    if (spec->steps[i].action != action_id) continue;
    std::string reason;
    if (!holds[i]) {
      reason = "condition not met for step " + std::to_string(i);
      if (!why[i].empty()) reason += " (" + why[i] + ")";
    } else if (e->used[i] >= spec->steps[i].max_count) {
      reason = "step " + std::to_string(i) + " exhausted (used " + std::to_string(e->used[i]) +
               " of " + std::to_string(spec->steps[i].max_count) + ")";
    } else {
      chosen = i;
      break;
    }
    if (!reasons.empty()) reasons += "; ";
    reasons += reason;
  }
  if (!chosen) return Violation("plan " + e->id + ": " + reasons);

  StepMatch match;
  match.planned = true;
  match.plan_id = e->id;
  match.step = *chosen;
  match.max_count = spec->steps[*chosen].max_count;
  match.approval_group = spec->steps[*chosen].approval_group;
  // The envelope: every metric must have room before anything is charged.
  std::vector<int64_t> charge(spec->budget.size(), 0);
  for (size_t m = 0; m < spec->budget.size(); ++m) {
    const auto& [metric, cap] = spec->budget[m];
    int64_t amount = 0;
    if (metric == "calls") {
      amount = 1;
    } else if (auto it = estimate.find(metric); it != estimate.end()) {
      amount = it->second;
    }
    if (amount > cap - e->budget_used[m]) {
      return Violation("plan " + e->id + ": budget " + metric + " exhausted (used " +
                       std::to_string(e->budget_used[m]) + " of " + std::to_string(cap) +
                       (metric == "calls" ? "" : ", this call needs " + std::to_string(amount)) +
                       ")");
    }
    charge[m] = amount;
  }
  for (size_t m = 0; m < spec->budget.size(); ++m) {
    e->budget_used[m] += charge[m];
    match.charged.emplace_back(spec->budget[m].first, charge[m]);
  }
  match.used = ++e->used[*chosen];
  MANDATE_CHECK(e->used[*chosen] <= spec->steps[*chosen].max_count);
  return match;
}

void PlanBook::Release(const StepMatch& match) {
  if (!match.planned) return;
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<Entry> e = FindLocked(match.plan_id);
  if (!e || match.step >= e->used.size()) return;
  if (e->used[match.step] > 0) --e->used[match.step];
  for (const auto& [metric, amount] : match.charged) {
    for (size_t m = 0; m < e->spec->budget.size(); ++m) {
      if (e->spec->budget[m].first == metric) {
        e->budget_used[m] = std::max<int64_t>(0, e->budget_used[m] - amount);
      }
    }
  }
}

Json PlanBook::Get(std::string_view id) {
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<Entry> e = FindLocked(id);
  if (!e) return Json();
  RefreshLocked(*e, clock_.NowUnixMicros());
  return ToJsonLocked(*e);
}

Json PlanBook::ForSession(std::string_view sid) {
  std::lock_guard<std::mutex> lock(mu_);
  auto cur = current_by_sid_.find(std::string(sid));
  if (cur == current_by_sid_.end()) return Json();
  std::shared_ptr<Entry> e = FindLocked(cur->second);
  MANDATE_CHECK(e != nullptr);
  RefreshLocked(*e, clock_.NowUnixMicros());
  return ToJsonLocked(*e);
}

size_t PlanBook::size() {
  std::lock_guard<std::mutex> lock(mu_);
  return by_id_.size();
}

}  // namespace mandate::plan
