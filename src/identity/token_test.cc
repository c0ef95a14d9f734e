// TokenIssuer and TokenVerifier: round trips, every rejection rule of token_verifier.h, and
// the verification cache.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <atomic>
#include <thread>

#include "core/temp_dir_test_util.h"
#include "identity/identity_test_util.h"
#include "mandate/core/clock.h"
#include "mandate/core/crypto.h"
#include "mandate/core/limits.h"
#include "mandate/identity/token_issuer.h"
#include "mandate/identity/token_verifier.h"

namespace mandate::identity {
namespace {

using core::ErrorCode;
using core::Json;
using testing::DecodeSegment;
using core::testing::TempDir;
using testing::Segments;
using testing::SigningInput;

constexpr char kIssuer[] = "https://mandate.example";
constexpr char kAudience[] = "mandate";

std::string HmacSha256(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t len = 0;
  unsigned char* r = EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, key.data(), key.size(),
                               reinterpret_cast<const unsigned char*>(data.data()), data.size(),
                               out, sizeof(out), &len);
  EXPECT_NE(r, nullptr);
  return std::string(reinterpret_cast<char*>(out), len);
}

class TokenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto keys = SigningKeys::LoadOrCreate(tmp_.Sub("keys"), Alg::kEdDSA);
    ASSERT_TRUE(keys.ok()) << keys.error().message;
    keys_ = std::move(*keys);
    issuer_ = std::make_unique<TokenIssuer>(*keys_);
    verifier_ = MakeVerifier();
  }

  std::unique_ptr<TokenVerifier> MakeVerifier(
      size_t cache_entries_max = core::kTokenCacheEntriesMax) {
    VerifierOptions options;
    options.issuer = kIssuer;
    options.audience = kAudience;
    options.cache_entries_max = cache_entries_max;
    auto v = TokenVerifier::Create(options, *keys_, clock_);
    EXPECT_TRUE(v.ok()) << v.error().message;
    return std::move(*v);
  }

  Claims BaseClaims() const {
    Claims c;
    c.iss = kIssuer;
    c.aud = {kAudience};
    c.sub = "alice";
    c.client_id = "orchestrator";
    c.sid = "ses_root";
    c.jti = core::NewId("tok");
    c.act = {{"agent:orchestrator", "ses_root"}};
    c.task = "SUP-123";
    c.scope = {"jira:get_issue", "jira:transition_issue"};
    c.model = ModelInfo{"anthropic", "claude-opus-4-5", "frontier"};
    c.iat = clock_.NowUnixSeconds();
    c.nbf = c.iat;
    c.exp = c.iat + core::kTokenTtlSecondsDefault;
    return c;
  }

  std::string Mint(const Claims& c) {
    auto t = issuer_->Mint(c);
    EXPECT_TRUE(t.ok()) << t.error().message;
    return t.ok() ? *t : std::string();
  }

  Json Header(std::string_view alg = "EdDSA") const {
    Json h = Json::MakeObject();
    h.Set("alg", std::string(alg));
    h.Set("typ", "at+jwt");
    h.Set("kid", keys_->Active()->kid());
    return h;
  }

  // A token with arbitrary header and payload, properly signed with the active key.
  std::string SignWithActiveKey(const Json& header, const Json& payload) {
    std::string input = SigningInput(header, payload);
    auto sig = keys_->Active()->Sign(input);
    EXPECT_TRUE(sig.ok());
    return input + "." + core::Base64UrlEncode(sig.ok() ? *sig : std::string());
  }

  // Expects `token` to be refused with `code`, without the token in the message.
  void ExpectRejected(const std::string& token, ErrorCode code = ErrorCode::kUnauthenticated,
                      std::string_view reason = {}) {
    auto r = verifier_->Verify(token);
    ASSERT_FALSE(r.ok()) << "accepted: " << token.substr(0, 80);
    EXPECT_EQ(r.error().code, code) << r.error().message;
    if (!reason.empty()) {
      EXPECT_NE(r.error().message.find(reason), std::string::npos) << r.error().message;
    }
    if (!token.empty()) {
      EXPECT_EQ(r.error().message.find(token), std::string::npos);
      for (const std::string& seg : Segments(token)) {
        if (seg.size() >= 8) {
          EXPECT_EQ(r.error().message.find(seg), std::string::npos) << r.error().message;
        }
      }
    }
  }

  TempDir tmp_;
  core::FakeClock clock_;
  std::unique_ptr<SigningKeys> keys_;
  std::unique_ptr<TokenIssuer> issuer_;
  std::unique_ptr<TokenVerifier> verifier_;
};

