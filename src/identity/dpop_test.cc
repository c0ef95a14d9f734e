// DpopVerifier: the RFC 9449 examples, every rule of dpop.h failing on its own, htu
// normalization, and the bounded replay cache.
#include "mandate/identity/dpop.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "identity/identity_test_util.h"
#include "mandate/core/clock.h"
#include "mandate/core/encoding.h"
#include "mandate/core/limits.h"

namespace mandate::identity {
namespace {

using core::ErrorCode;
using core::Json;
using testing::SigningInput;

constexpr char kMethod[] = "POST";
constexpr char kUri[] = "https://mandate.example/mcp";
constexpr char kToken[] = "eyJhbGciOiJFZERTQSJ9.e30.c2ln";  // stands for a session token

// RFC 9449 figure 2 (section 4.1): a proof for POST https://server.example.com/token at
// iat 1562262616, and figure 13 (section 7.1): a proof for GET
// https://resource.example.org/protectedresource at iat 1562262618 with the access token of
// section 7.1. Both are signed by the P-256 key of figure 4, whose thumbprint is in section 6.1.
constexpr char kRfcTokenRequestProof[] =
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0Vj"
    "NoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5"
    "VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVC"
    "IsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4"
    "vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg";
constexpr char kRfcResourceProof[] =
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0Vj"
    "NoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5"
    "VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIi"
    "wiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2Mj"
    "YxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP"
    "86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA";
constexpr char kRfcAccessToken[] = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
constexpr char kRfcAth[] = "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo";
constexpr char kRfcJkt[] = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

// A refusal with kDpopInvalid whose message names the rule (contains `what`).
void ExpectRefused(const core::Result<DpopProof>& r, std::string_view what) {
  ASSERT_FALSE(r.ok()) << "expected a refusal mentioning " << what;
  EXPECT_EQ(r.error().code, ErrorCode::kDpopInvalid) << r.error().message;
  EXPECT_NE(r.error().message.find(what), std::string::npos)
      << "message \"" << r.error().message << "\" should mention \"" << what << "\"";
}

std::shared_ptr<const JwsKey> NewKey(Alg alg) {
  auto key = JwsKey::Generate(alg);
  EXPECT_TRUE(key.ok()) << key.error().message;
  return *key;
}

// The public JWK as a client sends it: the required members only.
Json ClientJwk(const JwsKey& key) {
  Json jwk = key.PublicJwk();
  jwk.Erase("kid");
  jwk.Erase("use");
  jwk.Erase("alg");
  return jwk;
}

class DpopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ed_ = NewKey(Alg::kEdDSA);
    es_ = NewKey(Alg::kES256);
    verifier_ = MakeVerifier({});
  }

  static std::unique_ptr<DpopVerifier> MakeVerifier(DpopVerifierOptions options) {
    auto v = DpopVerifier::Create(options);
    EXPECT_TRUE(v.ok()) << v.error().message;
    return std::move(*v);
  }

  int64_t Now() const { return clock_.NowUnixSeconds(); }

  static Json Header(const JwsKey& key) {
    Json h = Json::MakeObject();
    h.Set("typ", "dpop+jwt");
    h.Set("alg", std::string(AlgName(key.alg())));
    h.Set("jwk", ClientJwk(key));
    return h;
  }

  Json Payload(std::string jti = "jti-1") const {
    Json p = Json::MakeObject();
    p.Set("jti", std::move(jti));
    p.Set("htm", kMethod);
    p.Set("htu", kUri);
    p.Set("iat", Now());
    p.Set("ath", DpopAccessTokenHash(kToken));
    return p;
  }

  // "<header>.<payload>.<signature by `signer`>".
  static std::string Sign(const JwsKey& signer, const Json& header, const Json& payload) {
    const std::string input = SigningInput(header, payload);
    auto sig = signer.Sign(input);
    EXPECT_TRUE(sig.ok()) << sig.error().message;
    return input + "." + core::Base64UrlEncode(sig.ok() ? *sig : std::string());
  }

  std::string Proof(const JwsKey& key, std::string jti = "jti-1") const {
    return Sign(key, Header(key), Payload(std::move(jti)));
  }
  std::string ProofWithPayload(const Json& payload) const {
    return Sign(*ed_, Header(*ed_), payload);
  }
  std::string ProofWithHeader(const Json& header) const { return Sign(*ed_, header, Payload()); }

