#include "server/admin_api.h"

#include <algorithm>

#include <functional>

#include "server/sessions.h"
#include "server/ui_assets.h"

#include "mandate/audit/audit_log.h"
#include "mandate/core/check.h"
#include "mandate/core/crypto.h"
#include "mandate/core/limits.h"
#include "mandate/identity/jws_key.h"

namespace mandate::server {
namespace {

using core::ErrorCode;
using core::Json;

net::HttpResponse Ok(const Json& body, int status = 200) { return net::HttpResponse::Json(status, body.Dump()); }

// Reads an optional array of strings member. Errors name the member.
core::Result<std::vector<std::string>> StringList(const Json& body, std::string_view key) {
  std::vector<std::string> out;
  const Json* v = body.Find(key);
  if (v == nullptr || v->is_null()) return out;
  if (!v->is_array()) return core::MakeError(ErrorCode::kBadRequest, "\"" + std::string(key) + "\" must be an array of strings");
  for (const Json& e : v->as_array()) {
    if (!e.is_string()) return core::MakeError(ErrorCode::kBadRequest, "\"" + std::string(key) + "\" must be an array of strings");
    out.push_back(e.as_string());
  }
  return out;
}


Json SessionJson(const store::Session& s) {
  Json j = Json::MakeObject();
  j.Set("sid", s.sid);
  j.Set("parent_sid", s.parent_sid.empty() ? Json() : Json(s.parent_sid));
  j.Set("root_sid", s.root_sid);
  j.Set("agent", s.agent);
  j.Set("human", s.human);
  j.Set("task", s.task);
  j.Set("scope", core::Json::StringArray(s.scope));
  j.Set("model", s.model);
  j.Set("depth", static_cast<int64_t>(s.depth));
  j.Set("created_at", s.created_at);
  j.Set("expires_at", s.expires_at);
  j.Set("revoked_at", s.revoked_at ? Json(*s.revoked_at) : Json());
  if (!s.dpop_jkt.empty()) j.Set("dpop_jkt", s.dpop_jkt);
  return j;
}

// Decodes one percent-encoded path segment (RFC 3986; '+' is a plus). Errors (kBadRequest): a
// malformed escape, or a decoded '/' or NUL.
core::Result<std::string> DecodePathSegment(std::string_view segment) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < segment.size(); ++i) {
    if (segment[i] == '/') return core::MakeError(ErrorCode::kBadRequest, "a name in the path must not contain / or NUL");
    if (segment[i] != '%') {
      out.push_back(segment[i]);
      continue;
    }
    const int hi = i + 2 < segment.size() ? hex(segment[i + 1]) : -1;
    const int lo = hi >= 0 ? hex(segment[i + 2]) : -1;
    if (lo < 0) return core::MakeError(ErrorCode::kBadRequest, "malformed percent escape in the path");
    const char c = static_cast<char>(hi * 16 + lo);
    if (c == '/' || c == '\0') return core::MakeError(ErrorCode::kBadRequest, "a name in the path must not contain / or NUL");
    out.push_back(c);
    i += 2;
  }
  return out;
}

bool IsApprovalsPath(const std::string& p) {
  return p == "/admin/v1/approvals" || p.rfind("/admin/v1/approvals/", 0) == 0;
}

// A scope entry is "*", "<upstream>:*" or "<upstream>:<tool>" naming a configured upstream.
core::Status ValidateScope(const std::string& s, const std::vector<std::string>& upstreams) {
  if (s == "*") return core::OkStatus();
  auto colon = s.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size() || s.size() > 2 * core::kNameBytesMax) {
    return core::MakeError(ErrorCode::kBadRequest, "scope entry \"" + s + "\" must be *, <upstream>:* or <upstream>:<tool>");
  }
  std::string upstream = s.substr(0, colon);
  for (const auto& u : upstreams) {
    if (u == upstream) return core::OkStatus();
  }
  return core::MakeError(ErrorCode::kBadRequest, "scope entry \"" + s + "\" names no configured upstream");
}

}  // namespace

