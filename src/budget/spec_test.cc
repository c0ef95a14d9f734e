#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mandate/budget/budget.h"
#include "mandate/core/clock.h"
#include "mandate/core/limits.h"

namespace mandate::budget {
namespace {

using core::ErrorCode;

bool Contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

BudgetSpec ValidSpec() {
  BudgetSpec s;
  s.name = "triage-writes";
  s.metric = ParseMetric("writes").value();
  s.limit = 50;
  s.window = ParseWindow("1d").value();
  s.scope = Scope::kAgent;
  return s;
}

TEST(ParseWindow, AcceptsRunCalendarDayAndSlidingDurations) {
  EXPECT_EQ(ParseWindow("run")->kind, Window::Kind::kRun);
  EXPECT_EQ(ParseWindow("1d")->kind, Window::Kind::kCalendarDay);
  struct Case {
    const char* text;
    int64_t micros;
  };
  for (const Case& c : std::vector<Case>{{"30s", 30000000LL},
                                         {"15m", 15 * 60000000LL},
                                         {"1h", 3600000000LL},
                                         {"2h", 7200000000LL},
                                         {"24h", 86400000000LL},  // sliding, unlike 1d
                                         {"2d", 2 * 86400000000LL},
                                         {"1500ms", 1500000LL},
                                         {"1s", 1000000LL},
                                         {"366d", 366 * 86400000000LL}}) {
    auto w = ParseWindow(c.text);
    ASSERT_TRUE(w.ok()) << c.text << ": " << w.error().message;
    EXPECT_EQ(w->kind, Window::Kind::kSliding) << c.text;
    EXPECT_EQ(w->duration_micros, c.micros) << c.text;
  }
}

TEST(ParseWindow, RefusesMalformedWindowsWithTheReason) {
  struct Case {
    const char* text;
    const char* reason;
  };
  for (const Case& c : std::vector<Case>{{"", "empty"},
                                         {"h", "expected a number"},
                                         {"Run", "expected a number"},
                                         {"15", "needs a unit"},
                                         {"1.5h", "fractions"},
                                         {"1w", "unknown unit"},
                                         {"1hh", "unknown unit"},
                                         {"-1h", "negative"},
                                         {"0s", "at least 1s"},
                                         {"999ms", "at least 1s"},
                                         {"367d", "at most 366d"},
                                         {"1234567890123h", "too long"}}) {
    auto w = ParseWindow(c.text);
    ASSERT_FALSE(w.ok()) << c.text;
    EXPECT_EQ(w.error().code, ErrorCode::kBadRequest);
    EXPECT_TRUE(Contains(w.error().message, c.reason)) << c.text << ": " << w.error().message;
    EXPECT_TRUE(Contains(w.error().message, "expected run, 1d")) << w.error().message;
  }
}

TEST(Window, ToStringReadsBackAsTheSameWindow) {
  for (const char* text : {"run", "1d", "30s", "90m", "2h", "24h", "2d", "1500ms", "366d"}) {
    Window w = ParseWindow(text).value();
    EXPECT_EQ(w.ToString(), text);
    EXPECT_EQ(ParseWindow(w.ToString()).value(), w) << text;
  }
  EXPECT_EQ(ParseWindow("60m")->ToString(), "1h");      // the largest exact unit
  EXPECT_EQ(ParseWindow("86400s")->ToString(), "24h");  // never "1d": that is the calendar day
}

TEST(ParseMetric, KnowsTheBuiltinsAndCustomCounters) {
  EXPECT_EQ(ParseMetric("calls")->kind, MetricKind::kCalls);
  EXPECT_EQ(ParseMetric("writes")->kind, MetricKind::kWrites);
  EXPECT_EQ(ParseMetric("input_tokens")->kind, MetricKind::kInputTokens);
  EXPECT_EQ(ParseMetric("output_tokens")->kind, MetricKind::kOutputTokens);
  EXPECT_EQ(ParseMetric("spend_usd_micros")->kind, MetricKind::kSpendUsdMicros);
  auto custom = ParseMetric("pages_printed2");
  ASSERT_TRUE(custom.ok());
  EXPECT_EQ(custom->kind, MetricKind::kCustom);
  EXPECT_EQ(custom->name, "pages_printed2");
  for (const std::string& bad :
       {std::string(""), std::string("Calls"), std::string("1pages"), std::string("pages-printed"),
        std::string("_x"), std::string(core::kConfigNameBytesMax + 1, 'a')}) {
    auto m = ParseMetric(bad);
    ASSERT_FALSE(m.ok()) << bad;
    EXPECT_EQ(m.error().code, ErrorCode::kBadRequest);
    EXPECT_TRUE(Contains(m.error().message, "custom counter name")) << m.error().message;
  }
}

TEST(ParseScope, KnowsTheFiveScopes) {
  for (Scope s :
       {Scope::kSession, Scope::kSessionTree, Scope::kAgent, Scope::kHuman, Scope::kTask}) {
    EXPECT_EQ(ParseScope(ScopeName(s)).value(), s);
  }
  for (const char* bad : {"", "Session", "tree", "run"}) {
    auto s = ParseScope(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.error().code, ErrorCode::kBadRequest);
    EXPECT_TRUE(
        Contains(s.error().message, "expected session, session_tree, agent, human or task"));
  }
}

TEST(Validate, AcceptsAWellFormedSpec) {
  BudgetSpec s = ValidSpec();
  s.match.agents = {"triage-bot"};
  s.match.actions = {"jira:create_issue", "github:*"};
  s.match.classes = {core::ActionClass::kWrite, core::ActionClass::kDestructive};
  EXPECT_TRUE(Validate(s).ok());
  s.limit = 0;  // refuses every call with a positive cost, but is a valid budget
  EXPECT_TRUE(Validate(s).ok());
}

TEST(Validate, RefusesEachBrokenFieldNamingTheBudget) {
  struct Case {
    const char* what;
    void (*mutate)(BudgetSpec&);
    const char* reason;
  };
  const std::vector<Case> cases = {
      {"empty name", [](BudgetSpec& s) { s.name.clear(); }, "needs a name"},
      {"long name", [](BudgetSpec& s) { s.name.assign(core::kConfigNameBytesMax + 1, 'n'); },
       "longer than"},
      {"negative limit", [](BudgetSpec& s) { s.limit = -1; }, "limit must be >= 0, got -1"},
      {"kind and name disagree",
       [](BudgetSpec& s) {
         s.metric = Metric{MetricKind::kCalls, "writes"};
       },
       "does not agree"},
      {"custom kind with a builtin name",
       [](BudgetSpec& s) {
         s.metric = Metric{MetricKind::kCustom, "calls"};
       },
       "does not agree"},
      {"bad counter name",
       [](BudgetSpec& s) {
         s.metric = Metric{MetricKind::kCustom, "Bad"};
       },
       "custom counter name"},
      {"sliding below 1s",
       [](BudgetSpec& s) {
         s.window = Window{Window::Kind::kSliding, 999000};
       },
       "from 1s"},
      {"sliding not whole ms",
       [](BudgetSpec& s) {
         s.window = Window{Window::Kind::kSliding, 1000001};
       },
       "milliseconds"},
      {"sliding too long",
       [](BudgetSpec& s) {
         s.window = Window{Window::Kind::kSliding, (core::kBudgetWindowSecondsMax + 1) * 1000000};
       },
       "to 366d"},
      {"unknown window kind", [](BudgetSpec& s) { s.window.kind = static_cast<Window::Kind>(7); },
       "window kind"},
      {"unknown scope", [](BudgetSpec& s) { s.scope = static_cast<Scope>(9); }, "unknown scope"},
      {"action without colon", [](BudgetSpec& s) { s.match.actions = {"jira"}; },
       "expected <upstream>:<tool>"},
      {"action without upstream", [](BudgetSpec& s) { s.match.actions = {":x"}; },
       "expected <upstream>:<tool>"},
      {"action without tool", [](BudgetSpec& s) { s.match.actions = {"jira:"}; },
       "expected <upstream>:<tool>"},
      {"empty agent",
       [](BudgetSpec& s) {
         s.match.agents = {"a", ""};
       },
       "match.agent has an empty"},
      {"empty human", [](BudgetSpec& s) { s.match.humans = {""}; }, "match.human has an empty"},
      {"empty upstream", [](BudgetSpec& s) { s.match.upstreams = {""}; },
       "match.upstream has an empty"},
      {"too many values",
       [](BudgetSpec& s) { s.match.upstreams.assign(core::kBudgetMatchValuesMax + 1, "jira"); },
       "more than 256 values"},
      {"too many classes",
       [](BudgetSpec& s) {
         s.match.classes.assign(core::kBudgetMatchValuesMax + 1, core::ActionClass::kRead);
       },
       "more than 256 values"},
      {"unknown class",
       [](BudgetSpec& s) { s.match.classes = {static_cast<core::ActionClass>(5)}; },
       "unknown class"},
  };
  for (const Case& c : cases) {
    BudgetSpec s = ValidSpec();
    c.mutate(s);
    core::Status st = Validate(s);
    ASSERT_FALSE(st.ok()) << c.what;
    EXPECT_EQ(st.error().code, ErrorCode::kBadRequest) << c.what;
    EXPECT_TRUE(Contains(st.error().message, c.reason)) << c.what << ": " << st.error().message;
    if (!s.name.empty() && s.name.size() <= core::kConfigNameBytesMax) {
      EXPECT_TRUE(Contains(st.error().message, "budget \"triage-writes\"")) << st.error().message;
    }
  }
}

TEST(BudgetLedgerCreate, RefusesInvalidSpecsDuplicateNamesAndTooManyBudgets) {
  core::FakeClock clock;
  BudgetSpec bad = ValidSpec();
  bad.limit = -5;
  auto a = BudgetLedger::Create({ValidSpec(), bad}, clock);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().code, ErrorCode::kBadRequest);
  EXPECT_TRUE(Contains(a.error().message, "limit must be >= 0")) << a.error().message;

  auto b = BudgetLedger::Create({ValidSpec(), ValidSpec()}, clock);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.error().code, ErrorCode::kBadRequest);
  EXPECT_TRUE(Contains(b.error().message, "duplicate budget name \"triage-writes\""));

  std::vector<BudgetSpec> many;
  for (size_t i = 0; i <= core::kBudgetsMax; ++i) {
    BudgetSpec s = ValidSpec();
    s.name = "b" + std::to_string(i);
    many.push_back(s);
  }
  auto c = BudgetLedger::Create(many, clock);
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(Contains(c.error().message, "more than 1024 budgets")) << c.error().message;
  many.pop_back();
  auto d = BudgetLedger::Create(many, clock);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ((*d)->size(), core::kBudgetsMax);

  auto none = BudgetLedger::Create({}, clock);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ((*none)->size(), 0u);
}

TEST(BudgetExceededCode, IsPublicBudgetExceededWithHttp429) {
  EXPECT_EQ(core::PublicCode(ErrorCode::kBudgetExceeded), "budget_exceeded");
  EXPECT_EQ(core::HttpStatus(ErrorCode::kBudgetExceeded), 429);
}

}  // namespace
}  // namespace mandate::budget