  core::Result<DpopProof> Verify(std::string_view proof, std::string_view token = kToken,
                                 std::string_view expected_jkt = {}) const {
    return verifier_->Verify(proof, kMethod, kUri, token, Now(), expected_jkt);
  }

  core::FakeClock clock_;  // 1767000000
  std::shared_ptr<const JwsKey> ed_;
  std::shared_ptr<const JwsKey> es_;
  std::unique_ptr<DpopVerifier> verifier_;
};

// --- Known answers ----------------------------------------------------------------------

TEST(DpopKnownAnswer, AccessTokenHashMatchesRfc9449Example) {
  EXPECT_EQ(DpopAccessTokenHash(kRfcAccessToken), kRfcAth);
}

TEST(DpopKnownAnswer, AcceptsRfc9449TokenRequestProof) {
  auto v = DpopVerifier::Create();
  ASSERT_TRUE(v.ok());
  auto r = (*v)->Verify(kRfcTokenRequestProof, "POST", "https://server.example.com/token", "",
                        1562262616);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->jkt, kRfcJkt);  // RFC 9449 section 6.1
  EXPECT_EQ(r->jti, "-BwC3ESc6acc2lTc");
  EXPECT_EQ(r->iat, 1562262616);
  EXPECT_EQ(r->alg, Alg::kES256);
}

TEST(DpopKnownAnswer, AcceptsRfc9449ResourceProofWithAthAndBinding) {
  auto v = DpopVerifier::Create();
  ASSERT_TRUE(v.ok());
  const char* uri = "https://resource.example.org/protectedresource";
  ExpectRefused((*v)->Verify(kRfcResourceProof, "GET", uri, "another token", 1562262618),
                "\"ath\" does not match");
  ExpectRefused((*v)->Verify(kRfcResourceProof, "GET", uri, kRfcAccessToken, 1562262618,
                             std::string(43, 'x')),
                "cnf.jkt");
  auto r = (*v)->Verify(kRfcResourceProof, "GET", uri, kRfcAccessToken, 1562262618, kRfcJkt);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->jkt, kRfcJkt);
  EXPECT_EQ(r->jti, "e1j3V_bKic8-LAEB");
}

// --- Valid proofs -----------------------------------------------------------------------

TEST_F(DpopTest, AcceptsValidEdDsaProof) {
  auto r = Verify(Proof(*ed_));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->jkt, ed_->kid());
  EXPECT_EQ(r->jti, "jti-1");
  EXPECT_EQ(r->iat, Now());
  EXPECT_EQ(r->alg, Alg::kEdDSA);
  EXPECT_EQ(verifier_->replay_entries(), 1u);
}

TEST_F(DpopTest, AcceptsValidEs256Proof) {
  auto r = Verify(Proof(*es_));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->jkt, es_->kid());
  EXPECT_EQ(r->alg, Alg::kES256);
}

TEST_F(DpopTest, AcceptsProofWithoutAthWhenNoAccessTokenIsPresented) {
  Json p = Payload();
  p.Erase("ath");
  auto r = Verify(ProofWithPayload(p), /*token=*/"");
  ASSERT_TRUE(r.ok()) << r.error().message;
}

TEST_F(DpopTest, AcceptsTypInMediaTypeFormAndAnyCase) {
  for (const char* typ : {"application/dpop+jwt", "DPoP+JWT"}) {
    Json h = Header(*ed_);
    h.Set("typ", typ);
    const std::string proof = Sign(*ed_, h, Payload(std::string("jti-") + typ));
    EXPECT_TRUE(Verify(proof).ok()) << typ;
  }
}

TEST_F(DpopTest, IgnoresNonceAndUnknownMembers) {
  Json p = Payload();
  p.Set("nonce", "server-nonce-we-never-sent");
  p.Set("exp", Now() + 10);
  Json h = Header(*ed_);
  h.Set("kid", "ignored");
  EXPECT_TRUE(Verify(Sign(*ed_, h, p)).ok());
}

// --- Rules 1-3: size, one proof, compact serialization ---------------------------------------

TEST_F(DpopTest, RefusesEmptyAndOversizeProofs) {
  ExpectRefused(Verify(""), "no proof");
  Json p = Payload();
  p.Set("pad", std::string(core::kDpopProofBytesMax, 'a'));
  ExpectRefused(Verify(ProofWithPayload(p)), "longer than 4096 bytes");
  ExpectRefused(Verify(std::string(core::kDpopProofBytesMax + 1, 'a')), "longer than");
}

