#include "mandate/policy/authorize.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

namespace mandate::policy {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

Value Json(std::string_view text) {
  auto j = core::Json::Parse(text);
  EXPECT_TRUE(j.ok()) << text;
  auto v = ValueFromJson(*j);
  EXPECT_TRUE(v.ok()) << text;
  return v.ok() ? *v : Value();
}

PolicySet Policies(std::string_view text) {
  auto set = PolicySet::Parse(text, "p.cedar");
  EXPECT_TRUE(set.ok()) << set.error().message;
  return set.ok() ? std::move(*set) : PolicySet();
}

Request MakeRequest(std::string_view context = "{}") {
  Request r;
  r.principal = {"Human", "alice"};
  r.action = {"Action", "read"};
  r.resource = {"Doc", "d1"};
  r.context = Json(context);
  return r;
}

TEST(Authorize, DeniesByDefault) {
  Response r = IsAuthorized(PolicySet(), MakeRequest(), Entities());
  EXPECT_FALSE(r.allow);
  EXPECT_THAT(r.permits, IsEmpty());
  EXPECT_THAT(r.forbids, IsEmpty());
  EXPECT_THAT(r.errors, IsEmpty());
}

TEST(Authorize, DeniesWhenNoPermitMatches) {
  PolicySet p = Policies(R"(permit(principal == Human::"bob", action, resource);)");
  Response r = IsAuthorized(p, MakeRequest(), Entities());
  EXPECT_FALSE(r.allow);
  EXPECT_THAT(r.errors, IsEmpty());
}

TEST(Authorize, AllowsOnASatisfiedPermitAndListsEveryOne) {
  PolicySet p = Policies(R"(
    permit(principal, action, resource);
    @id("alice") permit(principal == Human::"alice", action == Action::"read", resource);
    permit(principal, action == Action::"write", resource);
  )");
  Response r = IsAuthorized(p, MakeRequest(), Entities());
  EXPECT_TRUE(r.allow);
  EXPECT_THAT(r.permits, ElementsAre("p.cedar:0", "alice"));
  EXPECT_THAT(r.forbids, IsEmpty());
}

TEST(Authorize, ForbidOverridesPermit) {
  PolicySet p = Policies(R"(
    permit(principal, action, resource);
    @id("no") forbid(principal, action, resource is Doc);
  )");
  Response r = IsAuthorized(p, MakeRequest(), Entities());
  EXPECT_FALSE(r.allow);
  EXPECT_THAT(r.forbids, ElementsAre("no"));
  // Only the determining policies are listed, as in the reference's diagnostics.
  EXPECT_THAT(r.permits, IsEmpty());
}

TEST(Authorize, AForbidAloneDenies) {
  PolicySet p = Policies(R"(forbid(principal, action, resource);)");
  Response r = IsAuthorized(p, MakeRequest(), Entities());
  EXPECT_FALSE(r.allow);
  EXPECT_THAT(r.forbids, ElementsAre("p.cedar:0"));
}

TEST(Authorize, WhenAndUnlessMustAllHold) {
  PolicySet p = Policies(R"(
    @id("both") permit(principal, action, resource)
      when { context.a == 1 } unless { context.b == 2 } when { context has a };
  )");
  EXPECT_TRUE(IsAuthorized(p, MakeRequest(R"({"a": 1, "b": 3})"), Entities()).allow);
  EXPECT_FALSE(IsAuthorized(p, MakeRequest(R"({"a": 1, "b": 2})"), Entities()).allow);
  EXPECT_FALSE(IsAuthorized(p, MakeRequest(R"({"a": 2, "b": 3})"), Entities()).allow);
}

TEST(Authorize, AnErroringPolicyIsSkippedAndReported) {
  PolicySet p = Policies(R"(
    @id("needs-amount") permit(principal, action, resource) when { context.amount < 10 };
  )");
  Response r = IsAuthorized(p, MakeRequest(), Entities());
  EXPECT_FALSE(r.allow);
  EXPECT_THAT(r.permits, IsEmpty());
  EXPECT_THAT(r.errors, ElementsAre("needs-amount: record does not have the attribute 'amount' "
                                    "at p.cedar:2:76"));
}

TEST(Authorize, AnErroringPolicyNeverCountsAsSatisfied) {
  // `unless` over an erroring expression must not be read as "not true, so satisfied".
  PolicySet p = Policies(R"(
    permit(principal, action, resource) unless { context.missing };
    permit(principal, action, resource) when { 1 };
    permit(principal, action, resource) unless { "no" };
  )");
  Response r = IsAuthorized(p, MakeRequest(), Entities());
  EXPECT_FALSE(r.allow);
  ASSERT_EQ(r.errors.size(), 3u);
  EXPECT_EQ(r.errors[1], "p.cedar:1: type error: 'when' expects a bool, got long at p.cedar:3:48");
  EXPECT_EQ(r.errors[2],
            "p.cedar:2: type error: 'unless' expects a bool, got string at p.cedar:4:50");
}

TEST(Authorize, OtherPoliciesStillDecideWhenOneErrors) {
  PolicySet p = Policies(R"(
    @id("broken") permit(principal, action, resource) when { context.x.y };
    @id("ok") permit(principal, action, resource);
  )");
  Response r = IsAuthorized(p, MakeRequest(), Entities());
  EXPECT_TRUE(r.allow);
  EXPECT_THAT(r.permits, ElementsAre("ok"));
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].rfind("broken: ", 0), 0u);
}

