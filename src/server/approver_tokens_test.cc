// Approver tokens: minting, and every way Authenticate refuses a token (a session token, the
// wrong audience, expiry, a revoked or unknown human, a foreign key, a forged actor chain).
#include "server/approver_tokens.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/temp_dir_test_util.h"
#include "mandate/core/crypto.h"
#include "mandate/core/encoding.h"
#include "mandate/core/limits.h"
#include "mandate/store/sqlite_store.h"

namespace mandate::server {
namespace {

using core::ErrorCode;
using core::Json;
using core::testing::TempDir;

constexpr char kIssuer[] = "http://mandate.test";
constexpr char kAudience[] = "mandate";

Json DecodeSegment(const std::string& token, size_t index) {
  size_t start = 0;
  for (size_t i = 0; i < index; ++i) start = token.find('.', start) + 1;
  const size_t end = token.find('.', start);
  auto bytes = core::Base64UrlDecode(token.substr(start, end - start));
  EXPECT_TRUE(bytes.has_value());
  auto json = Json::Parse(bytes.value_or(""));
  EXPECT_TRUE(json.ok());
  return json.ok() ? *json : Json();
}

class ApproverTokensTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_.tokens.issuer = kIssuer;
    config_.tokens.audience = kAudience;
    auto keys = identity::SigningKeys::LoadOrCreate(tmp_.Sub("keys"), identity::Alg::kEdDSA);
    ASSERT_TRUE(keys.ok()) << keys.error().message;
    keys_ = std::move(*keys);
    issuer_ = std::make_unique<identity::TokenIssuer>(*keys_);
    auto store = store::SqliteStore::Open(tmp_.Sub("mandate.db"));
    ASSERT_TRUE(store.ok()) << store.error().message;
    store_ = std::move(*store);
    for (const char* name : {"bob", "carol"}) {
      store::Human h;
      h.name = name;
      h.groups = {"finance-approvers"};
      ASSERT_TRUE(store_->PutHuman(h).ok());
      directory_.PutHuman(name, h.groups);
    }
    auto revocations = revocation::RevocationSet::Load(*store_);
    ASSERT_TRUE(revocations.ok());
    revocations_ = std::move(*revocations);
    tokens_ = Make();
  }

  std::unique_ptr<ApproverTokens> Make() {
    ApproverTokenDeps deps;
    deps.config = &config_;
    deps.clock = &clock_;
    deps.keys = keys_.get();
    deps.issuer = issuer_.get();
    deps.revocations = revocations_.get();
    deps.directory = &directory_;
    deps.record = [this](Json rec) -> core::Status {
      if (!audit_ok_) return core::MakeError(ErrorCode::kInternal, "disk full");
      records_.push_back(std::move(rec));
      return core::OkStatus();
    };
    auto t = ApproverTokens::Create(std::move(deps));
    EXPECT_TRUE(t.ok()) << t.error().message;
    return t.ok() ? std::move(*t) : nullptr;
  }

  std::string MintFor(const std::string& human, std::optional<int64_t> ttl = std::nullopt) {
    auto m = tokens_->Mint(human, ttl);
    EXPECT_TRUE(m.ok()) << m.error().message;
    return m.ok() ? m->token : std::string();
  }

  // Claims shaped like an approver token's, for forging variants with the issuer.
  identity::Claims ApproverClaims(const std::string& human) const {
    identity::Claims c;
    c.iss = kIssuer;
    c.aud = {ApproverAudience(kAudience)};
    c.sub = human;
    c.client_id = std::string(kApproverClientId);
    c.sid = core::NewId("apv");
    c.jti = core::NewId("tok");
    c.scope = {std::string(kApproverScope)};
    c.iat = clock_.NowUnixSeconds();
    c.nbf = c.iat;
    c.exp = c.iat + 3600;
    return c;
  }

  // A session (agent) token of triage-bot acting for `human`, as the admin API mints them.
  std::string SessionToken(const std::string& human) const {
    identity::Claims c;
    c.iss = kIssuer;
    c.aud = {kAudience};
    c.sub = human;
    c.client_id = "triage-bot";
    c.sid = core::NewId("ses");
    c.jti = core::NewId("tok");
    c.act = {{"agent:triage-bot", c.sid}};
    c.scope = {"*"};
    c.iat = clock_.NowUnixSeconds();
    c.nbf = c.iat;
    c.exp = c.iat + 900;
    auto t = issuer_->Mint(c);
    EXPECT_TRUE(t.ok()) << t.error().message;
    return t.ok() ? *t : std::string();
  }

