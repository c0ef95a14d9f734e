#include "mandate/plan/plan.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/doc_blocks_test_util.h"
#include "mandate/core/clock.h"
#include "mandate/core/limits.h"

namespace mandate::plan {
namespace {

using core::ErrorCode;
using core::Json;

// The member `key` of `j`, or null.
const Json& At(const Json& j, std::string_view key) {
  static const Json kNull;
  const Json* v = j.Find(key);
  return v != nullptr ? *v : kNull;
}

bool Contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

Json Doc(std::string_view text) {
  auto j = Json::Parse(text);
  EXPECT_TRUE(j.ok()) << text;
  return j.ok() ? std::move(j).value() : Json();
}

PlanSpec Spec(std::string_view text) {
  auto spec = ParsePlan(Doc(text));
  EXPECT_TRUE(spec.ok()) << spec.error().message;
  return spec.ok() ? std::move(spec).value() : PlanSpec{};
}

// The kBadRequest message ParsePlan gives for `text` ("" when it parses).
std::string ParseError(std::string_view text) {
  auto spec = ParsePlan(Doc(text));
  if (spec.ok()) return "";
  EXPECT_EQ(spec.error().code, ErrorCode::kBadRequest);
  return spec.error().message;
}

PlanOwner Owner(std::string sid = "ses_a") {
  return PlanOwner{std::move(sid), "ses_root", "bot", "alice"};
}

struct Recorder {
  std::mutex mu;
  std::vector<Json> events;
  PlanEventSink Sink() {
    return [this](const Json& ev) {
      std::lock_guard<std::mutex> lock(mu);
      events.push_back(ev);
    };
  }
};

constexpr std::string_view kPay =
    R"({"steps":[{"action":"bank:pay","when":"context.args.amount <= 100 && context.args.currency == \"EUR\"","max_count":2},{"action":"jira:get_issue","max_count":3}]})";

// --- ParsePlan ---------------------------------------------------------------------------------

TEST(ParsePlanTest, ParsesStepsBudgetAndTtl) {
  PlanSpec spec = Spec(
      R"({"steps":[{"action":"bank:pay","when":"context.args.amount <= 100","max_count":5},
                   {"action":"jira:get_issue"}],
          "budget":{"calls":4,"spend_usd_micros":100},"ttl_seconds":600})");
  ASSERT_EQ(spec.steps.size(), 2u);
  EXPECT_EQ(spec.steps[0].action, "bank:pay");
  EXPECT_EQ(spec.steps[0].max_count, 5);
  EXPECT_NE(spec.steps[0].condition, nullptr);
  EXPECT_EQ(spec.steps[1].max_count, 1);  // the default
  EXPECT_EQ(spec.steps[1].condition, nullptr);
  ASSERT_EQ(spec.budget.size(), 2u);
  EXPECT_EQ(spec.budget[0], (std::pair<std::string, int64_t>{"calls", 4}));
  EXPECT_EQ(spec.ttl_seconds, 600);
  EXPECT_EQ(Spec(R"({"steps":[{"action":"a:b"}]})").ttl_seconds, core::kPlanTtlSecondsMax);
}

// docs/plans.md's submission example (its first ```json block) is a plan this parser takes.
TEST(ParsePlanTest, ParsesTheDocumentedExample) {
  const auto blocks = core::testing::FencedBlocks("docs/plans.md", "json");
  ASSERT_GE(blocks.size(), 1u) << "docs/plans.md has no ```json example any more";
  SCOPED_TRACE("docs/plans.md, the json block at line " + std::to_string(blocks[0].line));
  PlanSpec spec = Spec(blocks[0].text);
  ASSERT_EQ(spec.steps.size(), 2u);
  EXPECT_EQ(spec.steps[1].action, "payments:refund");
  EXPECT_NE(spec.steps[1].condition, nullptr);
  EXPECT_EQ(spec.ttl_seconds, 900);
}

