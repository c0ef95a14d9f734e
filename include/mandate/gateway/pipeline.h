// The governed-call pipeline (DESIGN.md section 3): one code path for every adapter.
// Adapters translate their protocol to a core::Action, call AuthenticateRequest() and Call(),
// and translate the core::Outcome back; they never decide anything themselves.
//
// Order of a call: authenticate (signature, expiry, revocation of the session, every
// ancestor, its agent, human and task; the DPoP proof of a bound token) -> authorize (scope, then Cedar policy for the human
// and for every agent of the delegation chain; forbid wins; default deny; any policy
// evaluation error denies) -> the upstream's circuit breaker (open: upstream_unavailable) ->
// budgets (reserve on every matching budget, or budget_exceeded) -> audit the decision durably
// (fail closed; it carries the reservation, so budgets survive a restart) -> forward -> settle
// the budgets -> audit the completion (with the settlement) -> scrub secrets from the result.
//
// Thread safety: every method may be called concurrently. Dependencies are not owned and must
// outlive the pipeline.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/audit/audit_log.h"
#include "mandate/broker/credentials.h"
#include "mandate/approval/approval.h"
#include "mandate/budget/budget.h"
#include "mandate/core/action.h"
#include "mandate/gateway/circuit_breaker.h"
#include "mandate/core/cancel.h"
#include "mandate/core/clock.h"
#include "mandate/core/decision.h"
#include "mandate/core/result.h"
#include "mandate/identity/claims.h"
#include "mandate/identity/dpop.h"
#include "mandate/identity/token_verifier.h"
#include "mandate/identity/txn_token.h"
#include "mandate/policy/entities.h"
#include "mandate/policy/policy_set.h"
#include "mandate/plan/plan.h"
#include "mandate/policy/value.h"
#include "mandate/revocation/revocation_set.h"

namespace mandate::gateway {

// An authenticated caller: the verified claims of its token.
struct Caller {
  std::shared_ptr<const identity::Claims> claims;
  // Registered agent names of the chain, first (innermost) agent first, current actor last.
  std::vector<std::string> chain;
  const std::string& agent() const { return claims->client_id; }
  const std::string& human() const { return claims->sub; }
  const std::string& sid() const { return claims->sid; }
  // The root session of the delegation tree (the "run").
  std::string run() const;
};

// Humans and agents with their groups, held in memory for the per-call path; the server keeps
// it in step with the store.
class Directory {
 public:
  void PutHuman(const std::string& name, std::vector<std::string> groups);
  void PutAgent(const std::string& name, std::string owner, std::vector<std::string> groups);
  // nullopt when unknown.
  std::optional<std::vector<std::string>> HumanGroups(std::string_view name) const;
  std::optional<std::vector<std::string>> AgentGroups(std::string_view name) const;

 private:
  mutable std::shared_mutex mu_;
  std::map<std::string, std::vector<std::string>, std::less<>> humans_;
  std::map<std::string, std::vector<std::string>, std::less<>> agents_;
};

// The active policy set, swapped atomically as a whole (no call sees half a set).
class PolicyHolder {
 public:
  void Set(std::shared_ptr<const policy::PolicySet> set) { std::atomic_store(&set_, std::move(set)); }
  std::shared_ptr<const policy::PolicySet> Get() const { return std::atomic_load(&set_); }

