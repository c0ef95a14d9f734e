// DpopVerifier: checks DPoP proofs (RFC 9449), the per-request JWS a client signs with the key
// its session token is bound to (`cnf.jkt`), so that a copied token alone is useless.
//
// Verification rules (RFC 9449 section 4.3), in order. Every failure is kDpopInvalid, with a
// message naming the rule that failed; messages never contain the proof, the token or key
// material.
//    1  the proof (one `DPoP` header value) is non-empty and at most kDpopProofBytesMax bytes;
//    2  it is exactly one proof: a ',' (two headers folded into one) or any byte other than
//       the base64url alphabet and '.' (whitespace, padding) is refused;
//    3  it is a JWS compact serialization: three non-empty base64url segments (unpadded);
//    4  the header is a JSON object (duplicate members refused) whose "typ" is dpop+jwt
//       ("application/dpop+jwt" and any letter case accepted, RFC 7515 section 4.1.9);
//    5  header "alg" is an asymmetric algorithm Mandate supports, exactly "EdDSA" (Ed25519) or
//       "ES256" (P-256); "none", "HS256" and every other name are refused;
//    6  there is no "crit" header (no JWS extension is understood);
//    7  header "jwk" is an object holding a public key only (a "d" member is refused) of a
//       supported type (OKP/Ed25519 or EC/P-256), of the type "alg" names;
//    8  the signature is base64url and verifies under that jwk;
//    9  the payload is a JSON object with "jti" (a non-empty string of at most
//       kDpopJtiBytesMax bytes), "htm", "htu" and "iat";
//   10  "htm" equals the request method exactly (methods are case-sensitive);
//   11  NormalizeDpopHtu("htu") equals NormalizeDpopHtu(request URI): query and fragment are
//       ignored, see NormalizeDpopHtu for the rest;
//   12  "iat" is an integer with now - iat_past_seconds <= iat <= now + iat_future_seconds;
//   13  when an access token is presented, "ath" equals DpopAccessTokenHash(token); when none
//       is (e.g. at the token endpoint), a proof carrying "ath" is refused: it was made for a
//       request with a token, so it is not the proof of this one;
//   14  when an expected jkt is given, the proof's jkt (RFC 7638 thumbprint of its jwk) equals
//       it: the token's `cnf.jkt` binding;
//   15  the pair (jkt, jti) was not accepted before within the iat window (replay cache).
// Server nonces (RFC 9449 section 8, `DPoP-Nonce`) are not supported: Mandate never sends
// one, so a "nonce" claim is ignored and freshness rests on rules 12 and 15. Other header
// parameters (kid, x5c, jku...) and claims are ignored. The full format is in
// docs/formats/token.md, section "DPoP proofs".
//
// Replay cache: only a proof that passed every other rule is recorded, so a refused proof does
// not spend its jti. Entries are keyed by SHA-256(jkt "." jti) (fixed 32 bytes whatever the jti)
// and kept while the proof could still pass rule 12, i.e. until iat + iat_past_seconds; expired
// entries are dropped first on every call. The cache holds at most replay_entries_max live
// entries: when it is full, a new proof is refused ("replay cache is full") rather than
// forgetting a live entry, because forgetting one would let that proof be replayed. The cost
// is that a client flooding valid proofs can make everyone's proofs fail for at most one window
// (iat_past_seconds + iat_future_seconds); rate limits in front of the verifier bound that.
// The cache also remembers the latest `now` it was given: a proof whose iat + iat_past_seconds
// is behind it is refused even if a later call passes an earlier `now` (a clock stepping back
// must not make a forgotten jti acceptable again).
//
// Thread safety: Verify and replay_entries may be called concurrently from any thread; the
// signature check runs outside the replay cache's mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "mandate/core/limits.h"
#include "mandate/core/result.h"
#include "mandate/identity/jws_key.h"