TEST_F(TokenTest, MintsAndVerifiesRoundTrip) {
  Claims c = BaseClaims();
  c.cnf_jkt = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k";
  std::string token = Mint(c);
  auto v = verifier_->Verify(token);
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(**v, c);
}

TEST_F(TokenTest, HeaderIsEdDsaAtJwtWithKid) {
  std::string token = Mint(BaseClaims());
  auto segs = Segments(token);
  ASSERT_EQ(segs.size(), 3u);
  EXPECT_EQ(DecodeSegment(segs[0]).Dump(),
            R"({"alg":"EdDSA","typ":"at+jwt","kid":")" + keys_->Active()->kid() + R"("})");
  Json payload = DecodeSegment(segs[1]);
  auto claims = Claims::FromJson(payload);
  ASSERT_TRUE(claims.ok());
  EXPECT_EQ(payload, claims->ToJson());  // the payload is exactly Claims::ToJson
  EXPECT_EQ(core::Base64UrlDecode(segs[2])->size(), 64u);
}

TEST_F(TokenTest, VerifiesTokensAfterKeysAreReloaded) {
  std::string token = Mint(BaseClaims());
  auto reloaded = SigningKeys::LoadOrCreate(tmp_.Sub("keys"));
  ASSERT_TRUE(reloaded.ok());
  auto v = TokenVerifier::Create({kIssuer, kAudience}, **reloaded, clock_);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE((*v)->Verify(token).ok());
}

TEST_F(TokenTest, RejectsAlgNone) {
  Json payload = BaseClaims().ToJson();
  Json header = Header("none");
  ExpectRejected(SigningInput(header, payload) + ".", ErrorCode::kUnauthenticated);
  // Even with a genuine signature from the right key attached.
  ExpectRejected(SignWithActiveKey(header, payload), ErrorCode::kUnauthenticated, "alg");
  for (const char* variant : {"None", "NONE", "nOnE"}) {
    ExpectRejected(SignWithActiveKey(Header(variant), payload), ErrorCode::kUnauthenticated, "alg");
  }
}

TEST_F(TokenTest, RejectsHs256SignedWithPublicKey) {
  Json payload = BaseClaims().ToJson();
  Json header = Header("HS256");
  std::string input = SigningInput(header, payload);
  const Json& jwk = keys_->Active()->PublicJwk();
  // Every plausible "public key as HMAC secret" an attacker might try.
  for (const std::string& secret : {*core::Base64UrlDecode(jwk.GetString("x")), jwk.GetString("x"),
                                    jwk.Dump(), keys_->Jwks().Dump()}) {
    std::string token = input + "." + core::Base64UrlEncode(HmacSha256(secret, input));
    ExpectRejected(token, ErrorCode::kUnauthenticated, "alg");
  }
}

TEST_F(TokenTest, RejectsOtherAsymmetricAlgs) {
  Json payload = BaseClaims().ToJson();
  for (const char* alg : {"ES256", "RS256", "eddsa", "EdDSA ", "Ed25519", ""}) {
    ExpectRejected(SignWithActiveKey(Header(alg), payload), ErrorCode::kUnauthenticated, "alg");
  }
  Json no_alg = Header();
  no_alg.Erase("alg");
  ExpectRejected(SignWithActiveKey(no_alg, payload));
  Json numeric_alg = Header();
  numeric_alg.Set("alg", 1);
  ExpectRejected(SignWithActiveKey(numeric_alg, payload));
}

