#include "server/audit_export.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

#include "mandate/core/crypto.h"

namespace mandate::server {
namespace {

using core::Json;

constexpr int64_t kT0 = 1767000000LL * 1000000;

Json Rec(int64_t seq, int64_t dt_micros, const std::string& type) {
  Json j = Json::MakeObject();
  j.Set("seq", seq);
  j.Set("ts", kT0 + dt_micros);
  j.Set("prev", std::string(64, '0'));
  j.Set("type", type);
  return j;
}

Json Session(int64_t seq, int64_t dt, const std::string& type, const std::string& sid,
             const std::string& parent, const std::string& agent) {
  Json j = Rec(seq, dt, type);
  j.Set("run", "ses_root");
  j.Set("sid", sid);
  j.Set("agent", agent);
  j.Set("human", "alice");
  j.Set("task", "T-1");
  j.Set("scope", Json::StringArray({"everything:*"}));
  if (!parent.empty()) {
    j.Set("parent_sid", parent);
    j.Set("depth", 1);
    j.Set("chain", Json::StringArray({"orchestrator", agent}));
  }
  return j;
}

Json Decided(int64_t seq, int64_t dt, const std::string& sid, const std::string& agent,
             const std::string& id, const std::string& decision) {
  Json j = Rec(seq, dt, "call.decided");
  j.Set("run", "ses_root");
  j.Set("sid", sid);
  j.Set("agent", agent);
  j.Set("human", "alice");
  j.Set("task", "T-1");
  j.Set("action", "everything:echo");
  j.Set("decision_id", id);
  j.Set("args", Json::MakeObject());
  j.Set("args_hash", "abc");
  Json d = Json::MakeObject();
  d.Set("decision", decision);
  d.Set("code", decision == "allow" ? Json() : Json("policy_denied"));
  d.Set("reason", decision == "allow" ? "permitted" : "forbidden by no-echo");
  Json check = Json::MakeObject();
  check.Set("principal", "Agent::\"" + agent + "\"");
  check.Set("permits", Json::StringArray(decision == "allow" ? std::vector<std::string>{"p1"}
                                                             : std::vector<std::string>{}));
  check.Set("forbids",
            Json::StringArray(decision == "allow" ? std::vector<std::string>{}
                                                  : std::vector<std::string>{"no-echo"}));
  Json checks = Json::MakeArray();
  checks.Push(std::move(check));
  d.Set("checks", std::move(checks));
  j.Set("decision", std::move(d));
  return j;
}

Json Ended(int64_t seq, int64_t dt, const std::string& type, const std::string& sid,
           const std::string& id, const std::string& status) {
  Json j = Rec(seq, dt, type);
  j.Set("run", "ses_root");
  j.Set("sid", sid);
  j.Set("action", "everything:echo");
  j.Set("decision_id", id);
  if (type == "call.completed") {
    j.Set("status", status);
    j.Set("latency_micros", 1500);
    j.Set("result_hash", "def");
  } else {
    j.Set("reason", "session revoked");
  }
  return j;
}

// Attribute key -> AnyValue of a span.
std::map<std::string, Json> Attrs(const Json& span) {
  std::map<std::string, Json> out;
  if (const Json* a = span.FindArray("attributes")) {
    for (const Json& kv : a->as_array()) out[kv.GetString("key")] = *kv.Find("value");
  }
  return out;
}

bool IsLowerHex(const std::string& s, size_t len) {
  if (s.size() != len) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool IsDecimal(const Json* v) {
  if (v == nullptr || !v->is_string() || v->as_string().empty()) return false;
  for (char c : v->as_string()) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

TEST(OtlpTraceBuilder, ARunIsOneTraceWithSessionsAndCallsAlongTheDelegationTree) {
  OtlpTraceBuilder b;
  Json policy = Rec(0, 0, "policy.loaded");  // no run: not in any trace
  b.Add(policy);
  b.Add(Session(1, 0, "session.started", "ses_root", "", "orchestrator"));
  b.Add(Decided(2, 1000, "ses_root", "orchestrator", "dec_1", "allow"));
  b.Add(Ended(3, 2500, "call.completed", "ses_root", "dec_1", "ok"));
  b.Add(Session(4, 3000, "session.delegated", "ses_child", "ses_root", "researcher"));
  b.Add(Decided(5, 4000, "ses_child", "researcher", "dec_2", "deny"));
  b.Add(Decided(6, 5000, "ses_child", "researcher", "dec_3", "allow"));
  Json revoked = Rec(7, 6000, "session.revoked");
  revoked.Set("run", "ses_root");
  revoked.Set("sid", "ses_root");
  revoked.Set("kind", "session");
  revoked.Set("subject", "ses_root");
  revoked.Set("reason", "done");
  revoked.Set("sessions", Json::StringArray({"ses_root", "ses_child"}));
  b.Add(revoked);
  b.Add(Ended(8, 7000, "call.cancelled", "ses_child", "dec_3", ""));
  EXPECT_EQ(b.span_count(), 5u);

  const Json doc = b.Build();
  const Json& rs = doc.FindArray("resourceSpans")->as_array().at(0);
  const Json& service = rs.FindObject("resource")->FindArray("attributes")->as_array().at(0);
  EXPECT_EQ(service.GetString("key"), "service.name");
  EXPECT_EQ(service.FindObject("value")->GetString("stringValue"), "mandate");
  const Json& ss = rs.FindArray("scopeSpans")->as_array().at(0);
  EXPECT_EQ(ss.FindObject("scope")->GetString("name"), "mandate.audit");
  const auto& spans = ss.FindArray("spans")->as_array();
  ASSERT_EQ(spans.size(), 5u);

  const std::string trace = OtlpId("ses_root", 16);
  EXPECT_EQ(trace, core::Sha256Hex("ses_root").substr(0, 32));
  std::map<std::string, const Json*> by_name;
  for (const Json& s : spans) {
    EXPECT_EQ(s.GetString("traceId"), trace);
    EXPECT_TRUE(IsLowerHex(s.GetString("spanId"), 16)) << s.Dump();
    EXPECT_TRUE(IsDecimal(s.Find("startTimeUnixNano"))) << s.Dump();
    EXPECT_TRUE(IsDecimal(s.Find("endTimeUnixNano"))) << s.Dump();
    EXPECT_LE(std::stoull(s.GetString("startTimeUnixNano")),
              std::stoull(s.GetString("endTimeUnixNano")));
    by_name[Attrs(s).count("mandate.decision_id")
                ? Attrs(s)["mandate.decision_id"].GetString("stringValue")
                : Attrs(s)["mandate.sid"].GetString("stringValue")] = &s;
  }
  const Json& root = *by_name.at("ses_root");
  const Json& child = *by_name.at("ses_child");
  EXPECT_EQ(root.Find("parentSpanId"), nullptr);
  EXPECT_EQ(root.GetString("spanId"), OtlpId("ses_root", 8));
  EXPECT_EQ(root.GetInt("kind", 0), 1);
  EXPECT_EQ(child.GetString("parentSpanId"), root.GetString("spanId"));
  EXPECT_EQ(child.GetString("name"), "session researcher");
  EXPECT_EQ(Attrs(child)["mandate.depth"].GetString("intValue"), "1");
  EXPECT_EQ(Attrs(child)["mandate.chain"]
                .FindObject("arrayValue")
                ->FindArray("values")
                ->as_array()
                .size(),
            2u);
  // The root session lasts until its child's last record (the cancellation at +7 ms).
  EXPECT_EQ(root.GetString("startTimeUnixNano"), std::to_string(kT0 * 1000));
  EXPECT_EQ(root.GetString("endTimeUnixNano"), std::to_string((kT0 + 7000) * 1000));
  // The revocation is an event on both sessions.
  for (const Json* s : {&root, &child}) {
    const Json* events = s->FindArray("events");
    ASSERT_NE(events, nullptr) << s->Dump();
    EXPECT_EQ(events->as_array().back().GetString("name"), "session.revoked");
    EXPECT_TRUE(IsDecimal(events->as_array().back().Find("timeUnixNano")));
  }

  const Json& ok = *by_name.at("dec_1");
  EXPECT_EQ(ok.GetString("parentSpanId"), root.GetString("spanId"));
  EXPECT_EQ(ok.GetString("spanId"), OtlpId("dec_1", 8));
  EXPECT_EQ(ok.GetString("name"), "call everything:echo");
  EXPECT_EQ(ok.GetInt("kind", 0), 2);
  EXPECT_EQ(ok.FindObject("status")->GetInt("code", 0), 1);
  auto a = Attrs(ok);
  EXPECT_EQ(a["mandate.agent"].GetString("stringValue"), "orchestrator");
  EXPECT_EQ(a["mandate.human"].GetString("stringValue"), "alice");
  EXPECT_EQ(a["mandate.task"].GetString("stringValue"), "T-1");
  EXPECT_EQ(a["mandate.action"].GetString("stringValue"), "everything:echo");
  EXPECT_EQ(a["mandate.decision"].GetString("stringValue"), "allow");
  EXPECT_EQ(a["mandate.status"].GetString("stringValue"), "ok");
  EXPECT_EQ(a["mandate.latency_micros"].GetString("intValue"), "1500");
  EXPECT_EQ(a["mandate.run"].GetString("stringValue"), "ses_root");
  EXPECT_EQ(a["mandate.sid"].GetString("stringValue"), "ses_root");
  EXPECT_EQ(ok.GetString("startTimeUnixNano"), std::to_string((kT0 + 1000) * 1000));
  EXPECT_EQ(ok.GetString("endTimeUnixNano"), std::to_string((kT0 + 2500) * 1000));

  const Json& denied = *by_name.at("dec_2");
  EXPECT_EQ(denied.GetString("parentSpanId"), child.GetString("spanId"));
  EXPECT_EQ(denied.FindObject("status")->GetInt("code", 0), 2);
  EXPECT_EQ(denied.FindObject("status")->GetString("message"),
            "policy_denied: forbidden by no-echo");
  EXPECT_EQ(Attrs(denied)["mandate.decision_code"].GetString("stringValue"), "policy_denied");
  EXPECT_EQ(Attrs(denied)["mandate.policies"]
                .FindObject("arrayValue")
                ->FindArray("values")
                ->as_array()
                .at(0)
                .GetString("stringValue"),
            "no-echo");

  const Json& cancelled = *by_name.at("dec_3");
  EXPECT_EQ(cancelled.FindObject("status")->GetInt("code", 0), 2);
  EXPECT_EQ(Attrs(cancelled)["mandate.status"].GetString("stringValue"), "cancelled");
}

TEST(OtlpTraceBuilder, RecordsWithoutTheirOpeningRecordStillMakeConsistentSpans) {
  // A call completion alone (its decision and session not read): the session span is made
  // from it, the call begins latency_micros before it.
  OtlpTraceBuilder b;
  b.Add(Ended(9, 10000, "call.completed", "ses_child", "dec_9", "failed"));
  const Json doc = b.Build();
  const auto& spans = doc.FindArray("resourceSpans")
                          ->as_array()[0]
                          .FindArray("scopeSpans")
                          ->as_array()[0]
                          .FindArray("spans")
                          ->as_array();
  ASSERT_EQ(spans.size(), 2u);
  const Json& session = spans[0];
  const Json& call = spans[1];
  EXPECT_EQ(session.GetString("parentSpanId"), OtlpId("ses_root", 8));  // the run's root
  EXPECT_EQ(call.GetString("parentSpanId"), session.GetString("spanId"));
  EXPECT_EQ(call.GetString("startTimeUnixNano"), std::to_string((kT0 + 10000 - 1500) * 1000));
  EXPECT_EQ(call.FindObject("status")->GetInt("code", 0), 2);
}

TEST(OtlpTraceBuilder, TruncationIsMarkedOnTheRootSession) {
  OtlpTraceBuilder b;
  b.Add(Session(1, 0, "session.started", "ses_root", "", "orchestrator"));
  b.MarkTruncated();
  const Json doc = b.Build();
  const Json& span = doc.FindArray("resourceSpans")
                         ->as_array()[0]
                         .FindArray("scopeSpans")
                         ->as_array()[0]
                         .FindArray("spans")
                         ->as_array()[0];
  EXPECT_TRUE(Attrs(span)["mandate.truncated"].Find("boolValue")->as_bool());
}

TEST(OtlpId, IsLowercaseHexOfTheDigestPrefix) {
  EXPECT_EQ(OtlpId("x", 8), core::Sha256Hex("x").substr(0, 16));
  EXPECT_EQ(OtlpId("x", 16).size(), 32u);
}

}  // namespace
}  // namespace mandate::server