bool AdminApi::Authorized(const net::HttpRequest& req) const {
  const std::string* auth = req.Header("authorization");
  std::string_view presented;
  if (auth && auth->rfind("Bearer ", 0) == 0) presented = std::string_view(*auth).substr(7);
  return core::ConstantTimeEquals(presented, ctx_.admin_token);
}

core::Result<std::string> AdminApi::AuthenticateApprover(const net::HttpRequest& req) const {
  if (!IsApprovalsPath(req.path) || ctx_.approver_tokens == nullptr) {
    return core::MakeError(ErrorCode::kUnauthenticated,
                           "the admin API needs Authorization: Bearer <admin token> (an approver "
                           "token is accepted by /admin/v1/approvals only)");
  }
  const std::string* auth = req.Header("authorization");
  if (auth == nullptr || auth->rfind("Bearer ", 0) != 0) {
    return core::MakeError(ErrorCode::kUnauthenticated,
                           "the approvals API needs Authorization: Bearer <admin token or approver token>");
  }
  return ctx_.approver_tokens->Authenticate(std::string_view(*auth).substr(7));
}

net::HttpResponse AdminApi::Handle(const net::HttpRequest& req) {
  if (req.method == "GET" && req.path == "/healthz") return net::HttpResponse::Json(200, R"({"status":"ok"})");
  // The approvals page: static files without data, served to anyone (the page asks for a token).
  if (req.path == "/ui" || req.path.rfind("/ui/", 0) == 0) return ServeUiAsset(req.method, req.path);
  // Set when an approver token (not the admin token) authenticated the request.
  // Invariant: then the request is for the approvals endpoints (AuthenticateApprover).
  std::optional<std::string> approver;
  if (!Authorized(req)) {
    auto who = AuthenticateApprover(req);
    if (!who.ok()) {
      auto r = net::HttpResponse::Error(who.error());
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      return r;
    }
    approver = std::move(who).value();
    MANDATE_CHECK(IsApprovalsPath(req.path));
  }
  Json body = Json::MakeObject();
  if (req.method == "POST" && !req.body.empty()) {  // an empty body reads as {}
    auto parsed = Json::Parse(req.body, core::kHttpRequestBodyBytesMax);
    if (!parsed.ok())
      return net::HttpResponse::Error(ErrorCode::kBadRequest, parsed.error().message);
    if (!parsed->is_object())
      return net::HttpResponse::Error(ErrorCode::kBadRequest,
                                      "the request body must be a JSON object");
    body = std::move(parsed).value();
  }
  const std::string& p = req.path;
  if (p == "/admin/v1/humans") {
    if (req.method == "POST") return PostHuman(body);
    if (req.method == "GET") {
      auto list = ctx_.store->ListHumans();
      if (!list.ok()) return net::HttpResponse::Error(list.error());
      Json arr = Json::MakeArray();
      for (const auto& h : *list) {
        Json j = Json::MakeObject();
        j.Set("name", h.name);
        j.Set("groups", core::Json::StringArray(h.groups));
        arr.Push(std::move(j));
      }
      Json out = Json::MakeObject();
      out.Set("humans", std::move(arr));
      return Ok(out);
    }
  } else if (p.rfind("/admin/v1/humans/", 0) == 0 && p.size() > 32 &&
             p.compare(p.size() - 15, 15, "/approver-token") == 0) {
    if (req.method != "POST")
      return net::HttpResponse::Error(ErrorCode::kBadRequest, "use POST to mint an approver token");
    auto human = DecodePathSegment(std::string_view(p).substr(17, p.size() - 17 - 15));
    if (!human.ok()) return net::HttpResponse::Error(human.error());
    return PostApproverToken(*human, body);
  } else if (p == "/admin/v1/agents") {
    if (req.method == "POST") return PostAgent(body);
    if (req.method == "GET") {
      auto list = ctx_.store->ListAgents();
      if (!list.ok()) return net::HttpResponse::Error(list.error());
      Json arr = Json::MakeArray();
      for (const auto& a : *list) {
        Json j = Json::MakeObject();
        j.Set("name", a.name);
        j.Set("owner", a.owner);
        j.Set("groups", core::Json::StringArray(a.groups));
        arr.Push(std::move(j));
      }
      Json out = Json::MakeObject();
      out.Set("agents", std::move(arr));
      return Ok(out);
    }
  } else if (p == "/admin/v1/sessions") {
    if (req.method == "POST") return PostSession(body);
    if (req.method == "GET") return GetSessions("");
  } else if (p.rfind("/admin/v1/sessions/", 0) == 0 && req.method == "GET") {
    return GetSessions(p.substr(std::string_view("/admin/v1/sessions/").size()));
  } else if (p == "/admin/v1/revocations" && req.method == "POST") {
    return PostRevocation(body);
  } else if (p == "/admin/v1/policies/explain" && req.method == "POST") {
    return PostExplain(body);
  } else if (p == "/admin/v1/keys" && req.method == "GET") {
    return GetKeys();
  } else if (p.rfind("/admin/v1/plans/", 0) == 0 && req.method == "GET") {
    const std::string_view id = std::string_view(p).substr(std::string_view("/admin/v1/plans/").size());
    auto shown = ctx_.show_plan ? ctx_.show_plan(id) : std::nullopt;
    if (!shown) return net::HttpResponse::Error(ErrorCode::kNotFound, "no plan " + std::string(id));
    return Ok(*shown);
  } else if (p == "/admin/v1/approvals" || p.rfind("/admin/v1/approvals/", 0) == 0) {
    return HandleApprovals(req, p.substr(std::string_view("/admin/v1/approvals").size()), body,
                           approver ? &*approver : nullptr);
  } else if (p == "/admin/v1/budgets" && req.method == "GET") {
    if (!ctx_.budget_usage) {
      Json none = Json::MakeObject();
      none.Set("budgets", Json::MakeArray());
      return Ok(none);
    }
    return Ok(ctx_.budget_usage());
  } else if (p == "/admin/v1/upstreams" && req.method == "GET") {
    if (!ctx_.upstream_health) {
      Json none = Json::MakeObject();
      none.Set("upstreams", Json::MakeArray());
      return Ok(none);
    }
    return Ok(ctx_.upstream_health());
  } else if (p == "/admin/v1/keys/rotate" && req.method == "POST") {
    return PostKeysRotate();
  } else if (p == "/admin/v1/policies/schema" && req.method == "GET") {
    return GetPolicySchema();
  } else if (p == "/admin/v1/policies/reload" && req.method == "POST") {
    if (!ctx_.reload_policies)
      return net::HttpResponse::Error(ErrorCode::kNotFound, "policy reload is not available");
    Json out = ctx_.reload_policies();
    // A rejected set is the operator's error to fix: 400 with the reason, the old set active.
    if (out.GetString("status") == "rejected")
      return net::HttpResponse::Error(ErrorCode::kBadRequest, out.GetString("error"));
    return Ok(out);
  } else if (p == "/admin/v1/audit" && req.method == "GET") {
    return GetAudit(req);
  } else if (p == "/admin/v1/audit/replay" && req.method == "GET") {
    return GetAuditReplay(req);
  } else if (p == "/admin/v1/audit/export" && req.method == "GET") {
    return BufferedExport(req);
  } else if (p == "/admin/v1/audit" || p == "/admin/v1/audit/replay" || p == "/admin/v1/audit/export") {
    // Another method: 405 below.
  } else {
    return net::HttpResponse::Error(ErrorCode::kNotFound, "no admin endpoint " + p);
  }
  auto r = net::HttpResponse::Error(ErrorCode::kBadRequest,
                                    "method " + req.method + " not allowed on " + p);
  r.status = 405;
  return r;
}