TEST(ParsePlanTest, RejectsBadDocumentAndSteps) {
  EXPECT_TRUE(Contains(ParseError("[]"), "plan: must be a JSON object"));
  EXPECT_TRUE(Contains(ParseError(R"({"steps":[{"action":"a:b"}],"extra":1})"),
                       "plan: unknown member 'extra'"));
  EXPECT_TRUE(Contains(ParseError("{}"), "steps: required"));
  EXPECT_TRUE(Contains(ParseError(R"({"steps":{}})"), "steps: must be an array"));
  EXPECT_TRUE(Contains(ParseError(R"({"steps":[]})"), "steps: must not be empty"));
  std::string many = R"({"steps":[)";
  for (size_t i = 0; i <= core::kPlanStepsMax; ++i)
    many += std::string(i ? "," : "") + R"({"action":"a:b"})";
  EXPECT_TRUE(Contains(ParseError(many + "]}"), "steps: more than"));
  EXPECT_TRUE(
      Contains(ParseError(R"({"steps":[{"action":"a:b"},3]})"), "steps[1]: must be an object"));
  EXPECT_TRUE(Contains(ParseError(R"({"steps":[{"action":"a:b","count":2}]})"),
                       "steps[0]: unknown member 'count'"));
}

TEST(ParsePlanTest, RejectsBadAction) {
  EXPECT_TRUE(Contains(ParseError(R"({"steps":[{"max_count":1}]})"), "steps[0].action: required"));
  for (const char* bad :
       {R"(1)", R"("nocolon")", R"(":tool")", R"("up:")", R"("a b:c")", R"("a:b c")"}) {
    EXPECT_TRUE(Contains(ParseError(std::string(R"({"steps":[{"action":)") + bad + "}]}"),
                         "steps[0].action: must be \"<upstream>:<tool>\""))
        << bad;
  }
  EXPECT_EQ(ParseError(R"({"steps":[{"action":"up:ns:tool"}]})"), "");  // ':' allowed in tool
}

TEST(ParsePlanTest, RejectsBadMaxCount) {
  for (const char* bad : {"0", "-1", "1.5", "\"2\"", "10001"}) {
    EXPECT_TRUE(
        Contains(ParseError(std::string(R"({"steps":[{"action":"a:b","max_count":)") + bad + "}]}"),
                 "steps[0].max_count: must be an integer from 1 to 10000"))
        << bad;
  }
}

TEST(ParsePlanTest, RejectsBadWhen) {
  EXPECT_TRUE(Contains(ParseError(R"({"steps":[{"action":"a:b","when":1}]})"),
                       "steps[0].when: must be a string"));
  EXPECT_TRUE(Contains(ParseError(R"({"steps":[{"action":"a:b","when":""}]})"),
                       "steps[0].when: must not be empty"));
  std::string long_cond(core::kPlanConditionBytesMax + 1, 't');
  EXPECT_TRUE(Contains(ParseError(R"({"steps":[{"action":"a:b","when":")" + long_cond + "\"}]}"),
                       "steps[0].when: longer than"));
}

TEST(ParsePlanTest, RejectsConditionThatDoesNotParseWithItsLocation) {
  // The error is located inside the condition text (line 1, the column of the bad token).
  std::string e = ParseError(
      R"({"steps":[{"action":"a:b"},{"action":"a:c","when":"context.args.amount <= <= 3"}]})");
  EXPECT_TRUE(Contains(e, "steps[1].when:1:24: ")) << e;
  EXPECT_FALSE(Contains(e, "plan-step-when")) << e;
  // An incomplete condition is reported at its end.
  e = ParseError(R"({"steps":[{"action":"a:c","when":"context.args.amount <="}]})");
  EXPECT_TRUE(Contains(e, "steps[0].when:")) << e;
  // Braces cannot smuggle in another condition or policy.
  e = ParseError(R"({"steps":[{"action":"a:c","when":"true } unless { false"}]})");
  EXPECT_TRUE(Contains(e, "steps[0].when: must be a single Cedar condition")) << e;
  e = ParseError(
      R"({"steps":[{"action":"a:c","when":"true }; permit(principal, action, resource) when { true"}]})");
  EXPECT_TRUE(Contains(e, "steps[0].when")) << e;
  EXPECT_FALSE(Contains(e, "plan-step-when")) << e;
}

