#include "mandate/budget/budget.h"

#include <gtest/gtest.h>

#include <atomic>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "mandate/core/clock.h"
#include "mandate/core/limits.h"

namespace mandate::budget {
namespace {

using core::ActionClass;
using core::ErrorCode;
using core::Json;

constexpr int64_t kJan1 = 1767225600;  // 2026-01-01T00:00:00Z, in seconds
constexpr int64_t kDay = 86400;
constexpr int64_t kMicros = 1000000;

bool Contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

BudgetSpec Spec(std::string name, std::string_view metric, int64_t limit, std::string_view window,
                std::string_view scope, Match match = {}) {
  BudgetSpec s;
  s.name = std::move(name);
  s.metric = ParseMetric(metric).value();
  s.limit = limit;
  s.window = ParseWindow(window).value();
  s.scope = ParseScope(scope).value();
  s.match = std::move(match);
  return s;
}

CallFacts Call(std::string agent = "bot", ActionClass cls = ActionClass::kWrite,
               std::string action = "jira:create_issue") {
  CallFacts f;
  f.sid = "ses_child";
  f.run = "ses_root";
  f.agent = std::move(agent);
  f.human = "alice";
  f.task = "SUP-1";
  f.upstream = action.substr(0, action.find(':'));
  f.action_id = std::move(action);
  f.cls = cls;
  return f;
}

std::unique_ptr<BudgetLedger> Ledger(std::vector<BudgetSpec> specs, const core::Clock& clock) {
  auto ledger = BudgetLedger::Create(std::move(specs), clock);
  EXPECT_TRUE(ledger.ok()) << ledger.error().message;
  return std::move(ledger).value();
}

// One bucket of Usage(); -1 members when the bucket is not listed.
struct BucketView {
  int64_t used = -1;
  int64_t reserved = -1;
  int64_t reset_at = -1;
};

BucketView Bucket(const BudgetLedger& ledger, const std::string& budget, const std::string& key) {
  Json usage = ledger.Usage();
  for (const Json& b : usage.FindArray("budgets")->as_array()) {
    if (b.GetString("name") != budget) continue;
    for (const Json& k : b.FindArray("buckets")->as_array()) {
      if (k.GetString("key") != key) continue;
      return BucketView{k.GetInt("used", -2), k.GetInt("reserved", -2),
                        k.GetInt("reset_at_unix_micros", -2)};
    }
  }
  return {};
}

std::vector<std::string> Names(const Reservation& r) {
  std::vector<std::string> names;
  for (const ReservationEntry& e : r.entries()) names.push_back(e.budget);
  return names;
}

// --- Matching and costs ------------------------------------------------------------------

TEST(BudgetLedger, MatchesEveryNonEmptyFieldAndAnyValueWithinAField) {
  core::FakeClock clock(kJan1 * kMicros);
  Match agents;
  agents.agents = {"bot", "other-bot"};
  Match agent_and_class;
  agent_and_class.agents = {"bot"};
  agent_and_class.classes = {ActionClass::kDestructive};
  Match exact_action;
  exact_action.actions = {"jira:create_issue"};
  Match upstream_wildcard;
  upstream_wildcard.actions = {"github:*"};
  Match humans_upstreams;
  humans_upstreams.humans = {"alice"};
  humans_upstreams.upstreams = {"github"};
  auto ledger = Ledger({Spec("all", "calls", 100, "run", "session"),
                        Spec("agents", "calls", 100, "run", "session", agents),
                        Spec("agent-and-class", "calls", 100, "run", "session", agent_and_class),
                        Spec("exact-action", "calls", 100, "run", "session", exact_action),
                        Spec("github-any", "calls", 100, "run", "session", upstream_wildcard),
                        Spec("alice-github", "calls", 100, "run", "session", humans_upstreams)},
                       clock);

  auto r = ledger->Reserve(Call("bot", ActionClass::kWrite, "jira:create_issue"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Names(*r), (std::vector<std::string>{"all", "agents", "exact-action"}));

  r = ledger->Reserve(Call("bot", ActionClass::kDestructive, "github:merge_pull_request"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Names(*r), (std::vector<std::string>{"all", "agents", "agent-and-class", "github-any",
                                                 "alice-github"}));

  r = ledger->Reserve(Call("stranger", ActionClass::kRead, "jira:create_issue_v2"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Names(*r), (std::vector<std::string>{"all"}));

  // "github:*" is the upstream github, not any action id that merely starts with "github".
  CallFacts f = Call("stranger", ActionClass::kRead, "githubx:list");
  r = ledger->Reserve(f);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Names(*r), (std::vector<std::string>{"all"}));

  f = Call("other-bot", ActionClass::kRead, "github:list");
  f.human = "bob";
  r = ledger->Reserve(f);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Names(*r), (std::vector<std::string>{"all", "agents", "github-any"}));
}

TEST(BudgetLedger, CountsCallsAndWritesItselfAndOtherMetricsFromTheEstimate) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("calls", "calls", 100, "run", "session"),
                        Spec("writes", "writes", 100, "run", "session"),
                        Spec("in", "input_tokens", 100000, "run", "session"),
                        Spec("spend", "spend_usd_micros", 100000, "run", "session"),
                        Spec("pages", "pages", 100, "run", "session")},
                       clock);
  auto amounts = [](const Reservation& r) {
    std::map<std::string, int64_t> m;
    for (const ReservationEntry& e : r.entries()) m[e.budget] = e.amount;
    return m;
  };
  CallFacts f = Call("bot", ActionClass::kRead);
  f.estimate = {{"calls", 7}, {"writes", 7}, {"input_tokens", 1200}, {"pages", 3}};
  auto r = ledger->Reserve(f);
  ASSERT_TRUE(r.ok());
  // Estimates for calls and writes are ignored; a budget with no estimate is reserved at 0.
  EXPECT_EQ(amounts(*r),
            (std::map<std::string, int64_t>{
                {"calls", 1}, {"writes", 0}, {"in", 1200}, {"spend", 0}, {"pages", 3}}));
  for (ActionClass cls : {ActionClass::kWrite, ActionClass::kDestructive}) {
    r = ledger->Reserve(Call("bot", cls));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(amounts(*r)["writes"], 1);
  }
}

