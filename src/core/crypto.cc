#include "mandate/core/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

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
