#include "mandate/core/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <memory>

#include "mandate/core/check.h"
#include "mandate/core/encoding.h"

namespace mandate::core {

Sha256Digest Sha256(std::string_view bytes) {
  // Fetched once: OpenSSL 3's one-shot SHA256() fetches the algorithm on every call, which
  // showed up as half of the hashing cost per governed call (docs/performance.md).
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  MANDATE_CHECK(kSha256 != nullptr);
  Sha256Digest d;
  unsigned int len = 0;
  MANDATE_CHECK(EVP_Digest(bytes.data(), bytes.size(), d.data(), &len, kSha256, nullptr) == 1);
  MANDATE_DCHECK(len == d.size());
  return d;
}

std::string DigestHex(const Sha256Digest& d) {
  return HexEncode(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

std::string Sha256Hex(std::string_view bytes) { return DigestHex(Sha256(bytes)); }

Sha256Digest Sha256Concat(std::string_view a, std::string_view b, std::string_view c) {
  // SHA256_* is deprecated in OpenSSL 3; a thread-local context avoids an allocation per call.
  static EVP_MD* const kSha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  MANDATE_CHECK(kSha256 != nullptr);
  thread_local std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(),
                                                                      EVP_MD_CTX_free);
  MANDATE_CHECK(ctx != nullptr);
  Sha256Digest d;
  unsigned int len = 0;
  MANDATE_CHECK(EVP_DigestInit_ex(ctx.get(), kSha256, nullptr) == 1);
  MANDATE_CHECK(EVP_DigestUpdate(ctx.get(), a.data(), a.size()) == 1);
  MANDATE_CHECK(EVP_DigestUpdate(ctx.get(), b.data(), b.size()) == 1);
  if (!c.empty()) MANDATE_CHECK(EVP_DigestUpdate(ctx.get(), c.data(), c.size()) == 1);
  MANDATE_CHECK(EVP_DigestFinal_ex(ctx.get(), d.data(), &len) == 1);
  MANDATE_DCHECK(len == d.size());
  return d;
}

namespace {

using PkeyPtr = std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)>;

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

Result<PkeyPtr> PrivateFromSeed(std::string_view seed) {
  if (seed.size() != kEd25519KeyBytes) {
    return MakeError(ErrorCode::kBadRequest, "an Ed25519 private key is 32 bytes");
  }
  PkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, Bytes(seed), seed.size()),
              EVP_PKEY_free);
  if (!key) return MakeError(ErrorCode::kBadRequest, "invalid Ed25519 private key");
  return key;
}

}  // namespace

std::string Ed25519GenerateSeed() { return RandomBytes(kEd25519KeyBytes); }

Result<std::string> Ed25519PublicKey(std::string_view seed) {
  MANDATE_ASSIGN_OR_RETURN(PkeyPtr key, PrivateFromSeed(seed));
  std::string pub(kEd25519KeyBytes, '\0');
  size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(key.get(), reinterpret_cast<unsigned char*>(pub.data()),
                                  &len) != 1 ||
      len != kEd25519KeyBytes) {
    return MakeError(ErrorCode::kInternal, "cannot derive the Ed25519 public key");
  }
  return pub;
}

Result<std::string> Ed25519Sign(std::string_view seed, std::string_view message) {
  MANDATE_ASSIGN_OR_RETURN(PkeyPtr key, PrivateFromSeed(seed));
  MdCtxPtr ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::string sig(kEd25519SignatureBytes, '\0');
  size_t len = sig.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     Bytes(message), message.size()) != 1 ||
      len != kEd25519SignatureBytes) {
    return MakeError(ErrorCode::kInternal, "Ed25519 signing failed");
  }
  return sig;
}

bool Ed25519Verify(std::string_view public_key, std::string_view message,
                   std::string_view signature) {
  if (public_key.size() != kEd25519KeyBytes || signature.size() != kEd25519SignatureBytes) {
    return false;
  }
  PkeyPtr key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, Bytes(public_key),
                                          public_key.size()),
              EVP_PKEY_free);
  MdCtxPtr ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!key || !ctx) return false;
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) return false;
  return EVP_DigestVerify(ctx.get(), Bytes(signature), signature.size(), Bytes(message),
                          message.size()) == 1;
}

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  MANDATE_CHECK(RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) == 1);
  return out;
}

std::string NewId(std::string_view prefix) {
  static constexpr char kCrockford[] = "0123456789abcdefghjkmnpqrstvwxyz";
  // 136 bits; we use 130 of them (26 chars x 5 bits). Drawn from a per-thread pool refilled
  // by RAND_bytes 510 bytes at a time: RAND_bytes per id was ~2% of a governed call's CPU
  // (ids are unique, not secret, so a pool of CSPRNG output serves them as well).
  constexpr size_t kIdBytes = 17;
  thread_local unsigned char pool[kIdBytes * 30];
  thread_local size_t used = sizeof(pool);
  if (used == sizeof(pool)) {
    MANDATE_CHECK(RAND_bytes(pool, static_cast<int>(sizeof(pool))) == 1);
    used = 0;
  }
  std::string_view raw(reinterpret_cast<const char*>(pool + used), kIdBytes);
  used += kIdBytes;
  std::string out(prefix);
  out.push_back('_');
  uint32_t acc = 0;
  int bits = 0;
  size_t i = 0;
  while (out.size() < prefix.size() + 1 + 26) {
    if (bits < 5) {
      acc = (acc << 8) | static_cast<uint8_t>(raw[i++]);
      bits += 8;
    }
    bits -= 5;
    out.push_back(kCrockford[(acc >> bits) & 31]);
  }
  return out;
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace mandate::core