TEST_F(DpopTest, RefusesTwoProofsInOneHeader) {
  const std::string a = Proof(*ed_, "a");
  const std::string b = Proof(*ed_, "b");
  ExpectRefused(Verify(a + "," + b), "more than one proof");
  ExpectRefused(Verify(a + ", " + b), "more than one proof");
  ExpectRefused(Verify(a + " " + b), "outside base64url");
}

TEST_F(DpopTest, RefusesMalformedBase64AndSegments) {
  const std::string good = Proof(*ed_);
  const auto parts = testing::Segments(good);
  ASSERT_EQ(parts.size(), 3u);
  ExpectRefused(Verify(" " + good), "outside base64url");
  ExpectRefused(Verify(good + "\n"), "outside base64url");
  ExpectRefused(Verify(good + "="), "outside base64url");
  ExpectRefused(Verify(parts[0] + "+." + parts[1] + "." + parts[2]), "outside base64url");
  ExpectRefused(Verify(parts[0] + "." + parts[1]), "three base64url segments");
  ExpectRefused(Verify(good + ".x"), "three base64url segments");
  ExpectRefused(Verify(parts[0] + ".." + parts[2]), "three base64url segments");
  ExpectRefused(Verify(parts[0] + "." + parts[1] + "."), "three base64url segments");
  // One character is a length no base64url encoding has.
  ExpectRefused(Verify("A." + parts[1] + "." + parts[2]), "header is not base64url");
  ExpectRefused(Verify(parts[0] + "." + parts[1] + ".A"), "signature is not base64url");
}

TEST_F(DpopTest, RefusesHeaderOrPayloadThatIsNotAJsonObject) {
  const std::string payload_b64 = core::Base64UrlEncode(Payload().Dump());
  for (const char* header : {"[]", "\"dpop+jwt\"", "{", "{\"typ\":\"dpop+jwt\",\"typ\":\"x\"}"}) {
    ExpectRefused(Verify(core::Base64UrlEncode(header) + "." + payload_b64 + ".c2ln"),
                  "header is not a JSON object");
  }
  // The payload is checked once the signature verifies, so these are properly signed.
  const std::string header_b64 = core::Base64UrlEncode(Header(*ed_).Dump());
  for (const char* payload : {"[]", "42", "{\"jti\":", "{\"jti\":\"a\",\"jti\":\"b\"}"}) {
    const std::string input = header_b64 + "." + core::Base64UrlEncode(payload);
    const std::string proof = input + "." + core::Base64UrlEncode(*ed_->Sign(input));
    ExpectRefused(Verify(proof), "payload is not a JSON object");
  }
}

// --- Rules 4-8: header and signature ------------------------------------------------------

TEST_F(DpopTest, RefusesWrongOrMissingTyp) {
  for (const char* typ : {"JWT", "at+jwt", "dpop+jwt ", "application/at+jwt", ""}) {
    Json h = Header(*ed_);
    h.Set("typ", typ);
    ExpectRefused(Verify(ProofWithHeader(h)), "\"typ\" is not dpop+jwt");
  }
  Json h = Header(*ed_);
  h.Erase("typ");
  ExpectRefused(Verify(ProofWithHeader(h)), "no \"typ\"");
  h.Set("typ", 7);
  ExpectRefused(Verify(ProofWithHeader(h)), "no \"typ\"");
}

TEST_F(DpopTest, RefusesAlgNone) {
  Json h = Header(*ed_);
  h.Set("alg", "none");
  const std::string unsigned_proof = SigningInput(h, Payload()) + ".";
  ExpectRefused(Verify(unsigned_proof), "three base64url segments");
  ExpectRefused(Verify(ProofWithHeader(h)), "\"alg\" is not a supported asymmetric algorithm");
}

TEST_F(DpopTest, RefusesHmacAndUnknownAlgs) {
  for (const char* alg : {"HS256", "HS512", "RS256", "ES384", "eddsa", "Ed25519", ""}) {
    Json h = Header(*ed_);
    h.Set("alg", alg);
    // The signature bytes do not matter: the alg is refused by name before any key is used,
    // so a MAC made with the public key as secret cannot pass either.
    const std::string proof =
        SigningInput(h, Payload()) + "." + core::Base64UrlEncode(std::string(32, '\x5a'));
    ExpectRefused(Verify(proof), "\"alg\" is not a supported asymmetric algorithm");
  }
  Json h = Header(*ed_);
  h.Erase("alg");
  ExpectRefused(Verify(ProofWithHeader(h)), "no \"alg\"");
}

