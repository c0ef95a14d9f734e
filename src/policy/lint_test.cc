#include "mandate/policy/lint.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mandate::policy {
namespace {

std::vector<LintWarning> LintText(const std::string& text, LintContext ctx = {}) {
  auto set = PolicySet::Parse(text, "p.cedar");
  EXPECT_TRUE(set.ok()) << set.error().message;
  if (ctx.upstreams.empty()) ctx.upstreams = {"github", "jira"};
  return Lint(*set, ctx);
}

std::vector<std::string> Rules(const std::vector<LintWarning>& ws) {
  std::vector<std::string> out;
  for (const auto& w : ws) out.push_back(w.policy_id + ":" + w.rule);
  return out;
}

TEST(Lint, FlagsAllowAllAndItsMissingApproval) {
  auto ws = LintText(R"(@id("everything") permit (principal, action, resource);)");
  EXPECT_EQ(Rules(ws), (std::vector<std::string>{"everything:allow-all", "everything:destructive-without-approval"}));
  EXPECT_EQ(ws[0].ToString(), "p.cedar:1:1: warning: [allow-all] everything: permits every action on every resource to every principal");
  // A condition, or any scope constraint, makes it something else.
  EXPECT_TRUE(Rules(LintText(R"(@id("a") permit (principal, action in Action::"read", resource);)")).empty());
}

TEST(Lint, FlagsAPermitThatAnUnconditionalForbidCovers) {
  auto ws = LintText(R"(
@id("bot-reads") permit (principal == Agent::"bot", action in Action::"read", resource);
@id("no-bot") forbid (principal == Agent::"bot", action, resource);
@id("jira-reads") permit (principal, action in Action::"read", resource in Upstream::"jira");
@id("no-github-when") forbid (principal, action, resource in Upstream::"jira") when { context.args has env };
)");
  EXPECT_EQ(Rules(ws), (std::vector<std::string>{"bot-reads:unreachable-permit"}));
  EXPECT_NE(ws[0].message.find("no-bot"), std::string::npos);
}

TEST(Lint, FlagsDestructivePermitsWithoutApproval) {
  LintContext ctx;
  ctx.upstreams = {"github"};
  ctx.tool_classes = {{"github:delete_repo", core::ActionClass::kDestructive}, {"github:get_file", core::ActionClass::kRead}};
  auto ws = LintText(R"(
@id("d1") permit (principal, action in Action::"destructive", resource) when { true };
@id("d2") permit (principal, action == Action::"github:delete_repo", resource);
@id("d3") permit (principal, action in Action::"github", resource);
@id("ok-read") permit (principal, action == Action::"github:get_file", resource);
@id("ok-approval") @approval("admins") permit (principal, action in Action::"destructive", resource);
)", ctx);
  EXPECT_EQ(Rules(ws), (std::vector<std::string>{"d1:destructive-without-approval", "d2:destructive-without-approval",
                                                 "d3:destructive-without-approval"}));
}

TEST(Lint, FlagsNamesThatDoNotExist) {
  LintContext ctx;
  ctx.upstreams = {"github"};
  ctx.humans = std::set<std::string>{"alice"};
  ctx.agents = std::set<std::string>{"bot"};
  ctx.groups = std::set<std::string>{"eng"};
  auto ws = LintText(R"(
@id("n1") permit (principal == Agent::"bott", action == Action::"github:get_file", resource);
@id("n2") permit (principal, action == Action::"gitlab:get_file", resource) when { principal in Human::"alicia" };
@id("n3") permit (principal in Group::"engg", action in Action::"reads", resource);
@id("ok") permit (principal == Agent::"bot", action in [Action::"github", Action::"read"], resource) when { principal == Human::"alice" || principal in Group::"eng" };
)", ctx);
  // Actions are left to the validator (unknown-action).
  ASSERT_EQ(Rules(ws), (std::vector<std::string>{"n1:unknown-name", "n2:unknown-name", "n3:unknown-name"}));
  EXPECT_NE(ws[0].message.find("no agent named \"bott\""), std::string::npos);
  EXPECT_EQ(ws[0].location.column, 32u);  // where the literal is, not the policy head
  EXPECT_NE(ws[1].message.find("no human named \"alicia\""), std::string::npos);
  EXPECT_EQ(ws[1].location.line, 3u);
  EXPECT_NE(ws[2].message.find("no registered human or agent is in group \"engg\""), std::string::npos);
  // Without a registry, humans, agents and groups are not checked.
  ctx.humans.reset();
  ctx.agents.reset();
  ctx.groups.reset();
  EXPECT_EQ(Rules(LintText(R"(@id("x") permit (principal == Agent::"anyone", action in Action::"read", resource) when { principal in Group::"x" };)", ctx)).size(), 0u);
}

}  // namespace
}  // namespace mandate::policy