TEST(Authorize, AnErroringForbidDoesNotDenyAsInCedar) {
  // Cedar semantics: the erroring forbid is skipped. The error is reported so that a caller
  // that must fail closed (the gateway) can deny.
  PolicySet p = Policies(R"(
    permit(principal, action, resource);
    @id("f") forbid(principal, action, resource) when { context.env == "prod" };
  )");
  Response r = IsAuthorized(p, MakeRequest(), Entities());
  EXPECT_TRUE(r.allow);
  EXPECT_THAT(r.forbids, IsEmpty());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].rfind("f: ", 0), 0u);
}

TEST(Authorize, AnInvalidExtensionLiteralSkipsThePolicyAsInCedar) {
  PolicySet set = Policies(R"(
    @id("bad-net") forbid(principal, action, resource) when { ip("10.0.0.256/8").isIpv4() };
    @id("office") permit(principal, action, resource)
      when { context.src.isInRange(ip("10.0.0.0/8")) };)");
  Response r = IsAuthorized(
      set, MakeRequest(R"({"src": {"__extn": {"fn": "ip", "arg": "10.1.2.3"}}})"), Entities());
  EXPECT_TRUE(r.allow);  // the erroring forbid does not deny (the gateway's rule does)
  EXPECT_THAT(r.permits, ElementsAre("office"));
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0],
            "bad-net: error while evaluating `ipaddr` extension function: error parsing IP "
            "address from the string `10.0.0.256` at p.cedar:2:63");
}

TEST(Authorize, DecidesOnTagsAndTimes) {
  PolicySet set = Policies(R"(
    @id("on-call") permit(principal, action, resource)
      when { principal.hasTag("rotation") && principal.getTag("rotation") == "primary" &&
             context.now < principal.getTag("until") };)");
  Entities entities;
  auto j = core::Json::Parse(R"({"rotation": "primary", "until": {"__extn": {
                                   "fn": "datetime", "arg": "2026-01-05T18:00:00Z"}}})");
  ASSERT_TRUE(j.ok());
  ASSERT_TRUE(entities.Add({"Human", "alice"}, Value(), {}, *ValueFromJson(*j)).ok());
  auto at = [](std::string_view when) {
    return MakeRequest(R"({"now": {"__extn": {"fn": "datetime", "arg": ")" + std::string(when) +
                       R"("}}})");
  };
  EXPECT_TRUE(IsAuthorized(set, at("2026-01-05T12:00:00Z"), entities).allow);
  EXPECT_FALSE(IsAuthorized(set, at("2026-01-05T19:00:00+0100"), entities).allow);
  EXPECT_FALSE(IsAuthorized(set, at("2026-01-05T12:00:00Z"), Entities()).allow);
}

