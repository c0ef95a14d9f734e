#include "mandate/policy/validator.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "policy/ast.h"

namespace mandate::policy {
namespace {

using core::Json;

ToolSource Tool(std::string name, core::ActionClass cls, const std::string& input_schema) {
  ToolSource t;
  t.name = std::move(name);
  t.action_class = cls;
  if (!input_schema.empty()) {
    auto j = Json::Parse(input_schema);
    EXPECT_TRUE(j.ok()) << j.error().message;
    t.input_schema = *j;
  }
  return t;
}

// jira (reads and a destructive delete), github (typed resource Repo), stripe (a refund with
// an amount), and an open upstream "legacy" whose tool list is not known.
const Schema& TestSchema() {
  static const Schema* schema = [] {
    SchemaSource src;
    src.upstreams.push_back(UpstreamSource{
        "jira", "", true,
        {Tool("get_issue", core::ActionClass::kRead,
              R"({"type":"object","properties":{"key":{"type":"string"},"fields":{"type":"array","items":{"type":"string"}},"limit":{"type":"integer"}},"required":["key","fields"]})"),
         Tool("search", core::ActionClass::kRead, R"({"type":"object","properties":{"jql":{"type":"string"}},"required":["jql"]})"),
         Tool("delete_issue", core::ActionClass::kDestructive,
              R"({"type":"object","properties":{"key":{"type":"string"},"env":{"type":"string"}},"required":["key"]})")},
        "",
        {}});
    src.upstreams.push_back(UpstreamSource{
        "github", "Repo", true,
        {Tool("get_file", core::ActionClass::kRead,
              R"({"type":"object","properties":{"owner":{"type":"string"},"repo":{"type":"string"},"path":{"type":"string"}},"required":["owner","repo","path"]})")},
        "",
        {}});
    src.upstreams.push_back(UpstreamSource{
        "stripe", "", true,
        {Tool("create_refund", core::ActionClass::kWrite,
              R"({"type":"object","properties":{"amount_cents":{"type":"integer"},"reason":{"type":"string"},"meta":{"anyOf":[]}},"required":["amount_cents","reason"]})")},
        "",
        {}});
    src.upstreams.push_back(UpstreamSource{"legacy", "", false, {}, "", {}});
    auto s = Schema::Build(src);
    EXPECT_TRUE(s.ok()) << s.error().message;
    return new Schema(std::move(s).value());
  }();
  return *schema;
}

std::vector<ValidationFinding> Check(const std::string& text) {
  auto set = PolicySet::Parse(text, "p.cedar");
  EXPECT_TRUE(set.ok()) << set.error().message;
  if (!set.ok()) return {};
  return Validate(*set, TestSchema());
}

// "line:col rule" of each finding, for compact expectations.
std::vector<std::string> Brief(const std::vector<ValidationFinding>& fs) {
  std::vector<std::string> out;
  for (const auto& f : fs) {
    out.push_back(std::to_string(f.location.line) + ":" + std::to_string(f.location.column) + " " + f.rule);
  }
  return out;
}

std::string All(const std::vector<ValidationFinding>& fs) {
  std::string out;
  for (const auto& f : fs) out += f.ToString() + "\n";
  return out;
}

TEST(Validator, AcceptsTheWorkedExamples) {
  auto fs = Check(R"(
@id("triage-read")
permit (principal == Agent::"triage-bot", action in Action::"read", resource in Upstream::"jira");
@id("eng-github")
permit (principal in Group::"eng", action in Action::"github", resource);
@id("docs-repo-only")
permit (principal == Agent::"docs-bot", action in Action::"github", resource == Repo::"acme/docs");
@id("small-refunds") @approval("finance-approvers")
permit (principal in Group::"support-agents", action == Action::"stripe:create_refund", resource)
when { context.args.amount_cents <= 50000 };
@id("office-hours-writes")
forbid (principal, action in Action::"write", resource)
unless { context.time.hour_utc >= 8 && context.time.hour_utc < 18 };
@id("no-prod-deletes")
forbid (principal, action in Action::"destructive", resource)
when { context.args has env && context.args.env == "prod" };
@id("delegation")
permit (principal, action == Action::"mandate:delegate", resource in Group::"helpers")
when { context.session.depth < 2 && context.session.human == Human::"alice" };
@id("model-tier")
forbid (principal, action in Action::"jira", resource)
when { context.session.model has tier && context.session.model.tier == "small" && context.request.protocol == "mcp" };
@id("fields")
permit (principal, action == Action::"jira:get_issue", resource)
when { context.args.fields.contains("summary") && (if context.args has limit then context.args.limit < 50 else true) };
@id("legacy")
permit (principal, action == Action::"legacy:whatever", resource) when { context.args.anything.goes == 1 };
@id("unknown-meta")
permit (principal, action == Action::"stripe:create_refund", resource) when { context.args has meta && context.args.meta.x == "y" };
)");
  EXPECT_TRUE(fs.empty()) << All(fs);
}

TEST(Validator, ReportsAnUnknownActionWithASuggestion) {
  auto fs = Check("permit (principal, action == Action::\"jira:get_isue\", resource);\n"
                  "permit (principal, action in [Action::\"read\", Action::\"jiraa:search\"], resource);\n"
                  "permit (principal, action, resource) when { action in Action::\"destrutive\" };");
  ASSERT_EQ(Brief(fs), (std::vector<std::string>{"1:1 no-applicable-action", "1:30 unknown-action", "2:47 unknown-action",
                                                 "3:55 unknown-action"}))
      << All(fs);
  EXPECT_EQ(fs[1].ToString(),
            "p.cedar:1:30: error: [unknown-action] p.cedar:0: unknown action Action::\"jira:get_isue\"; did you mean "
            "Action::\"jira:get_issue\"?");
  EXPECT_NE(fs[2].message.find("did you mean Action::\"jira:search\"?"), std::string::npos) << fs[2].message;
  EXPECT_NE(fs[3].message.find("did you mean Action::\"destructive\"?"), std::string::npos) << fs[3].message;
  EXPECT_EQ(fs[0].severity, ValidationFinding::Severity::kWarning);
}

TEST(Validator, ReportsAnUnknownEntityType) {
  auto fs = Check("permit (principal is Agnet, action, resource) when { resource in Repoo::\"x\" };");
  EXPECT_EQ(Brief(fs), (std::vector<std::string>{"1:1 no-applicable-action", "1:9 unknown-entity-type", "1:66 unknown-entity-type"}))
      << All(fs);
  EXPECT_NE(fs[1].message.find("did you mean Agent?"), std::string::npos);
  EXPECT_NE(fs[2].message.find("did you mean Repo?"), std::string::npos);
}

TEST(Validator, ReportsATypoInAnArgumentWhereItIs) {
  auto fs = Check("permit (principal, action == Action::\"stripe:create_refund\", resource)\n"
                  "when { context.args.amount_cent <= 50000 };");
  ASSERT_EQ(Brief(fs), (std::vector<std::string>{"2:21 unknown-attribute"})) << All(fs);
  EXPECT_EQ(fs[0].message, "`context.args` has no attribute `amount_cent`; did you mean `amount_cents`?");
  EXPECT_EQ(fs[0].severity, ValidationFinding::Severity::kError);
}

TEST(Validator, NamesTheActionsAFindingOccursFor) {
  // `key` exists for get_issue and delete_issue, not for search nor for stripe or github.
  auto fs = Check(R"(forbid (principal, action in Action::"jira", resource) when { context.args.key == "X-1" };)");
  ASSERT_EQ(Brief(fs), (std::vector<std::string>{"1:76 unknown-attribute"})) << All(fs);
  EXPECT_NE(fs[0].message.find("(for Action::\"jira:search\")"), std::string::npos) << fs[0].message;
  // For every action: no list.
  fs = Check(R"(forbid (principal, action in Action::"jira", resource) when { context.tiem.hour_utc > 1 };)");
  ASSERT_EQ(fs.size(), 1u) << All(fs);
  EXPECT_EQ(fs[0].message, "`context` has no attribute `tiem`; did you mean `time`?");
}

TEST(Validator, RequiresAHasTestForOptionalAttributes) {
  auto fs = Check(R"(
permit (principal, action == Action::"jira:get_issue", resource) when { context.args.limit < 10 };
permit (principal, action == Action::"jira:get_issue", resource) when { context.args has limit || context.args.limit < 10 };
permit (principal, action, resource) when { context.session.model.tier == "large" };
permit (principal, action == Action::"jira:get_issue", resource) when { context.args has limit } when { context.args.limit < 10 };
permit (principal, action == Action::"jira:get_issue", resource) unless { !(context.args has limit) || context.args.limit > 10 };
)");
  EXPECT_EQ(Brief(fs), (std::vector<std::string>{"2:86 unsafe-optional-attribute", "3:112 unsafe-optional-attribute",
                                                 "4:67 unsafe-optional-attribute", "6:117 unsafe-optional-attribute"}))
      << All(fs);
  EXPECT_NE(fs[0].message.find("test `context.args has limit` first"), std::string::npos) << fs[0].message;
}

TEST(Validator, ChecksOnlyTheActionsTheScopeOrAGuardLetThrough) {
  // Each action reads its own arguments: no finding, though other tools have no `jql`.
  auto fs = Check(R"(
permit (principal, action, resource) when { action == Action::"jira:search" && context.args.jql like "project = X*" };
permit (principal, action == Action::"jira:search", resource) when { context.args.jql != "" };
permit (principal, action, resource) when { if action in Action::"stripe" then context.args.amount_cents < 100 else true };
permit (principal is Human, action, resource is Repo) when { context.args.repo == "docs" };
)");
  EXPECT_TRUE(fs.empty()) << All(fs);
}

TEST(Validator, ReportsTypeErrors) {
  auto fs = Check(R"(
permit (principal, action == Action::"stripe:create_refund", resource) when { context.args.amount_cents == "100" };
permit (principal, action == Action::"stripe:create_refund", resource) when { context.args.reason < 3 };
permit (principal, action, resource) when { context.time.hour_utc && true };
permit (principal, action == Action::"jira:get_issue", resource) when { context.args.fields like "a*" };
permit (principal, action == Action::"jira:get_issue", resource) when { context.args.fields.contains(1) };
permit (principal, action, resource) when { (if context.time.unix > 0 then 1 else "x") == 1 };
permit (principal, action, resource) when { context.time.weekday };
permit (principal, action, resource) when { [1, "a"].contains(1) };
permit (principal, action, resource) when { principal.department == "eng" };
permit (principal, action, resource) when { context.time.hour_utc + "h" == 3 };
permit (principal, action in Action::"jira", resource) when { context.request.path.isEmpty() };
permit (principal, action, resource) when { 1 in Group::"x" };
)");
  EXPECT_EQ(Brief(fs), (std::vector<std::string>{"2:105 type-error", "3:92 type-error", "4:58 type-error", "5:86 type-error",
                                                 "6:93 type-error", "7:46 type-error", "8:58 type-error", "9:45 type-error",
                                                 "10:55 unknown-attribute", "10:55 unknown-attribute", "11:69 type-error",
                                                 "12:79 type-error", "13:45 type-error"}))
      << All(fs);
  EXPECT_EQ(fs[0].message, "`context.args.amount_cents` is a Long and `\"100\"` is a String: `==` compares values of the same type, so this is always false");
}

TEST(Validator, RefusesEmptySetLiterals) {
  auto fs = Check(R"(permit (principal, action, resource) when { context.time.unix == 0 || [] == [] };)");
  EXPECT_EQ(Brief(fs), (std::vector<std::string>{"1:71 empty-set", "1:77 empty-set"})) << All(fs);
}

TEST(Validator, WarnsAboutPoliciesThatCanNeverApply) {
  auto fs = Check(R"(
permit (principal in Upstream::"jira", action, resource);
permit (principal == Agent::"bot", action, resource) when { principal == Human::"alice" };
permit (principal, action in Action::"read", resource) when { context has nothing };
permit (principal, action == Action::"mandate:delegate", resource is Repo);
)");
  EXPECT_EQ(Brief(fs), (std::vector<std::string>{"2:1 no-applicable-action", "3:1 impossible-policy", "4:1 impossible-policy",
                                                 "5:1 no-applicable-action"}))
      << All(fs);
  for (const auto& f : fs) EXPECT_EQ(f.severity, ValidationFinding::Severity::kWarning);
}

TEST(Validator, AcceptsAnyToolOfAnOpenUpstreamWithUnknownArguments) {
  auto fs = Check(R"(
permit (principal, action == Action::"legacy:new_tool", resource) when { context.args.x < 3 && context.args.y like "a" };
permit (principal, action in Action::"legacy", resource) when { action in Action::"read" };
forbid (principal, action, resource) when { action == Action::"legacy:drop" && context.args.really };
)");
  EXPECT_TRUE(fs.empty()) << All(fs);
  // But other parts of the context are still checked.
  fs = Check(R"(permit (principal, action == Action::"legacy:new_tool", resource) when { context.sesion.id == "" };)");
  EXPECT_EQ(Brief(fs), (std::vector<std::string>{"1:82 unknown-attribute"})) << All(fs);
}

TEST(Validator, TreatsExpressionKindsItDoesNotKnowAsUnknown) {
  // A kind added after this validator (e.g. an extension function) is neither an error nor a
  // reason to stop checking what is around it.
  auto set = PolicySet::Parse(R"(permit (principal, action, resource) when { true };)", "p.cedar");
  ASSERT_TRUE(set.ok());
  std::vector<Policy> policies = set->policies();
  auto future = std::make_unique<Expr>();
  future->kind = static_cast<ExprKind>(200);
  future->line = 1;
  future->column = 45;
  auto lit = std::make_unique<Expr>();
  lit->kind = ExprKind::kLiteral;
  lit->value = Value::String("10.0.0.1");
  future->children.push_back(std::move(lit));
  auto typo = std::make_unique<Expr>();  // context.tme: still reported
  typo->kind = ExprKind::kGetAttr;
  typo->name = "tme";
  typo->line = 1;
  typo->column = 60;
  auto ctx = std::make_unique<Expr>();
  ctx->kind = ExprKind::kVar;
  ctx->var = Var::kContext;
  typo->children.push_back(std::move(ctx));
  future->children.push_back(std::move(typo));
  auto eq = std::make_unique<Expr>();  // future(...) == 1: unknown compares with anything
  eq->kind = ExprKind::kEq;
  eq->children.push_back(std::move(future));
  auto one = std::make_unique<Expr>();
  one->kind = ExprKind::kLiteral;
  one->value = Value::Long(1);
  eq->children.push_back(std::move(one));
  policies[0].conditions[0].expr = std::shared_ptr<const Expr>(std::move(eq));
  auto fs = Validate(policies, TestSchema());
  EXPECT_EQ(Brief(fs), (std::vector<std::string>{"1:60 unknown-attribute"})) << All(fs);
}

TEST(Validator, StopsAtItsStepLimitAndSaysWhatWasNotChecked) {
  auto set = PolicySet::Parse(R"(
@id("a") permit (principal, action, resource) when { context.time.hour_utc > 1 };
@id("b") permit (principal, action, resource) when { context.tiem.hour_utc > 1 };
@id("c") permit (principal, action, resource) when { context.tiem.hour_utc > 1 };
)", "p.cedar");
  ASSERT_TRUE(set.ok());
  // Enough for "a" (about 10 environments, a few nodes each), not for all three.
  auto fs = Validate(set->policies(), TestSchema(), 150);
  ASSERT_FALSE(fs.empty());
  EXPECT_EQ(fs.back().rule, "validation-incomplete") << All(fs);
  EXPECT_EQ(fs.back().severity, ValidationFinding::Severity::kWarning);
  EXPECT_NE(fs.back().message.find("were not (fully) checked"), std::string::npos);
  for (const auto& f : fs) EXPECT_NE(f.policy_id, "a") << All(fs);
  // With the default limit everything is checked.
  EXPECT_EQ(Brief(Validate(*set, TestSchema())), (std::vector<std::string>{"3:62 unknown-attribute", "4:62 unknown-attribute"}));
}

TEST(ClosestName, SuggestsOnlyLikelyTypos) {
  EXPECT_EQ(ClosestName("amount_cent", {"amount_cents", "reason"}), "amount_cents");
  EXPECT_EQ(ClosestName("tiem", {"time", "task"}), "time");
  EXPECT_EQ(ClosestName("zzz", {"time", "task"}), "");
  EXPECT_EQ(ClosestName("tiem", {"tiem"}), "");  // itself is not a suggestion
  EXPECT_EQ(ClosestName("c", {"a", "b"}), "");     // too short to tell
}

}  // namespace
}  // namespace mandate::policy