TEST_F(TokenTest, RejectsCritHeader) {
  Json header = Header();
  header.Set("crit", Json(Json::Array{Json("exp")}));
  ExpectRejected(SignWithActiveKey(header, BaseClaims().ToJson()), ErrorCode::kUnauthenticated,
                 "crit");
}

TEST_F(TokenTest, RejectsWrongTyp) {
  Json payload = BaseClaims().ToJson();
  for (const char* typ : {"JWT", "txntoken+jwt", "dpop+jwt", "at+jwt ", ""}) {
    Json header = Header();
    header.Set("typ", typ);
    ExpectRejected(SignWithActiveKey(header, payload), ErrorCode::kUnauthenticated, "typ");
  }
  Json header = Header();
  header.Erase("typ");
  ExpectRejected(SignWithActiveKey(header, payload), ErrorCode::kUnauthenticated, "typ");
}

TEST_F(TokenTest, AcceptsMediaTypeFormsOfAtJwt) {
  Json payload = BaseClaims().ToJson();
  for (const char* typ : {"application/at+jwt", "AT+JWT", "Application/At+Jwt"}) {
    Json header = Header();
    header.Set("typ", typ);
    auto r = verifier_->Verify(SignWithActiveKey(header, payload));
    EXPECT_TRUE(r.ok()) << typ << ": " << r.error().message;
  }
}

// Approver tokens (typ approver+jwt) and session tokens (typ at+jwt) are signed by the same
// keys; a verifier accepts exactly its own typ, so neither passes for the other.
TEST_F(TokenTest, SessionVerifierRejectsApproverTyp) {
  auto t = issuer_->Mint(BaseClaims(), kApproverTokenTyp);
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(DecodeSegment(Segments(*t)[0]).GetString("typ"), "approver+jwt");
  ExpectRejected(*t, ErrorCode::kUnauthenticated, "typ");
  Json header = Header();
  header.Set("typ", "application/approver+jwt");
  ExpectRejected(SignWithActiveKey(header, BaseClaims().ToJson()), ErrorCode::kUnauthenticated,
                 "typ");
}

TEST_F(TokenTest, ApproverVerifierAcceptsOnlyApproverTyp) {
  VerifierOptions options{kIssuer, kAudience};
  options.typ = std::string(kApproverTokenTyp);
  auto approver_verifier = TokenVerifier::Create(options, *keys_, clock_);
  ASSERT_TRUE(approver_verifier.ok()) << approver_verifier.error().message;
  auto approver_token = issuer_->Mint(BaseClaims(), kApproverTokenTyp);
  ASSERT_TRUE(approver_token.ok());
  auto ok = (*approver_verifier)->Verify(*approver_token);
  EXPECT_TRUE(ok.ok()) << ok.error().message;
  auto refused = (*approver_verifier)->Verify(Mint(BaseClaims()));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::kUnauthenticated);
  EXPECT_NE(refused.error().message.find("typ"), std::string::npos) << refused.error().message;
}

TEST_F(TokenTest, MintRefusesUnknownTyp) {
  for (std::string_view typ : {"JWT", "", "dpop+jwt"}) {
    auto t = issuer_->Mint(BaseClaims(), typ);
    ASSERT_FALSE(t.ok()) << typ;
    EXPECT_EQ(t.error().code, ErrorCode::kBadRequest);
  }
}