net::HttpResponse AdminApi::PostHuman(const Json& body) {
  auto groups = StringList(body, "groups");
  if (!groups.ok()) return net::HttpResponse::Error(groups.error());
  store::Human h;
  h.name = body.GetString("name");
  h.groups = *groups;
  h.created_at = ctx_.clock->NowUnixSeconds();
  if (auto st = ctx_.store->PutHuman(h); !st.ok()) return net::HttpResponse::Error(st.error());
  auto stored = ctx_.store->GetHuman(h.name);
  if (!stored.ok()) return net::HttpResponse::Error(stored.error());
  ctx_.directory->PutHuman(stored->name, stored->groups);
  Json out = Json::MakeObject();
  out.Set("name", stored->name);
  out.Set("groups", core::Json::StringArray(stored->groups));
  return Ok(out);
}

// POST /admin/v1/humans/<H>/approver-token {"ttl_seconds"?}: a token with which H lists and
// decides approvals as themselves (server/approver_tokens.h).
net::HttpResponse AdminApi::PostApproverToken(const std::string& human, const Json& body) {
  if (ctx_.approver_tokens == nullptr)
    return net::HttpResponse::Error(ErrorCode::kNotFound, "approver tokens are not available");
  std::optional<int64_t> ttl;
  if (const Json* t = body.Find("ttl_seconds"); t != nullptr && !t->is_null()) {
    if (!t->is_int())
      return net::HttpResponse::Error(ErrorCode::kBadRequest,
                                      "\"ttl_seconds\" must be a positive integer");
    ttl = t->as_int();
  }
  auto minted = ctx_.approver_tokens->Mint(human, ttl);
  if (!minted.ok()) return net::HttpResponse::Error(minted.error());
  Json out = Json::MakeObject();
  out.Set("token", minted->token);
  out.Set("human", minted->human);
  out.Set("sid", minted->sid);
  out.Set("expires_at", minted->expires_at);
  return Ok(out, 201);
}

