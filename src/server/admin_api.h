// The admin API (DESIGN.md section 8, admin listener): humans, agents, sessions (minting
// tokens), revocations, the policies (explain, reload, schema) and the audit log (tail, query, replay and export: docs/formats/
// audit.md, "Query, replay and export"), behind the admin bearer token. The approvals
// endpoints also accept an approver token (server/approver_tokens.h), and then the approver
// is the token's human; the approvals page (/ui/, server/ui_assets.h) is static and public.
// Thread safety: Handle may be called concurrently; dependencies are not owned.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/core/clock.h"
#include "mandate/gateway/pipeline.h"
#include "mandate/identity/signing_keys.h"
#include "mandate/identity/token_issuer.h"
#include "mandate/net/http.h"
#include "mandate/policy/schema.h"
#include "mandate/revocation/revocation_set.h"
#include "mandate/store/store.h"
#include "server/approver_tokens.h"
#include "server/audit_indexer.h"
#include "server/config.h"

namespace mandate::server {

struct AdminContext {
  const Config* config = nullptr;
  std::string admin_token;
  const core::Clock* clock = nullptr;
  store::Store* store = nullptr;
  const identity::TokenIssuer* issuer = nullptr;
  revocation::RevocationSet* revocations = nullptr;
  gateway::Directory* directory = nullptr;
  const gateway::Pipeline* pipeline = nullptr;
  std::vector<std::string> upstream_names;
  // The Action a call of tool `tool` on upstream `upstream` with `args` would be decided as
  // (the adapter's translation). Errors: kNotFound, kBadRequest. Unset: explain answers 404.
  std::function<core::Result<core::Action>(std::string_view upstream, std::string_view tool, core::Json args)>
      action_for;
  // Reloads the policies directory now; answers PolicyReloader::Outcome::ToJson().
  std::function<core::Json()> reload_policies;
  // GET /admin/v1/policies/schema: the schema source of the running server (the config joined
  // with each upstream's tools/list; server/policy_schema.h), answered with the Cedar schema
  // built from it. Unset: 404.
  std::function<policy::SchemaSource()> policy_schema_source;
  // The token-signing keys, and what to do after a rotation (drop the verifier's cache).
  identity::SigningKeys* keys = nullptr;
  std::function<void()> on_keys_rotated;
  // GET /admin/v1/budgets: every budget with its live buckets (used, reserved, limit,
  // reset); GET /admin/v1/upstreams: each upstream's circuit breaker. Unset: empty answers.
  std::function<core::Json()> budget_usage;
  // Approvals: list, show, approve and deny (the approver acts `as` a registered human who
  // belongs to the human group named like the approval group). Null: 404.
  approval::ApprovalBook* approvals = nullptr;
  // Approver tokens: minted by POST /admin/v1/humans/<H>/approver-token (admin token), and
  // accepted instead of the admin token by the approvals endpoints only. Null: neither.
  const ApproverTokens* approver_tokens = nullptr;
  // After every vote or denial (plans wait on their approvals); GET /admin/v1/plans/<id>.
  // Unset: nothing to do / 404.
  std::function<void(const std::string& approval_id)> on_approval_decided;
  std::function<std::optional<core::Json>(std::string_view plan_id)> show_plan;
  std::function<core::Json()> upstream_health;
  // The audit index (query, replay, export). Null: those answer 404 (tail still works).
  AuditIndexer* audit_index = nullptr;
};

class AdminApi {
 public:
  explicit AdminApi(AdminContext ctx) : ctx_(std::move(ctx)) {}
  // Answers one request through `sink`: streamed for GET /admin/v1/audit/export, else
  // sink->Send(Handle(request)).
  void Serve(const net::HttpRequest& request, const std::shared_ptr<net::ResponseSink>& sink);
  // Answers one request in full (an export is buffered).
  net::HttpResponse Handle(const net::HttpRequest& request);

 private:
  bool Authorized(const net::HttpRequest& request) const;
  net::HttpResponse PostHuman(const core::Json& body);
  net::HttpResponse PostAgent(const core::Json& body);
  net::HttpResponse PostSession(const core::Json& body);
  net::HttpResponse GetSessions(const std::string& sid);
  net::HttpResponse PostRevocation(const core::Json& body);
  net::HttpResponse GetAudit(const net::HttpRequest& request);
  net::HttpResponse GetAuditReplay(const net::HttpRequest& request);
  void ExportAudit(const net::HttpRequest& request, const std::shared_ptr<net::ResponseSink>& sink);
  net::HttpResponse BufferedExport(const net::HttpRequest& request);
  net::HttpResponse PostExplain(const core::Json& body);
  net::HttpResponse GetPolicySchema();
  net::HttpResponse GetKeys();
  // `approver`: the human of the approver token that authenticated the request; null when the
  // admin token did (the body's "as" then names the approver).
  net::HttpResponse HandleApprovals(const net::HttpRequest& req, std::string_view rest,
                                    const core::Json& body, const std::string* approver);
  net::HttpResponse PostApproverToken(const std::string& human, const core::Json& body);
  // The approving human of a request without the admin token: an approver token, accepted
  // on the approvals endpoints only. Errors: kUnauthenticated, kTokenExpired, kTokenRevoked.
  core::Result<std::string> AuthenticateApprover(const net::HttpRequest& request) const;
  net::HttpResponse PostKeysRotate();

  AdminContext ctx_;
};

}  // namespace mandate::server