TEST(BudgetLedger, ACallMatchingNoBudgetGetsAnEmptyReservation) {
  core::FakeClock clock(kJan1 * kMicros);
  Match m;
  m.agents = {"someone-else"};
  auto ledger = Ledger({Spec("b", "calls", 0, "run", "session", m)}, clock);
  auto r = ledger->Reserve(Call());
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
  EXPECT_EQ(r->ToJson().Dump(), "[]");
  EXPECT_EQ(r->SettlementJson({{"calls", 3}}).Dump(), "[]");
  ledger->Settle(*r, {});
  EXPECT_EQ(ledger->live_buckets(), 0u);
}

// --- Refusal ----------------------------------------------------------------------------------

TEST(BudgetLedger, RefusesPastTheLimitWithExceededDetails) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("triage-calls", "calls", 3, "run", "agent")}, clock);
  std::vector<Reservation> held;
  for (int i = 0; i < 3; ++i) {
    auto r = ledger->Reserve(Call());
    ASSERT_TRUE(r.ok()) << r.error().message;
    held.push_back(std::move(r).value());
  }
  ledger->Settle(held[0], {});
  Exceeded ex;
  auto refused = ledger->Reserve(Call(), &ex);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kBudgetExceeded);
  EXPECT_TRUE(Contains(refused.error().message, "budget \"triage-calls\" exceeded"))
      << refused.error().message;
  EXPECT_TRUE(Contains(refused.error().message, "calls 3 of 3"));
  EXPECT_TRUE(Contains(refused.error().message, "no window reset makes room"));
  EXPECT_EQ(ex.budget, "triage-calls");
  EXPECT_EQ(ex.key, "agent:bot|run:ses_root");
  EXPECT_EQ(ex.metric, "calls");
  EXPECT_EQ(ex.limit, 3);
  EXPECT_EQ(ex.usage, 3);  // 1 used + 2 reserved
  EXPECT_EQ(ex.requested, 1);
  EXPECT_EQ(ex.reset_at_unix_micros, 0);  // window run: never
  EXPECT_FALSE(ex.ledger_full);
  EXPECT_EQ(ex.ToJson().Dump(),
            R"({"budget":"triage-calls","key":"agent:bot|run:ses_root","metric":"calls",)"
            R"("limit":3,"usage":3,"requested":1,"reset_at_unix_micros":0,"ledger_full":false})");
  // Refusing does not need the out-parameter.
  EXPECT_EQ(ledger->Reserve(Call()).error().code, ErrorCode::kBudgetExceeded);
  // Another agent has its own bucket.
  EXPECT_TRUE(ledger->Reserve(Call("other-bot")).ok());
}

TEST(BudgetLedger, AZeroLimitRefusesEveryCostlyCall) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("frozen", "writes", 0, "1d", "human")}, clock);
  Exceeded ex;
  auto r = ledger->Reserve(Call("bot", ActionClass::kWrite), &ex);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ex.requested, 1);
  EXPECT_EQ(ex.reset_at_unix_micros, 0);  // the cost alone is above the limit: never
  EXPECT_TRUE(ledger->Reserve(Call("bot", ActionClass::kRead)).ok());  // cost 0 fits
}

TEST(BudgetLedger, ReservesOnAllMatchingBudgetsOrOnNone) {
  core::FakeClock clock(kJan1 * kMicros);
  Match only_bot;
  only_bot.agents = {"bot"};
  auto ledger = Ledger({Spec("bot-calls", "calls", 2, "run", "human", only_bot),
                        Spec("all-calls", "calls", 3, "run", "human")},
                       clock);
  std::vector<Reservation> held;
  for (int i = 0; i < 2; ++i) held.push_back(ledger->Reserve(Call("bot")).value());
  Exceeded ex;
  auto r = ledger->Reserve(Call("bot"), &ex);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ex.budget, "bot-calls");
  // all-calls had room, but nothing was reserved on it.
  EXPECT_EQ(Bucket(*ledger, "all-calls", "human:alice|run:ses_root").reserved, 2);

  // Now the second budget is the one without room: the first is left untouched.
  held.push_back(ledger->Reserve(Call("other-bot")).value());
  ledger->Release(held[0]);
  EXPECT_EQ(Bucket(*ledger, "bot-calls", "human:alice|run:ses_root").reserved, 1);
  EXPECT_EQ(Bucket(*ledger, "all-calls", "human:alice|run:ses_root").reserved, 2);
  held.push_back(ledger->Reserve(Call("other-bot")).value());
  r = ledger->Reserve(Call("bot"), &ex);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ex.budget, "all-calls");
  EXPECT_EQ(Bucket(*ledger, "bot-calls", "human:alice|run:ses_root").reserved, 1);
}

TEST(BudgetLedger, RefusesCallsWithoutIdentityOrWithNegativeOrHugeFacts) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("b", "input_tokens", 100, "run", "session")}, clock);
  for (std::string CallFacts::*field :
       {&CallFacts::sid, &CallFacts::run, &CallFacts::agent, &CallFacts::human,
        &CallFacts::upstream, &CallFacts::action_id}) {
    CallFacts f = Call();
    (f.*field).clear();
    auto r = ledger->Reserve(f);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::kInternal);
    EXPECT_TRUE(Contains(r.error().message, "is unknown")) << r.error().message;
  }
  CallFacts f = Call();
  f.estimate = {{"input_tokens", -1}};
  auto r = ledger->Reserve(f);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kBadRequest);
  EXPECT_TRUE(Contains(r.error().message, "negative estimate -1 for metric \"input_tokens\""));
  f = Call();
  f.sid.assign(core::kBudgetSubjectBytesMax + 1, 's');
  r = ledger->Reserve(f);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kBadRequest);
  // A huge estimate is refused by the limit, never by an overflow.
  f = Call();
  f.estimate = {{"input_tokens", std::numeric_limits<int64_t>::max()}};
  r = ledger->Reserve(f);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kBudgetExceeded);
  EXPECT_EQ(ledger->live_buckets(), 0u);  // nothing refused left a bucket behind
  // A call without a task is fine.
  f = Call();
  f.task.clear();
  EXPECT_TRUE(ledger->Reserve(f).ok());
}