net::HttpResponse AdminApi::PostAgent(const Json& body) {
  auto groups = StringList(body, "groups");
  if (!groups.ok()) return net::HttpResponse::Error(groups.error());
  store::Agent a;
  a.name = body.GetString("name");
  a.owner = body.GetString("owner");
  a.groups = *groups;
  a.created_at = ctx_.clock->NowUnixSeconds();
  if (auto st = ctx_.store->PutAgent(a); !st.ok()) return net::HttpResponse::Error(st.error());
  auto stored = ctx_.store->GetAgent(a.name);
  if (!stored.ok()) return net::HttpResponse::Error(stored.error());
  ctx_.directory->PutAgent(stored->name, stored->owner, stored->groups);
  Json out = Json::MakeObject();
  out.Set("name", stored->name);
  out.Set("owner", stored->owner);
  out.Set("groups", core::Json::StringArray(stored->groups));
  return Ok(out);
}

net::HttpResponse AdminApi::PostSession(const Json& body) {
  const std::string agent = body.GetString("agent");
  const std::string human = body.GetString("human");
  const std::string task = body.GetString("task");
  if (agent.empty() || human.empty())
    return net::HttpResponse::Error(ErrorCode::kBadRequest, "\"agent\" and \"human\" are required");
  auto agent_rec = ctx_.store->GetAgent(agent);
  if (!agent_rec.ok()) return net::HttpResponse::Error(agent_rec.error());
  auto human_rec = ctx_.store->GetHuman(human);
  if (!human_rec.ok()) return net::HttpResponse::Error(human_rec.error());
  auto scope = StringList(body, "scope");
  if (!scope.ok()) return net::HttpResponse::Error(scope.error());
  if (scope->empty()) scope->push_back("*");
  if (scope->size() > core::kScopeEntriesMax)
    return net::HttpResponse::Error(ErrorCode::kBadRequest, "too many scope entries");
  for (const auto& s : *scope) {
    if (auto st = ValidateScope(s, ctx_.upstream_names); !st.ok())
      return net::HttpResponse::Error(st.error());
  }
  const Json* ttl_json = body.Find("ttl_seconds");
  int64_t ttl = ctx_.config->tokens.ttl_seconds;
  if (ttl_json != nullptr) {
    if (!ttl_json->is_int() || ttl_json->as_int() <= 0)
      return net::HttpResponse::Error(ErrorCode::kBadRequest,
                                      "\"ttl_seconds\" must be a positive integer");
    ttl = ttl_json->as_int();
  }
  if (ttl > ctx_.config->tokens.max_ttl_seconds) {
    return net::HttpResponse::Error(
        ErrorCode::kBadRequest, "ttl exceeds tokens.max_ttl (" +
                                    std::to_string(ctx_.config->tokens.max_ttl_seconds) + " s)");
  }
  SessionGrant grant;
  grant.agent = agent;
  grant.human = human;
  grant.task = task;
  grant.scope = std::move(scope).value();
  grant.ttl_seconds = ttl;
  const Json* model = body.Find("model");
  if (model != nullptr && !model->is_null()) {
    if (!model->is_object() || model->GetString("provider").empty() || model->GetString("name").empty()) {
      return net::HttpResponse::Error(ErrorCode::kBadRequest,
                                      "\"model\" must be {provider, name, tier}");
    }
    grant.model = identity::ModelInfo{model->GetString("provider"), model->GetString("name"), model->GetString("tier")};
  }
  // DPoP (RFC 9449): the instance's public key binds the session to it (cnf.jkt, its RFC 7638
  // thumbprint). FromPublicJwk checks the key (type, curve, point) and refuses a private one.
  if (const Json* jwk = body.Find("dpop_jwk"); jwk != nullptr && !jwk->is_null()) {
    auto key = identity::JwsKey::FromPublicJwk(*jwk);
    if (!key.ok())
      return net::HttpResponse::Error(ErrorCode::kBadRequest,
                                      "\"dpop_jwk\": " + key.error().message);
    grant.dpop_jkt = (*key)->kid();
  }
  auto minted = MintSession(grant, SessionDeps{ctx_.config, ctx_.clock, ctx_.store, ctx_.issuer, ctx_.pipeline, ctx_.revocations});
  if (!minted.ok()) return net::HttpResponse::Error(minted.error());
  Json out = Json::MakeObject();
  out.Set("token", minted->token);
  out.Set("sid", minted->sid);
  out.Set("expires_at", minted->expires_at);
  // As in an OAuth token response (RFC 9449 section 5): how the token is presented.
  out.Set("token_type", grant.dpop_jkt.empty() ? "Bearer" : "DPoP");
  if (!grant.dpop_jkt.empty()) out.Set("dpop_jkt", grant.dpop_jkt);
  return Ok(out, 201);
}