TEST_F(DpopTest, RefusesAlgThatDoesNotMatchTheKeyType) {
  Json h = Header(*ed_);
  h.Set("alg", "ES256");
  ExpectRefused(Verify(ProofWithHeader(h)), "does not match the key type");
  Json h2 = Header(*es_);
  h2.Set("alg", "EdDSA");
  ExpectRefused(Verify(Sign(*es_, h2, Payload())), "does not match the key type");
}

TEST_F(DpopTest, RefusesCrit) {
  Json h = Header(*ed_);
  h.Set("crit", Json::StringArray({"exp"}));
  ExpectRefused(Verify(ProofWithHeader(h)), "\"crit\"");
}

TEST_F(DpopTest, RefusesMissingOrMalformedJwk) {
  Json h = Header(*ed_);
  h.Erase("jwk");
  ExpectRefused(Verify(ProofWithHeader(h)), "no \"jwk\" object");
  h.Set("jwk", ed_->kid());
  ExpectRefused(Verify(ProofWithHeader(h)), "no \"jwk\" object");
  Json oct = Json::MakeObject();
  oct.Set("kty", "oct");
  oct.Set("k", "c2VjcmV0");
  h.Set("jwk", oct);
  ExpectRefused(Verify(ProofWithHeader(h)), "\"jwk\" is not a supported public key");
  Json short_x = ClientJwk(*ed_);
  short_x.Set("x", "AAAA");
  h.Set("jwk", short_x);
  ExpectRefused(Verify(ProofWithHeader(h)), "\"jwk\" is not a supported public key");
}

TEST_F(DpopTest, RefusesJwkWithPrivateKey) {
  Json jwk = ClientJwk(*ed_);
  jwk.Set("d", core::Base64UrlEncode(std::string(32, '\x01')));
  Json h = Header(*ed_);
  h.Set("jwk", jwk);
  ExpectRefused(Verify(ProofWithHeader(h)), "private key");
}

TEST_F(DpopTest, RefusesTamperedSignature) {
  for (const auto& key : {ed_, es_}) {
    const std::string proof = Proof(*key);
    const size_t dot2 = proof.rfind('.');
    std::string forged = proof;
    char& c = forged[dot2 + 1];  // the first base64url character carries six signature bits
    c = c == 'A' ? 'B' : 'A';
    ExpectRefused(Verify(forged), "signature is invalid");
    // A signature of the wrong length.
    ExpectRefused(Verify(proof.substr(0, dot2 + 1) + "AAAA"), "signature is invalid");
  }
}

TEST_F(DpopTest, RefusesSignatureByAnotherKey) {
  auto other = NewKey(Alg::kEdDSA);
  ExpectRefused(Verify(Sign(*other, Header(*ed_), Payload())), "signature is invalid");
  auto other_es = NewKey(Alg::kES256);
  ExpectRefused(Verify(Sign(*other_es, Header(*es_), Payload())), "signature is invalid");
}

TEST_F(DpopTest, RefusesPayloadChangedAfterSigning) {
  const auto parts = testing::Segments(Proof(*ed_));
  Json p = Payload();
  p.Set("htm", "DELETE");
  ExpectRefused(Verify(parts[0] + "." + core::Base64UrlEncode(p.Dump()) + "." + parts[2]),
                "signature is invalid");
}

// --- Rules 9-13: claims ---------------------------------------------------------------------

TEST_F(DpopTest, RefusesMissingEmptyOrOversizeJti) {
  Json p = Payload();
  p.Erase("jti");
  ExpectRefused(Verify(ProofWithPayload(p)), "no \"jti\"");
  p.Set("jti", 12345);
  ExpectRefused(Verify(ProofWithPayload(p)), "no \"jti\"");
  p.Set("jti", "");
  ExpectRefused(Verify(ProofWithPayload(p)), "\"jti\" is empty");
  p.Set("jti", std::string(core::kDpopJtiBytesMax + 1, 'j'));
  ExpectRefused(Verify(ProofWithPayload(p)), "\"jti\" is longer than 256 bytes");
  p.Set("jti", std::string(core::kDpopJtiBytesMax, 'j'));
  EXPECT_TRUE(Verify(ProofWithPayload(p)).ok());
}

