#include "mandate/identity/jws_key.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <sodium.h>

#include <cstring>
#include <vector>

#include "mandate/core/crypto.h"
#include "mandate/core/encoding.h"
#include "mandate/core/limits.h"

namespace mandate::identity {

using core::ErrorCode;
using core::Json;
using core::MakeError;
using core::Result;

namespace {

// Both JWS algorithms produce 64-byte signatures: Ed25519 natively, ES256 as r||s with each
// coordinate left-padded to the 32-byte size of the P-256 order (RFC 7518 section 3.4).
constexpr size_t kSignatureBytes = 64;
constexpr size_t kEd25519PublicBytes = 32;
constexpr size_t kP256CoordinateBytes = 32;

// OpenSSL keeps a per-thread error queue; a failed verification leaves entries in it. They are
// dropped so one bad token cannot make an unrelated later OpenSSL call report a stale error.
struct ErrClear {
  ~ErrClear() { ERR_clear_error(); }
};

struct MdCtxFree {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};
struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct BnFree {
  void operator()(BIGNUM* b) const { BN_free(b); }
};
struct EcdsaSigFree {
  void operator()(ECDSA_SIG* s) const { ECDSA_SIG_free(s); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, EcdsaSigFree>;

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

// The message digest EVP_DigestSign/VerifyInit take: none for EdDSA (it hashes internally).
const char* DigestName(Alg alg) { return alg == Alg::kES256 ? "SHA256" : nullptr; }

// Refuses to prompt for a passphrase (the OpenSSL default would read the terminal): an
// encrypted key file is an error, not an interactive question.
int NoPassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) { return -1; }

Result<std::string> BnToFixed(const BIGNUM* bn, size_t bytes) {
  std::string out(bytes, '\0');
  if (BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(bytes)) !=
      static_cast<int>(bytes)) {
    return MakeError(ErrorCode::kInternal, "EC coordinate does not fit 32 bytes");
  }
  return out;
}

Result<std::string> EcCoordinate(EVP_PKEY* pkey, const char* param) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, param, &raw) != 1) {
    return MakeError(ErrorCode::kInternal, "cannot read the EC public key");
  }
  BnPtr bn(raw);
  return BnToFixed(bn.get(), kP256CoordinateBytes);
}

bool IsP256(EVP_PKEY* pkey) {
  char group[64] = {0};
  size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                     &len) != 1) {
    return false;
  }
  std::string_view name(group, len);
  return name == "prime256v1" || name == "P-256" || name == "secp256r1";
}

const std::string* RequiredString(const Json& jwk, std::string_view key) {
  return jwk.FindString(key);
}

}  // namespace

