// JwsKey: one asymmetric key usable for JWS signatures (RFC 7515), as Mandate's token signer
// and verifier use it, plus the JWK thumbprint (RFC 7638) that names it.
//
// Supported algorithms (RFC 7518 / RFC 8037): "EdDSA" with Ed25519 (the default) and "ES256"
// (ECDSA on P-256 with SHA-256; signatures are the 64-byte r||s form JWS requires, not DER).
// Symmetric algorithms (HS*) and "none" are deliberately not representable.
//
// A key either holds a private part (generated, or loaded by SigningKeys from its key file) and
// can sign and verify, or holds only a public part (FromPublicJwk) and can only verify.
// Private key material is never returned, logged or put in an error message by this class.
//
// Thread safety: a JwsKey is immutable after construction; Sign and Verify may be called
// concurrently from any number of threads. Keys are shared as std::shared_ptr<const JwsKey>.
// See docs/formats/token.md.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "mandate/core/json.h"
#include "mandate/core/result.h"

namespace mandate::identity {

class SigningKeys;

// A JWS signature algorithm Mandate signs and verifies with.
enum class Alg : uint8_t { kEdDSA, kES256 };

// The JOSE "alg" name: "EdDSA" or "ES256".
std::string_view AlgName(Alg alg);
// Inverse of AlgName (exact, case-sensitive match as RFC 7515 requires); nullopt otherwise.
// "none", "HS256" and every other name return nullopt.
std::optional<Alg> AlgFromName(std::string_view name);

// RFC 7638 JWK thumbprint: base64url(SHA-256(the required members of `jwk` as compact JSON
// with sorted keys)). Supported key types: "OKP" (crv, kty, x) and "EC" (crv, kty, x, y).
// Members other than the required ones (kid, use, alg, d...) are ignored, as RFC 7638 says.
// Errors (kBadRequest): `jwk` is not an object, has an unsupported "kty", or a required member
// is missing or not a string.
core::Result<std::string> JwkThumbprint(const core::Json& jwk);

class JwsKey {
 public:
  // Generates a fresh key pair for `alg` with the OpenSSL CSPRNG.
  // Errors: kInternal if OpenSSL fails.
  static core::Result<std::shared_ptr<const JwsKey>> Generate(Alg alg);

  // Builds a verify-only key from a public JWK: {"kty":"OKP","crv":"Ed25519","x":...} or
  // {"kty":"EC","crv":"P-256","x":...,"y":...}. An "alg" member, if present, must match the
  // key type; a "d" member (private key) is refused so private keys never travel this way.
  // The kid is always the RFC 7638 thumbprint; a "kid" member in `jwk` is ignored.
  // Errors (kBadRequest): any other key type or curve, a missing or malformed member, a
  // coordinate of the wrong length, or a point not on the curve.
  static core::Result<std::shared_ptr<const JwsKey>> FromPublicJwk(const core::Json& jwk);

  // Builds a verify-only key from a PEM "PUBLIC KEY" (SubjectPublicKeyInfo, as
  // `openssl pkey -pubout` writes it) of an Ed25519 or P-256 key. Only the first PEM block is
  // read. Errors (kBadRequest): more than kKeyFileBytesMax bytes, not a PEM public key (a
  // private key PEM included: private keys never travel this way), or another key type.
  static core::Result<std::shared_ptr<const JwsKey>> FromPublicPem(std::string_view pem);

  ~JwsKey();
  JwsKey(const JwsKey&) = delete;
  JwsKey& operator=(const JwsKey&) = delete;

  Alg alg() const { return alg_; }
  // The RFC 7638 thumbprint of the public key (base64url, 43 characters).
  const std::string& kid() const { return kid_; }
  bool has_private_key() const;

  // The public JWK with its metadata:
  //   {"kty":"OKP","crv":"Ed25519","x":..,"kid":..,"use":"sig","alg":"EdDSA"}
  //   {"kty":"EC","crv":"P-256","x":..,"y":..,"kid":..,"use":"sig","alg":"ES256"}
  const core::Json& PublicJwk() const { return public_jwk_; }

  // Signs `signing_input` (for JWS: ASCII(base64url(header) '.' base64url(payload))) and
  // returns the raw JWS signature bytes (64 bytes for both algorithms).
  // Errors: kInternal if this key has no private part or OpenSSL fails.
  core::Result<std::string> Sign(std::string_view signing_input) const;

  // True only if `signature` is a valid JWS signature of `signing_input` under this key.
  // Never fails in any other way: malformed signatures simply do not verify.
  bool Verify(std::string_view signing_input, std::string_view signature) const;

 private:
  friend class SigningKeys;
  struct Impl;

  JwsKey(Alg alg, std::unique_ptr<Impl> impl, std::string kid, core::Json public_jwk);

  // Builds a key from a PEM "PRIVATE KEY" (PKCS#8, unencrypted) of a supported type. The alg
  // follows from the key type. Errors (kInternal): not PEM, encrypted, or an unsupported type.
  static core::Result<std::shared_ptr<const JwsKey>> FromPrivatePem(std::string_view pem);
  // The PKCS#8 PEM of the private key, for SigningKeys to write to the key file only.
  // Errors (kInternal): no private part, or OpenSSL fails.
  core::Result<std::string> PrivatePem() const;
  // Checks the type of the OpenSSL key held by `impl` (kept out of this header) and derives
  // the alg, the public JWK and the kid from it.
  static core::Result<std::shared_ptr<const JwsKey>> FromImpl(std::unique_ptr<Impl> impl);
  // For an Ed25519 private key: prepares the libsodium signer of `impl` (whose public key is
  // `pub`, 32 bytes). Errors (kInternal): the private key cannot be read or does not match.
  static core::Status LoadSodiumSecret(Impl* impl, const unsigned char* pub);

  Alg alg_;
  std::unique_ptr<Impl> impl_;
  std::string kid_;
  core::Json public_jwk_;
};

}  // namespace mandate::identity