net::HttpResponse AdminApi::GetSessions(const std::string& sid) {
  if (!sid.empty()) {
    auto s = ctx_.store->GetSession(sid);
    if (!s.ok()) return net::HttpResponse::Error(s.error());
    // The session with its delegation subtree: "children" (direct child sids) and
    // "delegations" (each child's session with its own delegations, recursively). Bounded by
    // the delegation depth limit and kSessionTreeNodesMax sessions ("truncated" when cut).
    size_t nodes = 0;
    bool truncated = false;
    std::function<core::Result<Json>(const store::Session&, size_t)> tree =
        [&](const store::Session& at, size_t depth) -> core::Result<Json> {
      Json j = SessionJson(at);
      MANDATE_ASSIGN_OR_RETURN(auto children, ctx_.store->ListChildren(at.sid));
      Json sids = Json::MakeArray();
      Json subtree = Json::MakeArray();
      for (const auto& ch : children) {
        sids.Push(ch.sid);
        if (depth >= core::kDelegationDepthMax || ++nodes > core::kSessionTreeNodesMax) {
          truncated = true;
          continue;
        }
        MANDATE_ASSIGN_OR_RETURN(Json sub, tree(ch, depth + 1));
        subtree.Push(std::move(sub));
      }
      j.Set("children", std::move(sids));
      j.Set("delegations", std::move(subtree));
      return j;
    };
    auto j = tree(*s, 0);
    if (!j.ok()) return net::HttpResponse::Error(j.error());
    j->Set("truncated", truncated);
    return Ok(*j);
  }
  auto list = ctx_.store->ListSessions(core::kStoreListLimitMax, 0);
  if (!list.ok()) return net::HttpResponse::Error(list.error());
  Json arr = Json::MakeArray();
  for (const auto& s : *list) arr.Push(SessionJson(s));
  Json out = Json::MakeObject();
  out.Set("sessions", std::move(arr));
  return Ok(out);
}