 private:
  std::shared_ptr<const policy::PolicySet> set_ = std::make_shared<policy::PolicySet>();
};

// What the pipeline hands the invoker with an authorized call (the broker step of DESIGN.md
// section 3).
struct Forwarding {
  std::string decision_id;
  // The signed transaction token the upstream receives (Txn-Token header over HTTP); empty
  // when the upstream is configured without one.
  std::string txn_token;
};

// How the pipeline reaches an upstream. Implemented by adapters (e.g. MCP over stdio/HTTP).
class UpstreamInvoker {
 public:
  virtual ~UpstreamInvoker() = default;
  // Performs the already-authorized, already-audited call. Must not throw; failures are an
  // Outcome with ok=false and an upstream_* code.
  virtual core::Outcome Invoke(const core::Action& action, const Caller& caller,
                               const Forwarding& forwarding) = 0;
  // Whether every byte Invoke sends upstream passes the thread's core::ForwardGate (as
  // net::HttpClient::Do does): then the pipeline invokes before the call's decision record is
  // durable and the gate holds the send until it is. False (the default): the pipeline waits
  // for the record before invoking.
  virtual bool HonoursForwardGate() const { return false; }
};

// What the audit log keeps of one action's payloads (DESIGN.md section 7, docs/configuration.md
// `audit`): by default the scrubbed arguments and result in full, or only their SHA-256; plus
// side-effect references (e.g. a created PR's html_url) extracted from the result by JSON
// pointer (RFC 6901). A pointer step that meets a string holding JSON (an MCP text content
// block) parses it and continues inside.
struct AuditRule {
  bool hash_only = false;
  std::vector<std::pair<std::string, std::string>> side_effects;  // name, pointer
};

// The audit rules of every upstream and tool, built once from the config.
class AuditRules {
 public:
  void SetUpstream(const std::string& upstream, AuditRule rule);
  void SetTool(const std::string& action_id, AuditRule rule);  // "<upstream>:<tool>"
  // The tool's rule, else its upstream's, else the default (full payloads, no references).
  const AuditRule& For(const core::Action& action) const;