// --- Settle and release -------------------------------------------------------------------

TEST(BudgetLedger, SettleReplacesTheReservedAmountWithTheActualOne) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("tokens", "output_tokens", 1000, "1h", "session"),
                        Spec("calls", "calls", 10, "1h", "session")},
                       clock);
  CallFacts f = Call();
  f.estimate = {{"output_tokens", 400}};
  auto r = ledger->Reserve(f);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->open());
  EXPECT_EQ(Bucket(*ledger, "tokens", "session:ses_child").reserved, 400);
  EXPECT_EQ(Bucket(*ledger, "tokens", "session:ses_child").used, 0);
  // Metrics absent from `actual` keep the reserved amount (calls: 1).
  ledger->Settle(*r, {{"output_tokens", 300}});
  EXPECT_FALSE(r->open());
  EXPECT_EQ(Bucket(*ledger, "tokens", "session:ses_child").used, 300);
  EXPECT_EQ(Bucket(*ledger, "tokens", "session:ses_child").reserved, 0);
  EXPECT_EQ(Bucket(*ledger, "calls", "session:ses_child").used, 1);
  // Settling again, or releasing a settled reservation, changes nothing.
  ledger->Settle(*r, {{"output_tokens", 300}});
  ledger->Release(*r);
  EXPECT_EQ(Bucket(*ledger, "tokens", "session:ses_child").used, 300);
  EXPECT_EQ(Bucket(*ledger, "calls", "session:ses_child").used, 1);
}

TEST(BudgetLedger, SettlementAboveTheEstimateOvershootsOnlyOnceAndLaterCallsAreRefused) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("tokens", "output_tokens", 1000, "run", "session_tree")}, clock);
  CallFacts f = Call();
  f.estimate = {{"output_tokens", 400}};
  auto r = ledger->Reserve(f);
  ASSERT_TRUE(r.ok());
  ledger->Settle(*r, {{"output_tokens", 1200}});
  EXPECT_EQ(Bucket(*ledger, "tokens", "session_tree:ses_root").used, 1200);
  Exceeded ex;
  f.estimate.clear();  // even a call estimating nothing is refused once over the limit
  ASSERT_FALSE(ledger->Reserve(f, &ex).ok());
  EXPECT_EQ(ex.usage, 1200);
  EXPECT_EQ(ex.requested, 0);
}

TEST(BudgetLedger, AtExactlyTheLimitZeroCostCallsPass) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("writes", "writes", 1, "run", "agent")}, clock);
  auto w = ledger->Reserve(Call("bot", ActionClass::kWrite));
  ASSERT_TRUE(w.ok());
  EXPECT_TRUE(ledger->Reserve(Call("bot", ActionClass::kRead)).ok());
  EXPECT_FALSE(ledger->Reserve(Call("bot", ActionClass::kWrite)).ok());
  // Settling more writes than reserved takes the bucket over: now reads are refused too.
  ledger->Settle(*w, {{"writes", 2}});
  EXPECT_EQ(ledger->Reserve(Call("bot", ActionClass::kRead)).error().code,
            ErrorCode::kBudgetExceeded);
}

TEST(BudgetLedger, ReleaseGivesTheRoomBackAndNegativeActualsCountAsZero) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("calls", "calls", 1, "1d", "session")}, clock);
  auto r = ledger->Reserve(Call());
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(ledger->Reserve(Call()).ok());
  ledger->Release(*r);
  EXPECT_FALSE(r->open());
  EXPECT_EQ(ledger->live_buckets(), 1u);  // released, not yet collected
  auto again = ledger->Reserve(Call());
  ASSERT_TRUE(again.ok());
  ledger->Settle(*again, {{"calls", -5}});
  EXPECT_TRUE(ledger->Reserve(Call()).ok());
}

TEST(BudgetLedger, AMovedReservationIsSettledOnceAndAForeignOneIsIgnored) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("calls", "calls", 2, "run", "session")}, clock);
  auto twin = Ledger({Spec("calls", "calls", 2, "run", "session")}, clock);
  Reservation a = ledger->Reserve(Call()).value();
  Reservation b = std::move(a);
  EXPECT_FALSE(a.open());  // NOLINT(bugprone-use-after-move): the contract under test
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move)
  ledger->Release(a);      // NOLINT(bugprone-use-after-move): closed, a no-op
  EXPECT_EQ(Bucket(*ledger, "calls", "session:ses_child").reserved, 1);
  // A ledger with the same budgets never applies another ledger's reservation.
  Reservation t = twin->Reserve(Call()).value();
  ledger->Release(t);
  EXPECT_TRUE(t.open());
  EXPECT_EQ(Bucket(*twin, "calls", "session:ses_child").reserved, 1);
  ledger->Release(b);
  EXPECT_EQ(Bucket(*ledger, "calls", "session:ses_child").reserved, -1);  // nothing left
  Reservation c;
  c = ledger->Reserve(Call()).value();
  EXPECT_TRUE(c.open());
  ledger->Settle(c, {});
  EXPECT_EQ(Bucket(*ledger, "calls", "session:ses_child").used, 1);
}

// --- Windows ---------------------------------------------------------------------------------