net::HttpResponse AdminApi::PostRevocation(const Json& body) {
  auto kind = revocation::KindFromName(body.GetString("kind"));
  if (!kind)
    return net::HttpResponse::Error(ErrorCode::kBadRequest,
                                    "\"kind\" must be session, agent, human or task");
  const std::string subject = body.GetString("subject");
  if (subject.empty())
    return net::HttpResponse::Error(ErrorCode::kBadRequest, "\"subject\" is required");
  const std::string reason = body.GetString("reason", "revoked by an operator");
  const int64_t now = ctx_.clock->NowUnixSeconds();
  auto affected = ctx_.revocations->Revoke(*ctx_.store, *kind, subject, reason, now);
  if (!affected.ok()) return net::HttpResponse::Error(affected.error());
  // Effective for the next decision already; calls waiting on an upstream stop now.
  const size_t cancelled = ctx_.pipeline->CancelRevoked();
  Json rec = Json::MakeObject();
  rec.Set("type", "session.revoked");
  if (*kind == revocation::Kind::kSession) {
    // A session revocation belongs to its run: replay and the audit index find it there.
    if (auto s = ctx_.store->GetSession(subject); s.ok()) {
      rec.Set("run", s->root_sid);
      rec.Set("sid", subject);
    }
  }
  rec.Set("kind", std::string(revocation::KindName(*kind)));
  rec.Set("subject", subject);
  rec.Set("reason", reason);
  rec.Set("sessions", core::Json::StringArray(*affected));
  // The revocation is already effective; a failed audit append is reported to the operator.
  auto appended = ctx_.pipeline->Record(std::move(rec));
  Json out = Json::MakeObject();
  out.Set("kind", std::string(revocation::KindName(*kind)));
  out.Set("subject", subject);
  out.Set("sessions", core::Json::StringArray(*affected));
  out.Set("cancelled_calls", static_cast<int64_t>(cancelled));
  out.Set("audited", appended.ok());
  return Ok(out);
}

// GET /admin/v1/approvals[?state=pending|all], GET /admin/v1/approvals/<id>,
// POST /admin/v1/approvals/<id>/approve {"as"}, POST /admin/v1/approvals/<id>/deny {"as","reason"}.
// With an approver token the approver is the token's human ("as" may be omitted, and must name
// that human if given), and only the approvals of the approver's groups are shown.
net::HttpResponse AdminApi::HandleApprovals(const net::HttpRequest& req, std::string_view rest,
                                            const Json& body, const std::string* approver) {
  if (ctx_.approvals == nullptr)
    return net::HttpResponse::Error(ErrorCode::kNotFound, "approvals are not available");
  // An approver sees the approvals of the groups they belong to and nothing else.
  const std::optional<std::vector<std::string>> approver_groups =
      approver ? ctx_.directory->HumanGroups(*approver) : std::nullopt;
  auto visible = [&](const Json& a) {
    if (approver == nullptr) return true;
    if (!approver_groups) return false;
    return std::find(approver_groups->begin(), approver_groups->end(), a.GetString("group")) !=
           approver_groups->end();
  };
  if (rest.empty() || rest == "/") {
    if (req.method != "GET")
      return net::HttpResponse::Error(ErrorCode::kBadRequest, "use GET to list approvals");
    const bool all = req.target.find("state=all") != std::string::npos;
    const auto filter = all ? approval::ListFilter::kAll : approval::ListFilter::kPending;
    if (approver == nullptr) return Ok(ctx_.approvals->List(filter, core::kAdminApprovalsPageMax));
    // The book holds at most kApprovalsPendingMax + kApprovalsDecidedMax: filter all, then page.
    Json listed = ctx_.approvals->List(filter, 0);
    Json page = Json::MakeArray();
    bool truncated = false;
    if (const Json* items = listed.FindArray("approvals")) {
      for (const Json& a : items->as_array()) {
        if (!visible(a)) continue;
        if (page.as_array().size() == core::kAdminApprovalsPageMax) {
          truncated = true;
          break;
        }
        page.Push(a);
      }
    }
    Json out = Json::MakeObject();
    out.Set("approvals", std::move(page));
    out.Set("truncated", truncated);
    out.Set("approver", *approver);
    return Ok(out);
  }
  rest.remove_prefix(1);
  const size_t slash = rest.find('/');
  const std::string id(rest.substr(0, slash));
  const std::string_view verb = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  if (verb.empty()) {
    if (req.method != "GET")
      return net::HttpResponse::Error(ErrorCode::kBadRequest, "use GET to show an approval");
    auto one = ctx_.approvals->Get(id);
    if (!one || !visible(*one))
      return net::HttpResponse::Error(ErrorCode::kNotFound, "no approval " + id);
    return Ok(*one);
  }
  if (req.method != "POST" || (verb != "approve" && verb != "deny")) {
    return net::HttpResponse::Error(ErrorCode::kNotFound, "unknown approvals endpoint");
  }
  auto current = ctx_.approvals->Get(id);
  if (!current || !visible(*current))
    return net::HttpResponse::Error(ErrorCode::kNotFound, "no approval " + id);
  // The approver: the approver token's human, or "as" with the admin token. Then one decision
  // path for both: a registered human of the human group named like the approval group, and
  // the book enforces exclude_requester.
  std::string as = body.GetString("as");
  if (approver != nullptr) {
    if (!as.empty() && as != *approver) {
      return net::HttpResponse::Error(
          ErrorCode::kPolicyDenied,
          "this approver token is " + *approver + "'s: it cannot act as " + as);
    }
    as = *approver;
  }
  if (as.empty())
    return net::HttpResponse::Error(ErrorCode::kBadRequest,
                                    "\"as\" (the approving human) is required");
  const std::string group = current->GetString("group");
  auto groups = ctx_.directory->HumanGroups(as);
  if (!groups) return net::HttpResponse::Error(ErrorCode::kNotFound, "unknown human " + as);
  if (std::find(groups->begin(), groups->end(), group) == groups->end()) {
    return net::HttpResponse::Error(
        ErrorCode::kPolicyDenied,
        as + " is not in group " + group + " and cannot decide its approvals");
  }
  auto vote = verb == "approve" ? ctx_.approvals->Approve(id, as)
                                : ctx_.approvals->Deny(id, as, body.GetString("reason", "denied by " + as));
  if (!vote.ok()) return net::HttpResponse::Error(vote.error());
  if (ctx_.on_approval_decided) ctx_.on_approval_decided(id);  // a plan may start or end
  Json out = Json::MakeObject();
  out.Set("id", vote->id);
  out.Set("state", std::string(approval::ApprovalStateName(vote->state)));
  out.Set("approvers", Json::StringArray(vote->approvers));
  out.Set("min_approvers", static_cast<int64_t>(vote->min_approvers));
  out.Set("counted", vote->counted);
  return Ok(out);
}