namespace mandate::identity {

// The "ath" claim for `access_token`: base64url(SHA-256(ASCII bytes of the token)), unpadded
// (RFC 9449 section 4.2).
std::string DpopAccessTokenHash(std::string_view access_token);

// The form in which "htu" and the request URI are compared (RFC 9449 section 4.3 point 9,
// RFC 3986 section 6.2.2 and 6.2.3):
//   - the query and the fragment are removed;
//   - the scheme must be http or https and is lowercased; the host is lowercased; the port is
//     removed when it is the scheme's default (80, 443) or empty, leading zeros are dropped;
//   - percent-encoding: hex digits are uppercased and triplets of unreserved characters
//     (ALPHA DIGIT - . _ ~) are decoded; an empty path becomes "/"; "." and ".." segments are
//     removed (RFC 3986 section 5.2.4).
// Example: "HTTPS://Mandate.Example:443/a/./%7euser/../mcp?x=1#f"
//       ->  "https://mandate.example/a/mcp".
// Errors (kDpopInvalid): not an absolute http(s) URI with a host, userinfo ("user@host"), a
// byte that may not appear in a URI (controls, spaces, non-ASCII), a malformed percent-escape
// or port, or more than kDpopHtuBytesMax bytes before the query.
core::Result<std::string> NormalizeDpopHtu(std::string_view uri);

// What a verified proof says. The caller compares jkt with the token's `cnf.jkt` (or lets
// Verify do it, see expected_jkt) and may audit jti.
struct DpopProof {
  std::string jkt;  // RFC 7638 thumbprint of the proof's jwk (base64url, 43 characters)
  std::string jti;
  int64_t iat = 0;
  Alg alg = Alg::kEdDSA;
};

// Rule 14 on its own, for a caller that verified without an expected jkt: OK when
// proof.jkt equals cnf_jkt (constant-time comparison). Errors (kDpopInvalid): they differ, or
// cnf_jkt is empty (a binding to nothing is not a binding).
core::Status CheckDpopBinding(const DpopProof& proof, std::string_view cnf_jkt);

struct DpopVerifierOptions {
  int64_t iat_past_seconds = core::kDpopIatPastSecondsDefault;      // 1..kDpopIatWindowSecondsMax
  int64_t iat_future_seconds = core::kDpopIatFutureSecondsDefault;  // 0..kDpopIatWindowSecondsMax
  size_t replay_entries_max = core::kDpopReplayEntriesMax;          // 1..kDpopReplayEntriesMax
};

class DpopVerifier {
 public:
  // Errors (kInternal): an option outside its range above.
  static core::Result<std::unique_ptr<DpopVerifier>> Create(DpopVerifierOptions options = {});
  ~DpopVerifier();
  DpopVerifier(const DpopVerifier&) = delete;
  DpopVerifier& operator=(const DpopVerifier&) = delete;

  // Verifies `proof_jwt`, the value of the request's one `DPoP` header (the caller refuses a
  // request with two DPoP headers before calling), by the rules above, for a request with
  // `http_method` (e.g. "POST") to `http_uri`: the absolute URI the client addressed,
  // "<scheme>://<host>[:port]<target>" as reconstructed by the server from its listener's scheme
  // and the Host header (the query, if included, is ignored). `access_token` is the token of
  // the `Authorization: DPoP` header, empty when the request carries none. `expected_jkt`,
  // when non-empty, is the `cnf.jkt` the proof's key must have. `now_unix_seconds` is the
  // server's wall clock (from a core::Clock).
  // On success the (jkt, jti) pair is recorded in the replay cache and the proof's jkt, jti,
  // iat and alg are returned.
  // Errors: kDpopInvalid for every rule above, and when `http_uri` is not a valid absolute
  // http(s) URI (it is built from the client's Host header); kInternal when `now_unix_seconds`
  // is outside [0, 2^62) (a caller bug, not a bad proof).
  core::Result<DpopProof> Verify(std::string_view proof_jwt, std::string_view http_method,
                                 std::string_view http_uri, std::string_view access_token,
                                 int64_t now_unix_seconds,
                                 std::string_view expected_jkt = {}) const;

  // The number of (jkt, jti) pairs the replay cache holds (some may have expired since the
  // last Verify, which drops them).
  size_t replay_entries() const;

  const DpopVerifierOptions& options() const { return options_; }

 private:
  struct ReplayCache;
  explicit DpopVerifier(DpopVerifierOptions options);

  const DpopVerifierOptions options_;
  std::unique_ptr<ReplayCache> cache_;
};

}  // namespace mandate::identity