TEST(BudgetLedger, SlidingWindowUsageLeavesAfterTheWindow) {
  core::FakeClock clock(kJan1 * kMicros);
  // 60s window: 60 slots of 1s plus the current one.
  auto ledger = Ledger({Spec("per-minute", "calls", 2, "60s", "agent")}, clock);
  for (int i = 0; i < 2; ++i) ledger->Settle(ledger->Reserve(Call()).value(), {});
  EXPECT_EQ(Bucket(*ledger, "per-minute", "agent:bot").reset_at, (kJan1 + 61) * kMicros);
  clock.AdvanceSeconds(30);
  Exceeded ex;
  ASSERT_FALSE(ledger->Reserve(Call(), &ex).ok());
  EXPECT_EQ(ex.reset_at_unix_micros, (kJan1 + 61) * kMicros);
  EXPECT_TRUE(
      Contains(ledger->Reserve(Call()).error().message, "room again at 2026-01-01T00:01:01Z"));
  clock.AdvanceSeconds(30);  // kJan1 + 60: still counted (the window errs towards refusing)
  ASSERT_FALSE(ledger->Reserve(Call()).ok());
  clock.AdvanceSeconds(1);  // kJan1 + 61: gone
  EXPECT_TRUE(ledger->Reserve(Call()).ok());
}

TEST(BudgetLedger, SlidingResetAtIsWhenEnoughOldUsageHasLeft) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("in", "input_tokens", 30, "60s", "agent")}, clock);
  CallFacts f = Call();
  f.estimate = {{"input_tokens", 10}};
  ledger->Settle(ledger->Reserve(f).value(), {});  // 10 at kJan1
  clock.AdvanceSeconds(10);
  f.estimate = {{"input_tokens", 20}};
  ledger->Settle(ledger->Reserve(f).value(), {});  // 20 at kJan1 + 10
  clock.AdvanceSeconds(10);
  Exceeded ex;
  f.estimate = {{"input_tokens", 5}};  // needs the 10 of kJan1 to leave
  ASSERT_FALSE(ledger->Reserve(f, &ex).ok());
  EXPECT_EQ(ex.usage, 30);
  EXPECT_EQ(ex.reset_at_unix_micros, (kJan1 + 61) * kMicros);
  f.estimate = {{"input_tokens", 15}};  // needs both to leave
  ASSERT_FALSE(ledger->Reserve(f, &ex).ok());
  EXPECT_EQ(ex.reset_at_unix_micros, (kJan1 + 10 + 61) * kMicros);
  f.estimate = {{"input_tokens", 31}};  // never fits
  ASSERT_FALSE(ledger->Reserve(f, &ex).ok());
  EXPECT_EQ(ex.reset_at_unix_micros, 0);
  clock.SetUnixSeconds(kJan1 + 61);
  f.estimate = {{"input_tokens", 10}};
  EXPECT_TRUE(ledger->Reserve(f).ok());
}

TEST(BudgetLedger, SlidingResetAtWhenInFlightReservationsBlockIsTheWindowEnd) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("per-hour", "calls", 2, "1h", "agent")}, clock);  // 60s slots
  Reservation a = ledger->Reserve(Call()).value();
  Reservation b = ledger->Reserve(Call()).value();
  clock.AdvanceSeconds(90);  // slot kJan1/60 + 1
  Exceeded ex;
  ASSERT_FALSE(ledger->Reserve(Call(), &ex).ok());
  EXPECT_EQ(ex.reset_at_unix_micros, (kJan1 + 60 + 61 * 60) * kMicros);
  // In flight longer than the window: settled at its Reserve time, so it leaves at once.
  clock.AdvanceSeconds(2 * 3600);
  EXPECT_FALSE(ledger->Reserve(Call()).ok());  // still held
  ledger->Settle(a, {});
  ledger->Settle(b, {});
  EXPECT_TRUE(ledger->Reserve(Call()).ok());
}

TEST(BudgetLedger, CalendarDayResetsAtMidnightUtc) {
  core::FakeClock clock((kJan1 + kDay - 60) * kMicros);  // 2026-01-01T23:59:00Z
  auto ledger = Ledger({Spec("daily", "writes", 2, "1d", "agent")}, clock);
  for (int i = 0; i < 2; ++i) ledger->Settle(ledger->Reserve(Call()).value(), {});
  Exceeded ex;
  auto r = ledger->Reserve(Call(), &ex);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(ex.key, "agent:bot|day:2026-01-01");
  EXPECT_EQ(ex.reset_at_unix_micros, (kJan1 + kDay) * kMicros);
  EXPECT_TRUE(Contains(r.error().message, "room again at 2026-01-02T00:00:00Z"))
      << r.error().message;
  EXPECT_EQ(Bucket(*ledger, "daily", "agent:bot|day:2026-01-01").reset_at,
            (kJan1 + kDay) * kMicros);
  clock.AdvanceSeconds(59);
  EXPECT_FALSE(ledger->Reserve(Call()).ok());
  clock.AdvanceSeconds(1);  // 00:00:00 UTC
  auto next = ledger->Reserve(Call());
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->entries()[0].key, "agent:bot|day:2026-01-02");
  // Yesterday's bucket is no longer listed, and is collected.
  EXPECT_EQ(Bucket(*ledger, "daily", "agent:bot|day:2026-01-01").used, -1);
  ledger->CollectExpired();
  EXPECT_EQ(ledger->live_buckets(), 1u);
}

TEST(BudgetLedger, AReservationSettlesIntoTheDayItWasMadeOn) {
  core::FakeClock clock((kJan1 + kDay - 1) * kMicros);
  auto ledger = Ledger({Spec("daily", "output_tokens", 100, "1d", "agent")}, clock);
  CallFacts f = Call();
  f.estimate = {{"output_tokens", 60}};
  Reservation r = ledger->Reserve(f).value();
  clock.AdvanceSeconds(1);
  ledger->CollectExpired();
  EXPECT_EQ(ledger->live_buckets(), 1u);  // pinned by the open reservation
  ledger->Settle(r, {{"output_tokens", 90}});
  f.estimate = {{"output_tokens", 100}};
  EXPECT_TRUE(ledger->Reserve(f).ok());  // the new day starts empty
  ledger->CollectExpired();
  EXPECT_EQ(ledger->live_buckets(), 1u);  // yesterday's bucket is gone
}

