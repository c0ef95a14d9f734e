// Authentication of agent requests (pipeline.h: Authenticate, AuthenticateRequest,
// AuthenticateSubjectToken): the Bearer and DPoP schemes of RFC 6750 and RFC 9449, with real
// signing keys, token issuer and verifier, DPoP verifier and revocation set on a FakeClock.
// Every way a DPoP-bound token can be misused is refused, and the challenge tells the client
// which scheme and which error (RFC 9449 section 7.1).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/temp_dir_test_util.h"
#include "mandate/core/clock.h"
#include "mandate/core/encoding.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"
#include "mandate/gateway/pipeline.h"
#include "mandate/identity/dpop.h"
#include "mandate/identity/jws_key.h"
#include "mandate/identity/signing_keys.h"
#include "mandate/identity/token_issuer.h"
#include "mandate/identity/token_verifier.h"
#include "mandate/revocation/revocation_set.h"
#include "mandate/store/sqlite_store.h"

namespace mandate::gateway {
namespace {

using core::ErrorCode;
using core::Json;
using Headers = std::vector<std::pair<std::string, std::string>>;

constexpr char kIssuer[] = "https://mandate.test";
constexpr char kAudience[] = "mandate";
constexpr char kSid[] = "ses_dpop";
constexpr char kHost[] = "mandate.example:8080";
constexpr char kPath[] = "/mcp/up";
constexpr char kUri[] = "http://mandate.example:8080/mcp/up";  // dpop_scheme "http" + Host + path
constexpr char kTokenEndpoint[] = "http://mandate.example:8080/oauth/token";


std::shared_ptr<const identity::JwsKey> NewKey(identity::Alg alg) {
  auto key = identity::JwsKey::Generate(alg);
  EXPECT_TRUE(key.ok()) << key.error().message;
  return *key;
}

// What a client puts in a proof: the claims of RFC 9449 section 4.2, each overridable.
struct ProofSpec {
  std::string htm = "POST";
  std::string htu = kUri;
  std::string jti{};  // empty: a fresh one
  std::string ath{};  // empty: DpopAccessTokenHash(token) when a token is given
  bool with_ath = true;
  int64_t iat_offset_seconds = 0;
};

class RequestAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto keys = identity::SigningKeys::LoadOrCreate(dir_.Sub("keys"));
    ASSERT_TRUE(keys.ok()) << keys.error().message;
    keys_ = std::move(keys).value();
    issuer_ = std::make_unique<identity::TokenIssuer>(*keys_);
    identity::VerifierOptions vopts;
    vopts.issuer = kIssuer;
    vopts.audience = kAudience;
    auto verifier = identity::TokenVerifier::Create(vopts, *keys_, clock_);
    ASSERT_TRUE(verifier.ok()) << verifier.error().message;
    verifier_ = std::move(verifier).value();
    auto dpop = identity::DpopVerifier::Create();
    ASSERT_TRUE(dpop.ok()) << dpop.error().message;
    dpop_ = std::move(dpop).value();

    auto store = store::SqliteStore::Open(dir_.Sub("mandate.db"));
    ASSERT_TRUE(store.ok()) << store.error().message;
    store_ = std::move(store).value();
    ASSERT_TRUE(store_->PutHuman({"alice", {}, 1}).ok());
    ASSERT_TRUE(store_->PutAgent({"bot", "alice", {}, 1}).ok());
    auto revocations = revocation::RevocationSet::Load(*store_);
    ASSERT_TRUE(revocations.ok()) << revocations.error().message;
    revocations_ = std::move(revocations).value();
    directory_.PutHuman("alice", {});
    directory_.PutAgent("bot", "alice", {});

    key_ = NewKey(identity::Alg::kEdDSA);
    other_key_ = NewKey(identity::Alg::kEdDSA);
    pipeline_ = MakePipeline(dpop_.get());
  }

  std::unique_ptr<Pipeline> MakePipeline(const identity::DpopVerifier* dpop) {
    PipelineDeps deps;
    deps.clock = &clock_;
    deps.verifier = verifier_.get();
    deps.revocations = revocations_.get();
    deps.policies = &policies_;
    deps.directory = &directory_;
    deps.dpop = dpop;
    deps.dpop_scheme = "http";
    return std::make_unique<Pipeline>(deps);
  }

