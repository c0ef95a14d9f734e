// Delegation by OAuth 2.0 Token Exchange (RFC 8693) at POST /oauth/token on the agent
// listener (DESIGN.md section 4). A parent session exchanges its token for a child session's:
//
//   grant_type=urn:ietf:params:oauth:grant-type:token-exchange
//   subject_token=<the parent's session token>
//   subject_token_type=urn:ietf:params:oauth:token-type:access_token (or ...:jwt)
//   audience=<the child agent's registered name>
//   scope=<space-separated subset of the parent's scope>   (optional: the parent's scope)
//
// The child session's token has the nested act chain (the child outermost), the requested
// scope (refused with invalid_scope if the parent does not hold all of it), an expiry no
// later than the parent's, and a depth (hops below the root) of at most
// tokens.max_delegation_depth. The parent must be permitted Action::"mandate:delegate" on
// Agent::"<child>" for the human and every agent of its chain (policy).
// Without `audience` the exchange is a refresh: a new token for the subject token's own
// session (same sid and chain, the same or a narrower scope), expiring no later than the
// run's maximum lifetime (its root session's creation + tokens.max_ttl); audited as
// `session.refreshed`.
// DPoP (RFC 9449 section 5): a request with a `DPoP` proof (htm POST, htu the token endpoint,
// no `ath`) gets a token bound to the proof's key (`cnf.jkt`, token_type "DPoP"); a DPoP-bound
// subject token is accepted only with a proof of its own key, so a delegated child of a bound
// parent is bound to the parent's key, and a bound session's refresh stays bound. A refresh
// cannot bind an unbound session (invalid_request). A missing or failing proof is
// `invalid_dpop_proof`. Every refusal is the
// OAuth error JSON {"error","error_description"} with HTTP 400 (500 server_error when the
// audit log cannot record the new session), and is audited as `session.delegation_refused`; a success is `session.delegated`.
//
// Thread safety: Handle may be called concurrently; dependencies are not owned.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/net/http.h"
#include "server/sessions.h"

namespace mandate::server {

class TokenExchange {
 public:
  // `upstream_names` validates scope entries.
  TokenExchange(SessionDeps deps, std::vector<std::string> upstream_names)
      : deps_(deps), upstream_names_(std::move(upstream_names)) {}

  net::HttpResponse Handle(const net::HttpRequest& request) const;

 private:
  // `has_proof`: the request carried a (verified) DPoP proof.
  net::HttpResponse Refresh(const gateway::Caller& caller, const std::string& scope, bool has_proof) const;
  // Audits the refusal (with the asking session's run, sid, agent and human when `caller`
  // is known) and answers the OAuth error.
  net::HttpResponse Refuse(int status, std::string_view error, const std::string& description,
                           const std::string& parent_sid, const std::string& audience,
                           const gateway::Caller* caller = nullptr) const;

  SessionDeps deps_;
  std::vector<std::string> upstream_names_;
};

}  // namespace mandate::server