TEST(BudgetLedger, RunWindowNeverResetsWithinTheRun) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("run-calls", "calls", 2, "run", "session_tree")}, clock);
  for (int i = 0; i < 2; ++i) ledger->Settle(ledger->Reserve(Call()).value(), {});
  clock.AdvanceSeconds(core::kTokenTtlSecondsMax - 1);
  ledger->CollectExpired();
  Exceeded ex;
  ASSERT_FALSE(ledger->Reserve(Call(), &ex).ok());
  EXPECT_EQ(ex.key, "session_tree:ses_root");
  EXPECT_EQ(ex.reset_at_unix_micros, 0);
  EXPECT_EQ(Bucket(*ledger, "run-calls", "session_tree:ses_root").reset_at, 0);
  CallFacts other = Call();
  other.run = "ses_other_root";
  EXPECT_TRUE(ledger->Reserve(other).ok());  // another run, another bucket
}

TEST(BudgetLedger, RunBucketsAreCollectedOnlyAfterTheRunsMaximumLifetime) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("run-calls", "calls", 5, "run", "agent")}, clock);
  ledger->Settle(ledger->Reserve(Call()).value(), {});
  clock.AdvanceSeconds(core::kBudgetRunIdleSecondsMax);
  ledger->CollectExpired();
  EXPECT_EQ(ledger->live_buckets(), 1u);
  EXPECT_EQ(Bucket(*ledger, "run-calls", "agent:bot|run:ses_root").used, 1);
  clock.AdvanceSeconds(1);
  ledger->CollectExpired();
  EXPECT_EQ(ledger->live_buckets(), 0u);
}

TEST(BudgetLedger, AClockSteppingBackDoesNotLoseSlidingUsage) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("per-minute", "calls", 1, "60s", "agent")}, clock);
  ledger->Settle(ledger->Reserve(Call()).value(), {});
  clock.SetUnixSeconds(kJan1 - 3600);
  EXPECT_FALSE(ledger->Reserve(Call()).ok());
  clock.SetUnixSeconds(kJan1 + 61);
  EXPECT_TRUE(ledger->Reserve(Call()).ok());
}

TEST(BudgetLedger, HugeSlidingUsageSaturatesAndStillLeavesSlotBySlot) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("spend", "spend_usd_micros", kMax - 1, "60s", "agent")}, clock);
  auto record = [](int64_t at_seconds) {
    Json e = Json::MakeObject();
    e.Set("budget", "spend");
    e.Set("key", "agent:bot");
    e.Set("metric", "spend_usd_micros");
    e.Set("amount", kMax);
    e.Set("at", at_seconds * kMicros);
    return Json(Json::Array{e});
  };
  ASSERT_TRUE(ledger->Recover(record(kJan1)).ok());
  ASSERT_TRUE(ledger->Recover(record(kJan1 + 10)).ok());  // the sum saturates
  clock.SetUnixSeconds(kJan1 + 20);
  EXPECT_FALSE(ledger->Reserve(Call()).ok());
  clock.SetUnixSeconds(kJan1 + 61);  // the first slot leaves; the second still counts
  Exceeded ex;
  EXPECT_FALSE(ledger->Reserve(Call(), &ex).ok());
  EXPECT_EQ(ex.usage, kMax);
  clock.SetUnixSeconds(kJan1 + 71);
  EXPECT_TRUE(ledger->Reserve(Call()).ok());
}

// --- Keys, JSON and the usage snapshot ------------------------------------------------------

TEST(BudgetLedger, KeysEscapeTheirSeparatorsSoSubjectsCannotCollide) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("b", "calls", 1, "run", "agent")}, clock);
  CallFacts a = Call("x|run:y");
  a.run = "z";
  CallFacts b = Call("x");
  b.run = "y|run:z";
  auto ra = ledger->Reserve(a);
  auto rb = ledger->Reserve(b);
  ASSERT_TRUE(ra.ok());
  ASSERT_TRUE(rb.ok()) << rb.error().message;  // not the same bucket
  EXPECT_EQ(ra->entries()[0].key, "agent:x%7Crun:y|run:z");
  EXPECT_EQ(rb->entries()[0].key, "agent:x|run:y%7Crun:z");
  EXPECT_EQ(ledger->Reserve(Call("100%")).value().entries()[0].key, "agent:100%25|run:ses_root");
}

TEST(BudgetLedger, ReservationAndSettlementJsonHaveTheDocumentedShape) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("triage-writes", "writes", 50, "1d", "agent"),
                        Spec("tokens", "output_tokens", 5000, "run", "session")},
                       clock);
  CallFacts f = Call("triage-bot");
  f.estimate = {{"output_tokens", 300}};
  Reservation r = ledger->Reserve(f).value();
  EXPECT_EQ(r.at_unix_micros(), kJan1 * kMicros);
  EXPECT_EQ(r.ToJson().Dump(),
            R"([{"budget":"triage-writes","key":"agent:triage-bot|day:2026-01-01",)"
            R"("metric":"writes","amount":1,"at":1767225600000000},)"
            R"({"budget":"tokens","key":"session:ses_child","metric":"output_tokens",)"
            R"("amount":300,"at":1767225600000000}])");
  EXPECT_EQ(r.SettlementJson({{"output_tokens", 420}, {"writes", -3}}).Dump(),
            R"([{"budget":"triage-writes","key":"agent:triage-bot|day:2026-01-01",)"
            R"("metric":"writes","amount":1,"at":1767225600000000,"actual":0},)"
            R"({"budget":"tokens","key":"session:ses_child","metric":"output_tokens",)"
            R"("amount":300,"at":1767225600000000,"actual":420}])");
  Json release = r.ReleaseJson();
  ASSERT_EQ(release.as_array().size(), 2u);
  for (const Json& e : release.as_array()) EXPECT_EQ(e.GetInt("actual", -1), 0);
}