  // A session token for bot acting for alice; bound to `jkt` when non-empty.
  std::string Token(const std::string& jkt = "", int64_t ttl_seconds = 900) const {
    identity::Claims c;
    c.iss = kIssuer;
    c.aud = {kAudience};
    c.sub = "alice";
    c.client_id = "bot";
    c.sid = kSid;
    c.jti = "tok_" + std::to_string(++jti_);
    c.act = {identity::Actor{"agent:bot", kSid}};
    c.scope = {"*"};
    c.iat = clock_.NowUnixSeconds();
    c.nbf = c.iat;
    c.exp = c.iat + ttl_seconds;
    if (!jkt.empty()) c.cnf_jkt = jkt;
    auto token = issuer_->Mint(c);
    EXPECT_TRUE(token.ok()) << token.error().message;
    return token.ok() ? *token : "";
  }
  std::string BoundToken() const { return Token(key_->kid()); }

  // A DPoP proof signed by `key` for `token` (empty: none, so no ath).
  std::string Proof(const identity::JwsKey& key, const std::string& token,
                    ProofSpec spec = {}) const {
    Json jwk = key.PublicJwk();
    jwk.Erase("kid");
    jwk.Erase("use");
    jwk.Erase("alg");
    Json header = Json::MakeObject();
    header.Set("typ", "dpop+jwt");
    header.Set("alg", std::string(identity::AlgName(key.alg())));
    header.Set("jwk", std::move(jwk));
    Json payload = Json::MakeObject();
    payload.Set("jti", spec.jti.empty() ? "jti-" + std::to_string(++proof_jti_) : spec.jti);
    payload.Set("htm", spec.htm);
    payload.Set("htu", spec.htu);
    payload.Set("iat", clock_.NowUnixSeconds() + spec.iat_offset_seconds);
    if (spec.with_ath && !token.empty()) {
      payload.Set("ath", spec.ath.empty() ? identity::DpopAccessTokenHash(token) : spec.ath);
    }
    const std::string input =
        core::Base64UrlEncode(header.Dump()) + "." + core::Base64UrlEncode(payload.Dump());
    auto sig = key.Sign(input);
    EXPECT_TRUE(sig.ok()) << sig.error().message;
    return input + "." + core::Base64UrlEncode(sig.ok() ? *sig : std::string());
  }

  // The headers of a request with `authorization` (empty: none) and each of `proofs`.
  static Headers MakeHeaders(const std::string& authorization,
                             const std::vector<std::string>& proofs = {},
                             const std::string& host = kHost) {
    Headers h;
    if (!host.empty()) h.emplace_back("Host", host);
    if (!authorization.empty()) h.emplace_back("Authorization", authorization);
    for (const auto& p : proofs) h.emplace_back("DPoP", p);
    h.emplace_back("Content-Type", "application/json");
    return h;
  }

  struct Outcome {
    core::Result<Caller> caller;
    std::string challenge;
  };
  Outcome Request(const Headers& headers, std::string_view method = "POST",
                  std::string_view target = kPath) const {
    Outcome o{core::MakeError(ErrorCode::kInternal, "unset"), ""};
    o.caller = pipeline_->AuthenticateRequest(AgentRequest{method, target, &headers}, &o.challenge);
    return o;
  }

  // A DPoP-scheme request with one proof by `key` for `token`.
  Outcome DpopRequest(const std::string& token, const identity::JwsKey& key,
                      ProofSpec spec = {}) const {
    const std::string method = spec.htm;
    return Request(MakeHeaders("DPoP " + token, {Proof(key, token, std::move(spec))}), method);
  }

  static void ExpectProofRefused(const Outcome& o, std::string_view why) {
    ASSERT_FALSE(o.caller.ok()) << "expected a refusal: " << why;
    EXPECT_EQ(o.caller.error().code, ErrorCode::kDpopInvalid) << o.caller.error().message;
    EXPECT_NE(o.caller.error().message.find(why), std::string::npos) << o.caller.error().message;
    EXPECT_EQ(o.challenge.rfind("DPoP error=\"invalid_dpop_proof\"", 0), 0u) << o.challenge;
    EXPECT_NE(o.challenge.find("algs=\"EdDSA ES256\""), std::string::npos) << o.challenge;
  }

  core::Result<Pipeline::SubjectAuth> Subject(const std::string& token,
                                              const std::vector<std::string>& proofs) const {
    const Headers headers = MakeHeaders("", proofs);
    return pipeline_->AuthenticateSubjectToken(token,
                                               AgentRequest{"POST", "/oauth/token", &headers});
  }

