// Transaction tokens (draft-ietf-oauth-transaction-tokens; DESIGN.md section 4): every call
// Mandate forwards can carry a short-lived JWT signed with Mandate's token key, so the upstream
// can verify, with Mandate's JWKS, who sent the call, on whose behalf, and for which action
// and arguments. Sent as the `Txn-Token` HTTP header (MCP over HTTP) or as
// params._meta["io.mandate/txn-token"] (MCP over stdio). Format: docs/formats/token.md,
// "Transaction tokens".
//
//   header   {"alg": "EdDSA"|"ES256", "typ": "txntoken+jwt", "kid": <active key>}
//   payload  {"iss": <tokens.issuer>, "aud": <the upstream's audience>, "iat", "exp" (iat +
//             kTxnTokenTtlSeconds), "txn": <the call's decision id>, "sub": <the human>,
//             "scope": <the action id>, "req_wl": <the calling agent>,
//             "tctx": {"action", "args_sha256", "run", "sid", "chain": [agents, first first],
//                      "task"}}
//
// Thread safety: Mint may be called concurrently.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/core/result.h"
#include "mandate/identity/signing_keys.h"

namespace mandate::identity {

inline constexpr std::string_view kTxnTokenTyp = "txntoken+jwt";

// What one forwarded call asserts.
struct TxnTokenRequest {
  std::string audience;     // the upstream's audience (required)
  std::string txn;          // the transaction id: the call's decision id (required)
  std::string sub;          // the human the agent acts for (required)
  std::string agent;        // the requesting workload (required)
  std::string action;       // "<upstream>:<tool>" (required): scope and tctx.action
  std::string args_sha256;  // of the canonical arguments (64 lowercase hex)
  std::string run;          // root session
  std::string sid;          // the calling session
  std::string task;
  std::vector<std::string> chain;  // agents of the delegation chain, first agent first
};

class TxnTokenIssuer {
 public:
  // `keys` is not owned and must outlive the issuer; `issuer` is tokens.issuer.
  TxnTokenIssuer(const SigningKeys& keys, std::string issuer) : keys_(&keys), issuer_(std::move(issuer)) {}

  // Signs a transaction token valid from `now_unix_seconds` for kTxnTokenTtlSeconds.
  // Errors: kBadRequest (a required member is empty, a member is not valid UTF-8 or longer
  // than kTxnTokenFieldBytesMax), kPayloadTooLarge (beyond kTokenBytesMax), kInternal
  // (signing failed).
  core::Result<std::string> Mint(const TxnTokenRequest& request, int64_t now_unix_seconds) const;

 private:
  const SigningKeys* keys_;
  std::string issuer_;
};

}  // namespace mandate::identity