TEST(ParsePlanTest, RejectsBadBudgetAndTtl) {
  EXPECT_TRUE(Contains(ParseError(R"({"steps":[{"action":"a:b"}],"budget":3})"),
                       "budget: must be an object"));
  EXPECT_TRUE(Contains(ParseError(R"({"steps":[{"action":"a:b"}],"budget":{}})"),
                       "budget: must not be empty"));
  EXPECT_TRUE(Contains(ParseError(R"({"steps":[{"action":"a:b"}],"budget":{"Calls":1}})"),
                       "budget: metric names"));
  EXPECT_TRUE(Contains(ParseError(R"({"steps":[{"action":"a:b"}],"budget":{"calls":-1}})"),
                       "budget.calls: must be an integer >= 0"));
  EXPECT_TRUE(Contains(ParseError(R"({"steps":[{"action":"a:b"}],"ttl_seconds":0})"),
                       "ttl_seconds: must be an integer from 1 to"));
  EXPECT_TRUE(Contains(ParseError(R"({"steps":[{"action":"a:b"}],"ttl_seconds":86401})"),
                       "ttl_seconds: must be an integer from 1 to"));
}

// --- PlanBook ----------------------------------------------------------------------------------

TEST(PlanBookTest, SessionWithoutPlanIsAdmitted) {
  core::FakeClock clock;
  PlanBook book(clock);
  auto m = book.Admit("ses_a", "bank:pay", Json::MakeObject());
  ASSERT_TRUE(m.ok());
  EXPECT_FALSE(m->planned);
  EXPECT_TRUE(book.ForSession("ses_a").is_null());
  // Another session's plan does not bind this one.
  ASSERT_TRUE(book.Submit(Owner("ses_b"), Spec(kPay), true).ok());
  EXPECT_TRUE(book.Admit("ses_a", "x:y", Json::MakeObject()).ok());
}

TEST(PlanBookTest, CallOutsideThePlanIsAPlanViolation) {
  core::FakeClock clock;
  PlanBook book(clock);
  auto id = book.Submit(Owner(), Spec(kPay), true);
  ASSERT_TRUE(id.ok());
  auto m = book.Admit("ses_a", "bank:refund", Json::MakeObject());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, ErrorCode::kPlanViolation);
  EXPECT_EQ(core::PublicCode(m.error().code), "plan_violation");
  EXPECT_EQ(core::HttpStatus(m.error().code), 403);
  EXPECT_TRUE(Contains(m.error().message, "action bank:refund is not in plan " + *id));
}

TEST(PlanBookTest, StepConditionBoundsArguments) {
  core::FakeClock clock;
  PlanBook book(clock);
  ASSERT_TRUE(book.Submit(Owner(), Spec(kPay), true).ok());
  auto ok = book.Admit("ses_a", "bank:pay", Doc(R"({"amount":100,"currency":"EUR"})"));
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_TRUE(ok->planned);
  EXPECT_EQ(ok->step, 0u);
  EXPECT_EQ(ok->used, 1);
  EXPECT_EQ(ok->max_count, 2);

  auto over = book.Admit("ses_a", "bank:pay", Doc(R"({"amount":101,"currency":"EUR"})"));
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code, ErrorCode::kPlanViolation);
  EXPECT_TRUE(Contains(over.error().message, "condition not met for step 0"))
      << over.error().message;
  // A condition that errors (missing argument) does not match: fail closed.
  auto missing = book.Admit("ses_a", "bank:pay", Doc(R"({"currency":"EUR"})"));
  ASSERT_FALSE(missing.ok());
  EXPECT_TRUE(Contains(missing.error().message, "condition not met for step 0 ("))
      << missing.error().message;
  // Arguments that are not Cedar values (a double) do not match a condition.
  auto dbl = book.Admit("ses_a", "bank:pay", Doc(R"({"amount":1.5,"currency":"EUR"})"));
  ASSERT_FALSE(dbl.ok());
  EXPECT_TRUE(Contains(dbl.error().message, "not Cedar values")) << dbl.error().message;
  // Refused calls consumed nothing.
  EXPECT_EQ(At(book.ForSession("ses_a"), "steps").as_array()[0].GetInt("used", -1), 1);
}