TEST_F(TokenTest, RejectsUnknownKid) {
  Json header = Header();
  header.Set("kid", "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
  ExpectRejected(SignWithActiveKey(header, BaseClaims().ToJson()), ErrorCode::kUnauthenticated,
                 "unknown key");
  Json no_kid = Header();
  no_kid.Erase("kid");
  ExpectRejected(SignWithActiveKey(no_kid, BaseClaims().ToJson()), ErrorCode::kUnauthenticated,
                 "kid");
}

TEST_F(TokenTest, RejectsTokenFromAnotherKey) {
  auto other_keys = SigningKeys::LoadOrCreate(tmp_.Sub("other"));
  ASSERT_TRUE(other_keys.ok());
  TokenIssuer other_issuer(**other_keys);
  auto token = other_issuer.Mint(BaseClaims());
  ASSERT_TRUE(token.ok());
  ExpectRejected(*token, ErrorCode::kUnauthenticated, "unknown key");

  // Signed by the other key but claiming our kid: the signature does not verify.
  std::string input = SigningInput(Header(), BaseClaims().ToJson());
  auto sig = (*other_keys)->Active()->Sign(input);
  ASSERT_TRUE(sig.ok());
  ExpectRejected(input + "." + core::Base64UrlEncode(*sig), ErrorCode::kUnauthenticated,
                 "signature");
}

TEST_F(TokenTest, RejectsEditedPayload) {
  std::string token = Mint(BaseClaims());
  auto segs = Segments(token);
  Json payload = DecodeSegment(segs[1]);
  payload.Set("sub", "mallory");
  ExpectRejected(segs[0] + "." + core::Base64UrlEncode(payload.Dump()) + "." + segs[2],
                 ErrorCode::kUnauthenticated, "signature");
  // Widening the scope is the same.
  payload = DecodeSegment(segs[1]);
  payload.Set("scope", "jira:get_issue jira:transition_issue jira:delete_issue");
  ExpectRejected(segs[0] + "." + core::Base64UrlEncode(payload.Dump()) + "." + segs[2],
                 ErrorCode::kUnauthenticated, "signature");
}

TEST_F(TokenTest, RejectsEditedActChain) {
  Claims c = BaseClaims();
  c.act = {{"agent:researcher", "ses_child"}, {"agent:orchestrator", "ses_root"}};
  std::string token = Mint(c);
  ASSERT_TRUE(verifier_->Verify(token).ok());
  auto segs = Segments(token);
  // Drop the inner actor, i.e. hide where the delegation came from.
  Json payload = DecodeSegment(segs[1]);
  payload.Find("act")->Erase("act");
  ExpectRejected(segs[0] + "." + core::Base64UrlEncode(payload.Dump()) + "." + segs[2],
                 ErrorCode::kUnauthenticated, "signature");
  // Swap the current actor.
  payload = DecodeSegment(segs[1]);
  payload.Find("act")->Set("sub", "agent:orchestrator");
  ExpectRejected(segs[0] + "." + core::Base64UrlEncode(payload.Dump()) + "." + segs[2],
                 ErrorCode::kUnauthenticated, "signature");
}

TEST_F(TokenTest, RejectsEditedHeaderAndFlippedSignature) {
  std::string token = Mint(BaseClaims());
  auto segs = Segments(token);
  Json header = DecodeSegment(segs[0]);
  header.Set("typ", "application/at+jwt");  // acceptable value, but not what was signed
  ExpectRejected(core::Base64UrlEncode(header.Dump()) + "." + segs[1] + "." + segs[2],
                 ErrorCode::kUnauthenticated, "signature");
  std::string sig = *core::Base64UrlDecode(segs[2]);
  for (size_t i : {size_t{0}, size_t{31}, size_t{32}, size_t{63}}) {
    std::string flipped = sig;
    flipped[i] = static_cast<char>(flipped[i] ^ 0x01);
    ExpectRejected(segs[0] + "." + segs[1] + "." + core::Base64UrlEncode(flipped),
                   ErrorCode::kUnauthenticated, "signature");
  }
  ExpectRejected(segs[0] + "." + segs[1] + "." + core::Base64UrlEncode(sig.substr(0, 63)),
                 ErrorCode::kUnauthenticated, "signature");
  ExpectRejected(segs[0] + "." + segs[1] + "." + core::Base64UrlEncode(sig + "x"),
                 ErrorCode::kUnauthenticated, "signature");
}

TEST_F(TokenTest, RejectsWrongIssuer) {
  Claims c = BaseClaims();
  c.iss = "https://evil.example";
  ExpectRejected(Mint(c), ErrorCode::kUnauthenticated, "issuer");
  c.iss = std::string(kIssuer) + "/";
  ExpectRejected(Mint(c), ErrorCode::kUnauthenticated, "issuer");
}

TEST_F(TokenTest, RejectsWrongAudience) {
  Claims c = BaseClaims();
  c.aud = {"mandate-staging"};
  ExpectRejected(Mint(c), ErrorCode::kUnauthenticated, "audience");
  c.aud = {"jira", "github"};
  ExpectRejected(Mint(c), ErrorCode::kUnauthenticated, "audience");
}

TEST_F(TokenTest, AcceptsAudienceArrayContainingAudience) {
  Claims c = BaseClaims();
  c.aud = {"jira", kAudience};
  auto v = verifier_->Verify(Mint(c));
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_TRUE((*v)->HasAudience(kAudience));
}

TEST_F(TokenTest, RejectsExpiredToken) {
  Claims c = BaseClaims();
  std::string token = Mint(c);
  // Still inside the skew window: exp + 29 s.
  clock_.SetUnixSeconds(c.exp + core::kTokenClockSkewSeconds - 1);
  EXPECT_TRUE(MakeVerifier()->Verify(token).ok());
  // exp <= now - skew: expired.
  clock_.SetUnixSeconds(c.exp + core::kTokenClockSkewSeconds);
  verifier_ = MakeVerifier();
  ExpectRejected(token, ErrorCode::kTokenExpired, "expired");
}

TEST_F(TokenTest, RejectsNotYetValidToken) {
  Claims c = BaseClaims();
  c.nbf = clock_.NowUnixSeconds() + core::kTokenClockSkewSeconds + 1;
  c.exp = c.nbf + 600;
  ExpectRejected(Mint(c), ErrorCode::kUnauthenticated, "nbf");
  c.nbf = clock_.NowUnixSeconds() + core::kTokenClockSkewSeconds;  // at the edge: accepted
  EXPECT_TRUE(verifier_->Verify(Mint(c)).ok());
}

TEST_F(TokenTest, RejectsTokenIssuedInTheFuture) {
  Claims c = BaseClaims();
  c.iat = clock_.NowUnixSeconds() + core::kTokenClockSkewSeconds + 1;
  ExpectRejected(Mint(c), ErrorCode::kUnauthenticated, "iat");
  c.iat = clock_.NowUnixSeconds() + core::kTokenClockSkewSeconds;
  EXPECT_TRUE(verifier_->Verify(Mint(c)).ok());
}

TEST_F(TokenTest, RejectsOversizeToken) {
  std::string token = Mint(BaseClaims());
  std::string big = token + std::string(core::kTokenBytesMax + 1 - token.size(), 'A');
  ASSERT_EQ(big.size(), core::kTokenBytesMax + 1);
  ExpectRejected(big, ErrorCode::kUnauthenticated, "longer than");
  ASSERT_TRUE(verifier_->Verify(token).ok());
  ExpectRejected(std::string(1 << 20, 'x'), ErrorCode::kUnauthenticated, "longer than");
}

TEST_F(TokenTest, RejectsMalformedBase64) {
  std::string token = Mint(BaseClaims());
  auto segs = Segments(token);
  // Non-alphabet bytes, padding, standard-alphabet characters, impossible lengths, whitespace.
  for (const std::string& bad : {std::string("*"), std::string("="), std::string("+"),
                                 std::string("/"), std::string(" "), std::string("\n")}) {
    ExpectRejected(segs[0] + bad + "." + segs[1] + "." + segs[2]);
    ExpectRejected(segs[0] + "." + segs[1] + bad + "." + segs[2]);
    ExpectRejected(segs[0] + "." + segs[1] + "." + segs[2] + bad);
  }
  ExpectRejected(segs[0] + "A." + segs[1] + "." + segs[2]);  // one character too many
  ExpectRejected(segs[0] + "." + segs[1] + "." + segs[2] + "A");
  ExpectRejected(segs[0] + "." + segs[1] + "=." + segs[2]);
  // Payload that is not base64url, with a correct signature over those exact bytes.
  std::string input = segs[0] + "." + segs[1] + "%";
  auto sig = keys_->Active()->Sign(input);
  ASSERT_TRUE(sig.ok());
  ExpectRejected(input + "." + core::Base64UrlEncode(*sig), ErrorCode::kUnauthenticated, "payload");
}

TEST_F(TokenTest, RejectsWrongSegmentCount) {
  std::string token = Mint(BaseClaims());
  auto segs = Segments(token);
  for (const std::string& bad :
       {std::string(), std::string("."), std::string(".."), std::string("..."), segs[0],
        segs[0] + "." + segs[1], segs[0] + "." + segs[1] + ".", "." + segs[1] + "." + segs[2],
        segs[0] + ".." + segs[2], token + ".", token + "." + segs[2], "Bearer " + token}) {
    ExpectRejected(bad, ErrorCode::kUnauthenticated);
  }
}

TEST_F(TokenTest, RejectsNonJsonOrNonObjectHeader) {
  std::string payload = core::Base64UrlEncode(BaseClaims().ToJson().Dump());
  for (const std::string& header :
       {std::string("not json"), std::string("[1,2]"), std::string("\"EdDSA\""),
        std::string("{\"alg\":\"EdDSA\""), std::string(R"({"alg":"EdDSA","alg":"none"})")}) {
    std::string input = core::Base64UrlEncode(header) + "." + payload;
    auto sig = keys_->Active()->Sign(input);
    ASSERT_TRUE(sig.ok());
    ExpectRejected(input + "." + core::Base64UrlEncode(*sig), ErrorCode::kUnauthenticated,
                   "header");
  }
}

TEST_F(TokenTest, RejectsSignedTokenWithInvalidClaims) {
  Json payload = BaseClaims().ToJson();
  payload.Set("exp", "1767000900");  // string, not a NumericDate
  ExpectRejected(SignWithActiveKey(Header(), payload), ErrorCode::kUnauthenticated, "exp");
  payload = BaseClaims().ToJson();
  payload.Erase("sub");
  ExpectRejected(SignWithActiveKey(Header(), payload), ErrorCode::kUnauthenticated, "sub");
  payload = BaseClaims().ToJson();
  Json cnf = Json::MakeObject();
  cnf.Set("x5t#S256", "abc");
  payload.Set("cnf", cnf);
  ExpectRejected(SignWithActiveKey(Header(), payload), ErrorCode::kUnauthenticated, "cnf");
  ExpectRejected(SignWithActiveKey(Header(), Json::MakeArray()), ErrorCode::kUnauthenticated,
                 "payload");
}

TEST_F(TokenTest, Es256TokensVerifyOnlyWithAnEs256Verifier) {
  auto es_keys = SigningKeys::LoadOrCreate(tmp_.Sub("es256"), Alg::kES256);
  ASSERT_TRUE(es_keys.ok()) << es_keys.error().message;
  TokenIssuer es_issuer(**es_keys);
  auto token = es_issuer.Mint(BaseClaims());
  ASSERT_TRUE(token.ok()) << token.error().message;
  EXPECT_EQ(DecodeSegment(Segments(*token)[0]).GetString("alg"), "ES256");

  VerifierOptions options{kIssuer, kAudience, Alg::kES256};
  auto es_verifier = TokenVerifier::Create(options, **es_keys, clock_);
  ASSERT_TRUE(es_verifier.ok());
  auto v = (*es_verifier)->Verify(*token);
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ((*v)->sub, "alice");

  // The EdDSA verifier refuses it on alg, and the ES256 verifier refuses EdDSA tokens.
  auto ed_verifier = TokenVerifier::Create({kIssuer, kAudience}, **es_keys, clock_);
  ASSERT_TRUE(ed_verifier.ok());
  EXPECT_FALSE((*ed_verifier)->Verify(*token).ok());
  EXPECT_FALSE((*es_verifier)->Verify(Mint(BaseClaims())).ok());
}

TEST_F(TokenTest, MintRefusesInvalidOrOversizeClaims) {
  Claims c = BaseClaims();
  c.sub.clear();
  auto t = issuer_->Mint(c);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, ErrorCode::kBadRequest);

  c = BaseClaims();
  c.exp = c.nbf + core::kTokenTtlSecondsMax + 1;
  t = issuer_->Mint(c);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, ErrorCode::kBadRequest);

  c = BaseClaims();
  c.scope.clear();
  for (size_t i = 0; i < core::kScopeEntriesMax; ++i) {
    c.scope.push_back("upstream-with-a-long-name:tool_" + std::to_string(i));
  }
  t = issuer_->Mint(c);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, ErrorCode::kPayloadTooLarge);
}