TEST(BudgetLedger, UsageListsEveryBudgetWithItsLiveBucketsSorted) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger =
      Ledger({Spec("per-hour", "calls", 10, "90m", "agent"),
              Spec("idle", "calls", 10, "run", "human", Match{{"nobody"}, {}, {}, {}, {}})},
             clock);
  ledger->Settle(ledger->Reserve(Call("zeta")).value(), {});
  Reservation open = ledger->Reserve(Call("alpha")).value();
  Json usage = ledger->Usage();
  EXPECT_EQ(usage.Dump(),
            R"({"buckets_live":2,"buckets_max":65536,"budgets":[)"
            R"({"name":"per-hour","metric":"calls","limit":10,"window":"90m","scope":"agent",)"
            R"("buckets":[{"key":"agent:alpha","used":0,"reserved":1,"limit":10,)"
            R"("reset_at_unix_micros":0},)"
            R"({"key":"agent:zeta","used":1,"reserved":0,"limit":10,)"
            R"("reset_at_unix_micros":1767231090000000}]},)"
            R"({"name":"idle","metric":"calls","limit":10,"window":"run","scope":"human",)"
            R"("buckets":[]}]})");
  // 90m / 60 = 90s slots; the kJan1 slot leaves after 61 of them.
  EXPECT_EQ(1767231090000000, (kJan1 + 61 * 90) * kMicros);
}

// --- Recovery ---------------------------------------------------------------------------------

std::vector<BudgetSpec> RecoverySpecs() {
  Match writes;
  writes.classes = {ActionClass::kWrite, ActionClass::kDestructive};
  return {Spec("daily-writes", "writes", 100, "1d", "agent", writes),
          Spec("hourly-tokens", "output_tokens", 100000, "1h", "human"),
          Spec("run-calls", "calls", 100, "run", "task"),
          Spec("session-spend", "spend_usd_micros", 1000000, "run", "session")};
}

TEST(BudgetLedgerRecover, ReplayingTheRecordsReproducesTheUsage) {
  core::FakeClock clock(kJan1 * kMicros);
  auto live = Ledger(RecoverySpecs(), clock);
  std::vector<std::pair<bool, Json>> log;  // (is settlement, record), in audit-log order
  for (int i = 0; i < 12; ++i) {
    CallFacts f =
        Call(i % 2 == 0 ? "bot" : "other", i % 3 == 0 ? ActionClass::kRead : ActionClass::kWrite);
    f.sid = "ses_" + std::to_string(i % 4);
    f.estimate = {{"output_tokens", 100 * i}, {"spend_usd_micros", 1000}};
    Reservation r = live->Reserve(f).value();
    log.emplace_back(false, r.ToJson());
    if (i % 4 == 1) {
      log.emplace_back(true, r.ReleaseJson());
      live->Release(r);
    } else {
      std::map<std::string, int64_t> actual = {{"output_tokens", 37 * i}};
      log.emplace_back(true, r.SettlementJson(actual));
      live->Settle(r, actual);
    }
    clock.AdvanceSeconds(7 * 60);
  }
  auto restarted = Ledger(RecoverySpecs(), clock);
  for (const auto& [settlement, record] : log) {
    core::Status st =
        settlement ? restarted->RecoverSettlement(record) : restarted->Recover(record);
    ASSERT_TRUE(st.ok()) << st.error().message;
  }
  live->CollectExpired();
  restarted->CollectExpired();
  EXPECT_EQ(restarted->Usage(), live->Usage()) << restarted->Usage().Dump() << "\n"
                                               << live->Usage().Dump();
  EXPECT_EQ(restarted->live_buckets(), live->live_buckets());
}

TEST(BudgetLedgerRecover, AReservationWithoutSettlementCountsInFull) {
  core::FakeClock clock(kJan1 * kMicros);
  auto live = Ledger({Spec("tokens", "output_tokens", 1000, "run", "session")}, clock);
  CallFacts f = Call();
  f.estimate = {{"output_tokens", 700}};
  Reservation r = live->Reserve(f).value();  // the node dies before the call completes
  auto restarted = Ledger({Spec("tokens", "output_tokens", 1000, "run", "session")}, clock);
  ASSERT_TRUE(restarted->Recover(r.ToJson()).ok());
  EXPECT_EQ(Bucket(*restarted, "tokens", "session:ses_child").used, 700);
  f.estimate = {{"output_tokens", 301}};
  EXPECT_FALSE(restarted->Reserve(f).ok());
  f.estimate = {{"output_tokens", 300}};
  EXPECT_TRUE(restarted->Reserve(f).ok());
}

TEST(BudgetLedgerRecover, RecordsOutsideEveryWindowAreDiscardedWithoutABucket) {
  core::FakeClock clock(kJan1 * kMicros);
  auto live = Ledger(RecoverySpecs(), clock);
  Reservation r = live->Reserve(Call()).value();
  Json reservation = r.ToJson();
  Json settlement = r.SettlementJson({{"output_tokens", 50}});
  clock.AdvanceSeconds(core::kBudgetRunIdleSecondsMax + 1);  // past the day, hour and run
  auto restarted = Ledger(RecoverySpecs(), clock);
  ASSERT_TRUE(restarted->Recover(reservation).ok());
  ASSERT_TRUE(restarted->RecoverSettlement(settlement).ok());
  EXPECT_EQ(restarted->live_buckets(), 0u);
  // Within the run's lifetime but past the day and the hour, only the run budgets remain.
  clock.SetUnixSeconds(kJan1 + kDay + 10);
  auto next_day = Ledger(RecoverySpecs(), clock);
  ASSERT_TRUE(next_day->Recover(reservation).ok());
  EXPECT_EQ(next_day->live_buckets(), 1u);
  EXPECT_EQ(Bucket(*next_day, "run-calls", "task:SUP-1|run:ses_root").used, 1);
  EXPECT_EQ(Bucket(*next_day, "session-spend", "session:ses_child").used, -1);  // amount 0
}