  core::testing::TempDir dir_;
  core::FakeClock clock_;
  mutable int jti_ = 0;
  mutable int proof_jti_ = 0;
  std::unique_ptr<identity::SigningKeys> keys_;
  std::unique_ptr<identity::TokenIssuer> issuer_;
  std::unique_ptr<identity::TokenVerifier> verifier_;
  std::unique_ptr<identity::DpopVerifier> dpop_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<revocation::RevocationSet> revocations_;
  PolicyHolder policies_;
  Directory directory_;
  std::shared_ptr<const identity::JwsKey> key_;
  std::shared_ptr<const identity::JwsKey> other_key_;
  std::unique_ptr<Pipeline> pipeline_;
};

// --- Bearer ------------------------------------------------------------------------------

TEST_F(RequestAuthTest, UnboundTokenIsAcceptedAsBearerInAnyLetterCase) {
  const std::string token = Token();
  for (const char* scheme : {"Bearer ", "bearer ", "BEARER "}) {
    Outcome o = Request(MakeHeaders(scheme + token));
    ASSERT_TRUE(o.caller.ok()) << scheme << o.caller.error().message;
    EXPECT_EQ(o.caller->sid(), kSid);
  }
  // A stray DPoP header does not matter to a bearer token.
  EXPECT_TRUE(Request(MakeHeaders("Bearer " + token, {"not-a-proof"})).caller.ok());
  EXPECT_TRUE(pipeline_->Authenticate(token).ok());
}

TEST_F(RequestAuthTest, BoundTokenPresentedAsBearerIsRefused) {
  const std::string token = BoundToken();
  // Even with a valid proof alongside: the scheme says bearer, and a bearer is what a thief has.
  Outcome o = Request(MakeHeaders("Bearer " + token, {Proof(*key_, token)}));
  ASSERT_FALSE(o.caller.ok());
  EXPECT_EQ(o.caller.error().code, ErrorCode::kDpopInvalid);
  EXPECT_EQ(
      o.challenge,
      "DPoP error=\"invalid_token\", error_description=\"dpop_invalid\", algs=\"EdDSA ES256\"");
  auto plain = pipeline_->Authenticate(token);
  ASSERT_FALSE(plain.ok());
  EXPECT_EQ(plain.error().code, ErrorCode::kDpopInvalid);
}

TEST_F(RequestAuthTest, MissingOrUnsupportedCredentialsAreUnauthenticatedWithBothChallenges) {
  const std::string both = "Bearer, DPoP algs=\"EdDSA ES256\"";
  const std::string token = Token();
  for (const Headers& h : {MakeHeaders(""), MakeHeaders("Basic " + token), MakeHeaders("Bearer"),
                           MakeHeaders("Bearer    "), MakeHeaders("DPoP")}) {
    Outcome o = Request(h);
    ASSERT_FALSE(o.caller.ok());
    EXPECT_EQ(o.caller.error().code, ErrorCode::kUnauthenticated) << o.caller.error().message;
    EXPECT_EQ(o.challenge, both);
  }
  Headers two = MakeHeaders("Bearer " + token);
  two.emplace_back("Authorization", "Bearer " + token);
  Outcome o = Request(two);
  ASSERT_FALSE(o.caller.ok());
  EXPECT_EQ(o.caller.error().code, ErrorCode::kUnauthenticated);
}

TEST_F(RequestAuthTest, InvalidTokenChallengeFollowsTheScheme) {
  Outcome bearer = Request(MakeHeaders("Bearer garbage"));
  ASSERT_FALSE(bearer.caller.ok());
  EXPECT_EQ(bearer.caller.error().code, ErrorCode::kUnauthenticated);
  EXPECT_EQ(bearer.challenge,
            "Bearer error=\"invalid_token\", error_description=\"unauthenticated\"");

  const std::string token = BoundToken();
  clock_.AdvanceSeconds(900 + core::kTokenClockSkewSeconds + 1);
  Outcome expired = DpopRequest(token, *key_);
  ASSERT_FALSE(expired.caller.ok());
  EXPECT_EQ(expired.caller.error().code, ErrorCode::kTokenExpired);
  EXPECT_EQ(
      expired.challenge,
      "DPoP error=\"invalid_token\", error_description=\"token_expired\", algs=\"EdDSA ES256\"");
}

// --- DPoP ----------------------------------------------------------------------------------

