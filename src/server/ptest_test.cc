#include "server/ptest.h"

#include <gtest/gtest.h>

#include <string>

#include "mandate/core/error_code.h"
#include "mandate/core/limits.h"

namespace mandate::server {
namespace {

using core::ErrorCode;

constexpr char kHeader[] = R"(policies: |
  @id("reads") permit (principal, action in Action::"read", resource);
  @id("no-prod") forbid (principal, action, resource) when { context.args has env && context.args.env == "prod" };
  @id("hours") forbid (principal, action in Action::"write", resource) unless { context.time.hour_utc < 18 };
humans: { alice: [] }
agents: { bot: [] }
)";

std::string Cases(const std::string& cases) { return std::string(kHeader) + "cases:\n" + cases; }

TEST(PolicyTests, PassingAndFailingCasesAreReportedWithWhatDiffered) {
  auto report = RunPolicyTests(Cases(R"(
  - { name: reads, for: alice, agent: bot, action: "up:get", class: read, expect: allow, determining: [reads] }
  - { name: wrong expectation, for: alice, agent: bot, action: "up:get", class: read, expect: deny }
  - { name: wrong provenance, for: alice, agent: bot, action: "up:get", class: read, args: { env: prod }, expect: deny, determining: [reads] }
  - { name: wrong code, for: alice, agent: bot, action: "up:put", class: write, expect: deny, code: out_of_scope }
)"), "t.ptest");
  ASSERT_TRUE(report.ok()) << report.error().message;
  ASSERT_EQ(report->cases.size(), 4u);
  EXPECT_TRUE(report->cases[0].passed) << report->cases[0].failure;
  EXPECT_FALSE(report->cases[1].passed);
  EXPECT_NE(report->cases[1].failure.find("expected deny, got allow"), std::string::npos) << report->cases[1].failure;
  EXPECT_FALSE(report->cases[2].passed);
  EXPECT_NE(report->cases[2].failure.find("expected determining policies [reads], got [no-prod]"), std::string::npos)
      << report->cases[2].failure;
  EXPECT_FALSE(report->cases[3].passed);
  EXPECT_NE(report->cases[3].failure.find("expected code out_of_scope, got policy_denied"), std::string::npos)
      << report->cases[3].failure;
  EXPECT_EQ(report->passed(), 1u);
  EXPECT_EQ(report->failed(), 3u);
  EXPECT_EQ(report->ToJson().GetInt("failed", -1), 3);
}

TEST(PolicyTests, TimeScopeAndChainAreHonoured) {
  auto report = RunPolicyTests(Cases(R"(
  - { name: evening write, for: alice, agent: bot, action: "up:put", class: write, time: "2026-01-05T19:00:00Z", expect: deny, determining: [hours] }
  - { name: unix seconds, for: alice, agent: bot, action: "up:put", class: write, time: 1767614400, expect: deny, determining: [] }
  - { name: scope, for: alice, agent: bot, action: "up:get", class: read, scope: ["other:*"], expect: deny, code: out_of_scope }
  - { name: unknown agent in chain, for: alice, chain: [bot, ghost], action: "up:get", class: read, expect: deny }
)"), "t.ptest");
  ASSERT_TRUE(report.ok()) << report.error().message;
  for (const auto& c : report->cases) EXPECT_TRUE(c.passed) << c.name << ": " << c.failure;
}

TEST(PolicyTests, MalformedFilesAreErrorsNamingTheLocation) {
  auto err = [](const std::string& text) {
    auto r = RunPolicyTests(text, "bad.ptest");
    EXPECT_FALSE(r.ok());
    return r.ok() ? core::Error{ErrorCode::kInternal, ""} : r.error();
  };
  EXPECT_EQ(err("cases: [").code, ErrorCode::kBadRequest);
  EXPECT_NE(err(Cases("  - { name: x, for: alice, agent: bot, action: up, expect: allow }\n")).message.find("bad.ptest:"),
            std::string::npos);
  EXPECT_NE(err(Cases("  - { name: x, for: alice, agent: bot, action: \"up:t\", expect: perhaps }\n")).message.find("expect must be"),
            std::string::npos);
  EXPECT_NE(err(Cases("  - { name: x, for: alice, agent: bot, action: \"up:t\", class: huge, expect: allow }\n")).message.find("class must be"),
            std::string::npos);
  EXPECT_NE(err(Cases("  - { name: x, for: alice, agent: bot, action: \"up:t\", resource: Repo, expect: allow }\n")).message.find("resource must be"),
            std::string::npos);
  EXPECT_NE(err(Cases("  - { name: x, for: alice, agent: bot, action: \"up:t\", time: yesterday, expect: allow }\n")).message.find("time must be"),
            std::string::npos);
  EXPECT_NE(err(Cases("  - { name: x, for: alice, action: \"up:t\", expect: allow }\n")).message.find("needs an agent"),
            std::string::npos);
  EXPECT_NE(err(Cases("  - { name: x, for: alice, agent: bot, action: \"up:t\", expect: allow, colour: red }\n")).message.find("unknown key \"colour\""),
            std::string::npos);
  EXPECT_NE(err("policies: \"permit (principal, action, resource\"\ncases: [ { name: x, for: a, agent: b, action: \"u:t\", expect: allow } ]\n")
                .message.find("expected"),
            std::string::npos);
  EXPECT_NE(err("humans: {}\ncases: [ { name: x, for: a, agent: b, action: \"u:t\", expect: allow } ]\n").message.find("exactly one of"),
            std::string::npos);
  EXPECT_NE(err(std::string(kHeader) + "cases: []\n").message.find("non-empty"), std::string::npos);
  EXPECT_EQ(RunPolicyTestFile("/nonexistent/x.ptest").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(err(std::string(core::kConfigBytesMax + 1, '#')).code, ErrorCode::kPayloadTooLarge);
}

}  // namespace
}  // namespace mandate::server