TEST(Authorize, AContextThatIsNotARecordDenies) {
  PolicySet p = Policies(R"(permit(principal, action, resource);)");
  Request req = MakeRequest();
  req.context = Value::Long(1);
  Response r = IsAuthorized(p, req, Entities());
  EXPECT_FALSE(r.allow);
  EXPECT_THAT(r.errors, ElementsAre("request: context must be a record"));
}

TEST(Authorize, ScopeInUsesTheEntityHierarchy) {
  Entities es;
  ASSERT_TRUE(es.Add({"Human", "alice"}, Value(), {{"Group", "finance"}}).ok());
  ASSERT_TRUE(es.Add({"Group", "finance"}, Value(), {{"Group", "staff"}}).ok());
  ASSERT_TRUE(es.Add({"Doc", "d1"}, Value(), {{"Folder", "f"}}).ok());
  PolicySet p = Policies(R"(
    @id("a") permit(principal in Group::"staff", action, resource);
    @id("b") permit(principal is Human in Group::"finance", action, resource in Folder::"f");
    @id("c") permit(principal in Group::"other", action, resource);
    @id("d") permit(principal is Agent, action, resource);
    @id("e") permit(principal, action in [Action::"write", Action::"read"], resource is Doc);
    @id("f") permit(principal, action in [], resource);
    @id("g") permit(principal in Human::"alice", action in Action::"read", resource == Doc::"d1");
  )");
  Response r = IsAuthorized(p, MakeRequest(), es);
  EXPECT_TRUE(r.allow);
  EXPECT_THAT(r.permits, ElementsAre("a", "b", "e", "g"));
}

// ---- The three example policies of DESIGN.md section 5 ---------------------------------------

class DesignExamples : public ::testing::Test {
 protected:
  DesignExamples() {
    auto set = PolicySet::Parse(R"(
@id("triage-read")
permit (principal == Agent::"triage-bot", action in Action::"read", resource in Upstream::"jira");

@id("refund-needs-two") @approval("finance-approvers")
permit (principal in Group::"support-agents", action == Action::"stripe:create_refund", resource)
when { context.args.amount_cents <= 50000 };

@id("no-prod-deletes")
forbid (principal, action in Action::"destructive", resource)
when { context.args has env && context.args.env == "prod" };

// Lets the destructive example reach the forbid: every agent may use jira.
@id("jira-all")
permit (principal, action in Action::"jira", resource in Upstream::"jira");
)",
                                "mandate.cedar");
    EXPECT_TRUE(set.ok()) << set.error().message;
    if (set.ok()) policies_ = std::move(*set);
    AddEntity({"Agent", "triage-bot"}, {{"Group", "support-agents"}});
    AddEntity({"Agent", "refund-bot"}, {{"Group", "support-agents"}});
    AddEntity({"Upstream", "jira"}, {});
    AddEntity({"Upstream", "stripe"}, {});
    AddAction("jira:get_issue", "jira", "read");
    AddAction("jira:transition_issue", "jira", "write");
    AddAction("jira:delete_project", "jira", "destructive");
    AddAction("stripe:create_refund", "stripe", "write");
  }

  void AddEntity(EntityUid uid, std::vector<EntityUid> parents) {
    ASSERT_TRUE(entities_.Add(std::move(uid), Value(), std::move(parents)).ok());
  }
  void AddAction(const std::string& tool, const std::string& upstream, const std::string& cls) {
    AddEntity({"Action", tool}, {{"Action", upstream}, {"Action", cls}});
  }

  Response Check(std::string agent, std::string tool, std::string upstream, std::string_view args) {
    Request r;
    r.principal = {"Agent", std::move(agent)};
    r.action = {"Action", std::move(tool)};
    r.resource = {"Upstream", std::move(upstream)};
    r.context = Json(R"({"args": )" + std::string(args) + "}");
    return IsAuthorized(policies_, r, entities_);
  }

  PolicySet policies_;
  Entities entities_;
};