TEST_F(RequestAuthTest, BoundTokenWithAFreshProofIsAcceptedForBothAlgorithms) {
  for (identity::Alg alg : {identity::Alg::kEdDSA, identity::Alg::kES256}) {
    auto key = NewKey(alg);
    const std::string token = Token(key->kid());
    for (const char* scheme : {"DPoP ", "dpop "}) {
      Outcome o = Request(MakeHeaders(scheme + token, {Proof(*key, token)}));
      ASSERT_TRUE(o.caller.ok()) << o.caller.error().message;
      EXPECT_EQ(o.caller->sid(), kSid);
      EXPECT_EQ(o.caller->claims->cnf_jkt, key->kid());
    }
  }
  // The URI is rebuilt from the Host header and the target; the query is ignored, and so are
  // the differences normalization removes.
  const std::string token = BoundToken();
  const Headers h = MakeHeaders(
      "DPoP " + token, {Proof(*key_, token, {.htu = "HTTP://Mandate.Example:8080/mcp/./up"})});
  EXPECT_TRUE(pipeline_->AuthenticateRequest(AgentRequest{"POST", "/mcp/up?x=1", &h}).ok());
  // Other methods are checked against their own htm (MCP DELETE ends a session).
  EXPECT_TRUE(DpopRequest(token, *key_, {.htm = "DELETE"}).caller.ok());
}

TEST_F(RequestAuthTest, ProofOfAnotherKeyIsRefused) {
  // A copied token with the thief's own (valid) proof.
  ExpectProofRefused(DpopRequest(BoundToken(), *other_key_), "jkt");
}

TEST_F(RequestAuthTest, ReplayedProofIsRefused) {
  const std::string token = BoundToken();
  const std::string proof = Proof(*key_, token);
  const Headers h = MakeHeaders("DPoP " + token, {proof});
  ASSERT_TRUE(Request(h).caller.ok());
  ExpectProofRefused(Request(h), "replay");
  clock_.AdvanceSeconds(10);
  ExpectProofRefused(Request(h), "replay");
}

TEST_F(RequestAuthTest, ProofForAnotherMethodOrUriIsRefused) {
  const std::string token = BoundToken();
  // htm GET on a POST request.
  ExpectProofRefused(Request(MakeHeaders("DPoP " + token, {Proof(*key_, token, {.htm = "GET"})})),
                     "htm");
  // Another path, another host, another port, another scheme.
  for (const char* htu :
       {"http://mandate.example:8080/mcp/other", "http://evil.example:8080/mcp/up",
        "http://mandate.example/mcp/up", "https://mandate.example:8080/mcp/up"}) {
    ExpectProofRefused(Request(MakeHeaders("DPoP " + token, {Proof(*key_, token, {.htu = htu})})),
                       "htu");
  }
  // The request goes to another path than the proof names.
  const Headers h = MakeHeaders("DPoP " + token, {Proof(*key_, token)});
  ExpectProofRefused(Request(h, "POST", "/v1/plans"), "htu");
}

TEST_F(RequestAuthTest, ProofWithoutOrWithAWrongAthIsRefused) {
  const std::string token = BoundToken();
  ExpectProofRefused(DpopRequest(token, *key_, {.with_ath = false}), "ath");
  ExpectProofRefused(
      DpopRequest(token, *key_, {.ath = identity::DpopAccessTokenHash(Token(key_->kid()))}), "ath");
}

TEST_F(RequestAuthTest, StaleOrFutureProofIsRefused) {
  const std::string token = BoundToken();
  ExpectProofRefused(
      DpopRequest(token, *key_, {.iat_offset_seconds = -core::kDpopIatPastSecondsDefault - 1}),
      "iat");
  ExpectProofRefused(
      DpopRequest(token, *key_, {.iat_offset_seconds = core::kDpopIatFutureSecondsDefault + 1}),
      "iat");
}

TEST_F(RequestAuthTest, MissingOrDuplicateProofIsRefused) {
  const std::string token = BoundToken();
  ExpectProofRefused(Request(MakeHeaders("DPoP " + token)), "no DPoP proof");
  ExpectProofRefused(
      Request(MakeHeaders("DPoP " + token, {Proof(*key_, token), Proof(*key_, token)})),
      "more than one DPoP header");
}

