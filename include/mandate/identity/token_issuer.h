// TokenIssuer: mints session tokens, i.e. compact JWS (RFC 7515) JWTs whose protected header
// is {"alg":"EdDSA"|"ES256","typ":"at+jwt","kid":"<active key's kid>"} and whose payload is
// Claims::ToJson(), and approver tokens (the same with "typ":"approver+jwt"). Format:
// docs/formats/token.md.
//
// Thread safety: Mint may be called concurrently from any thread.
#pragma once

#include <string>
#include <string_view>

#include "mandate/core/json.h"
#include "mandate/core/result.h"
#include "mandate/identity/claims.h"
#include "mandate/identity/signing_keys.h"

namespace mandate::identity {

// Signs `payload` as a compact JWS with the active key of `keys`: protected header
// {"alg", "typ": `typ`, "kid"}. The building block of every token Mandate signs (session,
// approver and transaction tokens). Errors: kPayloadTooLarge beyond kTokenBytesMax (a verifier
// would refuse it), kInternal when signing fails.
core::Result<std::string> SignJwt(const SigningKeys& keys, std::string_view typ, const core::Json& payload);
// The same with the payload already serialized: `payload_json` must be one JSON object.
core::Result<std::string> SignJwt(const SigningKeys& keys, std::string_view typ, std::string_view payload_json);

class TokenIssuer {
 public:
  // `keys` is not owned and must outlive this issuer.
  explicit TokenIssuer(const SigningKeys& keys) : keys_(&keys) {}

  // Signs `claims` with the active key and returns the compact token
  // "<b64url header>.<b64url payload>.<b64url signature>", with header "typ" `typ`
  // (kSessionTokenTyp or kApproverTokenTyp). The claims are used as given (the caller chooses
  // iss, aud, jti, times...); they are validated first, and the token's lifetime (exp - nbf)
  // may not exceed kTokenTtlSecondsMax.
  // Errors:
  //   kBadRequest       the claims fail Claims::Validate or the lifetime limit, or `typ` is
  //                     neither kSessionTokenTyp nor kApproverTokenTyp;
  //   kPayloadTooLarge  the token would exceed kTokenBytesMax (a verifier would refuse it);
  //   kInternal         signing failed.
  core::Result<std::string> Mint(const Claims& claims,
                                 std::string_view typ = kSessionTokenTyp) const;

 private:
  const SigningKeys* keys_;  // not owned
};

}  // namespace mandate::identity