  void ExpectRefused(const std::string& token, ErrorCode code, std::string_view reason) {
    auto r = tokens_->Authenticate(token);
    ASSERT_FALSE(r.ok()) << "accepted as " << *r;
    EXPECT_EQ(r.error().code, code) << r.error().message;
    EXPECT_NE(r.error().message.find(reason), std::string::npos) << r.error().message;
    EXPECT_EQ(r.error().message.find(token), std::string::npos);
  }

  TempDir tmp_{"mandate-approver-tokens"};
  Config config_;
  core::FakeClock clock_;
  std::unique_ptr<identity::SigningKeys> keys_;
  std::unique_ptr<identity::TokenIssuer> issuer_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<revocation::RevocationSet> revocations_;
  gateway::Directory directory_;
  std::vector<Json> records_;
  bool audit_ok_ = true;
  std::unique_ptr<ApproverTokens> tokens_;
};

TEST_F(ApproverTokensTest, MintsATokenThatAuthenticatesAsTheHuman) {
  auto m = tokens_->Mint("bob", std::nullopt);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->human, "bob");
  EXPECT_EQ(m->sid.rfind("apv_", 0), 0u) << m->sid;
  EXPECT_EQ(m->expires_at, clock_.NowUnixSeconds() + core::kApproverTokenTtlSecondsDefault);

  const Json header = DecodeSegment(m->token, 0);
  EXPECT_EQ(header.GetString("typ"), "approver+jwt");
  EXPECT_EQ(header.GetString("alg"), "EdDSA");
  const Json claims = DecodeSegment(m->token, 1);
  EXPECT_EQ(claims.GetString("aud"), "mandate:approvals");
  EXPECT_EQ(claims.GetString("iss"), kIssuer);
  EXPECT_EQ(claims.GetString("sub"), "bob");
  EXPECT_EQ(claims.GetString("client_id"), "mandate-approvals");
  EXPECT_EQ(claims.GetString("scope"), "approvals");
  EXPECT_EQ(claims.Find("act"), nullptr);

  auto who = tokens_->Authenticate(m->token);
  ASSERT_TRUE(who.ok()) << who.error().message;
  EXPECT_EQ(*who, "bob");

  // Audited before it was handed out.
  ASSERT_EQ(records_.size(), 1u);
  EXPECT_EQ(records_[0].GetString("type"), "approver.token_issued");
  EXPECT_EQ(records_[0].GetString("human"), "bob");
  EXPECT_EQ(records_[0].GetString("sid"), m->sid);
  EXPECT_EQ(records_[0].GetInt("expires_at", 0), m->expires_at);
}

TEST_F(ApproverTokensTest, MintRefusesAnUnknownHuman) {
  auto m = tokens_->Mint("mallory", std::nullopt);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(records_.empty());
}

TEST_F(ApproverTokensTest, MintBoundsTheLifetime) {
  for (int64_t ttl : {int64_t{0}, int64_t{-5}, core::kApproverTokenTtlSecondsMax + 1}) {
    auto m = tokens_->Mint("bob", ttl);
    ASSERT_FALSE(m.ok()) << ttl;
    EXPECT_EQ(m.error().code, ErrorCode::kBadRequest);
  }
  auto longest = tokens_->Mint("bob", core::kApproverTokenTtlSecondsMax);
  ASSERT_TRUE(longest.ok()) << longest.error().message;
  EXPECT_EQ(longest->expires_at, clock_.NowUnixSeconds() + core::kApproverTokenTtlSecondsMax);

  // Never longer than tokens.max_ttl: a key rotation keeps the old key only that long.
  config_.tokens.max_ttl_seconds = 3600;
  EXPECT_EQ(tokens_->ttl_max_seconds(), 3600);
  auto capped = tokens_->Mint("bob", 3601);
  ASSERT_FALSE(capped.ok());
  EXPECT_EQ(capped.error().code, ErrorCode::kBadRequest);
  auto by_default = tokens_->Mint("bob", std::nullopt);
  ASSERT_TRUE(by_default.ok());
  EXPECT_EQ(by_default->expires_at, clock_.NowUnixSeconds() + 3600);
}

TEST_F(ApproverTokensTest, MintFailsClosedWhenTheAuditLogCannotBeWritten) {
  audit_ok_ = false;
  auto m = tokens_->Mint("bob", std::nullopt);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.error().code, ErrorCode::kInternal);
}