 private:
  std::map<std::string, AuditRule, std::less<>> upstreams_;
  std::map<std::string, AuditRule, std::less<>> tools_;
  AuditRule default_;
};

// The value at `pointer` in `result` (entering strings that hold JSON), or nullopt when the
// path does not exist. Bounded: at most kJsonDepthMax steps.
std::optional<core::Json> ExtractSideEffect(const core::Json& result, std::string_view pointer);

struct PipelineDeps {
  const core::Clock* clock = nullptr;
  const identity::TokenVerifier* verifier = nullptr;
  const revocation::RevocationSet* revocations = nullptr;
  const PolicyHolder* policies = nullptr;
  const Directory* directory = nullptr;
  audit::AuditLog* audit = nullptr;
  const broker::Scrubber* scrubber = nullptr;
  const AuditRules* audit_rules = nullptr;  // null: every action gets the default rule
  // Budgets (DESIGN.md section 6); null: no budget is enforced. Every call reserves its
  // estimated cost on every matching budget before it is forwarded (all or nothing, exact
  // under concurrency), settles after, and releases when the upstream was never reached.
  budget::BudgetLedger* budgets = nullptr;
  // Approvals (DESIGN.md section 6); null: a call whose permits all carry @approval is refused
  // with approval_required. With a book, such a call asks for (or joins, or uses) an approval
  // of its group bound to the SHA-256 of its canonical arguments and is parked up to the
  // group's wait; granted, it proceeds; denied, approval_denied; else approval_required with
  // the approval id (a retry with the same arguments after approval proceeds).
  approval::ApprovalBook* approvals = nullptr;
  // One breaker per upstream name; an upstream without one is never refused by a breaker.
  const std::map<std::string, CircuitBreaker*, std::less<>>* breakers = nullptr;
  // Plans (DESIGN.md section 6); null: no plan is enforced. A session with a plan must make
  // every call inside it: a call the policy allows (or would allow with approval) is matched
  // to a step (plan::PlanBook::Admit), else refused with plan_violation. The step's count and
  // envelope charge are given back when the call is not forwarded. A call needing the
  // approval of the group that approved its step up front is approved by the plan.
  plan::PlanBook* plans = nullptr;
  // Transaction tokens (DESIGN.md section 4): a call forwarded to an upstream named in
  // `txn_token_audiences` carries a Txn-Token minted for the audience it maps to, after the
  // decision record is durable; if it cannot be minted the call is refused (kInternal), never
  // forwarded without it. Null: no upstream gets one.
  const identity::TxnTokenIssuer* txn_tokens = nullptr;
  const std::map<std::string, std::string, std::less<>>* txn_token_audiences = nullptr;
  // DPoP (RFC 9449, DESIGN.md section 4): the one verifier (so one replay cache) of the
  // proofs DPoP-bound tokens need; null: every DPoP-bound token and every proof is refused.
  // `dpop_scheme` is the scheme agents address the agent listener with ("http", or "https"
  // behind a TLS-terminating proxy): the scheme of the request URI proofs are checked against.
  const identity::DpopVerifier* dpop = nullptr;
  std::string dpop_scheme = "http";
};

// The parts of one HTTP request to the agent listener that authenticate it, for
// Pipeline::AuthenticateRequest and Pipeline::AuthenticateSubjectToken. Not owned; must
// outlive the call.
struct AgentRequest {
  std::string_view method;  // as received, e.g. "POST" (DPoP "htm" is case-sensitive)
  std::string_view target;  // the request target in origin form, "/mcp/jira?x" (query ignored)
  // Every header as received, names in any letter case, a repeated header once per occurrence
  // (so two DPoP headers are seen as two).
  const std::vector<std::pair<std::string, std::string>>* headers = nullptr;
};

// The DPoP algorithms Mandate verifies, as the "algs" parameter of a DPoP challenge
// (RFC 9449 section 7.1) and the metadata's dpop_signing_alg_values_supported.
inline constexpr std::string_view kDpopAlgs = "EdDSA ES256";

// How policy treats one plan step before any call is made (Pipeline::DecideStep): the step's
// action is evaluated for the session with its arguments unknown (context.args absent).
struct StepVerdict {
  enum class Kind : uint8_t {
    kAllow,        // permitted whatever the arguments, without approval
    kConditional,  // depends on the arguments (a policy needed context.args): decided per call
    kApproval,     // permitted only through an @approval permit of `approval_group`
    kDeny,         // refused whatever the arguments (scope, a forbid, or no permit at all)
  };
  Kind kind = Kind::kDeny;
  std::string approval_group;  // kApproval
  std::string policy;          // kApproval: the permit that asked for the approval
  core::ErrorCode code = core::ErrorCode::kPolicyDenied;  // kDeny: out_of_scope or policy_denied
  std::string reason;          // kDeny: why
};

class Pipeline {
 public:
  explicit Pipeline(PipelineDeps deps);

  // Verifies a bearer token and checks revocation. Errors: kUnauthenticated (missing,
  // malformed, bad signature, unknown key, wrong issuer/audience, unknown agent),
  // kTokenExpired, kTokenRevoked; kDpopInvalid when the token is DPoP-bound (`cnf.jkt`): a
  // bound token is never accepted without a proof (RFC 9449 section 7.2).
  core::Result<Caller> Authenticate(std::string_view bearer_token) const;

  // Authenticates a request to the agent listener by its Authorization and DPoP headers
  // (RFC 6750, RFC 9449 section 7; docs/formats/token.md, "Using a DPoP-bound session"):
  //   - exactly one Authorization header, "Bearer <token>" or "DPoP <token>" (scheme names in
  //     any letter case); none, two, or another scheme: kUnauthenticated;
  //   - the token is verified as by Authenticate (signature, expiry, revocation, principals);
  //   - Bearer: the token must not be DPoP-bound (kDpopInvalid, RFC 9449 section 7.2); DPoP
  //     headers are then not looked at;
  //   - DPoP: the token must be DPoP-bound (an unbound token is used as Bearer, RFC 9449
  //     section 5: kDpopInvalid), and the request must carry exactly one DPoP header whose
  //     proof DpopVerifier::Verify accepts for this method, the request URI
  //     "<dpop_scheme>://<Host header><target>", `ath` of the token and `cnf.jkt` of the
  //     token (RFC 9449 section 4.3), not replayed. No verifier, no or a malformed Host
  //     header, no, two or a failing proof: kDpopInvalid.
  // On failure, when `challenge` is non-null it receives the WWW-Authenticate value to send
  // with the 401: `<Scheme> error="invalid_token"` for a refused token (the DPoP scheme,
  // with algs, for a bound token presented as Bearer), `DPoP error="invalid_dpop_proof"`
  // for a refused proof, and both schemes without an error when no credentials were
  // recognized (RFC 6750 section 3, RFC 9449 section 7.1). The challenge never contains
  // request bytes.
  core::Result<Caller> AuthenticateRequest(const AgentRequest& request,
                                           std::string* challenge = nullptr) const;

