// Small cryptographic primitives every module may use (OpenSSL underneath).
// Thread safety: all functions are safe to call concurrently.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "mandate/core/result.h"

namespace mandate::core {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest Sha256(std::string_view bytes);
std::string Sha256Hex(std::string_view bytes);
std::string DigestHex(const Sha256Digest& d);
// SHA-256 of the concatenation a || b || c, without building it (e.g. a Merkle leaf: 0x00 ||
// record).
Sha256Digest Sha256Concat(std::string_view a, std::string_view b, std::string_view c = {});

// Ed25519 (RFC 8032) over raw keys: a 32-byte private seed and a 32-byte public key.
inline constexpr size_t kEd25519KeyBytes = 32;
inline constexpr size_t kEd25519SignatureBytes = 64;
// A fresh random seed.
std::string Ed25519GenerateSeed();
// The public key of `seed`. Errors: kBadRequest when seed is not 32 bytes.
Result<std::string> Ed25519PublicKey(std::string_view seed);
// The 64-byte signature of `message`. Errors: kBadRequest when seed is not 32 bytes.
Result<std::string> Ed25519Sign(std::string_view seed, std::string_view message);
// Whether `signature` is a valid signature of `message` by `public_key`. Malformed keys or
// signatures are simply invalid.
bool Ed25519Verify(std::string_view public_key, std::string_view message,
                   std::string_view signature);

// Cryptographically secure random bytes (RAND_bytes). Aborts if the CSPRNG fails: there is
// no safe way to continue minting identifiers without randomness.
std::string RandomBytes(size_t n);

// A random identifier "<prefix>_<26 chars of Crockford base32>" (128 bits of randomness),
// e.g. NewId("ses") -> "ses_01hq...". Safe to use as a session or token id.
std::string NewId(std::string_view prefix);

// Constant-time comparison (for tokens and secrets).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace mandate::core