TEST_F(TokenTest, CreateRefusesBadOptions) {
  EXPECT_FALSE(TokenVerifier::Create({"", kAudience}, *keys_, clock_).ok());
  EXPECT_FALSE(TokenVerifier::Create({kIssuer, ""}, *keys_, clock_).ok());
  VerifierOptions o{kIssuer, kAudience};
  o.cache_entries_max = 0;
  EXPECT_FALSE(TokenVerifier::Create(o, *keys_, clock_).ok());
  o.cache_entries_max = core::kTokenCacheEntriesMax + 1;
  EXPECT_FALSE(TokenVerifier::Create(o, *keys_, clock_).ok());
  o = VerifierOptions{kIssuer, kAudience};
  o.clock_skew_seconds = -1;
  EXPECT_FALSE(TokenVerifier::Create(o, *keys_, clock_).ok());
  o = VerifierOptions{kIssuer, kAudience};
  o.typ = "JWT";
  EXPECT_FALSE(TokenVerifier::Create(o, *keys_, clock_).ok());
}

// --- Cache ------------------------------------------------------------------------------------

TEST_F(TokenTest, CacheChecksTheSignatureOncePerToken) {
  std::string token = Mint(BaseClaims());
  auto first = verifier_->Verify(token);
  auto second = verifier_->Verify(token);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->get(), second->get());  // the same cached object
  auto stats = verifier_->cache_stats();
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.entries, 1u);
  verifier_->ClearCache();
  EXPECT_EQ(verifier_->cache_stats().entries, 0u);
  EXPECT_TRUE(verifier_->Verify(token).ok());
  EXPECT_EQ(verifier_->cache_stats().misses, 2u);
}

