// Approver tokens (docs/formats/token.md, "Approver tokens"): a human approver acts on the
// admin listener as themselves, not as the operator. The operator mints a short-lived token
// for a registered human (`mandate approver token H`, POST /admin/v1/humans/<H>/approver-token);
// the human presents it as `Authorization: Bearer <token>` to list, read, approve and deny
// approvals (the approvals page /ui/, or the CLI with MANDATE_TOKEN), and to nothing else.
//
// Format: a JWT signed with the token-signing keys like a session token, but with header
// "typ":"approver+jwt" (identity::kApproverTokenTyp) and audience "<tokens.audience>:approvals"
// (ApproverAudience), so the agent listener never accepts an approver token (its verifier wants
// "at+jwt" and "<tokens.audience>") and the approvals endpoints never accept a session token.
// Claims: iss (tokens.issuer), aud, sub (the human), client_id "mandate-approvals", sid (a
// fresh "apv_..." id), jti, scope "approvals", iat, nbf, exp; no act, task, model or cnf.
//
// Thread safety: Mint, Authenticate and ClearCache may be called concurrently; dependencies
// are not owned and must outlive the object.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "mandate/core/clock.h"
#include "mandate/core/json.h"
#include "mandate/core/result.h"
#include "mandate/gateway/pipeline.h"
#include "mandate/identity/signing_keys.h"
#include "mandate/identity/token_issuer.h"
#include "mandate/identity/token_verifier.h"
#include "mandate/revocation/revocation_set.h"
#include "server/config.h"

namespace mandate::server {

// The client_id and scope every approver token carries.
inline constexpr std::string_view kApproverClientId = "mandate-approvals";
inline constexpr std::string_view kApproverScope = "approvals";

// The audience of approver tokens: "<audience>:approvals" (never the session-token audience).
std::string ApproverAudience(std::string_view audience);

struct ApproverTokenDeps {
  const Config* config = nullptr;  // tokens.issuer, tokens.audience, tokens.alg, max_ttl
  const core::Clock* clock = nullptr;
  const identity::SigningKeys* keys = nullptr;
  const identity::TokenIssuer* issuer = nullptr;
  const revocation::RevocationSet* revocations = nullptr;
  const gateway::Directory* directory = nullptr;  // who is a registered human
  // Appends an audit record durably (approver.token_issued). Required.
  std::function<core::Status(core::Json record)> record;
};

struct MintedApproverToken {
  std::string token;
  std::string human;
  std::string sid;
  std::string jti;
  int64_t expires_at = 0;  // Unix seconds
};

class ApproverTokens {
 public:
  // Builds the approver-token verifier (the config's issuer and alg, ApproverAudience, typ
  // kApproverTokenTyp). Errors: kInternal when a dependency is missing or the verifier cannot
  // be built.
  static core::Result<std::unique_ptr<ApproverTokens>> Create(ApproverTokenDeps deps);

  // The longest lifetime Mint accepts: kApproverTokenTtlSecondsMax, and never more than
  // tokens.max_ttl (a key rotation keeps the old key only that long).
  int64_t ttl_max_seconds() const;

  // Mints a token for registered human `human`, valid for `ttl_seconds` (default
  // kApproverTokenTtlSecondsDefault, capped at ttl_max_seconds()), and appends
  // `approver.token_issued` {human, sid, jti, expires_at} to the audit log before returning
  // it. Errors:
  //   kNotFound      `human` is not a registered human;
  //   kTokenRevoked  `human` is revoked (a token would never work);
  //   kBadRequest    ttl_seconds is not positive or above ttl_max_seconds();
  //   kInternal      signing failed, or the audit record could not be written (no token is
  //                  handed out that the log does not know).
  core::Result<MintedApproverToken> Mint(const std::string& human,
                                         std::optional<int64_t> ttl_seconds) const;

  // Checks a bearer token presented to the approvals endpoints and returns the approving
  // human (the token's sub). Fail closed, in order:
  //   every rule of TokenVerifier::Verify with typ approver+jwt and the approver audience
  //     (so a session token is kUnauthenticated; an expired one kTokenExpired);
  //   kUnauthenticated  client_id is not kApproverClientId, scope is not exactly
  //                     kApproverScope, or an "act" claim is present;
  //   kTokenRevoked     the human is revoked (`mandate revoke human H`);
  //   kUnauthenticated  the human is not (or no longer) registered.
  // Messages never contain the token.
  core::Result<std::string> Authenticate(std::string_view token) const;

  // Drops cached verifications (after a key rotation).
  void ClearCache() const;

 private:
  ApproverTokens(ApproverTokenDeps deps, std::unique_ptr<identity::TokenVerifier> verifier)
      : deps_(std::move(deps)), verifier_(std::move(verifier)) {}

  const ApproverTokenDeps deps_;
  const std::unique_ptr<identity::TokenVerifier> verifier_;
};

}  // namespace mandate::server
