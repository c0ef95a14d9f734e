// Small cryptographic primitives every module may use (OpenSSL underneath).
// Thread safety: all functions are safe to call concurrently.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace mandate::core {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest Sha256(std::string_view bytes);
std::string Sha256Hex(std::string_view bytes);
std::string DigestHex(const Sha256Digest& d);

// Cryptographically secure random bytes (RAND_bytes). Aborts if the CSPRNG fails: there is
// no safe way to continue minting identifiers without randomness.
std::string RandomBytes(size_t n);

// A random identifier "<prefix>_<26 chars of Crockford base32>" (128 bits of randomness),
// e.g. NewId("ses") -> "ses_01hq...". Safe to use as a session or token id.
std::string NewId(std::string_view prefix);

// Constant-time comparison (for tokens and secrets).
bool ConstantTimeEquals(std::string_view a, std::string_view b);

}  // namespace mandate::core