TEST_F(DpopTest, RefusesWrongOrMissingHtm) {
  for (const char* htm : {"GET", "post", "POST ", ""}) {
    Json p = Payload();
    p.Set("htm", htm);
    ExpectRefused(Verify(ProofWithPayload(p)), "\"htm\" does not match the request method");
  }
  Json p = Payload();
  p.Erase("htm");
  ExpectRefused(Verify(ProofWithPayload(p)), "no \"htm\"");
}

TEST_F(DpopTest, RefusesWrongOrMissingHtu) {
  for (const char* htu :
       {"https://mandate.example/other", "http://mandate.example/mcp", "https://evil.example/mcp",
        "https://mandate.example:8443/mcp", "https://mandate.example/MCP",
        "https://mandate.example/mcp/", "https://mandate.example/mcp%2F"}) {
    Json p = Payload(htu);
    p.Set("htu", htu);
    ExpectRefused(Verify(ProofWithPayload(p)), "\"htu\" does not match the request URI");
  }
  Json p = Payload();
  p.Set("htu", "mcp");
  ExpectRefused(Verify(ProofWithPayload(p)), "\"htu\" is not an absolute http(s) URI");
  p.Erase("htu");
  ExpectRefused(Verify(ProofWithPayload(p)), "no \"htu\"");
}

TEST_F(DpopTest, IgnoresQueryAndFragmentOfHtu) {
  Json p = Payload("q1");
  p.Set("htu", "https://mandate.example/mcp?session=1#frag");
  EXPECT_TRUE(Verify(ProofWithPayload(p)).ok());
  // And of the request URI.
  auto r = verifier_->Verify(Proof(*ed_, "q2"), kMethod, "https://mandate.example/mcp?x=y", kToken,
                             Now());
  EXPECT_TRUE(r.ok()) << r.error().message;
}

TEST_F(DpopTest, ComparesHtuAfterCaseDefaultPortAndPercentNormalization) {
  int n = 0;
  for (const char* htu : {"HTTPS://Mandate.EXAMPLE/mcp", "https://mandate.example:443/mcp",
                          "https://mandate.example:/mcp", "https://mandate.example/%6Dcp",
                          "https://mandate.example/a/../mcp", "https://mandate.example/./mcp"}) {
    Json p = Payload("n" + std::to_string(n++));
    p.Set("htu", htu);
    auto r = Verify(ProofWithPayload(p));
    EXPECT_TRUE(r.ok()) << htu << ": " << r.error().message;
  }
  auto r = verifier_->Verify(Proof(*ed_, "port"), kMethod, "https://MANDATE.example:0443/mcp",
                             kToken, Now());
  EXPECT_TRUE(r.ok()) << r.error().message;
}

TEST_F(DpopTest, RefusesInvalidRequestUri) {
  ExpectRefused(verifier_->Verify(Proof(*ed_), kMethod, "/mcp", kToken, Now()),
                "the request URI is not an absolute http(s) URI");
  EXPECT_EQ(verifier_->replay_entries(), 0u);
}

TEST_F(DpopTest, RefusesIatOutsideTheWindow) {
  const int64_t now = Now();
  struct Case {
    int64_t iat;
    bool ok;
  };
  for (const Case& c :
       {Case{now - 60, true}, Case{now - 61, false}, Case{now + 5, true}, Case{now + 6, false},
        Case{0, false}, Case{INT64_MAX, false}, Case{INT64_MIN, false}}) {
    Json p = Payload("iat" + std::to_string(c.iat));
    p.Set("iat", c.iat);
    auto r = Verify(ProofWithPayload(p));
    if (c.ok) {
      EXPECT_TRUE(r.ok()) << c.iat - now << ": " << r.error().message;
    } else {
      ExpectRefused(r, c.iat < now ? "too old" : "issued in the future");
    }
  }
}

TEST_F(DpopTest, RefusesIatThatIsNotAnInteger) {
  Json p = Payload();
  p.Set("iat", std::to_string(Now()));
  ExpectRefused(Verify(ProofWithPayload(p)), "no integer \"iat\"");
  p.Set("iat", static_cast<double>(Now()) + 0.5);
  ExpectRefused(Verify(ProofWithPayload(p)), "no integer \"iat\"");
  p.Erase("iat");
  ExpectRefused(Verify(ProofWithPayload(p)), "no integer \"iat\"");
}