TEST(PlanBookTest, StepIsExhaustedAfterMaxCountAndLaterStepsStillMatch) {
  core::FakeClock clock;
  PlanBook book(clock);
  ASSERT_TRUE(book.Submit(Owner(), Spec(R"({"steps":[{"action":"a:b","max_count":1},
                                            {"action":"a:b","when":"context.args.x == 1","max_count":1}]})"),
                          true)
                  .ok());
  auto first = book.Admit("ses_a", "a:b", Doc(R"({"x":1})"));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->step, 0u);
  auto second = book.Admit("ses_a", "a:b", Doc(R"({"x":1})"));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->step, 1u);
  auto third = book.Admit("ses_a", "a:b", Doc(R"({"x":1})"));
  ASSERT_FALSE(third.ok());
  EXPECT_TRUE(Contains(third.error().message, "step 0 exhausted (used 1 of 1)"))
      << third.error().message;
  EXPECT_TRUE(Contains(third.error().message, "step 1 exhausted (used 1 of 1)"));
}

TEST(PlanBookTest, MaxCountIsExactUnder64Threads) {
  core::FakeClock clock;
  PlanBook book(clock);
  ASSERT_TRUE(
      book.Submit(
              Owner(),
              Spec(R"({"steps":[{"action":"a:b","when":"context.args.n >= 0","max_count":10}]})"),
              true)
          .ok());
  std::atomic<int> admitted{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 64; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 8; ++i) {
        Json args = Json::MakeObject();
        args.Set("n", t * 8 + i);
        auto m = book.Admit("ses_a", "a:b", args);
        if (m.ok()) {
          ++admitted;
        } else {
          EXPECT_EQ(m.error().code, ErrorCode::kPlanViolation);
          ++refused;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(admitted.load(), 10);
  EXPECT_EQ(refused.load(), 64 * 8 - 10);
  EXPECT_EQ(At(book.ForSession("ses_a"), "steps").as_array()[0].GetInt("used", -1), 10);
}

TEST(PlanBookTest, ReleaseGivesTheCountBack) {
  core::FakeClock clock;
  PlanBook book(clock);
  ASSERT_TRUE(
      book.Submit(Owner(), Spec(R"({"steps":[{"action":"a:b"}],"budget":{"calls":1}})"), true)
          .ok());
  auto m = book.Admit("ses_a", "a:b", Json::MakeObject());
  ASSERT_TRUE(m.ok());
  EXPECT_FALSE(book.Admit("ses_a", "a:b", Json::MakeObject()).ok());
  book.Release(*m);
  EXPECT_EQ(At(At(book.ForSession("ses_a"), "budget"), "calls").GetInt("used", -1), 0);
  EXPECT_TRUE(book.Admit("ses_a", "a:b", Json::MakeObject()).ok());
  book.Release(StepMatch{});  // an unplanned match is ignored
}

TEST(PlanBookTest, BudgetEnvelopeCapsThePlan) {
  core::FakeClock clock;
  PlanBook book(clock);
  ASSERT_TRUE(book.Submit(Owner(), Spec(R"({"steps":[{"action":"a:b","max_count":10}],
                                   "budget":{"calls":3,"spend_usd_micros":100}})"),
                          true)
                  .ok());
  EXPECT_TRUE(book.Admit("ses_a", "a:b", Json::MakeObject(), {{"spend_usd_micros", 60}}).ok());
  auto over = book.Admit("ses_a", "a:b", Json::MakeObject(), {{"spend_usd_micros", 41}});
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.error().code, ErrorCode::kPlanViolation);
  EXPECT_TRUE(Contains(over.error().message, "budget spend_usd_micros exhausted (used 60 of 100"))
      << over.error().message;
  EXPECT_TRUE(book.Admit("ses_a", "a:b", Json::MakeObject()).ok());
  EXPECT_TRUE(book.Admit("ses_a", "a:b", Json::MakeObject()).ok());
  auto calls = book.Admit("ses_a", "a:b", Json::MakeObject());
  ASSERT_FALSE(calls.ok());
  EXPECT_TRUE(Contains(calls.error().message, "budget calls exhausted (used 3 of 3)"));
  EXPECT_EQ(book.Admit("ses_a", "a:b", Json::MakeObject(), {{"x", -1}}).error().code,
            ErrorCode::kBadRequest);
}

