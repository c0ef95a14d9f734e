#include "server/approver_tokens.h"

#include <algorithm>

#include "mandate/core/crypto.h"
#include "mandate/core/limits.h"

namespace mandate::server {

using core::ErrorCode;
using core::MakeError;

std::string ApproverAudience(std::string_view audience) {
  return std::string(audience) + ":approvals";
}

core::Result<std::unique_ptr<ApproverTokens>> ApproverTokens::Create(ApproverTokenDeps deps) {
  if (deps.config == nullptr || deps.clock == nullptr || deps.keys == nullptr ||
      deps.issuer == nullptr || deps.revocations == nullptr || deps.directory == nullptr ||
      !deps.record) {
    return MakeError(ErrorCode::kInternal, "approver tokens: a dependency is missing");
  }
  identity::VerifierOptions options;
  options.issuer = deps.config->tokens.issuer;
  options.audience = ApproverAudience(deps.config->tokens.audience);
  options.typ = std::string(identity::kApproverTokenTyp);
  options.alg =
      deps.config->tokens.alg == TokenAlg::kES256 ? identity::Alg::kES256 : identity::Alg::kEdDSA;
  // Approvers are few: a small cache is plenty.
  options.cache_entries_max = 1024;
  MANDATE_ASSIGN_OR_RETURN(auto verifier,
                           identity::TokenVerifier::Create(options, *deps.keys, *deps.clock));
  return std::unique_ptr<ApproverTokens>(new ApproverTokens(std::move(deps), std::move(verifier)));
}

int64_t ApproverTokens::ttl_max_seconds() const {
  return std::min(core::kApproverTokenTtlSecondsMax, deps_.config->tokens.max_ttl_seconds);
}

core::Result<MintedApproverToken> ApproverTokens::Mint(const std::string& human,
                                                       std::optional<int64_t> ttl_seconds) const {
  if (!deps_.directory->HumanGroups(human)) {
    return MakeError(ErrorCode::kNotFound, "no human named \"" + human + "\"");
  }
  if (deps_.revocations->Contains(revocation::Kind::kHuman, human)) {
    return MakeError(ErrorCode::kTokenRevoked, "human " + human + " is revoked");
  }
  const int64_t max = ttl_max_seconds();
  const int64_t ttl = ttl_seconds.value_or(std::min(core::kApproverTokenTtlSecondsDefault, max));
  if (ttl <= 0 || ttl > max) {
    return MakeError(ErrorCode::kBadRequest, "an approver token's ttl must be 1.." +
                                                 std::to_string(max) + " s (" +
                                                 std::to_string(max / 3600) + " h)");
  }
  identity::Claims c;
  c.iss = deps_.config->tokens.issuer;
  c.aud = {ApproverAudience(deps_.config->tokens.audience)};
  c.sub = human;
  c.client_id = std::string(kApproverClientId);
  c.sid = core::NewId("apv");
  c.jti = core::NewId("tok");
  c.scope = {std::string(kApproverScope)};
  c.iat = deps_.clock->NowUnixSeconds();
  c.nbf = c.iat;
  c.exp = c.iat + ttl;
  MANDATE_ASSIGN_OR_RETURN(std::string token, deps_.issuer->Mint(c, identity::kApproverTokenTyp));

  core::Json rec = core::Json::MakeObject();
  rec.Set("type", "approver.token_issued");
  rec.Set("human", human);
  rec.Set("sid", c.sid);
  rec.Set("jti", c.jti);
  rec.Set("expires_at", c.exp);
  // Invariant: a token is handed out only once the log knows it.
  if (auto appended = deps_.record(std::move(rec)); !appended.ok()) {
    return MakeError(ErrorCode::kInternal,
                     "the audit log cannot be written: " + appended.error().message);
  }
  return MintedApproverToken{std::move(token), human, c.sid, c.jti, c.exp};
}

core::Result<std::string> ApproverTokens::Authenticate(std::string_view token) const {
  if (token.empty()) return MakeError(ErrorCode::kUnauthenticated, "no bearer token");
  MANDATE_ASSIGN_OR_RETURN(auto claims, verifier_->Verify(token));
  // Only Mint makes tokens with this typ and audience; these checks keep a token signed for
  // anything else (an actor chain, another scope) from passing as an approver's.
  if (claims->client_id != kApproverClientId || claims->scope.size() != 1 ||
      claims->scope[0] != kApproverScope || !claims->act.empty()) {
    return MakeError(ErrorCode::kUnauthenticated, "token is not an approver token");
  }
  if (deps_.revocations->Contains(revocation::Kind::kHuman, claims->sub)) {
    return MakeError(ErrorCode::kTokenRevoked, "the approver token was revoked (human revocation)");
  }
  if (!deps_.directory->HumanGroups(claims->sub)) {
    return MakeError(ErrorCode::kUnauthenticated, "token names an unknown human");
  }
  return claims->sub;
}

void ApproverTokens::ClearCache() const { verifier_->ClearCache(); }

}  // namespace mandate::server
