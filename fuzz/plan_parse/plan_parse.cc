// Fuzz target: plan::ParsePlan on arbitrary bytes (the body of POST /v1/plans, which any agent
// holding a token can send), then the plan's admission of a call. Invariants (a violation
// traps): a document that is not JSON or not a plan is refused with kBadRequest, never
// anything else; a parsed plan has 1..kPlanStepsMax steps with counts in 1..kPlanStepCountMax,
// at most kPlanBudgetMetricsMax envelope metrics and a ttl in 1..kPlanTtlSecondsMax; once
// submitted, matching a call (whose arguments are the document itself, so conditions meet
// every shape of value) either admits it on a step of the same action within its count, or
// refuses it with kPlanViolation.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "mandate/core/clock.h"
#include "mandate/core/error_code.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"
#include "mandate/plan/plan.h"

namespace {

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using mandate::core::ErrorCode;
  namespace limits = mandate::core;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  auto doc = mandate::core::Json::Parse(input);
  if (!doc.ok()) return 0;
  auto spec = mandate::plan::ParsePlan(*doc);
  if (!spec.ok()) {
    Check(spec.error().code == ErrorCode::kBadRequest);
    return 0;
  }
  Check(!spec->steps.empty() && spec->steps.size() <= limits::kPlanStepsMax);
  Check(spec->budget.size() <= limits::kPlanBudgetMetricsMax);
  Check(spec->ttl_seconds >= 1 && spec->ttl_seconds <= limits::kPlanTtlSecondsMax);
  for (const auto& step : spec->steps) {
    Check(step.max_count >= 1 && step.max_count <= limits::kPlanStepCountMax);
    Check(step.when.empty() == (step.condition == nullptr));
  }

  static mandate::core::FakeClock clock;
  mandate::plan::PlanBook book(clock);
  const std::vector<std::string> actions = [&] {
    std::vector<std::string> a;
    for (const auto& step : spec->steps) a.push_back(step.action);
    return a;
  }();
  auto id = book.Submit({"ses_f", "ses_f", "agent", "human"}, std::move(spec).value(), true);
  Check(id.ok());
  for (const std::string& action : actions) {
    auto match = book.Admit("ses_f", action, *doc);
    if (!match.ok()) {
      Check(match.error().code == ErrorCode::kPlanViolation);
      continue;
    }
    Check(match->planned && match->plan_id == *id && match->step < actions.size());
    Check(actions[match->step] == action && match->used >= 1 && match->used <= match->max_count);
    book.Release(*match);
  }
  return 0;
}
