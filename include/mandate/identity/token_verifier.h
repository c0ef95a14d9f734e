// TokenVerifier: checks session tokens (the format of docs/formats/token.md) on every call's
// hot path, with a bounded cache so each token's signature is checked once. A second verifier
// configured with typ kApproverTokenTyp and the approver audience checks approver tokens.
//
// Verification rules, in order, and the error each failure returns (the message says which
// rule failed and never contains the token or any part of it):
//   kUnauthenticated  the token is longer than kTokenBytesMax bytes;
//   kUnauthenticated  it is not three non-empty base64url segments separated by dots;
//   kUnauthenticated  the header is not base64url of a JSON object (duplicate keys refused);
//   kUnauthenticated  header "alg" is not exactly the configured algorithm. Only the
//                     configured asymmetric alg is accepted, so "none" and "HS256" (even
//                     MAC-ed with the public key as the secret) never pass;
//   kUnauthenticated  header "crit" is present (no extension is understood);
//   kUnauthenticated  header "typ" is not the configured typ, "at+jwt" for session tokens
//                     (RFC 9068; "application/<typ>" and any letter case are accepted as RFC
//                     7515 section 4.1.9 allows);
//   kUnauthenticated  header "kid" is missing or names no key of the configured alg;
//   kUnauthenticated  the signature is not base64url or does not verify;
//   kUnauthenticated  the payload is not a JSON object or fails Claims::FromJson;
//   kUnauthenticated  "iss" is not the configured issuer;
//   kUnauthenticated  "aud" is not, or (as an array) does not contain, the configured audience;
//   kTokenExpired     exp <= now - clock_skew_seconds;
//   kUnauthenticated  nbf > now + clock_skew_seconds, or iat > now + clock_skew_seconds.
// Header parameters that could point elsewhere for a key (jku, jwk, x5u, x5c) are ignored: keys
// come only from SigningKeys. Revocation is not checked here: the caller checks the returned
// claims (sid, jti, sub, client_id, act chain, task) against the revocation state.
//
// Cache: a verified token's claims are cached under SHA-256(token bytes), so a repeated token
// costs one hash and one lookup instead of a signature check. A hit still applies the exp/nbf/
// iat rules against the clock. Failed verifications are never cached. The cache holds at most
// cache_entries_max entries: when a shard is full, its expired entries are dropped and, if
// that is not enough, half of it. Rotation that retires a key must call ClearCache().
//
// Thread safety: Verify, cache_stats and ClearCache may be called concurrently from any thread
// (the cache is sharded, one mutex per shard).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "mandate/core/clock.h"
#include "mandate/core/limits.h"
#include "mandate/core/result.h"
#include "mandate/identity/claims.h"
#include "mandate/identity/signing_keys.h"

namespace mandate::identity {

struct VerifierOptions {
  std::string issuer;     // required: "iss" must equal it exactly
  std::string audience;   // required: "aud" must be it or contain it
  Alg alg = Alg::kEdDSA;  // the one accepted header "alg"
  int64_t clock_skew_seconds = core::kTokenClockSkewSeconds;  // 0..300
  size_t cache_entries_max = core::kTokenCacheEntriesMax;     // 1..kTokenCacheEntriesMax
  // The one accepted header "typ": kSessionTokenTyp or kApproverTokenTyp.
  std::string typ = std::string(kSessionTokenTyp);
};

class TokenVerifier {
 public:
  struct CacheStats {
    uint64_t hits = 0;    // Verify calls answered from the cache (valid or expired since)
    uint64_t misses = 0;  // Verify calls that had to check the signature (or failed before it)
    size_t entries = 0;   // tokens currently cached
  };

  // `keys` and `clock` are not owned and must outlive the verifier.
  // Errors (kInternal): empty issuer or audience, an unknown typ, or an option outside its
  // range above.
  static core::Result<std::unique_ptr<TokenVerifier>> Create(VerifierOptions options,
                                                             const SigningKeys& keys,
                                                             const core::Clock& clock);
  ~TokenVerifier();
  TokenVerifier(const TokenVerifier&) = delete;
  TokenVerifier& operator=(const TokenVerifier&) = delete;

  // Verifies `token` by the rules above. On success returns the claims, shared with the cache
  // (immutable; they stay valid as long as the caller holds the pointer).
  core::Result<std::shared_ptr<const Claims>> Verify(std::string_view token) const;

  CacheStats cache_stats() const;
  // Drops every cached token (e.g. after a key was retired). Counters are kept.
  void ClearCache() const;

  const VerifierOptions& options() const { return options_; }

 private:
  struct Cache;
  TokenVerifier(VerifierOptions options, const SigningKeys& keys, const core::Clock& clock);

  core::Result<std::shared_ptr<const Claims>> VerifyUncached(std::string_view token) const;
  core::Status CheckTimes(const Claims& claims, int64_t now_seconds) const;

  const VerifierOptions options_;
  const SigningKeys* keys_;   // not owned
  const core::Clock* clock_;  // not owned
  std::unique_ptr<Cache> cache_;
};

}  // namespace mandate::identity
