#include "server/audit_query.h"

#include <gtest/gtest.h>

#include <string>

#include "mandate/core/limits.h"

namespace mandate::server {
namespace {

using core::ErrorCode;

constexpr int64_t kNow = 1767000000LL * 1000000;  // 2025-12-29T09:20:00Z
const std::vector<std::string_view> kAll = {"limit", "run",       "sid",   "agent",
                                            "human", "action",    "type",  "since",
                                            "until", "after_seq", "format"};

TEST(ParseAuditTime, AcceptsRfc3339UnixSecondsAndDurationsAgo) {
  EXPECT_EQ(*ParseAuditTime("2025-12-29T09:20:00Z", kNow), kNow);
  EXPECT_EQ(*ParseAuditTime("2025-12-29t09:20:00z", kNow), kNow);
  EXPECT_EQ(*ParseAuditTime("2025-12-29T11:20:00+02:00", kNow), kNow);
  EXPECT_EQ(*ParseAuditTime("2025-12-29T04:50:00-04:30", kNow), kNow);
  EXPECT_EQ(*ParseAuditTime("2025-12-29T09:20:00.25Z", kNow), kNow + 250000);
  EXPECT_EQ(*ParseAuditTime("2025-12-29T09:20:00.123456789Z", kNow), kNow + 123456);
  EXPECT_EQ(*ParseAuditTime("1970-01-01T00:00:00Z", kNow), 0);
  EXPECT_EQ(*ParseAuditTime("2024-02-29T00:00:00Z", kNow), 1709164800LL * 1000000);  // leap day
  EXPECT_EQ(*ParseAuditTime("1767000000", kNow), kNow);
  EXPECT_EQ(*ParseAuditTime("1767000000.5", kNow), kNow + 500000);
  EXPECT_EQ(*ParseAuditTime("0", kNow), 0);
  EXPECT_EQ(*ParseAuditTime("15m", kNow), kNow - 15 * 60 * 1000000LL);
  EXPECT_EQ(*ParseAuditTime("2h", kNow), kNow - 2 * 3600 * 1000000LL);
  EXPECT_EQ(*ParseAuditTime("7d", kNow), kNow - 7 * 86400 * 1000000LL);
  EXPECT_EQ(*ParseAuditTime("500ms", kNow), kNow - 500000);
}

TEST(ParseAuditTime, RefusesEverythingElse) {
  for (const char* bad : {"", "yesterday", "2025-12-29", "2025-12-29T09:20:00",
                          "2025-13-01T00:00:00Z", "2025-02-29T00:00:00Z", "2025-12-29T24:00:00Z",
                          "2025-12-29T09:20:00+2:00", "2025-12-29T09:20:00Zjunk", "-5", "1.", "12x",
                          "15 m", "1e9", "9999999999999", "2025-12-29T09:20:00.Z"}) {
    auto r = ParseAuditTime(bad, kNow);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::kBadRequest) << bad;
    EXPECT_NE(r.error().message.find("RFC 3339"), std::string::npos) << r.error().message;
  }
}

TEST(ParseAuditQuery, ReadsEveryFilter) {
  auto q = ParseAuditQuery(
      "run=ses_1&sid=ses_2&agent=triage%20bot&human=alice&action=jira%3Aget&type=call.decided"
      "&since=2025-12-29T09%3A20%3A00Z&until=1767000060&after_seq=41&limit=7",
      kAll, core::kAdminAuditPageMax, kNow);
  ASSERT_TRUE(q.ok()) << q.error().message;
  EXPECT_TRUE(q->filtered);
  EXPECT_EQ(q->filter.run, "ses_1");
  EXPECT_EQ(q->filter.sid, "ses_2");
  EXPECT_EQ(q->filter.agent, "triage bot");
  EXPECT_EQ(q->filter.human, "alice");
  EXPECT_EQ(q->filter.action, "jira:get");
  EXPECT_EQ(q->filter.type, "call.decided");
  EXPECT_EQ(q->filter.since_us, kNow);
  EXPECT_EQ(q->filter.until_us, kNow + 60 * 1000000LL);
  EXPECT_EQ(q->filter.after_seq, 41u);
  EXPECT_EQ(q->limit, 7u);

  auto tail = ParseAuditQuery("limit=20", kAll, core::kAdminAuditPageMax, kNow);
  ASSERT_TRUE(tail.ok());
  EXPECT_FALSE(tail->filtered);
  auto empty = ParseAuditQuery("", kAll, core::kAdminAuditPageMax, kNow);
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->filtered);
  EXPECT_FALSE(empty->limit.has_value());
  auto fmt = ParseAuditQuery("format=otlp", kAll, 10, kNow);
  ASSERT_TRUE(fmt.ok());
  EXPECT_EQ(fmt->format, "otlp");
  EXPECT_FALSE(fmt->filtered);
}

TEST(ParseAuditQuery, NamesTheBadParameter) {
  struct Case {
    const char* query;
    const char* says;
  };
  for (const Case& c :
       {Case{"agnet=bot", "unknown parameter \"agnet\""}, Case{"limit=0", "limit must be 1..10000"},
        Case{"limit=10001", "limit must be 1..10000"}, Case{"limit=x", "limit"},
        Case{"after_seq=-1", "after_seq"}, Case{"after_seq=1x", "after_seq"},
        Case{"since=soon", "since:"}, Case{"until=2025-02-30T00:00:00Z", "until:"},
        Case{"since=2h&until=3h", "since must be before until"}, Case{"run=", "run must be"},
        Case{"agent=a&agent=b", "query string"}, Case{"format=csv", "format must be jsonl or otlp"},
        Case{"run=%zz", "query string"}}) {
    auto q = ParseAuditQuery(c.query, kAll, core::kAdminAuditPageMax, kNow);
    ASSERT_FALSE(q.ok()) << c.query;
    EXPECT_EQ(q.error().code, ErrorCode::kBadRequest) << c.query;
    EXPECT_NE(q.error().message.find(c.says), std::string::npos)
        << c.query << ": " << q.error().message;
  }
  // A parameter valid elsewhere is unknown where it is not allowed.
  auto replay =
      ParseAuditQuery("agent=bot", {"run", "after_seq", "limit"}, core::kAdminAuditPageMax, kNow);
  ASSERT_FALSE(replay.ok());
  EXPECT_NE(replay.error().message.find("accepted: run, after_seq, limit"), std::string::npos);
  auto long_run = ParseAuditQuery("run=" + std::string(core::kAuditIndexFieldBytesMax + 1, 'r'),
                                  kAll, core::kAdminAuditPageMax, kNow);
  ASSERT_FALSE(long_run.ok());
}

}  // namespace
}  // namespace mandate::server