TEST_F(DpopTest, WindowIsConfigurable) {
  auto v = MakeVerifier({.iat_past_seconds = 10, .iat_future_seconds = 0});
  Json p = Payload("a");
  p.Set("iat", Now() - 11);
  ExpectRefused(v->Verify(ProofWithPayload(p), kMethod, kUri, kToken, Now()), "10 s in the past");
  p.Set("iat", Now() + 1);
  ExpectRefused(v->Verify(ProofWithPayload(p), kMethod, kUri, kToken, Now()), "0 s ahead");
  p.Set("iat", Now() - 10);
  EXPECT_TRUE(v->Verify(ProofWithPayload(p), kMethod, kUri, kToken, Now()).ok());
}

TEST_F(DpopTest, RefusesMissingOrWrongAth) {
  Json p = Payload();
  p.Erase("ath");
  ExpectRefused(Verify(ProofWithPayload(p)), "no \"ath\" string, but an access token");
  p.Set("ath", 1);
  ExpectRefused(Verify(ProofWithPayload(p)), "no \"ath\" string, but an access token");
  p.Set("ath", DpopAccessTokenHash("another token"));
  ExpectRefused(Verify(ProofWithPayload(p)), "\"ath\" does not match the access token");
  // The hash of the right token, but with padding: not the same string.
  p.Set("ath", DpopAccessTokenHash(kToken) + "=");
  ExpectRefused(Verify(ProofWithPayload(p)), "\"ath\" does not match the access token");
}

TEST_F(DpopTest, RefusesAthWhenNoAccessTokenIsPresented) {
  ExpectRefused(Verify(Proof(*ed_), /*token=*/""), "\"ath\" is present, but no access token");
}

// --- Rule 14: binding -----------------------------------------------------------------------

TEST_F(DpopTest, RefusesKeyOtherThanTheExpectedJkt) {
  ExpectRefused(Verify(Proof(*ed_), kToken, es_->kid()), "cnf.jkt");
  EXPECT_EQ(verifier_->replay_entries(), 0u);  // a refused proof does not spend its jti
  EXPECT_TRUE(Verify(Proof(*ed_), kToken, ed_->kid()).ok());
}

TEST(DpopBinding, CheckDpopBindingComparesJkt) {
  DpopProof proof;
  proof.jkt = kRfcJkt;
  EXPECT_TRUE(CheckDpopBinding(proof, kRfcJkt).ok());
  auto wrong = CheckDpopBinding(proof, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().code, ErrorCode::kDpopInvalid);
  auto empty = CheckDpopBinding(proof, "");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, ErrorCode::kDpopInvalid);
}

// --- Rule 15: replay cache --------------------------------------------------------------------

TEST_F(DpopTest, RefusesReplayedJti) {
  const std::string proof = Proof(*ed_);
  ASSERT_TRUE(Verify(proof).ok());
  ExpectRefused(Verify(proof), "already used");
  // A new proof with the same key and jti is the same pair.
  clock_.AdvanceSeconds(1);
  ExpectRefused(Verify(Proof(*ed_)), "already used");
}

TEST_F(DpopTest, AcceptsSameJtiFromAnotherKey) {
  ASSERT_TRUE(Verify(Proof(*ed_, "shared")).ok());
  EXPECT_TRUE(Verify(Proof(*es_, "shared")).ok());
  EXPECT_TRUE(Verify(Proof(*NewKey(Alg::kEdDSA), "shared")).ok());
  EXPECT_EQ(verifier_->replay_entries(), 3u);
}

TEST_F(DpopTest, RefusedProofDoesNotSpendItsJti) {
  const std::string proof = Proof(*ed_);
  ExpectRefused(verifier_->Verify(proof, "GET", kUri, kToken, Now()), "htm");
  EXPECT_EQ(verifier_->replay_entries(), 0u);
  EXPECT_TRUE(Verify(proof).ok());
}

TEST_F(DpopTest, JtiIsReusableOnceItsWindowHasPassed) {
  ASSERT_TRUE(Verify(Proof(*ed_)).ok());
  clock_.AdvanceSeconds(61);
  // The old proof is too old now; a fresh one with the same jti is a new proof.
  EXPECT_TRUE(Verify(Proof(*ed_)).ok());
  EXPECT_EQ(verifier_->replay_entries(), 1u);
}