struct JwsKey::Impl {
  explicit Impl(EVP_PKEY* p, bool priv) : pkey(p), has_private(priv) {}
  ~Impl() {
    EVP_PKEY_free(pkey);
    sodium_memzero(ed25519_secret, sizeof(ed25519_secret));
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  EVP_PKEY* pkey;  // owned
  bool has_private;
  // Ed25519 private keys also sign through libsodium: its Ed25519 is about 2.4x cheaper per
  // signature than OpenSSL 3.0's (20 vs 47 us of CPU here), and Mandate signs a transaction
  // token on every forwarded call (docs/performance.md, docs/dependencies.md). Ed25519 is
  // deterministic (RFC 8032), so both produce the same bytes; FromImpl checks that the two
  // libraries derive the same public key before this is used.
  bool ed25519_sodium = false;
  unsigned char ed25519_secret[crypto_sign_SECRETKEYBYTES] = {};  // seed || public key
};

std::string_view AlgName(Alg alg) {
  switch (alg) {
    case Alg::kEdDSA:
      return "EdDSA";
    case Alg::kES256:
      return "ES256";
  }
  return "EdDSA";
}

std::optional<Alg> AlgFromName(std::string_view name) {
  if (name == "EdDSA") return Alg::kEdDSA;
  if (name == "ES256") return Alg::kES256;
  return std::nullopt;
}

Result<std::string> JwkThumbprint(const Json& jwk) {
  if (!jwk.is_object()) return MakeError(ErrorCode::kBadRequest, "JWK is not a JSON object");
  const std::string* kty = RequiredString(jwk, "kty");
  if (kty == nullptr) return MakeError(ErrorCode::kBadRequest, "JWK has no string \"kty\"");
  // RFC 7638 section 3.2 (EC) and RFC 8037 section 2 (OKP): the required members, in
  // lexicographic order, as compact JSON. Json::Canonical sorts the keys for us.
  std::vector<const char*> members;
  if (*kty == "OKP") {
    members = {"crv", "kty", "x"};
  } else if (*kty == "EC") {
    members = {"crv", "kty", "x", "y"};
  } else {
    return MakeError(ErrorCode::kBadRequest, "JWK thumbprint: unsupported \"kty\"");
  }
  Json required = Json::MakeObject();
  for (const char* m : members) {
    const std::string* v = RequiredString(jwk, m);
    if (v == nullptr) {
      return MakeError(ErrorCode::kBadRequest,
                       std::string("JWK has no string \"") + m + "\" member");
    }
    required.Set(m, *v);
  }
  core::Sha256Digest d = core::Sha256(required.Canonical());
  return core::Base64UrlEncode(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

// Derives libsodium's form of an Ed25519 private key (seed || public key) from OpenSSL's seed
// and checks that it names the same public key `pub`.
core::Status JwsKey::LoadSodiumSecret(Impl* impl, const unsigned char* pub) {
  if (sodium_init() < 0) return core::OkStatus();  // no libsodium: OpenSSL signs
  unsigned char seed[crypto_sign_SEEDBYTES];
  size_t len = sizeof(seed);
  unsigned char derived_pub[crypto_sign_PUBLICKEYBYTES];
  const bool ok = EVP_PKEY_get_raw_private_key(impl->pkey, seed, &len) == 1 && len == sizeof(seed) &&
                  crypto_sign_seed_keypair(derived_pub, impl->ed25519_secret, seed) == 0 &&
                  sodium_memcmp(derived_pub, pub, sizeof(derived_pub)) == 0;
  sodium_memzero(seed, sizeof(seed));
  if (!ok) {
    sodium_memzero(impl->ed25519_secret, sizeof(impl->ed25519_secret));
    return MakeError(ErrorCode::kInternal, "cannot read the Ed25519 private key");
  }
  impl->ed25519_sodium = true;
  return core::OkStatus();
}

JwsKey::JwsKey(Alg alg, std::unique_ptr<Impl> impl, std::string kid, Json public_jwk)
    : alg_(alg), impl_(std::move(impl)), kid_(std::move(kid)), public_jwk_(std::move(public_jwk)) {}

JwsKey::~JwsKey() = default;

bool JwsKey::has_private_key() const { return impl_->has_private; }

Result<std::shared_ptr<const JwsKey>> JwsKey::FromImpl(std::unique_ptr<Impl> impl) {
  ErrClear clear;
  EVP_PKEY* pkey = impl->pkey;
  Alg alg = Alg::kEdDSA;
  Json jwk = Json::MakeObject();
  if (EVP_PKEY_is_a(pkey, "ED25519")) {
    alg = Alg::kEdDSA;
    unsigned char pub[kEd25519PublicBytes];
    size_t len = sizeof(pub);
    if (EVP_PKEY_get_raw_public_key(pkey, pub, &len) != 1 || len != kEd25519PublicBytes) {
      return MakeError(ErrorCode::kInternal, "cannot read the Ed25519 public key");
    }
    jwk.Set("kty", "OKP");
    jwk.Set("crv", "Ed25519");
    jwk.Set("x", core::Base64UrlEncode(std::string_view(reinterpret_cast<char*>(pub), len)));
    if (impl->has_private) MANDATE_RETURN_IF_ERROR(LoadSodiumSecret(impl.get(), pub));
  } else if (EVP_PKEY_is_a(pkey, "EC") && IsP256(pkey)) {
    alg = Alg::kES256;
    MANDATE_ASSIGN_OR_RETURN(std::string x, EcCoordinate(pkey, OSSL_PKEY_PARAM_EC_PUB_X));
    MANDATE_ASSIGN_OR_RETURN(std::string y, EcCoordinate(pkey, OSSL_PKEY_PARAM_EC_PUB_Y));
    jwk.Set("kty", "EC");
    jwk.Set("crv", "P-256");
    jwk.Set("x", core::Base64UrlEncode(x));
    jwk.Set("y", core::Base64UrlEncode(y));
  } else {
    return MakeError(ErrorCode::kInternal,
                     "unsupported key type (Mandate signs with Ed25519 or EC P-256 keys)");
  }
  MANDATE_ASSIGN_OR_RETURN(std::string kid, JwkThumbprint(jwk));
  jwk.Set("kid", kid);
  jwk.Set("use", "sig");
  jwk.Set("alg", std::string(AlgName(alg)));
  return std::shared_ptr<const JwsKey>(
      new JwsKey(alg, std::move(impl), std::move(kid), std::move(jwk)));
}

Result<std::shared_ptr<const JwsKey>> JwsKey::Generate(Alg alg) {
  ErrClear clear;
  EVP_PKEY* pkey = alg == Alg::kEdDSA ? EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")
                                      : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  if (pkey == nullptr) {
    return MakeError(ErrorCode::kInternal,
                     "generating an " + std::string(AlgName(alg)) + " key failed");
  }
  return FromImpl(std::make_unique<Impl>(pkey, /*priv=*/true));
}

Result<std::shared_ptr<const JwsKey>> JwsKey::FromPublicJwk(const Json& jwk) {
  ErrClear clear;
  if (!jwk.is_object()) return MakeError(ErrorCode::kBadRequest, "JWK is not a JSON object");
  if (jwk.Find("d") != nullptr) {
    return MakeError(ErrorCode::kBadRequest, "JWK contains a private key (\"d\"); refused");
  }
  if (const Json* use = jwk.Find("use"); use != nullptr) {
    if (!use->is_string() || use->as_string() != "sig") {
      return MakeError(ErrorCode::kBadRequest, "JWK \"use\" is not \"sig\"");
    }
  }
  const std::string* kty = jwk.FindString("kty");
  const std::string* crv = jwk.FindString("crv");
  const std::string* x = jwk.FindString("x");
  if (kty == nullptr || crv == nullptr || x == nullptr) {
    return MakeError(ErrorCode::kBadRequest, "JWK needs string \"kty\", \"crv\" and \"x\"");
  }
  Alg alg = Alg::kEdDSA;
  EVP_PKEY* pkey = nullptr;
  if (*kty == "OKP" && *crv == "Ed25519") {
    alg = Alg::kEdDSA;
    auto raw = core::Base64UrlDecode(*x);
    if (!raw || raw->size() != kEd25519PublicBytes) {
      return MakeError(ErrorCode::kBadRequest, "JWK \"x\" is not 32 base64url-encoded bytes");
    }
    pkey = EVP_PKEY_new_raw_public_key_ex(nullptr, "ED25519", nullptr, Bytes(*raw), raw->size());
  } else if (*kty == "EC" && *crv == "P-256") {
    alg = Alg::kES256;
    const std::string* y = jwk.FindString("y");
    if (y == nullptr) return MakeError(ErrorCode::kBadRequest, "EC JWK needs a string \"y\"");
    auto rx = core::Base64UrlDecode(*x);
    auto ry = core::Base64UrlDecode(*y);
    if (!rx || !ry || rx->size() != kP256CoordinateBytes || ry->size() != kP256CoordinateBytes) {
      return MakeError(ErrorCode::kBadRequest,
                       "EC JWK \"x\" and \"y\" must be 32 base64url-encoded bytes each");
    }
    std::string point = "\x04" + *rx + *ry;  // SEC1 uncompressed point
    char group[] = "P-256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size()),
        OSSL_PARAM_construct_end()};
    PkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
      return MakeError(ErrorCode::kBadRequest, "EC JWK is not a valid P-256 public key");
    }
    // Invariant: a verify-only key is a point on the curve (an invalid-curve point would leak
    // nothing here, since we never do ECDH, but it is cheap to refuse outright).
    PkeyCtxPtr check(EVP_PKEY_CTX_new_from_pkey(nullptr, pkey, nullptr));
    if (!check || EVP_PKEY_public_check(check.get()) != 1) {
      EVP_PKEY_free(pkey);
      return MakeError(ErrorCode::kBadRequest, "EC JWK point is not on the P-256 curve");
    }
  } else {
    return MakeError(ErrorCode::kBadRequest,
                     "unsupported JWK (Mandate accepts OKP/Ed25519 and EC/P-256 keys)");
  }
  if (pkey == nullptr) return MakeError(ErrorCode::kBadRequest, "JWK is not a valid public key");
  auto impl = std::make_unique<Impl>(pkey, /*priv=*/false);
  if (const Json* a = jwk.Find("alg"); a != nullptr) {
    if (!a->is_string() || AlgFromName(a->as_string()) != alg) {
      return MakeError(ErrorCode::kBadRequest, "JWK \"alg\" does not match its key type");
    }
  }
  return FromImpl(std::move(impl));
}

Result<std::shared_ptr<const JwsKey>> JwsKey::FromPublicPem(std::string_view pem) {
  ErrClear clear;
  if (pem.size() > core::kKeyFileBytesMax) {
    return MakeError(ErrorCode::kBadRequest, "public key PEM larger than kKeyFileBytesMax");
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return MakeError(ErrorCode::kInternal, "out of memory reading a key");
  EVP_PKEY* pkey = PEM_read_bio_PUBKEY_ex(bio.get(), nullptr, NoPassphrase, nullptr, nullptr, nullptr);
  if (pkey == nullptr) {
    return MakeError(ErrorCode::kBadRequest, "not a PEM public key (expected \"BEGIN PUBLIC KEY\")");
  }
  auto key = FromImpl(std::make_unique<Impl>(pkey, /*priv=*/false));
  // FromImpl reports an unsupported type as kInternal (a bad key file); here it is input.
  if (!key.ok()) return MakeError(ErrorCode::kBadRequest, key.error().message);
  return key;
}

Result<std::shared_ptr<const JwsKey>> JwsKey::FromPrivatePem(std::string_view pem) {
  ErrClear clear;
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return MakeError(ErrorCode::kInternal, "out of memory reading a key");
  EVP_PKEY* pkey =
      PEM_read_bio_PrivateKey_ex(bio.get(), nullptr, NoPassphrase, nullptr, nullptr, nullptr);
  if (pkey == nullptr) {
    return MakeError(ErrorCode::kInternal,
                     "not an unencrypted PEM private key (expected \"BEGIN PRIVATE KEY\")");
  }
  return FromImpl(std::make_unique<Impl>(pkey, /*priv=*/true));
}

Result<std::string> JwsKey::PrivatePem() const {
  ErrClear clear;
  if (!impl_->has_private) return MakeError(ErrorCode::kInternal, "key has no private part");
  // A secure-memory BIO: the buffer is cleansed when freed.
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), impl_->pkey, nullptr, nullptr, 0, nullptr,
                                       nullptr) != 1) {
    return MakeError(ErrorCode::kInternal, "encoding the private key failed");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  if (len <= 0 || data == nullptr) {
    return MakeError(ErrorCode::kInternal, "encoding the private key failed");
  }
  return std::string(data, static_cast<size_t>(len));
}