TEST_F(DesignExamples, TriageBotMayReadJira) {
  Response r = Check("triage-bot", "jira:get_issue", "jira", "{}");
  EXPECT_TRUE(r.allow);
  EXPECT_THAT(r.permits, ElementsAre("triage-read", "jira-all"));
  EXPECT_THAT(r.errors, IsEmpty());
}

TEST_F(DesignExamples, TriageReadDoesNotCoverWrites) {
  auto first = PolicySet::Parse(R"(@id("triage-read")
permit (principal == Agent::"triage-bot", action in Action::"read",
        resource in Upstream::"jira");)",
                                "mandate.cedar");
  ASSERT_TRUE(first.ok());
  Request r;
  r.principal = {"Agent", "triage-bot"};
  r.action = {"Action", "jira:transition_issue"};
  r.resource = {"Upstream", "jira"};
  EXPECT_FALSE(IsAuthorized(*first, r, entities_).allow);
  r.action = {"Action", "jira:get_issue"};
  EXPECT_TRUE(IsAuthorized(*first, r, entities_).allow);
  r.principal = {"Agent", "refund-bot"};
  EXPECT_FALSE(IsAuthorized(*first, r, entities_).allow);
}

TEST_F(DesignExamples, SmallRefundIsPermittedByAnApprovalPolicy) {
  Response r = Check("refund-bot", "stripe:create_refund", "stripe", R"({"amount_cents": 50000})");
  EXPECT_TRUE(r.allow);
  EXPECT_THAT(r.permits, ElementsAre("refund-needs-two"));
  const Policy* p = policies_.Find("refund-needs-two");
  ASSERT_NE(p, nullptr);
  ASSERT_NE(p->FindAnnotation("approval"), nullptr);
  EXPECT_EQ(*p->FindAnnotation("approval"), "finance-approvers");
}

TEST_F(DesignExamples, LargeRefundIsDenied) {
  Response r = Check("refund-bot", "stripe:create_refund", "stripe", R"({"amount_cents": 50001})");
  EXPECT_FALSE(r.allow);
  EXPECT_THAT(r.errors, IsEmpty());
}

TEST_F(DesignExamples, RefundWithoutAmountIsAnErrorAndDenied) {
  Response r = Check("refund-bot", "stripe:create_refund", "stripe", R"({"amount": 1})");
  EXPECT_FALSE(r.allow);
  EXPECT_THAT(r.errors, ElementsAre("refund-needs-two: record does not have the attribute "
                                    "'amount_cents' at mandate.cedar:7:21"));
}

TEST_F(DesignExamples, ProductionDeletesAreForbidden) {
  Response r = Check("triage-bot", "jira:delete_project", "jira", R"({"env": "prod"})");
  EXPECT_FALSE(r.allow);
  EXPECT_THAT(r.forbids, ElementsAre("no-prod-deletes"));
  EXPECT_THAT(r.permits, IsEmpty());
}

TEST_F(DesignExamples, OtherDeletesAreAllowedByTheJiraPermit) {
  Response staging = Check("triage-bot", "jira:delete_project", "jira", R"({"env": "staging"})");
  EXPECT_TRUE(staging.allow);
  EXPECT_THAT(staging.permits, ElementsAre("jira-all"));
  // Without `env`, the forbid's `has` guard keeps it from erroring.
  Response no_env = Check("triage-bot", "jira:delete_project", "jira", "{}");
  EXPECT_TRUE(no_env.allow);
  EXPECT_THAT(no_env.errors, IsEmpty());
}

TEST_F(DesignExamples, EvaluatesConcurrentlyFromManyThreads) {
  constexpr int kThreads = 4;
  constexpr int kIterations = 500;
  std::vector<std::thread> threads;
  std::vector<int> mismatches(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIterations; ++i) {
        bool prod = (i + t) % 2 == 0;
        Response r = Check("triage-bot", "jira:delete_project", "jira",
                           prod ? R"({"env": "prod"})" : R"({"env": "dev"})");
        if (r.allow == prod) ++mismatches[t];
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(mismatches, std::vector<int>(kThreads, 0));
}

}  // namespace
}  // namespace mandate::policy