TEST_F(TokenTest, CacheHitStillChecksExpiry) {
  Claims c = BaseClaims();
  std::string token = Mint(c);
  ASSERT_TRUE(verifier_->Verify(token).ok());
  clock_.SetUnixSeconds(c.exp + core::kTokenClockSkewSeconds);
  auto r = verifier_->Verify(token);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kTokenExpired);
  EXPECT_EQ(verifier_->cache_stats().hits, 1u);  // it was a hit, and still refused
}

TEST_F(TokenTest, CacheHitStillChecksNotBeforeWhenTheClockGoesBack) {
  Claims c = BaseClaims();
  std::string token = Mint(c);
  ASSERT_TRUE(verifier_->Verify(token).ok());
  clock_.SetUnixSeconds(c.nbf - core::kTokenClockSkewSeconds - 1);
  auto r = verifier_->Verify(token);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(verifier_->cache_stats().hits, 1u);
}

TEST_F(TokenTest, FailedVerificationsAreNeverCached) {
  Claims c = BaseClaims();
  std::string token = Mint(c);
  auto segs = Segments(token);
  Json payload = DecodeSegment(segs[1]);
  payload.Set("sub", "mallory");
  std::string forged = segs[0] + "." + core::Base64UrlEncode(payload.Dump()) + "." + segs[2];
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(verifier_->Verify(forged).ok());

  // A genuine but expired token is not cached either.
  clock_.SetUnixSeconds(c.exp + core::kTokenClockSkewSeconds);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(verifier_->Verify(token).ok());

  auto stats = verifier_->cache_stats();
  EXPECT_EQ(stats.entries, 0u);
  EXPECT_EQ(stats.hits, 0u);
  EXPECT_EQ(stats.misses, 6u);
}

