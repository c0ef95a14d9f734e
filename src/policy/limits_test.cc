// The named limits of the policy engine (STYLE.md: "a limit on everything"): file size, AST
// depth, evaluation steps, and the entity hierarchy walk. Each is exceeded here and must give
// an error, never a crash or an unbounded run.
#include "mandate/core/limits.h"

#include <gtest/gtest.h>

#include <string>

#include "mandate/policy/authorize.h"
#include "mandate/policy/policy_set.h"
#include "policy/ast.h"
#include "policy/parser.h"

namespace mandate::policy {
namespace {

std::string WithCondition(const std::string& expr) {
  return "permit(principal, action, resource) when { " + expr + " };";
}

std::string Repeat(std::string_view s, size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (size_t i = 0; i < n; ++i) out.append(s);
  return out;
}

TEST(Limits, RejectsAFileLargerThanTheLimit) {
  std::string text = "permit(principal, action, resource);";
  text.resize(core::kPolicyFileBytesMax + 1, ' ');
  auto set = PolicySet::Parse(text, "big.cedar");
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.error().code, core::ErrorCode::kPayloadTooLarge);
  EXPECT_EQ(set.error().message, "big.cedar: policy file is larger than 1048576 bytes");
}

TEST(Limits, AcceptsAFileExactlyAtTheLimit) {
  std::string text = "permit(principal, action, resource);";
  text.resize(core::kPolicyFileBytesMax, ' ');
  auto set = PolicySet::Parse(text, "big.cedar");
  ASSERT_TRUE(set.ok()) << set.error().message;
  EXPECT_EQ(set->size(), 1u);
}

TEST(Limits, ParsesManyPoliciesInOneFile) {
  std::string text = Repeat("permit(principal, action, resource) when { true };\n", 10000);
  auto set = PolicySet::Parse(text, "many.cedar");
  ASSERT_TRUE(set.ok()) << set.error().message;
  EXPECT_EQ(set->size(), 10000u);
  EXPECT_EQ(set->policies().back().id, "many.cedar:9999");
}

TEST(Limits, RejectsParenthesesNestedBeyondTheAstDepth) {
  const size_t n = core::kPolicyAstDepthMax + 1;
  auto set = PolicySet::Parse(WithCondition(Repeat("(", n) + "true" + Repeat(")", n)), "d.cedar");
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.error().code, core::ErrorCode::kBadRequest);
  EXPECT_NE(set.error().message.find("expression nested deeper than 64 levels"), std::string::npos)
      << set.error().message;
}

TEST(Limits, AcceptsNestingWithinTheAstDepth) {
  const size_t n = core::kPolicyAstDepthMax - 2;
  auto set = PolicySet::Parse(WithCondition(Repeat("(", n) + "true" + Repeat(")", n)), "d.cedar");
  EXPECT_TRUE(set.ok()) << set.error().message;
}

TEST(Limits, DeeplyNestedInputIsAnErrorNotAStackOverflow) {
  for (std::string_view open : {"(", "[", "{a: ", "if true then ", "!(", "-("}) {
    const size_t n = 60000;
    auto set = PolicySet::Parse(WithCondition(Repeat(open, n) + "1"), "d.cedar");
    ASSERT_FALSE(set.ok()) << open;
    EXPECT_NE(set.error().message.find("nested deeper than"), std::string::npos)
        << open << ": " << set.error().message;
  }
}

TEST(Limits, LongLeftAssociativeChainsAreBoundedByTreeDepth) {
  // These build deep trees without recursing in the parser; the depth check still applies.
  for (std::string expr :
       {"context" + Repeat(".a", 100), "1" + Repeat(" + 1", 100), "1" + Repeat(" * 1", 100)}) {
    auto set = PolicySet::Parse(WithCondition(expr), "d.cedar");
    ASSERT_FALSE(set.ok()) << expr;
    EXPECT_NE(set.error().message.find("nested deeper than 64 levels"), std::string::npos);
  }
}

TEST(Limits, ExtendedHasIsBoundedByTreeDepth) {
  auto set = PolicySet::Parse(WithCondition("context has a" + Repeat(".a", 100)), "d.cedar");
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.error().message.find("nested deeper than 64 levels"), std::string::npos);
}

TEST(Limits, LongAndOrChainsStayShallow) {
  std::string expr = "false" + Repeat(" || false", 5000) + " || true";
  auto e = ParseExpression(expr, "e");
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ((*e)->depth, 2u);
  auto set = PolicySet::Parse(WithCondition(expr), "chain.cedar");
  ASSERT_TRUE(set.ok());
  Response r = IsAuthorized(*set, Request(), Entities());
  EXPECT_TRUE(r.allow);
}

