#include "mandate/identity/claims.h"

#include <gtest/gtest.h>

#include "mandate/core/limits.h"

namespace mandate::identity {
namespace {

using core::ErrorCode;
using core::Json;

Claims FullClaims() {
  Claims c;
  c.iss = "https://mandate.example";
  c.aud = {"mandate"};
  c.sub = "alice";
  c.client_id = "orchestrator";
  c.sid = "ses_child";
  c.jti = "tok_1";
  c.act = {{"agent:researcher", "ses_child"}, {"agent:orchestrator", "ses_root"}};
  c.task = "SUP-123";
  c.scope = {"jira:get_issue", "jira:transition_issue"};
  c.model = ModelInfo{"anthropic", "claude-opus-4-5", "frontier"};
  c.cnf_jkt = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
  c.iat = 1767000000;
  c.nbf = 1767000000;
  c.exp = 1767000900;
  return c;
}

Json Parse(std::string_view text) {
  auto j = Json::Parse(text);
  EXPECT_TRUE(j.ok()) << text;
  return j.ok() ? *j : Json();
}

TEST(Claims, RoundTripsThroughJson) {
  Claims c = FullClaims();
  ASSERT_TRUE(c.Validate().ok()) << c.Validate().error().message;
  auto back = Claims::FromJson(c.ToJson());
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, c);
  // And through text, as a token carries it.
  auto reparsed = Claims::FromJson(Parse(c.ToJson().Dump()));
  ASSERT_TRUE(reparsed.ok());
  EXPECT_EQ(*reparsed, c);
}

TEST(Claims, JsonMatchesTheDesignExample) {
  Claims c = FullClaims();
  c.act = {{"agent:orchestrator", "ses_root"}};
  EXPECT_EQ(c.ToJson().Dump(),
            R"({"iss":"https://mandate.example","aud":"mandate","sub":"alice",)"
            R"("client_id":"orchestrator","sid":"ses_child","jti":"tok_1",)"
            R"("act":{"sub":"agent:orchestrator","sid":"ses_root"},"task":"SUP-123",)"
            R"("scope":"jira:get_issue jira:transition_issue",)"
            R"("model":{"provider":"anthropic","name":"claude-opus-4-5","tier":"frontier"},)"
            R"("cnf":{"jkt":"kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"},)"
            R"("iat":1767000000,"nbf":1767000000,"exp":1767000900})");
}

TEST(Claims, ActChainNestsOutermostFirst) {
  Json j = FullClaims().ToJson();
  const Json* outer = j.FindObject("act");
  ASSERT_NE(outer, nullptr);
  EXPECT_EQ(outer->GetString("sub"), "agent:researcher");
  const Json* inner = outer->FindObject("act");
  ASSERT_NE(inner, nullptr);
  EXPECT_EQ(inner->GetString("sub"), "agent:orchestrator");
  EXPECT_EQ(inner->GetString("sid"), "ses_root");
  EXPECT_EQ(inner->Find("act"), nullptr);
}

TEST(Claims, OmitsAbsentOptionalMembers) {
  Claims c = FullClaims();
  c.act.clear();
  c.task.clear();
  c.scope.clear();
  c.model.reset();
  c.cnf_jkt.reset();
  Json j = c.ToJson();
  for (const char* k : {"act", "task", "scope", "model", "cnf"}) EXPECT_EQ(j.Find(k), nullptr) << k;
  auto back = Claims::FromJson(j);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, c);
}

TEST(Claims, AcceptsAudienceArray) {
  Json j = FullClaims().ToJson();
  j.Set("aud", Parse(R"(["other","mandate"])"));
  auto c = Claims::FromJson(j);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_TRUE(c->HasAudience("mandate"));
  EXPECT_TRUE(c->HasAudience("other"));
  EXPECT_FALSE(c->HasAudience("mandat"));
  EXPECT_EQ(c->ToJson().Find("aud")->as_array().size(), 2u);
}