net::HttpResponse AdminApi::GetKeys() {
  if (ctx_.keys == nullptr)
    return net::HttpResponse::Error(ErrorCode::kNotFound, "no signing keys");
  Json arr = Json::MakeArray();
  for (const auto& k : ctx_.keys->List()) {
    Json j = Json::MakeObject();
    j.Set("kid", k.kid);
    j.Set("alg", std::string(identity::AlgName(k.alg)));
    j.Set("active", k.active);
    j.Set("retires_at", k.retires_at ? Json(*k.retires_at) : Json());
    arr.Push(std::move(j));
  }
  Json out = Json::MakeObject();
  out.Set("keys", std::move(arr));
  return Ok(out);
}

// A new signing key of the configured algorithm signs from now on; the previous one verifies
// until every token it can have signed has expired (max_ttl + clock skew), then retires.
net::HttpResponse AdminApi::PostKeysRotate() {
  if (ctx_.keys == nullptr)
    return net::HttpResponse::Error(ErrorCode::kNotFound, "no signing keys");
  const identity::Alg alg = ctx_.config->tokens.alg == TokenAlg::kES256 ? identity::Alg::kES256 : identity::Alg::kEdDSA;
  auto r = ctx_.keys->Rotate(alg, ctx_.config->tokens.max_ttl_seconds + core::kTokenClockSkewSeconds);
  if (!r.ok()) return net::HttpResponse::Error(r.error());
  if (ctx_.on_keys_rotated) ctx_.on_keys_rotated();
  Json rec = Json::MakeObject();
  rec.Set("type", "key.rotated");
  rec.Set("kid", r->kid);
  rec.Set("alg", std::string(identity::AlgName(alg)));
  rec.Set("previous_kid", r->previous_kid);
  rec.Set("previous_retires_at", r->previous_retires_at);
  // The rotation is already in force; a failed audit append is reported to the operator.
  auto appended = ctx_.pipeline->Record(std::move(rec));
  Json out = Json::MakeObject();
  out.Set("kid", r->kid);
  out.Set("alg", std::string(identity::AlgName(alg)));
  out.Set("previous_kid", r->previous_kid);
  out.Set("previous_retires_at", r->previous_retires_at);
  out.Set("audited", appended.ok());
  return Ok(out);
}

