#include "mandate/identity/txn_token.h"

#include <charconv>

#include "mandate/identity/token_issuer.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"

namespace mandate::identity {

using core::ErrorCode;
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

  // The claims written straight into their JSON text, in the member order of the layout in
  // txn_token.h: one per forwarded call, where building a Json tree and dumping it cost about
  // as much again as the rest of the token but the signature (txn_token_test.cc checks these
  // bytes against that tree's Dump()).
  std::string claims;
  claims.reserve(256 + r.audience.size() + r.txn.size() + r.sub.size() + r.agent.size() +
                 2 * r.action.size() + r.args_sha256.size() + r.run.size() + r.sid.size() +
                 r.task.size() + issuer_.size() + 24 * r.chain.size());
  auto member = [&claims](std::string_view name, std::string_view value) {
    claims.push_back('"');
    claims.append(name);
    claims.append("\":");
    core::AppendJsonString(value, &claims);
    claims.push_back(',');
  };
  auto integer = [&claims](std::string_view name, int64_t value) {
    claims.push_back('"');
    claims.append(name);
    claims.append("\":");
    char text[24];
    claims.append(text, static_cast<size_t>(std::to_chars(text, text + sizeof text, value).ptr - text));
    claims.push_back(',');
  };
  claims.push_back('{');
  member("iss", issuer_);
  member("aud", r.audience);
  integer("iat", now);
  integer("exp", now + core::kTxnTokenTtlSecondsDefault);
  member("txn", r.txn);
  member("sub", r.sub);
  member("scope", r.action);
  member("req_wl", r.agent);
  claims.append("\"tctx\":{");
  member("action", r.action);
  member("args_sha256", r.args_sha256);
  member("run", r.run);
  member("sid", r.sid);
  member("task", r.task);
  claims.append("\"chain\":[");
  for (size_t i = 0; i < r.chain.size(); ++i) {
    if (i > 0) claims.push_back(',');
    core::AppendJsonString(r.chain[i], &claims);
  }
  claims.append("]}}");
  return SignJwt(*keys_, kTxnTokenTyp, std::string_view(claims));
}

}  // namespace mandate::identity
