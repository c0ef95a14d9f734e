#include "server/token_exchange.h"

#include <algorithm>
#include <map>

#include "mandate/core/crypto.h"
#include "mandate/core/error_code.h"
#include "mandate/net/form.h"

namespace mandate::server {
namespace {

constexpr std::string_view kGrantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange";
constexpr std::string_view kTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token";
constexpr std::string_view kTypeJwt = "urn:ietf:params:oauth:token-type:jwt";

std::vector<std::string> SplitScope(const std::string& s) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find(' ', pos);
    if (end == std::string::npos) end = s.size();
    if (end > pos) out.push_back(s.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

std::string JoinScope(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : " ") + s;
  return out;
}

}  // namespace

net::HttpResponse TokenExchange::Refuse(int status, std::string_view error, const std::string& description,
                                        const std::string& parent_sid, const std::string& audience,
                                        const gateway::Caller* caller) const {
  core::Json rec = core::Json::MakeObject();
  rec.Set("type", "session.delegation_refused");
  if (caller != nullptr) {
    // The asking session's run, so the refusal shows in its replay.
    rec.Set("run", caller->run());
    rec.Set("sid", caller->sid());
    rec.Set("agent", caller->agent());
    rec.Set("human", caller->human());
  }
  rec.Set("error", std::string(error));
  rec.Set("reason", description);
  rec.Set("parent_sid", parent_sid.empty() ? core::Json() : core::Json(parent_sid));
  rec.Set("audience", audience);
  (void)deps_.pipeline->Record(std::move(rec));  // best effort: the refusal stands either way
  core::Json body = core::Json::MakeObject();
  body.Set("error", std::string(error));
  body.Set("error_description", description);
  net::HttpResponse r = net::HttpResponse::Json(status, body.Dump());
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

// A new token for the caller's own session: same sid, chain, task and model; the requested
// scope (default: the current one) must be inside the current one; the expiry is capped by
// the run's maximum lifetime, its root session's creation + tokens.max_ttl.
net::HttpResponse TokenExchange::Refresh(const gateway::Caller& caller, const std::string& scope_param,
                                         bool has_proof) const {
  // A session's DPoP binding is fixed when it starts (its row and every token of it agree): a
  // bound session's refresh carries a proof of its key (checked by AuthenticateSubjectToken)
  // and stays bound; an unbound session cannot be bound by a refresh.
  if (has_proof && !caller.claims->cnf_jkt) {
    return Refuse(400, "invalid_request",
                  "the session is not DPoP-bound and a refresh cannot bind it (start a bound session, or "
                  "delegate with a DPoP proof)",
                  caller.sid(), "", &caller);
  }
  auto root = deps_.store->GetSession(caller.run());
  if (!root.ok()) return Refuse(400, "invalid_request", "the session's run is unknown: " + root.error().message, caller.sid(), "", &caller);
  const int64_t now = deps_.clock->NowUnixSeconds();
  const int64_t cap = root->created_at + deps_.config->tokens.max_ttl_seconds;
  if (cap <= now) {
    return Refuse(400, "invalid_request", "the session has reached its maximum lifetime (tokens.max_ttl)", caller.sid(), "", &caller);
  }
  std::vector<std::string> scope = SplitScope(scope_param);
  if (scope.empty()) scope = caller.claims->scope;
  if (!gateway::ScopeCovers(caller.claims->scope, scope)) {
    return Refuse(400, "invalid_scope", "a refreshed token cannot widen the scope \"" + JoinScope(caller.claims->scope) + "\"",
                  caller.sid(), "", &caller);
  }
  identity::Claims c = *caller.claims;
  c.jti = core::NewId("tok");
  c.scope = scope;
  c.iat = now;
  c.nbf = now;
  c.exp = std::min(now + deps_.config->tokens.ttl_seconds, cap);
  auto token = deps_.issuer->Mint(c);
  if (!token.ok()) return Refuse(500, "server_error", token.error().message, caller.sid(), "", &caller);
  core::Json rec = core::Json::MakeObject();
  rec.Set("type", "session.refreshed");
  rec.Set("run", caller.run());
  rec.Set("sid", caller.sid());
  rec.Set("agent", caller.agent());
  rec.Set("human", caller.human());
  rec.Set("jti", c.jti);
  rec.Set("scope", core::Json::StringArray(scope));
  rec.Set("expires_at", c.exp);
  if (c.cnf_jkt) rec.Set("dpop_jkt", *c.cnf_jkt);
  if (auto st = deps_.pipeline->Record(std::move(rec)); !st.ok()) {
    return Refuse(500, "server_error", "the audit log cannot be written: " + st.error().message, caller.sid(), "", &caller);
  }
  core::Json out = core::Json::MakeObject();
  out.Set("access_token", *token);
  out.Set("issued_token_type", std::string(kTypeAccessToken));
  out.Set("token_type", c.cnf_jkt ? "DPoP" : "Bearer");  // RFC 9449 section 5
  out.Set("expires_in", c.exp - now);
  out.Set("scope", JoinScope(scope));
  out.Set("sid", caller.sid());
  net::HttpResponse r = net::HttpResponse::Json(200, out.Dump());
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

net::HttpResponse TokenExchange::Handle(const net::HttpRequest& req) const {
  const std::string* ctype = req.Header("content-type");
  if (ctype == nullptr || ctype->rfind("application/x-www-form-urlencoded", 0) != 0) {
    return Refuse(400, "invalid_request", "the body must be application/x-www-form-urlencoded", "", "");
  }
  auto form = net::ParseForm(req.body);
  if (!form.ok()) return Refuse(400, "invalid_request", "malformed form body: " + form.error().message, "", "");
  auto get = [&](const char* k) {
    auto it = form->find(k);
    return it == form->end() ? std::string() : it->second;
  };
  if (get("grant_type") != kGrantTokenExchange) {
    return Refuse(400, "unsupported_grant_type", "only grant_type=" + std::string(kGrantTokenExchange) + " is supported", "", "");
  }
  const std::string audience = get("audience");
  const std::string subject_token = get("subject_token");
  const std::string subject_type = get("subject_token_type");
  if (subject_token.empty()) return Refuse(400, "invalid_request", "subject_token is required", "", audience);
  if (subject_type != kTypeAccessToken && subject_type != kTypeJwt) {
    return Refuse(400, "invalid_request", "subject_token_type must be " + std::string(kTypeAccessToken), "", audience);
  }
  if (!get("actor_token").empty() || (form->count("requested_token_type") && get("requested_token_type") != kTypeAccessToken)) {
    return Refuse(400, "invalid_request", "actor_token and requested token types other than access_token are not supported", "", audience);
  }
  // The subject token, and the DPoP proof of the request if any (a bound subject token needs
  // one of its own key): RFC 9449 section 5, pipeline.h AuthenticateSubjectToken.
  auto parent = deps_.pipeline->AuthenticateSubjectToken(subject_token,
                                                         gateway::AgentRequest{req.method, req.target, &req.headers});
  if (!parent.ok()) {
    if (parent.error().code == core::ErrorCode::kDpopInvalid) {
      return Refuse(400, "invalid_dpop_proof", parent.error().message, "", audience);
    }
    return Refuse(400, "invalid_request",
                  "subject_token is not a valid session token: " + std::string(core::PublicCode(parent.error().code)) +
                      ": " + parent.error().message,
                  "", audience);
  }
  const gateway::Caller& caller = parent->caller;
  if (audience.empty()) return Refresh(caller, get("scope"), parent->proof.has_value());
  if (!deps_.store->GetAgent(audience).ok()) {
    return Refuse(400, "invalid_target", "no agent named \"" + audience + "\" is registered", caller.sid(), audience, &caller);
  }
  // Depth: hops below the root. The parent's chain has depth + 1 agents.
  const size_t child_depth = caller.chain.size();
  if (child_depth > deps_.config->tokens.max_delegation_depth) {
    return Refuse(400, "invalid_request",
                  "delegation deeper than tokens.max_delegation_depth (" +
                      std::to_string(deps_.config->tokens.max_delegation_depth) + ")",
                  caller.sid(), audience, &caller);
  }
  std::vector<std::string> scope = SplitScope(get("scope"));
  if (scope.empty()) scope = caller.claims->scope;
  if (scope.size() > core::kScopeEntriesMax) return Refuse(400, "invalid_scope", "too many scope entries", caller.sid(), audience, &caller);
  for (const auto& s : scope) {
    bool known = s == "*";
    const auto colon = s.find(':');
    if (!known && colon != std::string::npos && colon > 0 && colon + 1 < s.size()) {
      known = std::find(upstream_names_.begin(), upstream_names_.end(), s.substr(0, colon)) != upstream_names_.end();
    }
    if (!known) return Refuse(400, "invalid_scope", "scope entry \"" + s + "\" names no configured upstream", caller.sid(), audience, &caller);
  }
  if (!gateway::ScopeCovers(caller.claims->scope, scope)) {
    return Refuse(400, "invalid_scope",
                  "the requested scope \"" + JoinScope(scope) + "\" exceeds the parent's \"" + JoinScope(caller.claims->scope) + "\"",
                  caller.sid(), audience, &caller);
  }
  core::Decision d = deps_.pipeline->DecideDelegation(caller, audience);
  if (!d.allowed()) {
    return Refuse(400, "invalid_target", "policy does not permit this delegation: " + d.reason, caller.sid(), audience, &caller);
  }

  SessionGrant grant;
  grant.agent = audience;
  grant.human = caller.human();
  grant.task = caller.claims->task;
  grant.scope = std::move(scope);
  grant.ttl_seconds = deps_.config->tokens.ttl_seconds;
  grant.model = caller.claims->model;
  grant.parent = &caller;
  grant.parent_exp = caller.claims->exp;
  // RFC 9449 section 5: the issued token is bound to the key of the request's proof. For a
  // bound parent that proof is of the parent's own key, so the child shares its binding.
  if (parent->proof) grant.dpop_jkt = parent->proof->jkt;
  auto minted = MintSession(grant, deps_);
  if (!minted.ok()) {
    return Refuse(minted.error().code == core::ErrorCode::kInternal ? 500 : 400,
                  minted.error().code == core::ErrorCode::kInternal ? "server_error" : "invalid_request",
                  minted.error().message, caller.sid(), audience, &caller);
  }
  core::Json out = core::Json::MakeObject();
  out.Set("access_token", minted->token);
  out.Set("issued_token_type", std::string(kTypeAccessToken));
  out.Set("token_type", grant.dpop_jkt.empty() ? "Bearer" : "DPoP");  // RFC 9449 section 5
  out.Set("expires_in", std::max<int64_t>(0, minted->expires_at - deps_.clock->NowUnixSeconds()));
  out.Set("scope", JoinScope(grant.scope));
  out.Set("sid", minted->sid);
  net::HttpResponse r = net::HttpResponse::Json(200, out.Dump());
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

}  // namespace mandate::server