// Decides a hypothetical call exactly as the pipeline would for a session of `agent` acting
// for `for` with `scope` (default "*"), without a token, a session, an audit record or an
// upstream call: the decision record with every principal's determining policies.
net::HttpResponse AdminApi::PostExplain(const Json& body) {
  const std::string agent = body.GetString("agent");
  const std::string human = body.GetString("for");
  const std::string action_id = body.GetString("action");
  if (agent.empty() || human.empty() || action_id.empty()) {
    return net::HttpResponse::Error(ErrorCode::kBadRequest,
                                    "\"agent\", \"for\" and \"action\" are required");
  }
  if (!ctx_.directory->AgentGroups(agent))
    return net::HttpResponse::Error(ErrorCode::kNotFound, "no agent named \"" + agent + "\"");
  if (!ctx_.directory->HumanGroups(human))
    return net::HttpResponse::Error(ErrorCode::kNotFound, "no human named \"" + human + "\"");
  const auto colon = action_id.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == action_id.size()) {
    return net::HttpResponse::Error(ErrorCode::kBadRequest, "\"action\" must be <upstream>:<tool>");
  }
  Json args = Json::MakeObject();
  if (const Json* a = body.Find("args"); a != nullptr && !a->is_null()) {
    if (!a->is_object())
      return net::HttpResponse::Error(ErrorCode::kBadRequest, "\"args\" must be a JSON object");
    args = *a;
  }
  auto scope = StringList(body, "scope");
  if (!scope.ok()) return net::HttpResponse::Error(scope.error());
  if (scope->empty()) scope->push_back("*");
  if (scope->size() > core::kScopeEntriesMax)
    return net::HttpResponse::Error(ErrorCode::kBadRequest, "too many scope entries");
  if (!ctx_.action_for)
    return net::HttpResponse::Error(ErrorCode::kNotFound,
                                    "no adapter can describe action \"" + action_id + "\"");
  auto action = ctx_.action_for(std::string_view(action_id).substr(0, colon),
                                std::string_view(action_id).substr(colon + 1), std::move(args));
  if (!action.ok()) return net::HttpResponse::Error(action.error());

  auto claims = std::make_shared<identity::Claims>();
  claims->sub = human;
  claims->client_id = agent;
  claims->sid = "explain";
  claims->scope = std::move(scope).value();
  gateway::Caller caller;
  caller.claims = std::move(claims);
  caller.chain = {agent};
  core::Decision d = ctx_.pipeline->Decide(caller, *action);
  Json out = d.ToJson();
  out.Set("class", std::string(core::ActionClassName(action->cls)));
  out.Set("agent", agent);
  out.Set("for", human);
  return Ok(out);
}

// GET /admin/v1/policies/schema: {"source": SchemaSource::ToJson(), "schema": the Cedar JSON
// schema, "notes": [what is not validated], "tools": the number of tool actions}. Asking each
// upstream for its tools may take up to an upstream's timeout when one hangs (lists are cached
// once fetched).
net::HttpResponse AdminApi::GetPolicySchema() {
  if (!ctx_.policy_schema_source)
    return net::HttpResponse::Error(ErrorCode::kNotFound, "the policy schema is not available");
  policy::SchemaSource source = ctx_.policy_schema_source();
  auto schema = policy::Schema::Build(source);
  if (!schema.ok()) return net::HttpResponse::Error(ErrorCode::kInternal, schema.error().message);
  Json out = Json::MakeObject();
  out.Set("source", source.ToJson());
  out.Set("schema", schema->ToCedarJson());
  out.Set("notes", Json::StringArray(schema->notes()));
  out.Set("tools", static_cast<int64_t>(schema->tool_count()));
  return Ok(out);
}

}  // namespace mandate::server
