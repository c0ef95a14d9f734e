#include "mandate/identity/txn_token.h"

#include "mandate/identity/token_issuer.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"

namespace mandate::identity {

using core::ErrorCode;
using core::Json;
using core::MakeError;

namespace {

core::Status CheckField(std::string_view name, const std::string& value, bool required) {
  if (required && value.empty()) return MakeError(ErrorCode::kBadRequest, "txn token: " + std::string(name) + " is required");
  if (value.size() > core::kTxnTokenFieldBytesMax || !core::IsValidUtf8(value)) {
    return MakeError(ErrorCode::kBadRequest, "txn token: " + std::string(name) + " is too long or not UTF-8");
  }
  return core::OkStatus();
}

}  // namespace

core::Result<std::string> TxnTokenIssuer::Mint(const TxnTokenRequest& r, int64_t now) const {
  MANDATE_RETURN_IF_ERROR(CheckField("aud", r.audience, true));
  MANDATE_RETURN_IF_ERROR(CheckField("txn", r.txn, true));
  MANDATE_RETURN_IF_ERROR(CheckField("sub", r.sub, true));
  MANDATE_RETURN_IF_ERROR(CheckField("req_wl", r.agent, true));
  MANDATE_RETURN_IF_ERROR(CheckField("scope", r.action, true));
  for (const std::string* f : {&r.args_sha256, &r.run, &r.sid, &r.task}) {
    MANDATE_RETURN_IF_ERROR(CheckField("tctx", *f, false));
  }
  for (const std::string& a : r.chain) MANDATE_RETURN_IF_ERROR(CheckField("tctx.chain", a, true));

  Json tctx = Json::MakeObject();
  tctx.Set("action", r.action);
  tctx.Set("args_sha256", r.args_sha256);
  tctx.Set("run", r.run);
  tctx.Set("sid", r.sid);
  tctx.Set("task", r.task);
  tctx.Set("chain", Json::StringArray(r.chain));
  Json claims = Json::MakeObject();
  claims.Set("iss", issuer_);
  claims.Set("aud", r.audience);
  claims.Set("iat", now);
  claims.Set("exp", now + core::kTxnTokenTtlSecondsDefault);
  claims.Set("txn", r.txn);
  claims.Set("sub", r.sub);
  claims.Set("scope", r.action);
  claims.Set("req_wl", r.agent);
  claims.Set("tctx", std::move(tctx));

  return SignJwt(*keys_, kTxnTokenTyp, claims);
}

}  // namespace mandate::identity
