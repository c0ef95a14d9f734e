#include "server/sessions.h"

#include <algorithm>

#include "mandate/core/crypto.h"

namespace mandate::server {

core::Result<MintedSession> MintSession(const SessionGrant& g, const SessionDeps& deps) {
  const int64_t now = deps.clock->NowUnixSeconds();
  identity::Claims c;
  c.iss = deps.config->tokens.issuer;
  c.aud = {deps.config->tokens.audience};
  c.sub = g.human;
  c.client_id = g.agent;
  c.sid = core::NewId("ses");
  c.jti = core::NewId("tok");
  // act: the current actor outermost, then the parent's chain (RFC 8693 section 4.1).
  c.act = {identity::Actor{"agent:" + g.agent, c.sid}};
  if (g.parent != nullptr) c.act.insert(c.act.end(), g.parent->claims->act.begin(), g.parent->claims->act.end());
  c.task = g.task;
  c.scope = g.scope;
  c.model = g.model;
  c.iat = now;
  c.nbf = now;
  c.exp = now + g.ttl_seconds;
  if (g.parent != nullptr) c.exp = std::min(c.exp, g.parent_exp);  // never outlives its parent
  if (!g.dpop_jkt.empty()) c.cnf_jkt = g.dpop_jkt;
  MANDATE_RETURN_IF_ERROR(c.Validate());

  core::Json model = core::Json();
  if (c.model) {
    model = core::Json::MakeObject();
    model.Set("provider", c.model->provider);
    model.Set("name", c.model->name);
    model.Set("tier", c.model->tier);
  }
  store::Session s;
  s.sid = c.sid;
  s.parent_sid = g.parent ? g.parent->sid() : "";
  s.root_sid = g.parent ? g.parent->run() : c.sid;
  s.agent = g.agent;
  s.human = g.human;
  s.task = g.task;
  s.scope = c.scope;
  s.model = model;
  s.depth = g.parent ? static_cast<uint32_t>(g.parent->chain.size()) : 0;
  s.created_at = now;
  s.expires_at = c.exp;
  s.dpop_jkt = g.dpop_jkt;
  MANDATE_RETURN_IF_ERROR(deps.store->CreateSession(s));
  MANDATE_ASSIGN_OR_RETURN(std::string token, deps.issuer->Mint(c));

  core::Json rec = core::Json::MakeObject();
  rec.Set("type", g.parent ? "session.delegated" : "session.started");
  rec.Set("run", s.root_sid);
  rec.Set("sid", c.sid);
  if (g.parent) {
    rec.Set("parent_sid", g.parent->sid());
    std::vector<std::string> chain = g.parent->chain;
    chain.push_back(g.agent);
    rec.Set("chain", core::Json::StringArray(chain));
    rec.Set("depth", static_cast<int64_t>(s.depth));
  }
  rec.Set("agent", g.agent);
  rec.Set("human", g.human);
  rec.Set("task", g.task);
  rec.Set("scope", core::Json::StringArray(c.scope));
  rec.Set("model", model);
  rec.Set("jti", c.jti);
  rec.Set("expires_at", c.exp);
  if (!g.dpop_jkt.empty()) rec.Set("dpop_jkt", g.dpop_jkt);
  if (auto appended = deps.pipeline->Record(std::move(rec)); !appended.ok()) {
    (void)deps.revocations->Revoke(*deps.store, revocation::Kind::kSession, c.sid, "audit log unavailable", now);
    return core::MakeError(core::ErrorCode::kInternal, "the audit log cannot be written: " + appended.error().message);
  }
  return MintedSession{std::move(token), c.sid, c.jti, c.exp};
}

}  // namespace mandate::server