TEST_F(RequestAuthTest, MissingOrMalformedHostIsRefused) {
  const std::string token = BoundToken();
  ExpectProofRefused(Request(MakeHeaders("DPoP " + token, {Proof(*key_, token)}, "")), "Host");
  // A Host header that would move its bytes into the path: the proof is for exactly the URI the
  // naive concatenation would produce, and is still refused.
  const std::string host = "mandate.example:8080/mcp/up?";
  ExpectProofRefused(
      Request(MakeHeaders("DPoP " + token, {Proof(*key_, token)}, host), "POST", "/mcp/other"),
      "Host");
  Headers two = MakeHeaders("DPoP " + token, {Proof(*key_, token)});
  two.emplace_back("Host", "evil.example");
  ExpectProofRefused(Request(two), "Host");
}

TEST_F(RequestAuthTest, UnboundTokenPresentedWithTheDpopSchemeIsRefused) {
  const std::string token = Token();
  Outcome o = DpopRequest(token, *key_);
  ASSERT_FALSE(o.caller.ok());
  EXPECT_EQ(o.caller.error().code, ErrorCode::kDpopInvalid);
  EXPECT_EQ(o.challenge.rfind("DPoP error=\"invalid_token\"", 0), 0u) << o.challenge;
}

TEST_F(RequestAuthTest, RevokedBoundSessionIsRefusedDespiteAValidProof) {
  const std::string token = BoundToken();
  ASSERT_TRUE(
      revocations_
          ->Revoke(*store_, revocation::Kind::kAgent, "bot", "stop", clock_.NowUnixSeconds())
          .ok());
  Outcome o = DpopRequest(token, *key_);
  ASSERT_FALSE(o.caller.ok());
  EXPECT_EQ(o.caller.error().code, ErrorCode::kTokenRevoked);
}

TEST_F(RequestAuthTest, WithoutADpopVerifierBoundTokensAreRefused) {
  pipeline_ = MakePipeline(nullptr);  // fail closed
  const std::string token = BoundToken();
  ExpectProofRefused(DpopRequest(token, *key_), "not available");
  EXPECT_TRUE(Request(MakeHeaders("Bearer " + Token())).caller.ok());
}

// --- The token endpoint ----------------------------------------------------------------------

TEST_F(RequestAuthTest, SubjectTokenWithoutProofIsUnboundAndAProofNamesItsKey) {
  const std::string token = Token();
  auto none = Subject(token, {});
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_FALSE(none->proof.has_value());

  auto bound = Subject(token, {Proof(*other_key_, "", {.htu = kTokenEndpoint})});
  ASSERT_TRUE(bound.ok()) << bound.error().message;
  ASSERT_TRUE(bound->proof.has_value());
  EXPECT_EQ(bound->proof->jkt, other_key_->kid());
}

TEST_F(RequestAuthTest, BoundSubjectTokenNeedsAProofOfItsOwnKey) {
  const std::string token = BoundToken();
  auto missing = Subject(token, {});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::kDpopInvalid);

  auto other = Subject(token, {Proof(*other_key_, "", {.htu = kTokenEndpoint})});
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().code, ErrorCode::kDpopInvalid);

  auto own = Subject(token, {Proof(*key_, "", {.htu = kTokenEndpoint})});
  ASSERT_TRUE(own.ok()) << own.error().message;
  EXPECT_EQ(own->proof->jkt, key_->kid());
}

TEST_F(RequestAuthTest, TokenEndpointProofsAreCheckedLikeAnyOther) {
  const std::string token = BoundToken();
  // A proof made for a resource request (it has ath) is not the proof of a token request.
  auto with_ath = Subject(token, {Proof(*key_, token, {.htu = kTokenEndpoint})});
  ASSERT_FALSE(with_ath.ok());
  EXPECT_EQ(with_ath.error().code, ErrorCode::kDpopInvalid);
  // For another URI, replayed, or two of them.
  EXPECT_FALSE(Subject(token, {Proof(*key_, "")}).ok());
  const std::string proof = Proof(*key_, "", {.htu = kTokenEndpoint});
  ASSERT_TRUE(Subject(token, {proof}).ok());
  EXPECT_FALSE(Subject(token, {proof}).ok());
  EXPECT_FALSE(Subject(token, {Proof(*key_, "", {.htu = kTokenEndpoint}),
                               Proof(*key_, "", {.htu = kTokenEndpoint})})
                   .ok());
  // An invalid proof on an unbound subject token is refused, not ignored.
  EXPECT_FALSE(Subject(Token(), {"garbage"}).ok());
}

}  // namespace
}  // namespace mandate::gateway