TEST(PlanBookTest, PendingApprovalRefusesUntilActivated) {
  core::FakeClock clock;
  PlanBook book(clock);
  auto id = book.Submit(Owner(), Spec(kPay), false);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(book.Get(*id).GetString("state"), "pending_approval");
  auto m = book.Admit("ses_a", "jira:get_issue", Json::MakeObject());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, ErrorCode::kPlanViolation);
  EXPECT_TRUE(Contains(m.error().message, "awaiting approval"));
  ASSERT_TRUE(book.Activate(*id, "carol").ok());
  EXPECT_TRUE(book.Admit("ses_a", "jira:get_issue", Json::MakeObject()).ok());
  // Deciding twice, or an unknown plan.
  EXPECT_EQ(book.Activate(*id, "carol").error().code, ErrorCode::kConflict);
  EXPECT_EQ(book.Reject(*id, "carol", "").error().code, ErrorCode::kConflict);
  EXPECT_EQ(book.Activate("pln_nope", "carol").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(book.Activate(*id, "").error().code, ErrorCode::kBadRequest);
}

TEST(PlanBookTest, RejectedPlanKeepsRefusingUntilANewPlan) {
  core::FakeClock clock;
  PlanBook book(clock);
  auto id = book.Submit(Owner(), Spec(kPay), false);
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(book.Reject(*id, "carol", "too broad").ok());
  auto m = book.Admit("ses_a", "jira:get_issue", Json::MakeObject());
  ASSERT_FALSE(m.ok());
  EXPECT_TRUE(Contains(m.error().message, "rejected"));
  ASSERT_TRUE(book.Submit(Owner(), Spec(kPay), true).ok());
  EXPECT_TRUE(book.Admit("ses_a", "jira:get_issue", Json::MakeObject()).ok());
}

TEST(PlanBookTest, NewPlanSupersedesTheOld) {
  core::FakeClock clock;
  PlanBook book(clock);
  auto first = book.Submit(Owner(), Spec(R"({"steps":[{"action":"a:one"}]})"), true);
  ASSERT_TRUE(first.ok());
  auto second = book.Submit(Owner(), Spec(R"({"steps":[{"action":"a:two"}]})"), true);
  ASSERT_TRUE(second.ok());
  EXPECT_NE(*first, *second);
  Json old = book.Get(*first);
  EXPECT_EQ(old.GetString("state"), "superseded");
  EXPECT_EQ(old.GetString("superseded_by"), *second);
  EXPECT_EQ(book.ForSession("ses_a").GetString("plan"), *second);
  EXPECT_FALSE(book.Admit("ses_a", "a:one", Json::MakeObject()).ok());
  EXPECT_TRUE(book.Admit("ses_a", "a:two", Json::MakeObject()).ok());
  // Deciding a superseded plan is a conflict.
  EXPECT_EQ(book.Activate(*first, "carol").error().code, ErrorCode::kConflict);
}

