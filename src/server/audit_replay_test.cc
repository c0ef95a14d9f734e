#include "server/audit_replay.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace mandate::server {
namespace {

using core::Json;

constexpr int64_t kT0 = 1767000000LL * 1000000;  // 2025-12-29T09:20:00Z

Json Parse(const std::string& text) {
  auto j = Json::Parse(text);
  EXPECT_TRUE(j.ok()) << text;
  return j.ok() ? *j : Json();
}

std::vector<Json> SampleRun() {
  const std::string t = std::to_string(kT0);
  return {
      Parse(
          R"({"seq":1,"ts":)" + t +
          R"(,"type":"session.started","run":"ses_r","sid":"ses_r","agent":"orchestrator","human":"alice","task":"T-9","scope":["everything:*"],"expires_at":1767000900})"),
      Parse(
          R"({"seq":2,"ts":)" + std::to_string(kT0 + 120000) +
          R"(,"type":"call.decided","run":"ses_r","sid":"ses_r","chain":["orchestrator"],"agent":"orchestrator","human":"alice","action":"everything:echo","decision_id":"dec_1","args":{"message":"hello"},"decision":{"decision":"allow","code":null,"reason":"permitted","checks":[{"principal":"Agent","permits":["agents-everything"],"forbids":[]}],"approval":null,"budgets":[],"plan_step":null}})"),
      Parse(
          R"({"seq":3,"ts":)" + std::to_string(kT0 + 123200) +
          R"(,"type":"call.completed","run":"ses_r","sid":"ses_r","action":"everything:echo","decision_id":"dec_1","status":"ok","latency_micros":3200,"side_effects":[{"kind":"url","value":"https://example.test/pr/1"}]})"),
      Parse(
          R"({"seq":4,"ts":)" + std::to_string(kT0 + 300000) +
          R"(,"type":"session.delegated","run":"ses_r","sid":"ses_c","parent_sid":"ses_r","chain":["orchestrator","researcher"],"depth":1,"agent":"researcher","human":"alice","task":"T-9","scope":["everything:echo"]})"),
      Parse(
          R"({"seq":5,"ts":)" + std::to_string(kT0 + 350000) +
          R"(,"type":"call.decided","run":"ses_r","sid":"ses_c","chain":["orchestrator","researcher"],"agent":"researcher","human":"alice","action":"everything:wipe","decision_id":"dec_2","args":{},"decision":{"decision":"deny","code":"policy_denied","reason":"forbidden","checks":[{"principal":"Human","permits":["alice-all"],"forbids":["no-wipe"]}],"approval":{"group":"finance"},"budgets":[],"plan_step":null}})"),
      Parse(
          R"({"seq":6,"ts":)" + std::to_string(kT0 + 400000) +
          R"(,"type":"session.revoked","run":"ses_r","sid":"ses_r","kind":"session","subject":"ses_r","reason":"enough","sessions":["ses_r","ses_c"]})"),
      Parse(
          R"({"seq":7,"ts":)" + std::to_string(kT0 + 410000) +
          R"(,"type":"call.cancelled","run":"ses_r","sid":"ses_c","action":"everything:echo","decision_id":"dec_3","reason":"token revoked","in_flight":true,"latency_micros":900})"),
      Parse(
          R"({"seq":8,"ts":)" + std::to_string(kT0 + 500000) +
          R"(,"type":"budget.exceeded","run":"ses_r","sid":"ses_c","budget":"writes","limit":5})"),
  };
}

TEST(FormatReplayTimeline, TellsWhoForWhomWhatWasAskedDecidedAndDone) {
  const std::string text = FormatReplayTimeline("ses_r", SampleRun(), false);
  auto has = [&](const std::string& s) {
    EXPECT_NE(text.find(s), std::string::npos) << "missing: " << s << "\n" << text;
  };
  has("run ses_r: orchestrator for alice, task T-9");
  has("started 2025-12-29T09:20:00.000Z; 2 session(s), 2 call(s), 8 records over 0.500 s");
  has("   +0.000s  #1       session ses_r started: orchestrator for alice, task T-9, scope "
      "everything:*, expires 2025-12-29T09:35:00Z");
  has("+0.120s  #2       call dec_1: orchestrator for alice asked everything:echo "
      "{\"message\":\"hello\"}");
  has("decided: allow: permitted; permitted by agents-everything");
  has("call dec_1 everything:echo: ok in 3.2 ms");
  has("side effect: {\"kind\":\"url\",\"value\":\"https://example.test/pr/1\"}");
  // The child's records are indented one level.
  has("#4         session ses_c delegated by ses_r to researcher (chain orchestrator > researcher) "
      "for alice");
  has("#5         call dec_2: researcher (chain orchestrator > researcher) for alice asked "
      "everything:wipe {}");
  has("decided: deny (policy_denied): forbidden; forbidden by no-wipe; permitted by alice-all");
  has("approval: {\"group\":\"finance\"}");
  has("REVOKED session ses_r: enough; sessions ses_r, ses_c");
  has("call dec_3 everything:echo: CANCELLED in flight after 900 us: token revoked");
  has("budget.exceeded: sid=ses_c, budget=writes, limit=5");
  EXPECT_EQ(text.find("truncated"), std::string::npos);
  EXPECT_NE(FormatReplayTimeline("ses_r", SampleRun(), true).find("(truncated"), std::string::npos);
  EXPECT_EQ(FormatReplayTimeline("ses_x", {}, false), "run ses_x: no records\n");
}

TEST(FormatReplayTimeline, CutsLongArgumentsAtACharacterBoundary) {
  Json call = SampleRun()[1];
  Json args = Json::MakeObject();
  args.Set("text", std::string(200, 'x') + "\xc3\xa9");
  call.Set("args", args);
  const std::string text = FormatReplayTimeline("ses_r", {SampleRun()[0], call}, false);
  EXPECT_NE(text.find("xxx..."), std::string::npos) << text;
  EXPECT_TRUE(core::IsValidUtf8(text));
}

TEST(FormatAuditLine, SaysWhatMattersPerType) {
  auto lines = SampleRun();
  EXPECT_EQ(FormatAuditLine(lines[1]),
            "#2 2025-12-29T09:20:00.120Z call.decided everything:echo -> allow agent=orchestrator "
            "human=alice");
  EXPECT_EQ(FormatAuditLine(lines[2]),
            "#3 2025-12-29T09:20:00.123Z call.completed everything:echo status=ok latency_us=3200");
  EXPECT_EQ(FormatAuditLine(lines[0]),
            "#1 2025-12-29T09:20:00.000Z session.started sid=ses_r agent=orchestrator human=alice");
  EXPECT_EQ(FormatAuditLine(Parse(
                R"({"seq":0,"type":"policy.loaded","sha256":"0123456789abcdef","policies":3})")),
            "#0 policy.loaded sha256=0123456789ab policies=3");
}

TEST(FormatAuditTime, PrintsMillisecondsInUtc) {
  EXPECT_EQ(FormatAuditTime(kT0 + 1999), "2025-12-29T09:20:00.001Z");
  EXPECT_EQ(FormatAuditTime(0), "1970-01-01T00:00:00.000Z");
}

}  // namespace
}  // namespace mandate::server