  // The token endpoint (token exchange and refresh, RFC 8693 / RFC 9449 section 5): verifies
  // `subject_token` as Authenticate does, minus the Bearer rule, and the request's DPoP proof,
  // if any: at most one DPoP header; a proof must pass DpopVerifier::Verify for this request
  // without an access token (so without `ath`); and a DPoP-bound subject token needs a proof
  // of its own key (`cnf.jkt`), so a copied bound token cannot be exchanged for an unbound one.
  // Errors: as Authenticate for the token; kDpopInvalid for the proof rules.
  struct SubjectAuth {
    Caller caller;
    std::optional<identity::DpopProof> proof;  // the verified proof, when the request had one
  };
  core::Result<SubjectAuth> AuthenticateSubjectToken(std::string_view subject_token,
                                                     const AgentRequest& request) const;

  // Decides without side effects (used to filter tools/list). Never fails: any error is a
  // denial with its reason.
  core::Decision Decide(const Caller& caller, const core::Action& action) const;

  // Whether `caller` may delegate to agent `child_agent` (token exchange): the action
  // Action::"mandate:delegate" (parent Action::"mandate") on resource Agent::"<child>" (with
  // its groups as parents) must be permitted for the human and every agent of the caller's
  // chain, with the caller's session in context.session. The token's scope is not consulted.
  // Never fails: an unknown principal or child is a denial.
  core::Decision DecideDelegation(const Caller& caller, const std::string& child_agent) const;

  // Evaluates a plan step's action for `caller` before the plan is accepted, with the
  // arguments unknown. Per principal (the human and each agent of the chain): a forbid that
  // applies regardless of the arguments, or no permit that could apply, is kDeny; a policy
  // that needed the arguments (its evaluation errored without context.args) makes the step
  // kConditional; only @approval permits make it kApproval; else kAllow. The outcome only
  // decides whether the plan needs approvers: every call made under the plan is still fully
  // authorized with its real arguments.
  StepVerdict DecideStep(const Caller& caller, const core::Action& action) const;

  struct CallResult {
    core::Decision decision;
    core::Outcome outcome;  // when refused: ok=false and the decision's code
  };
  // The governed call. The decision record is durable in the audit log before the invoker is
  // called; if it cannot be written the call is refused (kInternal). Revocation is re-checked
  // immediately before forwarding.
  CallResult Call(const Caller& caller, core::Action action, UpstreamInvoker& invoker) const;

  // Cancels every call in flight (parked for approval, or waiting on its upstream) whose
  // session, an ancestor session, agent, human or task is now revoked: a parked call stops
  // waiting and is refused (its decision record says token_revoked); a forwarded call's
  // blocking I/O is aborted (the HTTP connection shut down; a stdio request abandoned and
  // notifications/cancelled sent) and the log gets `call.cancelled`. Either way the agent gets
  // token_revoked. Call after every revocation. Returns how many.
  size_t CancelRevoked() const;
  // For shutdown: every call parked for approval stops waiting and is refused with
  // upstream_unavailable ("Mandate is shutting down"; nothing is forwarded), and calls that
  // park later are refused at once. Calls already at their upstream finish normally.
  // Returns how many were parked.
  size_t ReleaseParked() const;
  // Calls currently parked for approval or waiting on an upstream (observability, tests).
  size_t InflightCount() const;