TEST_F(TokenTest, CacheIsBounded) {
  constexpr size_t kMax = 64;
  auto verifier = MakeVerifier(kMax);
  std::vector<std::string> tokens;
  for (int i = 0; i < 600; ++i) tokens.push_back(Mint(BaseClaims()));
  for (const auto& t : tokens) {
    ASSERT_TRUE(verifier->Verify(t).ok());
    ASSERT_LE(verifier->cache_stats().entries, kMax);
  }
  // Every token still verifies (evicted ones by checking the signature again).
  for (const auto& t : tokens) ASSERT_TRUE(verifier->Verify(t).ok());
  auto stats = verifier->cache_stats();
  EXPECT_LE(stats.entries, kMax);
  EXPECT_GT(stats.entries, 0u);
  EXPECT_EQ(stats.hits + stats.misses, 1200u);
  // A tiny cache (one shard) is bounded too.
  auto tiny = MakeVerifier(3);
  for (const auto& t : tokens) {
    ASSERT_TRUE(tiny->Verify(t).ok());
    ASSERT_LE(tiny->cache_stats().entries, 3u);
  }
}

TEST_F(TokenTest, CacheEvictsExpiredEntriesFirst) {
  constexpr size_t kMax = 16;  // one entry per shard
  auto verifier = MakeVerifier(kMax);
  Claims short_lived = BaseClaims();
  short_lived.exp = short_lived.nbf + 60;
  std::vector<std::string> tokens;
  for (int i = 0; i < 40; ++i) {
    short_lived.jti = core::NewId("tok");
    tokens.push_back(Mint(short_lived));
    ASSERT_TRUE(verifier->Verify(tokens.back()).ok());
  }
  clock_.AdvanceSeconds(60 + core::kTokenClockSkewSeconds);
  for (int i = 0; i < 40; ++i) ASSERT_TRUE(verifier->Verify(Mint(BaseClaims())).ok());
  EXPECT_LE(verifier->cache_stats().entries, kMax);
}

TEST_F(TokenTest, ConcurrentVerificationIsConsistent) {
  std::vector<std::string> good;
  for (int i = 0; i < 32; ++i) good.push_back(Mint(BaseClaims()));
  auto segs = Segments(good[0]);
  Json payload = DecodeSegment(segs[1]);
  payload.Set("sub", "mallory");
  const std::string forged = segs[0] + "." + core::Base64UrlEncode(payload.Dump()) + "." + segs[2];
  auto verifier = MakeVerifier(64);  // small: eviction races with lookups
  std::atomic<int> wrong{0};
  constexpr int kThreads = 4;
  constexpr int kRounds = 400;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        const std::string& token = good[(i * 7 + t) % good.size()];
        auto r = verifier->Verify(token);
        if (!r.ok() || (*r)->sub != "alice") wrong.fetch_add(1);
        if (i % 10 == 0 && verifier->Verify(forged).ok()) wrong.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
  auto stats = verifier->cache_stats();
  EXPECT_EQ(stats.hits + stats.misses, uint64_t{kThreads} * (kRounds + kRounds / 10));
  EXPECT_LE(stats.entries, 64u);
}

}  // namespace
}  // namespace mandate::identity