TEST(BudgetLedgerRecover, SkipsRecordsOfUnknownOrRedefinedBudgets) {
  core::FakeClock clock(kJan1 * kMicros);
  auto old_ledger =
      Ledger({Spec("a", "calls", 10, "1d", "agent"), Spec("b", "calls", 10, "1h", "agent"),
              Spec("c", "calls", 10, "run", "agent"), Spec("gone", "calls", 10, "run", "agent")},
             clock);
  Json record = old_ledger->Reserve(Call()).value().ToJson();
  // Same names, other definitions: another metric, another window kind, another scope.
  auto redefined =
      Ledger({Spec("a", "writes", 10, "1d", "agent"), Spec("b", "calls", 10, "1d", "agent"),
              Spec("c", "calls", 10, "run", "human")},
             clock);
  ASSERT_TRUE(redefined->Recover(record).ok());
  EXPECT_EQ(redefined->live_buckets(), 0u);
  // A changed limit or duration keeps the usage.
  auto retuned =
      Ledger({Spec("a", "calls", 99, "1d", "agent"), Spec("b", "calls", 99, "2h", "agent")}, clock);
  ASSERT_TRUE(retuned->Recover(record).ok());
  EXPECT_EQ(retuned->live_buckets(), 2u);
  EXPECT_EQ(Bucket(*retuned, "b", "agent:bot").used, 1);
}

TEST(BudgetLedgerRecover, RefusesMalformedRecordsWithoutApplyingAnyOfThem) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("a", "calls", 10, "1d", "agent")}, clock);
  const std::string good =
      R"({"budget":"a","key":"agent:bot|day:2026-01-01","metric":"calls","amount":1,)"
      R"("at":1767225600000000})";
  struct Case {
    std::string text;
    bool settlement;
    const char* reason;
  };
  const std::vector<Case> cases = {
      {R"({"budget":"a"})", false, "expected an array"},
      {"[" + good + ",5]", false, "entry 1: not an object"},
      {"[" + good + R"(,{"key":"k","metric":"calls","amount":1,"at":1}])", false,
       "\"budget\" is not a string"},
      {R"([{"budget":"a","key":7,"metric":"calls","amount":1,"at":1}])", false,
       "\"key\" is not a string"},
      {R"([{"budget":"a","key":"k","amount":1,"at":1}])", false, "\"metric\" is not a string"},
      {R"([{"budget":"a","key":"k","metric":"calls","amount":-1,"at":1}])", false,
       "\"amount\" is not an integer >= 0"},
      {R"([{"budget":"a","key":"k","metric":"calls","amount":"1","at":1}])", false,
       "\"amount\" is not an integer >= 0"},
      {R"([{"budget":"a","key":"k","metric":"calls","amount":1.5,"at":1}])", false,
       "\"amount\" is not an integer >= 0"},
      {R"([{"budget":"a","key":"k","metric":"calls","amount":1}])", false,
       "\"at\" is not an integer"},
      {"[" + good + "]", true, "\"actual\" is not an integer >= 0"},
      {R"([{"budget":"a","key":"agent:bot|day:2026-01-01","metric":"calls","amount":1,)"
       R"("at":1767225600000000,"actual":-2}])",
       true, "\"actual\" is not an integer >= 0"},
      {R"([{"budget":"a","key":"agent:bot|day:2026-01-02","metric":"calls","amount":1,)"
       R"("at":1767225600000000}])",
       false, "the key's day is not the day of \"at\""},
  };
  for (const Case& c : cases) {
    auto parsed = Json::Parse(c.text);
    ASSERT_TRUE(parsed.ok()) << c.text;
    const Json& json = *parsed;
    core::Status st = c.settlement ? ledger->RecoverSettlement(json) : ledger->Recover(json);
    ASSERT_FALSE(st.ok()) << c.text;
    EXPECT_EQ(st.error().code, ErrorCode::kBadRequest);
    EXPECT_TRUE(Contains(st.error().message, c.reason)) << c.text << ": " << st.error().message;
    EXPECT_EQ(ledger->live_buckets(), 0u) << c.text;  // not even the good first entry
  }
  Json many = Json::MakeArray();
  for (size_t i = 0; i <= core::kBudgetsMax; ++i) many.Push(Json::Parse(good).value());
  core::Status st = ledger->Recover(many);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(Contains(st.error().message, "more than 1024 entries"));
  EXPECT_EQ(ledger->live_buckets(), 0u);
  // The good record alone is applied.
  ASSERT_TRUE(ledger->Recover(Json::Parse("[" + good + "]").value()).ok());
  EXPECT_EQ(Bucket(*ledger, "a", "agent:bot|day:2026-01-01").used, 1);
}

TEST(BudgetLedgerRecover, ASettlementNeverTakesUsageBelowZero) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("t", "output_tokens", 1000, "1h", "agent")}, clock);
  CallFacts f = Call();
  f.estimate = {{"output_tokens", 500}};
  Reservation r = ledger->Reserve(f).value();
  auto restarted = Ledger({Spec("t", "output_tokens", 1000, "1h", "agent")}, clock);
  // A settlement replayed without its reservation (or twice) cannot create room.
  ASSERT_TRUE(restarted->RecoverSettlement(r.SettlementJson({{"output_tokens", 0}})).ok());
  EXPECT_EQ(restarted->live_buckets(), 0u);
  ASSERT_TRUE(restarted->Recover(r.ToJson()).ok());
  ASSERT_TRUE(restarted->RecoverSettlement(r.SettlementJson({{"output_tokens", 100}})).ok());
  ASSERT_TRUE(restarted->RecoverSettlement(r.SettlementJson({{"output_tokens", 0}})).ok());
  EXPECT_EQ(Bucket(*restarted, "t", "agent:bot").used, -1);  // 500 - 400 - 500 -> 0, not -400
  // An overshoot recorded without its reservation still counts.
  ASSERT_TRUE(restarted->RecoverSettlement(r.SettlementJson({{"output_tokens", 900}})).ok());
  EXPECT_EQ(Bucket(*restarted, "t", "agent:bot").used, 400);
}