Result<std::string> JwsKey::Sign(std::string_view signing_input) const {
  ErrClear clear;
  if (!impl_->has_private) {
    return MakeError(ErrorCode::kInternal, "key " + kid_ + " is verify-only and cannot sign");
  }
  if (impl_->ed25519_sodium) {
    std::string sig(crypto_sign_BYTES, '\0');
    if (crypto_sign_detached(reinterpret_cast<unsigned char*>(sig.data()), nullptr, Bytes(signing_input),
                             signing_input.size(), impl_->ed25519_secret) != 0) {
      return MakeError(ErrorCode::kInternal, "signing failed");
    }
    return sig;
  }
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit_ex(ctx.get(), nullptr, DigestName(alg_), nullptr, nullptr,
                                    impl_->pkey, nullptr) != 1) {
    return MakeError(ErrorCode::kInternal, "signature initialisation failed");
  }
  size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, Bytes(signing_input), signing_input.size()) != 1) {
    return MakeError(ErrorCode::kInternal, "signing failed");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     Bytes(signing_input), signing_input.size()) != 1) {
    return MakeError(ErrorCode::kInternal, "signing failed");
  }
  sig.resize(len);
  if (alg_ == Alg::kEdDSA) {
    if (sig.size() != kSignatureBytes) return MakeError(ErrorCode::kInternal, "bad Ed25519 size");
    return sig;
  }
  // ES256: OpenSSL produces a DER ECDSA-Sig-Value; JWS wants fixed-size r||s.
  const unsigned char* p = Bytes(sig);
  EcdsaSigPtr ecdsa(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size())));
  if (!ecdsa) return MakeError(ErrorCode::kInternal, "cannot decode the ECDSA signature");
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(ecdsa.get(), &r, &s);
  MANDATE_ASSIGN_OR_RETURN(std::string rb, BnToFixed(r, kP256CoordinateBytes));
  MANDATE_ASSIGN_OR_RETURN(std::string sb, BnToFixed(s, kP256CoordinateBytes));
  return rb + sb;
}