  // Appends a non-call record (e.g. session.started). Errors: as AuditLog::Append.
  core::Result<uint64_t> Record(core::Json record) const;

  const broker::Scrubber& scrubber() const { return *deps_.scrubber; }

 private:
  // Decide, with the arguments known (context.args) or unknown (absent, for DecideStep).
  core::Decision DecideWith(const Caller& caller, const core::Action& action, bool args_known) const;
  core::Status CheckRevocation(const Caller& caller) const;
  // Authenticate without the DPoP rules: signature, expiry, chain, revocation, principals.
  core::Result<Caller> VerifyToken(std::string_view token) const;
  // Verifies the request's one DPoP proof for `access_token` (empty at the token endpoint)
  // and `expected_jkt` (empty: any key). Errors: kDpopInvalid.
  core::Result<identity::DpopProof> VerifyProof(const AgentRequest& request, std::string_view access_token,
                                                std::string_view expected_jkt) const;
  static revocation::Subjects RevocationSubjects(const Caller& caller);

  struct InflightCall {
    const Caller* caller;  // outlives the entry: Call erases it before returning
    std::shared_ptr<core::CancelSignal> signal;
    bool parked = false;  // waiting for approval (guarded by inflight_mu_)
  };
  // The intersection rule over `principals` (human first), filling d.checks and d.kind.
  core::Decision Evaluate(core::Decision d, const std::vector<policy::EntityUid>& principals,
                          const policy::EntityUid& action_uid, const policy::EntityUid& resource_uid,
                          const policy::Value& context, const policy::Entities& entities) const;
  core::Json CallRecord(std::string_view type, const Caller& caller, const core::Action& action) const;
  // A payload as the audit log keeps it: scrubbed, or a {_truncated, _bytes} marker when its
  // canonical form exceeds kAuditArgsBytesMax.
  core::Json PayloadForAudit(const core::Json& payload, size_t canonical_bytes) const;
  static core::Json TruncatedPayload(size_t bytes);
  // The approval step of Call for a decision that requires one: asks the book, parks, and
  // turns the decision into allow (granted), approval_denied, or approval_required naming the
  // approval id. Returns what the decision record keeps of it.
  // Waits up to wait_micros for approval `id` (ApprovalBook::Wait), observing the thread's
  // cancel signal; with a progress sink on the thread, reports at the start and every
  // kApprovalProgressIntervalMicros while it waits.
  approval::ApprovalState Park(const std::string& id, const std::string& group, int64_t wait_micros) const;
  core::Json SeekApproval(const Caller& caller, const core::Action& action,
                          const std::string& args_canonical, core::Decision* d) const;

  PipelineDeps deps_;
  mutable std::mutex inflight_mu_;
  mutable std::unordered_map<uint64_t, InflightCall> inflight_;  // guarded by inflight_mu_
  mutable uint64_t next_inflight_id_ = 1;                        // guarded by inflight_mu_
  mutable bool releasing_parked_ = false;                        // guarded by inflight_mu_
};

// Whether `action_id` ("upstream:tool") is covered by a scope entry: an exact action id,
// "upstream:*", or "*".
bool ScopeAllows(const std::vector<std::string>& scope, std::string_view action_id);

// Whether every entry of `requested` is covered by `held` ("*" covers everything,
// "up:*" covers "up:*" and "up:<tool>", an exact id covers itself): a delegated scope never
// exceeds its parent's.
bool ScopeCovers(const std::vector<std::string>& held, const std::vector<std::string>& requested);

// The action id of delegation by token exchange.
inline constexpr std::string_view kDelegateAction = "mandate:delegate";

}  // namespace mandate::gateway