TEST(PlanBookTest, ExpiredPlanRefusesFailClosed) {
  core::FakeClock clock;
  PlanBook book(clock);
  auto id = book.Submit(
      Owner(), Spec(R"({"steps":[{"action":"a:b","max_count":5}],"ttl_seconds":60})"), true);
  ASSERT_TRUE(id.ok());
  clock.AdvanceSeconds(59);
  EXPECT_TRUE(book.Admit("ses_a", "a:b", Json::MakeObject()).ok());
  clock.AdvanceSeconds(1);
  auto m = book.Admit("ses_a", "a:b", Json::MakeObject());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, ErrorCode::kPlanViolation);
  EXPECT_TRUE(Contains(m.error().message, "expired"));
  EXPECT_EQ(book.Get(*id).GetString("state"), "expired");
  // A pending plan that expires can no longer be approved.
  auto pending =
      book.Submit(Owner("ses_b"), Spec(R"({"steps":[{"action":"a:b"}],"ttl_seconds":1})"), false);
  ASSERT_TRUE(pending.ok());
  clock.AdvanceSeconds(1);
  EXPECT_EQ(book.Activate(*pending, "carol").error().code, ErrorCode::kConflict);
  // A new plan lifts it.
  ASSERT_TRUE(book.Submit(Owner(), Spec(R"({"steps":[{"action":"a:b"}]})"), true).ok());
  EXPECT_TRUE(book.Admit("ses_a", "a:b", Json::MakeObject()).ok());
}

TEST(PlanBookTest, SubmitValidatesOwner) {
  core::FakeClock clock;
  PlanBook book(clock);
  PlanOwner o = Owner();
  o.human = "";
  EXPECT_EQ(book.Submit(o, Spec(kPay), true).error().code, ErrorCode::kBadRequest);
  EXPECT_EQ(book.Submit(Owner(), PlanSpec{}, true).error().code, ErrorCode::kBadRequest);
  EXPECT_EQ(book.size(), 0u);
}

TEST(PlanBookTest, EventsAreEmittedExactlyOnceInOrder) {
  core::FakeClock clock;
  Recorder rec;
  PlanBook book(clock, rec.Sink());
  auto first = book.Submit(Owner(), Spec(kPay), false);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(book.Activate(*first, "carol").ok());
  auto second =
      book.Submit(Owner(), Spec(R"({"steps":[{"action":"a:b"}],"budget":{"calls":2}})"), true);
  ASSERT_TRUE(second.ok());
  auto third = book.Submit(Owner(), Spec(R"({"steps":[{"action":"a:b"}]})"), false);
  ASSERT_TRUE(third.ok());
  ASSERT_TRUE(book.Reject(*third, "carol", "no").ok());
  (void)book.Admit("ses_a", "a:b", Json::MakeObject());  // admissions are not events

  std::vector<std::string> seen;
  for (const Json& ev : rec.events) {
    seen.push_back(ev.GetString("type") + " " + ev.GetString("plan") + " " +
                   ev.GetString("decision"));
  }
  std::vector<std::string> want = {
      "plan.submitted " + *first + " ",          "plan.decided " + *first + " approved",
      "plan.submitted " + *second + " ",         "plan.decided " + *first + " superseded",
      "plan.decided " + *second + " approved",   "plan.submitted " + *third + " ",
      "plan.decided " + *second + " superseded", "plan.decided " + *third + " rejected",
  };
  EXPECT_EQ(seen, want);

  const Json& submitted = rec.events[0];
  EXPECT_EQ(submitted.GetString("sid"), "ses_a");
  EXPECT_EQ(submitted.GetString("run"), "ses_root");
  EXPECT_EQ(submitted.GetString("agent"), "bot");
  EXPECT_EQ(submitted.GetString("human"), "alice");
  EXPECT_EQ(*submitted.Find("auto_approved"), Json(false));
  EXPECT_TRUE(submitted.Find("supersedes")->is_null());
  ASSERT_EQ(At(submitted, "steps").as_array().size(), 2u);
  EXPECT_EQ(At(submitted, "steps").as_array()[0].GetString("action"), "bank:pay");
  EXPECT_EQ(At(submitted, "steps").as_array()[0].GetInt("max_count", 0), 2);
  EXPECT_TRUE(At(submitted, "steps").as_array()[1].Find("when")->is_null());
  EXPECT_EQ(rec.events[1].GetString("by"), "carol");
  EXPECT_EQ(rec.events[2].GetString("supersedes"), *first);
  EXPECT_EQ(At(rec.events[2], "budget").GetInt("calls", 0), 2);
  EXPECT_EQ(*rec.events[2].Find("auto_approved"), Json(true));
  EXPECT_EQ(rec.events[3].GetString("superseded_by"), *second);
  EXPECT_EQ(rec.events[4].GetString("by"), "auto");
  EXPECT_EQ(rec.events[7].GetString("reason"), "no");
}

