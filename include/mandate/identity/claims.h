// Claims: the payload of a Mandate session token (JWT access token, RFC 9068, with the RFC
// 8693 delegation claim "act"). The JSON form is specified in docs/formats/token.md:
//
//   { "iss": "https://mandate.example", "aud": "mandate", "sub": "alice",
//     "client_id": "orchestrator", "sid": "ses_...", "jti": "tok_...",
//     "act": { "sub": "agent:orchestrator", "sid": "ses_...", "act": { ...older actor... } },
//     "task": "SUP-123", "scope": "jira:get_issue jira:transition_issue",
//     "model": { "provider": "anthropic", "name": "claude-opus-4-5", "tier": "frontier" },
//     "cnf": { "jkt": "<RFC 7638 thumbprint>" },
//     "iat": 1767000000, "nbf": 1767000000, "exp": 1767000900 }
//
// Thread safety: Claims is a plain value; concurrent reads are safe. Verified claims are shared
// as std::shared_ptr<const Claims> and must not be modified.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/core/json.h"
#include "mandate/core/result.h"

namespace mandate::identity {

// The JWS header "typ" of a session token (RFC 9068) and of an approver token (a human
// approver's token for the approvals of the admin listener; docs/formats/token.md, "Approver
// tokens"). A verifier accepts exactly one of them (VerifierOptions::typ), so neither kind of
// token is ever accepted where the other is expected.
inline constexpr std::string_view kSessionTokenTyp = "at+jwt";
inline constexpr std::string_view kApproverTokenTyp = "approver+jwt";

// One actor of the delegation chain (RFC 8693 section 4.1): an agent session acting for sub.
struct Actor {
  std::string sub;  // e.g. "agent:orchestrator"; required, non-empty
  std::string sid;  // the actor's session id; may be empty (then omitted from JSON)
  bool operator==(const Actor&) const = default;
};

// The model an LLM-driven agent session declared (DESIGN.md section 5, context.session.model).
struct ModelInfo {
  std::string provider;  // e.g. "anthropic"; required
  std::string name;      // e.g. "claude-opus-4-5"; required
  std::string tier;      // e.g. "frontier"; may be empty (then omitted from JSON)
  bool operator==(const ModelInfo&) const = default;
};

struct Claims {
  std::string iss;               // issuer URL; required
  std::vector<std::string> aud;  // audiences; required, 1..kAudiencesMax; Mandate mints one
  std::string sub;               // the human on whose behalf; required
  std::string client_id;         // the agent (registered name); required
  std::string sid;               // this session's id; required
  std::string jti;               // this token's id; required
  // Delegation chain, outermost (= current actor) first, innermost (= first agent) last.
  // At most kActorChainEntriesMax entries; empty means no "act" claim.
  std::vector<Actor> act;
  std::string task;                // may be empty (then omitted from JSON)
  std::vector<std::string> scope;  // RFC 6749 scope tokens; at most kScopeEntriesMax
  std::optional<ModelInfo> model;
  std::optional<std::string> cnf_jkt;  // DPoP key binding (RFC 9449): JSON "cnf":{"jkt":..}
  int64_t iat = 0;                     // Unix seconds; required, >= 0
  int64_t nbf = 0;                     // Unix seconds; required, >= 0
  int64_t exp = 0;                     // Unix seconds; required, >= 0

  bool operator==(const Claims&) const = default;

  // True if `audience` is one of aud.
  bool HasAudience(std::string_view audience) const;
  // True if `scope_token` is one of scope (exact match).
  bool HasScope(std::string_view scope_token) const;

  // Checks the invariants above (required members non-empty, counts within limits, scope
  // tokens in the RFC 6749 character set, exp > nbf). Errors: kBadRequest naming the claim.
  core::Status Validate() const;

  // The JSON object, members in the order shown at the top of this file. "aud" is a string
  // when there is exactly one audience, an array otherwise; "scope" is space-separated and
  // omitted when empty; optional members are omitted when absent. Does not validate.
  core::Json ToJson() const;

  // Parses and validates a claims object. Types are checked strictly: a claim of the wrong
  // JSON type is an error, never coerced (e.g. "exp" must be an integer, "scope" a string,
  // "aud" a string or an array of strings). "act" is read iteratively and may nest at most
  // kActorChainEntriesMax deep. A "cnf" without a string "jkt" is refused, since a token
  // bound to a key by a method Mandate does not know must not be treated as unbound.
  // Members Mandate does not know are ignored (JWT convention) and not kept.
  // Errors: kBadRequest with a message naming the offending claim (never its value).
  static core::Result<Claims> FromJson(const core::Json& json);
};

}  // namespace mandate::identity