// --- Bounded memory -----------------------------------------------------------------------

TEST(BudgetLedger, AFullLedgerRefusesNewBucketsAndRecoversOnceTheyExpire) {
  core::FakeClock clock(kJan1 * kMicros);
  auto ledger = Ledger({Spec("per-session", "calls", 2, "1h", "session")}, clock);
  std::vector<Reservation> held;
  held.reserve(core::kBudgetBucketsMax);
  CallFacts f = Call();
  for (size_t i = 0; i < core::kBudgetBucketsMax; ++i) {
    f.sid = "s" + std::to_string(i);
    auto r = ledger->Reserve(f);
    ASSERT_TRUE(r.ok()) << i << ": " << r.error().message;
    held.push_back(std::move(r).value());
  }
  EXPECT_EQ(ledger->live_buckets(), core::kBudgetBucketsMax);
  f.sid = "one-too-many";
  Exceeded ex;
  auto refused = ledger->Reserve(f, &ex);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kBudgetExceeded);
  EXPECT_TRUE(Contains(refused.error().message, "budget ledger is full"));
  EXPECT_TRUE(ex.ledger_full);
  EXPECT_EQ(ex.budget, "per-session");
  EXPECT_EQ(ex.key, "session:one-too-many");
  // Existing buckets keep working.
  f.sid = "s0";
  EXPECT_TRUE(ledger->Reserve(f).ok());
  // Recovery that needs a new bucket fails loudly rather than forget usage.
  Json record = Json::Parse(R"([{"budget":"per-session","key":"session:x","metric":"calls",)"
                            R"("amount":1,"at":1767225600000000}])")
                    .value();
  core::Status st = ledger->Recover(record);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::kInternal);
  // Once the reservations are released, a full ledger collects and admits again.
  for (size_t i = 1; i < held.size(); ++i) ledger->Release(held[i]);
  clock.AdvanceSeconds(1);
  f.sid = "one-too-many";
  EXPECT_TRUE(ledger->Reserve(f).ok());
  EXPECT_LE(ledger->live_buckets(), 3u);
}

// --- Concurrency ------------------------------------------------------------------------------

TEST(BudgetLedgerConcurrency, SixtyFourThreadsAdmitExactlyTheLimit) {
  constexpr int kLimit = 100;
  constexpr int kThreads = 64;
  for (int round = 0; round < 5; ++round) {
    core::FakeClock clock(kJan1 * kMicros);
    auto ledger = Ledger({Spec("hot", "calls", kLimit, "1h", "agent")}, clock);
    std::atomic<int> admitted{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> threads;
    std::vector<std::vector<Reservation>> held(kThreads);
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        while (!go.load()) std::this_thread::yield();
        for (;;) {
          auto r = ledger->Reserve(Call());
          if (!r.ok()) {
            EXPECT_EQ(r.error().code, ErrorCode::kBudgetExceeded);
            return;
          }
          admitted.fetch_add(1);
          held[t].push_back(std::move(r).value());
        }
      });
    }
    go.store(true);
    for (std::thread& t : threads) t.join();
    EXPECT_EQ(admitted.load(), kLimit) << "round " << round;
    EXPECT_EQ(Bucket(*ledger, "hot", "agent:bot").reserved, kLimit);
  }
}

TEST(BudgetLedgerConcurrency, ReservingSettlingAndReleasingTogetherStaysExact) {
  constexpr int kThreads = 64;
  constexpr int kPerThread = 200;
  core::FakeClock clock(kJan1 * kMicros);
  Match only_bot;
  only_bot.agents = {"bot"};
  auto ledger = Ledger({Spec("bot", "calls", 1000, "run", "human", only_bot),
                        Spec("all", "calls", 1500, "run", "human"),
                        Spec("tokens", "output_tokens", 1 << 30, "1d", "agent")},
                       clock);
  std::atomic<int> settled_bot{0}, settled_all{0};
  std::atomic<int64_t> tokens{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        CallFacts f = Call(t % 2 == 0 ? "bot" : "other");
        f.estimate = {{"output_tokens", 10}};
        auto r = ledger->Reserve(f);
        if (!r.ok()) continue;
        if (i % 3 == 0) {
          ledger->Release(*r);
          continue;
        }
        ledger->Settle(*r, {{"output_tokens", 7}});
        if (t % 2 == 0) settled_bot.fetch_add(1);
        settled_all.fetch_add(1);
        tokens.fetch_add(7);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_LE(settled_bot.load(), 1000);
  // Whatever room releases left, fill it alone: the total is then exactly the limit.
  for (;;) {
    CallFacts f = Call("other");
    f.estimate = {{"output_tokens", 10}};
    auto r = ledger->Reserve(f);
    if (!r.ok()) break;
    ledger->Settle(*r, {{"output_tokens", 7}});
    settled_all.fetch_add(1);
    tokens.fetch_add(7);
  }
  EXPECT_EQ(settled_all.load(), 1500);
  EXPECT_EQ(Bucket(*ledger, "all", "human:alice|run:ses_root").used, settled_all.load());
  EXPECT_EQ(Bucket(*ledger, "all", "human:alice|run:ses_root").reserved, 0);
  EXPECT_EQ(Bucket(*ledger, "bot", "human:alice|run:ses_root").used, settled_bot.load());
  int64_t token_sum = Bucket(*ledger, "tokens", "agent:bot|day:2026-01-01").used +
                      Bucket(*ledger, "tokens", "agent:other|day:2026-01-01").used;
  EXPECT_EQ(token_sum, tokens.load());
}

}  // namespace
}  // namespace mandate::budget
