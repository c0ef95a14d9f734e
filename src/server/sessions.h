// Minting a session: the store row, the signed token and the audit record, all or nothing.
// Shared by the admin API (`mandate session start`, a root session) and token exchange
// (`POST /oauth/token`, a delegated child session).
//
// Thread safety: MintSession may be called concurrently; dependencies are not owned.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "mandate/core/clock.h"
#include "mandate/core/json.h"
#include "mandate/core/result.h"
#include "mandate/gateway/pipeline.h"
#include "mandate/identity/claims.h"
#include "mandate/identity/token_issuer.h"
#include "mandate/revocation/revocation_set.h"
#include "mandate/store/store.h"
#include "server/config.h"

namespace mandate::server {

struct SessionDeps {
  const Config* config = nullptr;
  const core::Clock* clock = nullptr;
  store::Store* store = nullptr;
  const identity::TokenIssuer* issuer = nullptr;
  const gateway::Pipeline* pipeline = nullptr;
  revocation::RevocationSet* revocations = nullptr;
};

struct SessionGrant {
  std::string agent;                // registered
  std::string human;                // registered
  std::string task;
  std::vector<std::string> scope;   // validated by the caller
  int64_t ttl_seconds = 0;          // <= tokens.max_ttl
  std::optional<identity::ModelInfo> model;
  // For a delegated session: the parent, whose act chain the child extends and whose expiry
  // caps the child's. Null for a root session.
  const gateway::Caller* parent = nullptr;
  int64_t parent_exp = 0;
  // DPoP (RFC 9449): the RFC 7638 thumbprint of the instance key the session is bound to, put
  // in the token as cnf.jkt and in the session row; empty: an unbound (Bearer) session.
  std::string dpop_jkt;
};

struct MintedSession {
  std::string token;
  std::string sid;
  std::string jti;
  int64_t expires_at = 0;
};

// Creates the session row, mints its token and appends `session.started` (root) or
// `session.delegated` (child, with the parent's sid and the chain; both with `dpop_jkt` when
// the session is DPoP-bound). If the audit record cannot
// be written the session is revoked and kInternal returned: a session the log does not know
// must not exist. Errors: the store's (kConflict, kInternal), claim validation (kBadRequest),
// signing (kInternal).
core::Result<MintedSession> MintSession(const SessionGrant& grant, const SessionDeps& deps);

}  // namespace mandate::server