TEST(Claims, RejectsWrongTypes) {
  struct Case {
    const char* claim;
    const char* json;
  };
  const Case cases[] = {
      {"iss", "5"},
      {"aud", "5"},
      {"aud", R"(["mandate",5])"},
      {"aud", "[]"},
      {"sub", "null"},
      {"sub", R"(["alice"])"},
      {"client_id", "true"},
      {"sid", "{}"},
      {"jti", "1"},
      {"act", R"("agent:x")"},
      {"act", R"({"sid":"ses_1"})"},
      {"act", R"({"sub":5})"},
      {"act", R"({"sub":"a","sid":5})"},
      {"act", R"({"sub":"a","act":"b"})"},
      {"task", "7"},
      {"scope", R"(["jira:get_issue"])"},
      {"scope", R"("a  b")"},
      {"scope", R"(" a")"},
      {"scope", R"("a\"b")"},
      {"model", R"("claude")"},
      {"model", R"({"provider":"anthropic"})"},
      {"model", R"({"provider":"anthropic","name":"x","tier":1})"},
      {"cnf", R"("abc")"},
      {"cnf", R"({"x5t#S256":"abc"})"},
      {"cnf", R"({"jkt":5})"},
      {"cnf", R"({"jkt":"not-a-thumbprint"})"},
      {"iat", R"("1767000000")"},
      {"nbf", "1767000000.5"},
      {"exp", "1e10"},
      {"exp", "-1"},
      {"exp", "1767000000"},  // not after nbf
  };
  for (const Case& tc : cases) {
    Json j = FullClaims().ToJson();
    j.Set(tc.claim, Parse(tc.json));
    auto c = Claims::FromJson(j);
    ASSERT_FALSE(c.ok()) << tc.claim << " = " << tc.json;
    EXPECT_EQ(c.error().code, ErrorCode::kBadRequest);
    EXPECT_NE(c.error().message.find(tc.claim), std::string::npos) << c.error().message;
  }
}

TEST(Claims, RejectsMissingRequiredClaims) {
  for (const char* k : {"iss", "aud", "sub", "client_id", "sid", "jti", "iat", "nbf", "exp"}) {
    Json j = FullClaims().ToJson();
    j.Erase(k);
    auto c = Claims::FromJson(j);
    ASSERT_FALSE(c.ok()) << k;
    EXPECT_NE(c.error().message.find(k), std::string::npos) << c.error().message;
  }
  EXPECT_FALSE(Claims::FromJson(Json::MakeArray()).ok());
}

TEST(Claims, RejectsTooManyScopes) {
  Claims c = FullClaims();
  c.scope.clear();
  for (size_t i = 0; i < core::kScopeEntriesMax; ++i) c.scope.push_back("s" + std::to_string(i));
  EXPECT_TRUE(Claims::FromJson(c.ToJson()).ok());
  c.scope.push_back("one-too-many");
  EXPECT_FALSE(c.Validate().ok());
  auto parsed = Claims::FromJson(c.ToJson());
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.error().message.find("scope"), std::string::npos);
}

TEST(Claims, BoundsActChainDepth) {
  Claims c = FullClaims();
  c.act.clear();
  for (size_t i = 0; i < core::kActorChainEntriesMax; ++i) {
    c.act.push_back({"agent:a" + std::to_string(i), "ses_" + std::to_string(i)});
  }
  auto ok = Claims::FromJson(c.ToJson());
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->act, c.act);
  c.act.push_back({"agent:deep", ""});
  EXPECT_FALSE(c.Validate().ok());
  auto too_deep = Claims::FromJson(c.ToJson());
  ASSERT_FALSE(too_deep.ok());
  EXPECT_NE(too_deep.error().message.find("act"), std::string::npos);
}

TEST(Claims, IgnoresUnknownClaims) {
  Json j = FullClaims().ToJson();
  j.Set("x-extra", Parse(R"({"anything":[1,2,3]})"));
  auto c = Claims::FromJson(j);
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(*c, FullClaims());
}

TEST(Claims, HasScopeIsExact) {
  Claims c = FullClaims();
  EXPECT_TRUE(c.HasScope("jira:get_issue"));
  EXPECT_FALSE(c.HasScope("jira:get"));
  EXPECT_FALSE(c.HasScope("jira"));
}

}  // namespace
}  // namespace mandate::identity