TEST_F(DpopTest, FullReplayCacheFailsClosed) {
  auto v = MakeVerifier({.replay_entries_max = 3});
  auto verify = [&](const std::string& proof) {
    return v->Verify(proof, kMethod, kUri, kToken, Now());
  };
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(verify(Proof(*ed_, "j" + std::to_string(i))).ok());
  EXPECT_EQ(v->replay_entries(), 3u);
  ExpectRefused(verify(Proof(*ed_, "j3")), "replay cache is full");
  // A replay is still a replay, not merely "full".
  ExpectRefused(verify(Proof(*ed_, "j0")), "already used");
  // Still full one second before the first entries expire (iat + 60 >= now).
  clock_.AdvanceSeconds(60);
  ExpectRefused(verify(Proof(*ed_, "j4")), "replay cache is full");
  EXPECT_EQ(v->replay_entries(), 3u);
  // Once they have expired, they are dropped and new proofs pass.
  clock_.AdvanceSeconds(1);
  EXPECT_TRUE(verify(Proof(*ed_, "j5")).ok());
  EXPECT_EQ(v->replay_entries(), 1u);
}

TEST_F(DpopTest, FullReplayCacheEvictsOnlyExpiredEntries) {
  auto v = MakeVerifier({.replay_entries_max = 2});
  auto verify = [&](const std::string& proof) {
    return v->Verify(proof, kMethod, kUri, kToken, Now());
  };
  const std::string a = Proof(*ed_, "a");  // iat = t
  ASSERT_TRUE(verify(a).ok());
  clock_.AdvanceSeconds(30);
  const std::string b = Proof(*ed_, "b");  // iat = t + 30
  ASSERT_TRUE(verify(b).ok());
  clock_.AdvanceSeconds(31);  // t + 61: a has expired, b has not
  EXPECT_TRUE(verify(Proof(*ed_, "c")).ok());
  EXPECT_EQ(v->replay_entries(), 2u);
  ExpectRefused(verify(b), "already used");  // b was kept
  ExpectRefused(verify(a), "too old");
  ExpectRefused(verify(Proof(*ed_, "d")), "replay cache is full");
}

TEST_F(DpopTest, ClockGoingBackDoesNotReopenReplays) {
  const std::string proof = Proof(*ed_);  // iat = t
  ASSERT_TRUE(Verify(proof).ok());
  clock_.AdvanceSeconds(100);
  ASSERT_TRUE(Verify(Proof(*ed_, "later")).ok());  // drops the first entry
  EXPECT_EQ(verifier_->replay_entries(), 1u);
  clock_.AdvanceSeconds(-90);  // t + 10: the first proof's iat is inside the window again
  ExpectRefused(Verify(proof), "the clock went back");
}