bool JwsKey::Verify(std::string_view signing_input, std::string_view signature) const {
  ErrClear clear;
  if (signature.size() != kSignatureBytes) return false;
  std::string der;
  std::string_view to_verify = signature;
  if (alg_ == Alg::kES256) {
    BnPtr r(BN_bin2bn(Bytes(signature), kP256CoordinateBytes, nullptr));
    BnPtr s(BN_bin2bn(Bytes(signature) + kP256CoordinateBytes, kP256CoordinateBytes, nullptr));
    EcdsaSigPtr ecdsa(ECDSA_SIG_new());
    if (!r || !s || !ecdsa || ECDSA_SIG_set0(ecdsa.get(), r.get(), s.get()) != 1) return false;
    r.release();  // now owned by ecdsa
    s.release();
    unsigned char* out = nullptr;
    int len = i2d_ECDSA_SIG(ecdsa.get(), &out);
    if (len <= 0 || out == nullptr) return false;
    der.assign(reinterpret_cast<char*>(out), static_cast<size_t>(len));
    OPENSSL_free(out);
    to_verify = der;
  }
  MdCtxPtr ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit_ex(ctx.get(), nullptr, DigestName(alg_), nullptr, nullptr,
                                      impl_->pkey, nullptr) != 1) {
    return false;
  }
  return EVP_DigestVerify(ctx.get(), Bytes(to_verify), to_verify.size(), Bytes(signing_input),
                          signing_input.size()) == 1;
}

}  // namespace mandate::identity