TEST(Limits, StopsEvaluationAfterTheStepLimitAndSkipsThePolicy) {
  // One step per evaluated node: the || node and each of its operands.
  std::string expr = "false" + Repeat(" || false", core::kPolicyEvalStepsMax) + " || true";
  auto set = PolicySet::Parse("@id(\"slow\") " + WithCondition(expr), "steps.cedar");
  ASSERT_TRUE(set.ok()) << set.error().message;
  Response r = IsAuthorized(*set, Request(), Entities());
  EXPECT_FALSE(r.allow);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].rfind("slow: evaluation exceeded 100000 steps at steps.cedar:1:", 0), 0u)
      << r.errors[0];
}

TEST(Limits, TheStepLimitIsPerPolicy) {
  // Two policies each below the limit, together above it: both evaluate.
  std::string expr = "false" + Repeat(" || false", core::kPolicyEvalStepsMax / 2) + " || true";
  auto set = PolicySet::Parse(WithCondition(expr) + "\n" + WithCondition(expr), "steps.cedar");
  ASSERT_TRUE(set.ok());
  Response r = IsAuthorized(*set, Request(), Entities());
  EXPECT_TRUE(r.allow);
  EXPECT_EQ(r.permits.size(), 2u);
  EXPECT_TRUE(r.errors.empty());
}

TEST(Limits, LargeSetOperationsCountTowardTheStepLimit) {
  Request req;
  std::vector<Value> big;
  for (size_t i = 0; i < core::kPolicyEvalStepsMax + 1; ++i) {
    big.push_back(Value::Long(static_cast<int64_t>(i)));
  }
  Value::RecordFields ctx;
  ctx.emplace("big", Value::Set(std::move(big)));
  req.context = Value::Record(std::move(ctx));
  auto set = PolicySet::Parse(WithCondition("context.big.containsAll(context.big)"), "s.cedar");
  ASSERT_TRUE(set.ok());
  Response r = IsAuthorized(*set, req, Entities());
  EXPECT_FALSE(r.allow);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("evaluation exceeded"), std::string::npos);
}

TEST(Limits, ExtensionCallsAndTagReadsCountTowardTheStepLimit) {
  // Each call, its receiver and its arguments are nodes: ip(context.a).isIpv6() is 4 steps,
  // principal.hasTag("t") 3, so these kPolicyEvalStepsMax / 3 operands need more steps than
  // the limit.
  std::string expr = "false";
  for (size_t i = 0; i < core::kPolicyEvalStepsMax / 3; ++i) {
    expr += i % 2 == 0 ? " || ip(context.a).isIpv6()" : " || principal.hasTag(\"t\")";
  }
  Value::RecordFields ctx;
  ctx.emplace("a", Value::String("10.0.0.1"));
  Request req;
  req.context = Value::Record(std::move(ctx));
  auto set = PolicySet::Parse(WithCondition(expr), "ext.cedar");
  ASSERT_TRUE(set.ok()) << set.error().message;
  Response r = IsAuthorized(*set, req, Entities());
  EXPECT_FALSE(r.allow);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("evaluation exceeded"), std::string::npos);
}

TEST(Limits, ExtensionLiteralsOfAnyLengthAreErrorsNotCrashes) {
  // Long strings reach every parser: each rejects them in linear time.
  std::string digits(200000, '9');
  for (std::string expr : {"decimal(\"" + digits + ".5\")", "duration(\"" + digits + "ms\")",
                           "ip(\"" + digits + "\")", "datetime(\"" + digits + "\")",
                           "decimal(\"0." + digits + "\")", "duration(\"-" + digits + "d\")"}) {
    auto set = PolicySet::Parse(WithCondition(expr + " == 1"), "long.cedar");
    ASSERT_TRUE(set.ok()) << set.error().message;
    Response r = IsAuthorized(*set, Request(), Entities());
    EXPECT_FALSE(r.allow);
    EXPECT_EQ(r.errors.size(), 1u) << expr.substr(0, 12);
  }
}

TEST(Limits, AnOversizedEntityHierarchyIsAnErrorForThePolicy) {
  Entities es;
  const size_t n = core::kEntityAncestorsMax + 10;
  ASSERT_TRUE(es.Add({"Human", "alice"}, Value(), {{"G", "0"}}).ok());
  for (size_t i = 0; i < n; ++i) {
    ASSERT_TRUE(es.Add({"G", std::to_string(i)}, Value(), {{"G", std::to_string(i + 1)}}).ok());
  }
  auto set = PolicySet::Parse(
      "@id(\"scope\") permit(principal in G::\"top\", action, resource);\n"
      "@id(\"expr\") permit(principal, action, resource) when { resource in G::\"top\" };",
      "h.cedar");
  ASSERT_TRUE(set.ok());
  Request req;
  req.principal = {"Human", "alice"};
  req.resource = {"G", "0"};
  Response r = IsAuthorized(*set, req, es);
  EXPECT_FALSE(r.allow);
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_NE(r.errors[0].find("scope: entity hierarchy above Human::\"alice\" has more than 1024"),
            std::string::npos)
      << r.errors[0];
  EXPECT_NE(r.errors[1].find("expr: entity hierarchy above G::\"0\" has more than 1024"),
            std::string::npos)
      << r.errors[1];
}

}  // namespace
}  // namespace mandate::policy