TEST_F(ApproverTokensTest, RefusesASessionToken) {
  // An agent's session token (typ at+jwt, the agent audience) is not an approver token, even
  // when its human is an approver.
  ExpectRefused(SessionToken("bob"), ErrorCode::kUnauthenticated, "typ");
}

TEST_F(ApproverTokensTest, RefusesTheSessionAudience) {
  identity::Claims c = ApproverClaims("bob");
  c.aud = {kAudience};
  auto t = issuer_->Mint(c, identity::kApproverTokenTyp);
  ASSERT_TRUE(t.ok());
  ExpectRefused(*t, ErrorCode::kUnauthenticated, "audience");
}

TEST_F(ApproverTokensTest, RefusesAnApproverTypWithSessionClaims) {
  // Signed with the approver typ and audience but shaped like an agent's token.
  identity::Claims c = ApproverClaims("bob");
  c.act = {{"agent:triage-bot", c.sid}};
  auto t = issuer_->Mint(c, identity::kApproverTokenTyp);
  ASSERT_TRUE(t.ok());
  ExpectRefused(*t, ErrorCode::kUnauthenticated, "not an approver token");
  c = ApproverClaims("bob");
  c.scope = {"*"};
  t = issuer_->Mint(c, identity::kApproverTokenTyp);
  ASSERT_TRUE(t.ok());
  ExpectRefused(*t, ErrorCode::kUnauthenticated, "not an approver token");
}

TEST_F(ApproverTokensTest, TheAgentListenerRefusesAnApproverToken) {
  // The agent listener's verifier: typ at+jwt, audience "mandate".
  identity::VerifierOptions options{kIssuer, kAudience};
  auto session_verifier = identity::TokenVerifier::Create(options, *keys_, clock_);
  ASSERT_TRUE(session_verifier.ok());
  auto r = (*session_verifier)->Verify(MintFor("bob"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnauthenticated);
}

TEST_F(ApproverTokensTest, RefusesAnExpiredToken) {
  const std::string token = MintFor("bob", 600);
  ASSERT_TRUE(tokens_->Authenticate(token).ok());
  clock_.AdvanceSeconds(600 + core::kTokenClockSkewSeconds);
  ExpectRefused(token, ErrorCode::kTokenExpired, "expired");
}

TEST_F(ApproverTokensTest, RevokingTheHumanRevokesTheirTokens) {
  const std::string bob = MintFor("bob");
  const std::string carol = MintFor("carol");
  ASSERT_TRUE(tokens_->Authenticate(bob).ok());  // cached from here on
  auto revoked = revocations_->Revoke(*store_, revocation::Kind::kHuman, "bob", "left the team",
                                      clock_.NowUnixSeconds());
  ASSERT_TRUE(revoked.ok()) << revoked.error().message;
  ExpectRefused(bob, ErrorCode::kTokenRevoked, "revoked");
  EXPECT_TRUE(tokens_->Authenticate(carol).ok());
  auto again = tokens_->Mint("bob", std::nullopt);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::kTokenRevoked);
}

TEST_F(ApproverTokensTest, RefusesATokenNamingAnUnknownHuman) {
  auto t = issuer_->Mint(ApproverClaims("mallory"), identity::kApproverTokenTyp);
  ASSERT_TRUE(t.ok());
  ExpectRefused(*t, ErrorCode::kUnauthenticated, "unknown human");
}

TEST_F(ApproverTokensTest, RefusesATokenOfAnotherKey) {
  auto other_keys =
      identity::SigningKeys::LoadOrCreate(tmp_.Sub("other-keys"), identity::Alg::kEdDSA);
  ASSERT_TRUE(other_keys.ok());
  identity::TokenIssuer other(**other_keys);
  auto t = other.Mint(ApproverClaims("bob"), identity::kApproverTokenTyp);
  ASSERT_TRUE(t.ok());
  ExpectRefused(*t, ErrorCode::kUnauthenticated, "unknown key");
}

TEST_F(ApproverTokensTest, RefusesAlgNoneAndGarbage) {
  const std::string none = core::Base64UrlEncode(R"({"alg":"none","typ":"approver+jwt"})") + "." +
                           core::Base64UrlEncode(ApproverClaims("bob").ToJson().Dump()) + ".";
  ExpectRefused(none, ErrorCode::kUnauthenticated, "");
  ExpectRefused("mdt_0123456789abcdef0123456789abcdef", ErrorCode::kUnauthenticated, "");
  auto empty = tokens_->Authenticate("");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, ErrorCode::kUnauthenticated);
}

}  // namespace
}  // namespace mandate::server
