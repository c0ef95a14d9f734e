#include "mandate/identity/token_issuer.h"

#include "mandate/core/encoding.h"
#include "mandate/core/limits.h"

namespace mandate::identity {

using core::ErrorCode;
using core::Json;
using core::MakeError;
using core::Result;

Result<std::string> TokenIssuer::Mint(const Claims& claims, std::string_view typ) const {
  if (typ != kSessionTokenTyp && typ != kApproverTokenTyp) {
    return MakeError(ErrorCode::kBadRequest, "unknown token typ \"" + std::string(typ) + "\"");
  }
  MANDATE_RETURN_IF_ERROR(claims.Validate());
  if (claims.exp - claims.nbf > core::kTokenTtlSecondsMax) {
    return MakeError(
        ErrorCode::kBadRequest,
        "token lifetime exceeds " + std::to_string(core::kTokenTtlSecondsMax) + " seconds");
  }
  return SignJwt(*keys_, typ, claims.ToJson());
}

Result<std::string> SignJwt(const SigningKeys& keys, std::string_view typ, const Json& payload) {
  return SignJwt(keys, typ, std::string_view(payload.Dump()));
}

Result<std::string> SignJwt(const SigningKeys& keys, std::string_view typ, std::string_view payload_json) {
  // One snapshot of the active key for both the header's kid and the signature, so a
  // concurrent rotation cannot pair one key's kid with another key's signature.
  std::shared_ptr<const JwsKey> key = keys.Active();
  // {"alg","typ","kid"}: the bytes Json::Dump() writes for that object, without building one.
  std::string header = "{\"alg\":";
  core::AppendJsonString(AlgName(key->alg()), &header);
  header.append(",\"typ\":");
  core::AppendJsonString(typ, &header);
  header.append(",\"kid\":");
  core::AppendJsonString(key->kid(), &header);
  header.push_back('}');

  std::string token = core::Base64UrlEncode(header);
  token.push_back('.');
  token += core::Base64UrlEncode(payload_json);
  MANDATE_ASSIGN_OR_RETURN(std::string sig, key->Sign(token));
  token.push_back('.');
  token += core::Base64UrlEncode(sig);
  // Never hand out a token every verifier would refuse.
  if (token.size() > core::kTokenBytesMax) {
    return MakeError(ErrorCode::kPayloadTooLarge,
                     "token would exceed " + std::to_string(core::kTokenBytesMax) + " bytes");
  }
  return token;
}

}  // namespace mandate::identity
