#include "mandate/identity/jws_key.h"

#include <gtest/gtest.h>

#include "mandate/core/encoding.h"
#include "mandate/core/limits.h"

namespace mandate::identity {
namespace {

using core::Json;

std::string B64d(std::string_view s) { return core::Base64UrlDecode(s).value_or("<bad>"); }

Json Rfc8037PublicJwk() {
  Json jwk = Json::MakeObject();
  jwk.Set("kty", "OKP");
  jwk.Set("crv", "Ed25519");
  jwk.Set("x", "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
  return jwk;
}

Json Rfc7515EcPublicJwk() {
  Json jwk = Json::MakeObject();
  jwk.Set("kty", "EC");
  jwk.Set("crv", "P-256");
  jwk.Set("x", "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU");
  jwk.Set("y", "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0");
  return jwk;
}

// RFC 8037 appendix A.3.
TEST(JwkThumbprint, ThumbprintMatchesRfc7638Example) {
  auto t = JwkThumbprint(Rfc8037PublicJwk());
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(*t, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

TEST(JwkThumbprint, IgnoresNonRequiredMembers) {
  Json jwk = Rfc8037PublicJwk();
  jwk.Set("kid", "whatever");
  jwk.Set("use", "sig");
  jwk.Set("alg", "EdDSA");
  EXPECT_EQ(*JwkThumbprint(jwk), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
}

// Cross-checked with the Python `cryptography`/hashlib implementation of RFC 7638.
TEST(JwkThumbprint, EcThumbprintMatchesIndependentComputation) {
  EXPECT_EQ(*JwkThumbprint(Rfc7515EcPublicJwk()), "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U");
}

TEST(JwkThumbprint, RejectsUnsupportedOrIncompleteKeys) {
  EXPECT_FALSE(JwkThumbprint(Json("x")).ok());
  Json rsa = Json::MakeObject();
  rsa.Set("kty", "RSA");
  EXPECT_FALSE(JwkThumbprint(rsa).ok());
  Json okp = Rfc8037PublicJwk();
  okp.Erase("x");
  EXPECT_FALSE(JwkThumbprint(okp).ok());
  Json ec = Rfc7515EcPublicJwk();
  ec.Set("y", 5);
  EXPECT_FALSE(JwkThumbprint(ec).ok());
}

TEST(Alg, NamesRoundTripAndNoneAndHmacAreNotAlgs) {
  EXPECT_EQ(AlgName(Alg::kEdDSA), "EdDSA");
  EXPECT_EQ(AlgName(Alg::kES256), "ES256");
  EXPECT_EQ(AlgFromName("EdDSA"), Alg::kEdDSA);
  EXPECT_EQ(AlgFromName("ES256"), Alg::kES256);
  for (const char* bad : {"none", "None", "HS256", "eddsa", "ES384", "RS256", ""}) {
    EXPECT_FALSE(AlgFromName(bad).has_value()) << bad;
  }
}

// RFC 8037 appendix A.4: a known Ed25519 JWS verifies with the A.2 public key.
TEST(JwsKey, VerifiesRfc8037Ed25519Example) {
  auto key = JwsKey::FromPublicJwk(Rfc8037PublicJwk());
  ASSERT_TRUE(key.ok()) << key.error().message;
  EXPECT_EQ((*key)->alg(), Alg::kEdDSA);
  EXPECT_EQ((*key)->kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
  EXPECT_FALSE((*key)->has_private_key());
  const std::string input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc";
  const std::string sig = B64d(
      "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg");
  EXPECT_TRUE((*key)->Verify(input, sig));
  EXPECT_FALSE((*key)->Verify(input + "x", sig));
  std::string flipped = sig;
  flipped[10] = static_cast<char>(flipped[10] ^ 1);
  EXPECT_FALSE((*key)->Verify(input, flipped));
  EXPECT_FALSE((*key)->Verify(input, sig.substr(0, 63)));
  EXPECT_FALSE((*key)->Sign(input).ok());  // verify-only
}

// RFC 7515 appendix A.3: a known ES256 JWS (r||s form) verifies.
TEST(JwsKey, VerifiesRfc7515Es256Example) {
  auto key = JwsKey::FromPublicJwk(Rfc7515EcPublicJwk());
  ASSERT_TRUE(key.ok()) << key.error().message;
  EXPECT_EQ((*key)->alg(), Alg::kES256);
  const std::string input =
      "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxl"
      "LmNvbS9pc19yb290Ijp0cnVlfQ";
  const std::string sig = B64d(
      "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q");
  EXPECT_TRUE((*key)->Verify(input, sig));
  EXPECT_FALSE((*key)->Verify(input + "x", sig));
  EXPECT_FALSE((*key)->Verify(input, std::string(64, '\0')));
}

TEST(JwsKey, SignsAndVerifiesWithBothAlgs) {
  for (Alg alg : {Alg::kEdDSA, Alg::kES256}) {
    auto key = JwsKey::Generate(alg);
    ASSERT_TRUE(key.ok()) << key.error().message;
    EXPECT_TRUE((*key)->has_private_key());
    EXPECT_EQ((*key)->alg(), alg);
    auto sig = (*key)->Sign("header.payload");
    ASSERT_TRUE(sig.ok()) << sig.error().message;
    EXPECT_EQ(sig->size(), 64u);
    EXPECT_TRUE((*key)->Verify("header.payload", *sig));
    EXPECT_FALSE((*key)->Verify("header.payloaD", *sig));

    // The public JWK alone verifies, and names the same kid.
    const Json& jwk = (*key)->PublicJwk();
    EXPECT_EQ(jwk.GetString("kid"), (*key)->kid());
    EXPECT_EQ(jwk.GetString("use"), "sig");
    EXPECT_EQ(jwk.GetString("alg"), AlgName(alg));
    EXPECT_EQ(jwk.Find("d"), nullptr);
    EXPECT_EQ(*JwkThumbprint(jwk), (*key)->kid());
    auto pub = JwsKey::FromPublicJwk(jwk);
    ASSERT_TRUE(pub.ok()) << pub.error().message;
    EXPECT_EQ((*pub)->kid(), (*key)->kid());
    EXPECT_TRUE((*pub)->Verify("header.payload", *sig));

    // Another key of the same alg does not verify it.
    auto other = JwsKey::Generate(alg);
    ASSERT_TRUE(other.ok());
    EXPECT_NE((*other)->kid(), (*key)->kid());
    EXPECT_FALSE((*other)->Verify("header.payload", *sig));
  }
}

TEST(JwsKey, FromPublicJwkRejectsPrivateForeignAndMalformedKeys) {
  Json with_d = Rfc8037PublicJwk();
  with_d.Set("d", "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A");
  EXPECT_FALSE(JwsKey::FromPublicJwk(with_d).ok());

  Json short_x = Rfc8037PublicJwk();
  short_x.Set("x", "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHUR");
  EXPECT_FALSE(JwsKey::FromPublicJwk(short_x).ok());

  Json x448 = Rfc8037PublicJwk();
  x448.Set("crv", "X25519");
  EXPECT_FALSE(JwsKey::FromPublicJwk(x448).ok());

  Json wrong_alg = Rfc8037PublicJwk();
  wrong_alg.Set("alg", "ES256");
  EXPECT_FALSE(JwsKey::FromPublicJwk(wrong_alg).ok());

  Json enc = Rfc8037PublicJwk();
  enc.Set("use", "enc");
  EXPECT_FALSE(JwsKey::FromPublicJwk(enc).ok());

  Json off_curve = Rfc7515EcPublicJwk();
  off_curve.Set("y", core::Base64UrlEncode(std::string(31, '\0') + "\x01"));
  EXPECT_FALSE(JwsKey::FromPublicJwk(off_curve).ok());

  Json p384 = Rfc7515EcPublicJwk();
  p384.Set("crv", "P-384");
  EXPECT_FALSE(JwsKey::FromPublicJwk(p384).ok());

  EXPECT_FALSE(JwsKey::FromPublicJwk(Json::MakeArray()).ok());
}

// The SubjectPublicKeyInfo PEMs of the RFC 8037 A.2 and RFC 7515 A.3 public keys name the
// same keys as their JWKs (`mandate session start --dpop-key` accepts either form).
TEST(JwsKey, FromPublicPemReadsEd25519AndP256Keys) {
  auto ed = JwsKey::FromPublicPem(
      "-----BEGIN PUBLIC KEY-----\n"
      "MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"
      "-----END PUBLIC KEY-----\n");
  ASSERT_TRUE(ed.ok()) << ed.error().message;
  EXPECT_EQ((*ed)->alg(), Alg::kEdDSA);
  EXPECT_EQ((*ed)->kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
  EXPECT_FALSE((*ed)->has_private_key());

  auto ec = JwsKey::FromPublicPem(
      "-----BEGIN PUBLIC KEY-----\n"
      "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEf83OJ3D2xF1Bg8vub9tLe1gHMzV7\n"
      "6e8Tus9uPHvRVEXH8UTNG72bfocs3+257rn0s2ldbqkLJK2KRiMohYjlrQ==\n"
      "-----END PUBLIC KEY-----\n");
  ASSERT_TRUE(ec.ok()) << ec.error().message;
  auto ec_jwk = JwsKey::FromPublicJwk(Rfc7515EcPublicJwk());
  ASSERT_TRUE(ec_jwk.ok());
  EXPECT_EQ((*ec)->alg(), Alg::kES256);
  EXPECT_EQ((*ec)->kid(), (*ec_jwk)->kid());
}

TEST(JwsKey, FromPublicPemRefusesPrivateForeignAndMalformedKeys) {
  // The RFC 8037 A.1 private key as PKCS#8: a private key never travels as a public one.
  auto priv = JwsKey::FromPublicPem(
      "-----BEGIN PRIVATE KEY-----\n"
      "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
      "-----END PRIVATE KEY-----\n");
  ASSERT_FALSE(priv.ok());
  EXPECT_EQ(priv.error().code, core::ErrorCode::kBadRequest);
  // X25519 is a key-agreement key, not a signing key.
  auto x25519 = JwsKey::FromPublicPem(
      "-----BEGIN PUBLIC KEY-----\n"
      "MCowBQYDK2VuAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"
      "-----END PUBLIC KEY-----\n");
  ASSERT_FALSE(x25519.ok());
  EXPECT_EQ(x25519.error().code, core::ErrorCode::kBadRequest);
  EXPECT_FALSE(JwsKey::FromPublicPem("").ok());
  EXPECT_FALSE(JwsKey::FromPublicPem("{\"kty\":\"OKP\"}").ok());
  EXPECT_FALSE(JwsKey::FromPublicPem(std::string(core::kKeyFileBytesMax + 1, 'A')).ok());
}

}  // namespace
}  // namespace mandate::identity