TEST(PlanBookTest, EventsFromConcurrentSubmitsAreEachDeliveredOnce) {
  core::FakeClock clock;
  Recorder rec;
  PlanBook book(clock, rec.Sink());
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 4; ++i) {
        EXPECT_TRUE(book.Submit(Owner("ses_" + std::to_string(t)),
                                Spec(R"({"steps":[{"action":"a:b"}]})"), true)
                        .ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  // Per session: 4 submitted, 4 approved, 3 superseded.
  EXPECT_EQ(rec.events.size(), 16u * 11);
  std::map<std::string, int> per_plan;
  for (const Json& ev : rec.events)
    per_plan[ev.GetString("type") + ev.GetString("plan") + ev.GetString("decision")]++;
  for (const auto& [k, n] : per_plan) EXPECT_EQ(n, 1) << k;
}

TEST(PlanBookTest, MemoryIsBoundedAndAFullBookRefusesNewSessions) {
  core::FakeClock clock;
  PlanBook book(clock);
  auto first = book.Submit(Owner(), Spec(R"({"steps":[{"action":"a:b"}]})"), true);
  ASSERT_TRUE(first.ok());
  // Fill the book with current plans of other sessions, then one more for ses_a.
  for (size_t i = 1; i < core::kPlansMax; ++i) {
    ASSERT_TRUE(book.Submit(Owner("ses_" + std::to_string(i)),
                            Spec(R"({"steps":[{"action":"a:b"}]})"), true)
                    .ok());
  }
  EXPECT_EQ(book.size(), core::kPlansMax);
  // Every plan governs its session: nothing can be forgotten, so a new session is refused.
  auto full = book.Submit(Owner("ses_new"), Spec(R"({"steps":[{"action":"a:b"}]})"), true);
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, ErrorCode::kConflict);
  EXPECT_TRUE(book.ForSession("ses_new").is_null());
  // Superseding ses_a's plan makes the old one forgettable; the next submit reuses its room.
  auto second = book.Submit(Owner(), Spec(R"({"steps":[{"action":"a:c"}]})"), true);
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_TRUE(book.Get(*first).is_null());
  EXPECT_EQ(book.ForSession("ses_a").GetString("plan"), *second);
  EXPECT_EQ(book.size(), core::kPlansMax);
  // Once sessions can no longer hold a token, their plans may be forgotten too.
  clock.AdvanceSeconds(core::kPlanTtlSecondsMax + core::kTokenTtlSecondsMax +
                       core::kTokenClockSkewSeconds);
  EXPECT_TRUE(book.Submit(Owner("ses_new"), Spec(R"({"steps":[{"action":"a:b"}]})"), true).ok());
  EXPECT_LE(book.size(), core::kPlansMax);
}

}  // namespace
}  // namespace mandate::plan