TEST_F(DpopTest, ConcurrentVerifiesAcceptEachProofOnce) {
  const std::string proof = Proof(*es_);
  std::atomic<int> accepted{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      auto r = Verify(proof);
      if (r.ok()) {
        accepted.fetch_add(1);
      } else {
        EXPECT_EQ(r.error().code, ErrorCode::kDpopInvalid);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(accepted.load(), 1);
}

// --- Messages, options, clock -----------------------------------------------------------

TEST_F(DpopTest, MessagesNeverContainKeyMaterialOrTheProof) {
  Json jwk = ClientJwk(*es_);
  jwk.Set("d", core::Base64UrlEncode(std::string(32, '\x07')));
  Json h = Header(*es_);
  h.Set("jwk", jwk);
  const std::string proof = Sign(*es_, h, Payload());
  auto r = Verify(proof);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message.find(*jwk.FindString("d")), std::string::npos);
  EXPECT_EQ(r.error().message.find(*jwk.FindString("x")), std::string::npos);
  auto forged = Verify(Sign(*ed_, Header(*es_), Payload()));
  ASSERT_FALSE(forged.ok());
  EXPECT_EQ(forged.error().message.find(*ClientJwk(*es_).FindString("x")), std::string::npos);
  EXPECT_EQ(forged.error().message.find(testing::Segments(proof)[0]), std::string::npos);
}

TEST(DpopVerifierOptions, CreateRefusesOptionsOutOfRange) {
  for (const DpopVerifierOptions& o :
       {DpopVerifierOptions{.iat_past_seconds = 0}, DpopVerifierOptions{.iat_past_seconds = 301},
        DpopVerifierOptions{.iat_future_seconds = -1},
        DpopVerifierOptions{.iat_future_seconds = 301},
        DpopVerifierOptions{.replay_entries_max = 0},
        DpopVerifierOptions{.replay_entries_max = core::kDpopReplayEntriesMax + 1}}) {
    auto v = DpopVerifier::Create(o);
    ASSERT_FALSE(v.ok());
    EXPECT_EQ(v.error().code, ErrorCode::kInternal);
  }
}

TEST_F(DpopTest, ClockOutOfRangeIsAnInternalError) {
  auto r = verifier_->Verify(Proof(*ed_), kMethod, kUri, kToken, -1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kInternal);
}

// --- NormalizeDpopHtu -------------------------------------------------------------------------

TEST(NormalizeDpopHtu, NormalizesPerRfc3986) {
  struct Case {
    const char* in;
    const char* out;
  };
  for (const Case& c : {
           Case{"https://mandate.example/mcp", "https://mandate.example/mcp"},
           Case{"HTTPS://Mandate.Example:443/a/./%7euser/../mcp?x=1#f",
                "https://mandate.example/a/mcp"},
           Case{"http://h.test:80", "http://h.test/"},
           Case{"http://h.test:443/", "http://h.test:443/"},
           Case{"https://h.test:80/", "https://h.test:80/"},
           Case{"https://h.test:08443/x", "https://h.test:8443/x"},
           Case{"https://h.test", "https://h.test/"},
           Case{"https://h.test?q", "https://h.test/"},
           Case{"https://h.test#f", "https://h.test/"},
           Case{"https://h.test/%7e%41%2f%2F%3a%c3%a9", "https://h.test/~A%2F%2F%3A%C3%A9"},
           Case{"https://h.test/a/b/../../../c", "https://h.test/c"},
           Case{"https://h.test/a/b/..", "https://h.test/a/"},
           Case{"https://h.test/a/./b/.", "https://h.test/a/b/"},
           Case{"https://h.test/%2E%2E/x", "https://h.test/x"},
           Case{"https://h.test/A/B", "https://h.test/A/B"},  // the path keeps its case
           Case{"https://%4D%61ndate.example/", "https://mandate.example/"},
           Case{"http://[::1]:8080/mcp", "http://[::1]:8080/mcp"},
           Case{"http://[FE80::1]:80/", "http://[fe80::1]/"},
           Case{"https://127.0.0.1:443/x", "https://127.0.0.1/x"},
       }) {
    auto r = NormalizeDpopHtu(c.in);
    ASSERT_TRUE(r.ok()) << c.in << ": " << r.error().message;
    EXPECT_EQ(*r, c.out) << c.in;
    // Idempotent.
    auto again = NormalizeDpopHtu(*r);
    ASSERT_TRUE(again.ok()) << *r;
    EXPECT_EQ(*again, *r);
  }
}

TEST(NormalizeDpopHtu, RefusesWhatIsNotAnAbsoluteHttpUri) {
  for (const char* bad : {"",
                          "/mcp",
                          "mcp",
                          "ftp://h.test/",
                          "https:/h.test/",
                          "https:h.test",
                          "https://",
                          "https:///mcp",
                          "https://user@h.test/",
                          "https://h.test:x/",
                          "https://h.test:65536/",
                          "https://h.test:99999999999999999999/",
                          "https://h test/",
                          "https://h.test/a b",
                          "https://h.test/a%2",
                          "https://h.test/a%zz",
                          "https://h.test/\x01",
                          "https://h.test/\xc3\xa9",
                          "https://[::1/",
                          "https://[]/",
                          "https://[::1]x/",
                          "https://[v1.x]/",
                          "https://h.test/[x]"}) {
    auto r = NormalizeDpopHtu(bad);
    ASSERT_FALSE(r.ok()) << bad << " -> " << r.value();
    EXPECT_EQ(r.error().code, ErrorCode::kDpopInvalid);
  }
  EXPECT_FALSE(NormalizeDpopHtu("https://h.test/" + std::string(core::kDpopHtuBytesMax, 'a')).ok());
  // A long query does not count against the limit.
  EXPECT_TRUE(NormalizeDpopHtu("https://h.test/?" + std::string(core::kDpopHtuBytesMax, 'a')).ok());
}

}  // namespace
}  // namespace mandate::identity
