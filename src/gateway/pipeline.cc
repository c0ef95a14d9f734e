#include "mandate/gateway/pipeline.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <mutex>

#include "mandate/core/crypto.h"
#include "mandate/core/forward_gate.h"
#include "mandate/core/limits.h"
#include "mandate/policy/authorize.h"
#include "mandate/policy/entities.h"
#include "mandate/policy/value.h"

namespace mandate::gateway {
namespace {

using core::Decision;
using core::ErrorCode;
using core::Json;
using core::MakeError;
using policy::EntityUid;
using policy::Value;

constexpr std::string_view kAgentSubPrefix = "agent:";

std::vector<EntityUid> GroupUids(const std::vector<std::string>& groups) {
  std::vector<EntityUid> out;
  out.reserve(groups.size());
  for (const auto& g : groups) out.push_back(EntityUid{"Group", g});
  return out;
}

Value ModelValue(const identity::Claims& c) {
  policy::Value::RecordFields f;
  if (c.model) {
    f.emplace("provider", Value::String(c.model->provider));
    f.emplace("name", Value::String(c.model->name));
    f.emplace("tier", Value::String(c.model->tier));
  }
  return Value::Record(std::move(f));
}

Value TimeValue(int64_t unix_seconds) {
  time_t t = static_cast<time_t>(unix_seconds);
  struct tm tm_utc{};
  gmtime_r(&t, &tm_utc);
  policy::Value::RecordFields f;
  f.emplace("unix", Value::Long(unix_seconds));
  f.emplace("hour_utc", Value::Long(tm_utc.tm_hour));
  // ISO 8601: 1 = Monday ... 7 = Sunday.
  f.emplace("weekday", Value::Long(tm_utc.tm_wday == 0 ? 7 : tm_utc.tm_wday));
  return Value::Record(std::move(f));
}

Decision Deny(Decision d, ErrorCode code, std::string reason) {
  d.kind = Decision::Kind::kDeny;
  d.code = code;
  d.reason = std::move(reason);
  return d;
}


}  // namespace

std::string Caller::run() const {
  // The innermost actor carries the root session of the tree; a root session is its own run.
  if (!claims->act.empty() && !claims->act.back().sid.empty()) return claims->act.back().sid;
  return claims->sid;
}

void Directory::PutHuman(const std::string& name, std::vector<std::string> groups) {
  std::unique_lock lock(mu_);
  humans_[name] = std::move(groups);
}

void Directory::PutAgent(const std::string& name, std::string /*owner*/, std::vector<std::string> groups) {
  std::unique_lock lock(mu_);
  agents_[name] = std::move(groups);
}

std::optional<std::vector<std::string>> Directory::HumanGroups(std::string_view name) const {
  std::shared_lock lock(mu_);
  auto it = humans_.find(name);
  if (it == humans_.end()) return std::nullopt;
  return it->second;
}

std::optional<std::vector<std::string>> Directory::AgentGroups(std::string_view name) const {
  std::shared_lock lock(mu_);
  auto it = agents_.find(name);
  if (it == agents_.end()) return std::nullopt;
  return it->second;
}

namespace {

// Adds the human and each agent of the caller's chain, with their groups as parents, to
// `entities`. Returns the principals to check, human first; an agent that delegated to itself
// is checked once. Error (its message is the denial's reason): a principal is unknown.
core::Result<std::vector<EntityUid>> AddPrincipals(const Directory& directory, const Caller& caller,
                                                   policy::Entities* entities) {
  const std::string& human_name = caller.claims->sub;
  auto human_groups = directory.HumanGroups(human_name);
  if (!human_groups) return MakeError(ErrorCode::kPolicyDenied, "unknown human \"" + human_name + "\"");
  const EntityUid human{"Human", human_name};
  (void)entities->Add(human, Value::Record({}), GroupUids(*human_groups));
  std::vector<EntityUid> principals{human};
  for (const std::string& agent : caller.chain) {
    auto groups = directory.AgentGroups(agent);
    if (!groups) return MakeError(ErrorCode::kPolicyDenied, "unknown agent \"" + agent + "\"");
    EntityUid uid{"Agent", agent};
    if (entities->Contains(uid)) continue;
    (void)entities->Add(uid, Value::Record({}), GroupUids(*groups));
    principals.push_back(std::move(uid));
  }
  return principals;
}

// context.session: {id, task, depth, model, human}.
Value SessionValue(const Caller& caller) {
  const identity::Claims& c = *caller.claims;
  policy::Value::RecordFields session;
  session.emplace("id", Value::String(c.sid));
  session.emplace("task", Value::String(c.task));
  session.emplace("depth", Value::Long(static_cast<int64_t>(caller.chain.size()) - 1));
  session.emplace("model", ModelValue(c));
  session.emplace("human", Value::Entity(EntityUid{"Human", c.sub}));
  return Value::Record(std::move(session));
}

}  // namespace

bool ScopeAllows(const std::vector<std::string>& scope, std::string_view action_id) {
  auto colon = action_id.find(':');
  std::string_view upstream = action_id.substr(0, colon);
  for (const std::string& s : scope) {
    if (s == "*" || s == action_id) return true;
    if (s.size() == upstream.size() + 2 && s.compare(0, upstream.size(), upstream) == 0 &&
        s[upstream.size()] == ':' && s.back() == '*') {
      return true;
    }
  }
  return false;
}

bool ScopeCovers(const std::vector<std::string>& held, const std::vector<std::string>& requested) {
  // ScopeAllows treats a requested "up:*" or "*" as an action id: only "*", or the same
  // wildcard, covers it.
  return std::all_of(requested.begin(), requested.end(), [&](const std::string& r) { return ScopeAllows(held, r); });
}

Pipeline::Pipeline(PipelineDeps deps) : deps_(deps) {}

// The DPoP rules (Authenticate, AuthenticateRequest, AuthenticateSubjectToken) are in
// request_auth.cc.
core::Result<Caller> Pipeline::VerifyToken(std::string_view token) const {
  if (token.empty()) return MakeError(ErrorCode::kUnauthenticated, "no token");
  MANDATE_ASSIGN_OR_RETURN(auto claims, deps_.verifier->Verify(token));
  Caller caller;
  caller.claims = std::move(claims);
  // The chain from the first agent to the current actor; every actor must be an agent.
  for (auto it = caller.claims->act.rbegin(); it != caller.claims->act.rend(); ++it) {
    if (it->sub.rfind(kAgentSubPrefix, 0) != 0) {
      return MakeError(ErrorCode::kUnauthenticated, "token actor \"" + it->sub + "\" is not an agent");
    }
    caller.chain.push_back(it->sub.substr(kAgentSubPrefix.size()));
  }
  if (caller.chain.empty() || caller.chain.back() != caller.claims->client_id) {
    return MakeError(ErrorCode::kUnauthenticated, "token act chain does not end with its client_id");
  }
  // Revocation first: a revoked principal is told so even if it was removed since.
  MANDATE_RETURN_IF_ERROR(CheckRevocation(caller));
  // A validly signed token names principals Mandate must still know (they may have been
  // removed since it was minted).
  if (!deps_.directory->HumanGroups(caller.claims->sub)) {
    return MakeError(ErrorCode::kUnauthenticated, "token names an unknown human");
  }
  for (const std::string& agent : caller.chain) {
    if (!deps_.directory->AgentGroups(agent)) {
      return MakeError(ErrorCode::kUnauthenticated, "token names an unknown agent \"" + agent + "\"");
    }
  }
  return caller;
}

revocation::Subjects Pipeline::RevocationSubjects(const Caller& caller) {
  revocation::Subjects s;
  s.sid = caller.claims->sid;
  for (const auto& a : caller.claims->act) {
    if (!a.sid.empty()) s.ancestor_sids.push_back(a.sid);
  }
  s.agent = caller.claims->client_id;
  s.human = caller.claims->sub;
  s.task = caller.claims->task;
  return s;
}

size_t Pipeline::CancelRevoked() const {
  std::vector<std::shared_ptr<core::CancelSignal>> hit;
  {
    std::lock_guard<std::mutex> lock(inflight_mu_);
    for (const auto& [id, call] : inflight_) {
      // Subjects are computed here, on the rare revocation path, not per call.
      if (deps_.revocations->Check(RevocationSubjects(*call.caller))) hit.push_back(call.signal);
    }
  }
  // Fired outside the lock: a signal's functions abort sockets and wake waiters.
  for (auto& s : hit) s->Cancel();
  return hit.size();
}

size_t Pipeline::ReleaseParked() const {
  std::vector<std::shared_ptr<core::CancelSignal>> hit;
  {
    std::lock_guard<std::mutex> lock(inflight_mu_);
    releasing_parked_ = true;
    for (const auto& [id, call] : inflight_) {
      if (call.parked) hit.push_back(call.signal);
    }
  }
  for (auto& s : hit) s->Cancel();
  return hit.size();
}

size_t Pipeline::InflightCount() const {
  std::lock_guard<std::mutex> lock(inflight_mu_);
  return inflight_.size();
}

core::Status Pipeline::CheckRevocation(const Caller& caller) const {
  const revocation::Subjects s = RevocationSubjects(caller);
  if (auto kind = deps_.revocations->Check(s)) {
    return MakeError(ErrorCode::kTokenRevoked,
                     "the session was revoked (" + std::string(revocation::KindName(*kind)) + " revocation)");
  }
  return core::OkStatus();
}

Decision Pipeline::Decide(const Caller& caller, const core::Action& action) const {
  return DecideWith(caller, action, /*args_known=*/true);
}

StepVerdict Pipeline::DecideStep(const Caller& caller, const core::Action& action) const {
  StepVerdict v;
  Decision d = DecideWith(caller, action, /*args_known=*/false);
  if (!d.scope_ok || d.checks.empty()) {
    v.code = d.code;
    v.reason = d.reason;
    return v;
  }
  bool conditional = false;
  for (const core::PrincipalCheck& ch : d.checks) {
    if (!ch.forbids.empty()) {
      v.reason = "policy forbids " + d.action + " for " + ch.principal + " whatever the arguments (" +
                 ch.forbids.front() + ")";
      return v;
    }
    if (!ch.errors.empty()) {
      conditional = true;  // a policy looked at the arguments: only a call can tell
    } else if (!ch.allow && !ch.approval_required) {
      v.reason = "no policy permits " + d.action + " for " + ch.principal + " whatever the arguments";
      return v;
    }
  }
  if (conditional) {
    v.kind = StepVerdict::Kind::kConditional;
  } else if (d.kind == Decision::Kind::kApprovalRequired) {
    v.kind = StepVerdict::Kind::kApproval;
    v.approval_group = d.approval.value_or("");
    for (const core::PrincipalCheck& ch : d.checks) {
      if (ch.approval_required && !ch.permits.empty()) {
        v.policy = ch.permits.front();
        break;
      }
    }
  } else {
    v.kind = StepVerdict::Kind::kAllow;
  }
  return v;
}

Decision Pipeline::DecideWith(const Caller& caller, const core::Action& action, bool args_known) const {
  Decision d;
  d.id = core::NewId("dec");
  d.action = action.Id();
  d.resource = action.resource.ToString();
  const identity::Claims& c = *caller.claims;

  d.scope_ok = ScopeAllows(c.scope, d.action);
  if (!d.scope_ok) {
    return Deny(std::move(d), ErrorCode::kOutOfScope,
                "action " + d.action + " is outside the session's scope");
  }

  // Entities: the human, each agent of the chain, the action with its upstream and class
  // groups, and the resource under its upstream.
  policy::Entities entities;
  auto principals = AddPrincipals(*deps_.directory, caller, &entities);
  if (!principals.ok()) return Deny(std::move(d), ErrorCode::kPolicyDenied, principals.error().message);
  const EntityUid action_uid{"Action", d.action};
  (void)entities.Add(action_uid, Value::Record({}),
                     {EntityUid{"Action", action.upstream}, EntityUid{"Action", std::string(core::ActionClassName(action.cls))}});
  const EntityUid upstream_uid{"Upstream", action.upstream};
  const EntityUid resource_uid{action.resource.type, action.resource.id};
  (void)entities.Add(upstream_uid, Value::Record({}), {});
  if (!(resource_uid == upstream_uid)) (void)entities.Add(resource_uid, Value::Record({}), {upstream_uid});

  policy::Value::RecordFields context;
  if (args_known) {
    auto args = policy::ValueFromPlainJson(action.args.is_null() ? Json::MakeObject() : action.args);
    if (!args.ok()) {
      return Deny(std::move(d), ErrorCode::kBadRequest,
                  "the arguments cannot be evaluated by policy: " + args.error().message);
    }
    context.emplace("args", std::move(args).value());
  }
  policy::Value::RecordFields request;
  request.emplace("protocol", Value::String(action.protocol));
  request.emplace("method", Value::String(action.method));
  request.emplace("path", Value::String(action.path));
  context.emplace("session", SessionValue(caller));
  context.emplace("request", Value::Record(std::move(request)));
  context.emplace("time", TimeValue(deps_.clock->NowUnixSeconds()));
  Value context_value = Value::Record(std::move(context));

  return Evaluate(std::move(d), *principals, action_uid, resource_uid, context_value, entities);
}

Decision Pipeline::Evaluate(Decision d, const std::vector<policy::EntityUid>& principals,
                            const policy::EntityUid& action_uid, const policy::EntityUid& resource_uid,
                            const policy::Value& context_value, const policy::Entities& entities) const {
  std::shared_ptr<const policy::PolicySet> set = deps_.policies->Get();
  bool all_allow = true;
  bool any_approval = false;
  std::string first_denier;
  for (const EntityUid& principal : principals) {
    policy::Request req{principal, action_uid, resource_uid, context_value};
    policy::Response res = policy::IsAuthorized(*set, req, entities);
    core::PrincipalCheck check;
    check.principal = principal.ToString();
    check.permits = res.permits;
    check.forbids = res.forbids;
    check.errors = res.errors;
    // Fail closed (STYLE.md): any policy that could not be evaluated denies. A forbid that
    // errored might have matched; a permit that errored means the policy set does not fit
    // this request, and the operator must see that rather than have another permit mask it.
    const bool eval_errored = !res.errors.empty();
    check.allow = res.allow && !eval_errored;
    if (check.allow) {
      // Allowed only through @approval permits -> approval required.
      bool unconditional = false;
      for (const std::string& id : res.permits) {
        const policy::Policy* p = set->Find(id);
        const std::string* group = p ? p->FindAnnotation("approval") : nullptr;
        if (group) {
          check.approval_groups.push_back(*group);
        } else {
          unconditional = true;
        }
      }
      if (!unconditional) {
        check.allow = false;
        check.approval_required = true;
      }
    }
    if (!check.allow) {
      if (check.approval_required) {
        any_approval = true;
      } else {
        all_allow = false;
        if (first_denier.empty()) {
          first_denier = check.principal;
          if (eval_errored) first_denier += " (a policy failed to evaluate: " + res.errors.front() + ")";
          else if (!res.forbids.empty()) first_denier += " (forbidden by " + res.forbids.front() + ")";
          else first_denier += " (no policy permits it)";
        }
      }
    }
    d.checks.push_back(std::move(check));
  }
  if (!all_allow) {
    return Deny(std::move(d), ErrorCode::kPolicyDenied, "policy denies " + d.action + " for " + first_denier);
  }
  if (any_approval) {
    d.kind = Decision::Kind::kApprovalRequired;
    d.code = ErrorCode::kApprovalRequired;
    for (const auto& ch : d.checks) {
      if (!ch.approval_groups.empty()) d.approval = ch.approval_groups.front();
    }
    d.reason = "policy requires approval by " + d.approval.value_or("an approver") + " for " + d.action;
    return d;
  }
  d.kind = Decision::Kind::kAllow;
  d.reason = "permitted for the human and every agent of the chain";
  return d;
}

Decision Pipeline::DecideDelegation(const Caller& caller, const std::string& child_agent) const {
  Decision d;
  d.id = core::NewId("dec");
  d.action = std::string(kDelegateAction);
  d.resource = EntityUid{"Agent", child_agent}.ToString();
  d.scope_ok = true;  // delegation is not a tool call: the token's scope does not name it
  policy::Entities entities;
  auto principals = AddPrincipals(*deps_.directory, caller, &entities);
  if (!principals.ok()) return Deny(std::move(d), ErrorCode::kPolicyDenied, principals.error().message);
  // The child, with its groups, so that policies can delegate to a group of agents.
  const EntityUid child{"Agent", child_agent};
  auto child_groups = deps_.directory->AgentGroups(child_agent);
  if (!child_groups) return Deny(std::move(d), ErrorCode::kPolicyDenied, "unknown agent \"" + child_agent + "\"");
  if (!entities.Contains(child)) (void)entities.Add(child, Value::Record({}), GroupUids(*child_groups));
  const EntityUid action_uid{"Action", d.action};
  (void)entities.Add(action_uid, Value::Record({}), {EntityUid{"Action", "mandate"}});

  policy::Value::RecordFields context;
  context.emplace("args", Value::Record({}));
  context.emplace("session", SessionValue(caller));
  context.emplace("time", TimeValue(deps_.clock->NowUnixSeconds()));
  return Evaluate(std::move(d), *principals, action_uid, child, Value::Record(std::move(context)), entities);
}

void AuditRules::SetUpstream(const std::string& upstream, AuditRule rule) {
  upstreams_[upstream] = std::move(rule);
}

void AuditRules::SetTool(const std::string& action_id, AuditRule rule) {
  tools_[action_id] = std::move(rule);
}

const AuditRule& AuditRules::For(const core::Action& action) const {
  if (!tools_.empty()) {
    if (auto it = tools_.find(action.Id()); it != tools_.end()) return it->second;
  }
  if (auto it = upstreams_.find(action.upstream); it != upstreams_.end()) return it->second;
  return default_;
}

std::optional<Json> ExtractSideEffect(const Json& result, std::string_view pointer) {
  if (pointer.empty()) return result;
  if (pointer[0] != '/') return std::nullopt;
  Json current = result;
  size_t steps = 0;
  size_t pos = 1;
  while (true) {
    if (++steps > core::kJsonDepthMax) return std::nullopt;
    size_t end = pointer.find('/', pos);
    std::string token(pointer.substr(pos, end == std::string_view::npos ? std::string_view::npos : end - pos));
    // RFC 6901 unescaping: ~1 is '/', ~0 is '~'.
    std::string unescaped;
    for (size_t i = 0; i < token.size(); ++i) {
      if (token[i] == '~' && i + 1 < token.size() && (token[i + 1] == '0' || token[i + 1] == '1')) {
        unescaped.push_back(token[i + 1] == '0' ? '~' : '/');
        ++i;
      } else {
        unescaped.push_back(token[i]);
      }
    }
    if (current.is_string()) {
      // An MCP text block often carries the upstream's JSON answer as a string.
      auto parsed = Json::Parse(current.as_string(), core::kAuditArgsBytesMax);
      if (!parsed.ok()) return std::nullopt;
      current = std::move(parsed).value();
    }
    if (current.is_object()) {
      const Json* next = current.Find(unescaped);
      if (next == nullptr) return std::nullopt;
      current = Json(*next);
    } else if (current.is_array()) {
      const auto& arr = current.as_array();
      if (unescaped.empty() || unescaped.size() > 9 ||
          !std::all_of(unescaped.begin(), unescaped.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
          (unescaped.size() > 1 && unescaped[0] == '0')) {
        return std::nullopt;
      }
      size_t index = std::stoul(unescaped);
      if (index >= arr.size()) return std::nullopt;
      current = Json(arr[index]);
    } else {
      return std::nullopt;
    }
    if (end == std::string_view::npos) return current;
    pos = end + 1;
  }
}

approval::ApprovalState Pipeline::Park(const std::string& id, const std::string& group,
                                       int64_t wait_micros) const {
  core::CancelSignal* cancel = core::CurrentCancelSignal();
  const core::ProgressSink* progress = core::CurrentProgressSink();
  if (progress == nullptr) return deps_.approvals->Wait(id, wait_micros, cancel);
  // Someone listens (an MCP client that asked for progress): wait in slices and report
  // between them, so the client knows the call is parked, not lost.
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::microseconds(wait_micros);
  auto report = [&] {
    const int64_t waited_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
    size_t votes = 0;
    int64_t needed = 0;
    if (auto view = deps_.approvals->Get(id)) {
      if (const Json* a = view->FindArray("approvers")) votes = a->as_array().size();
      needed = view->GetInt("min_approvers", 0);
    }
    core::Progress p;
    p.progress = waited_ms + 1;  // strictly increasing, as MCP requires
    p.total = wait_micros / 1000 + 1;
    p.message = "waiting for approval " + id + " by " + group + " (" + std::to_string(votes) + " of " +
                std::to_string(needed) + " approvals)";
    (*progress)(p);
  };
  report();
  for (;;) {
    const int64_t left =
        std::chrono::duration_cast<std::chrono::microseconds>(deadline - std::chrono::steady_clock::now()).count();
    approval::ApprovalState state =
        deps_.approvals->Wait(id, std::min<int64_t>(std::max<int64_t>(left, 0), core::kApprovalProgressIntervalMicros), cancel);
    if (state != approval::ApprovalState::kPending || left <= core::kApprovalProgressIntervalMicros ||
        (cancel != nullptr && cancel->cancelled())) {
      return state;
    }
    report();
  }
}

Json Pipeline::SeekApproval(const Caller& caller, const core::Action& action,
                            const std::string& args_canonical, core::Decision* d) const {
  approval::ApprovalRequest req;
  req.run = caller.run();
  req.sid = caller.sid();
  req.agent = caller.agent();
  req.human = caller.human();
  req.task = caller.claims->task;
  req.action_id = action.Id();
  req.args_sha256 = core::Sha256Hex(args_canonical);
  req.args_display = deps_.scrubber->ScrubJson(action.args);
  req.group = d->approval.value_or("");
  for (const core::PrincipalCheck& ch : d->checks) {
    if (ch.approval_required && !ch.permits.empty()) {
      req.policy = ch.permits.front();
      break;
    }
  }
  req.decision_id = d->id;
  Json note = Json::MakeObject();
  note.Set("group", req.group);
  note.Set("args_sha256", req.args_sha256);
  auto ticket = deps_.approvals->Request(req);
  if (!ticket.ok()) {
    // Fail closed: no approval can be asked for (unknown group, too many pending, ...).
    d->reason += ": " + ticket.error().message;
    note.Set("error", ticket.error().message);
    return note;
  }
  approval::ApprovalState state = ticket->state;
  if (state == approval::ApprovalState::kPending) {
    // Parked until approvers decide, up to the group's wait. Revocation is checked again
    // before anything is forwarded.
    state = Park(ticket->id, req.group, ticket->wait_micros);
  }
  note.Set("id", ticket->id);
  note.Set("state", std::string(approval::ApprovalStateName(state)));
  d->approval = ticket->id;
  switch (state) {
    case approval::ApprovalState::kGranted:
      d->kind = core::Decision::Kind::kAllow;
      d->reason = "permitted by approval " + ticket->id + " (group " + req.group +
                  ") for exactly these arguments";
      break;
    case approval::ApprovalState::kDenied:
      *d = Deny(std::move(*d), ErrorCode::kApprovalDenied,
                "approval " + ticket->id + " for " + req.action_id + " was denied");
      break;
    case approval::ApprovalState::kUsed:
      d->reason = "approval " + ticket->id + " by " + req.group +
                  " was used by another call with the same arguments (one approval admits one "
                  "call); a retry asks for a new approval";
      break;
    default:
      d->reason = "approval " + ticket->id + " by " + req.group + " is " +
                  std::string(approval::ApprovalStateName(state)) +
                  "; retry with the same arguments once it is approved";
      break;
  }
  return note;
}

Json Pipeline::TruncatedPayload(size_t bytes) {
  Json t = Json::MakeObject();
  t.Set("_truncated", true);
  t.Set("_bytes", static_cast<int64_t>(bytes));
  return t;
}

Json Pipeline::PayloadForAudit(const Json& payload, size_t canonical_bytes) const {
  if (canonical_bytes > core::kAuditArgsBytesMax) return TruncatedPayload(canonical_bytes);
  return deps_.scrubber->ScrubJson(payload);
}

Json Pipeline::CallRecord(std::string_view type, const Caller& caller, const core::Action& action) const {
  Json r = Json::MakeObject();
  r.Set("type", std::string(type));
  r.Set("run", caller.run());
  r.Set("sid", caller.sid());
  r.Set("chain", core::Json::StringArray(caller.chain));
  r.Set("agent", caller.agent());
  r.Set("human", caller.human());
  r.Set("task", caller.claims->task);
  r.Set("action", action.Id());
  r.Set("protocol", action.protocol);
  return r;
}

Pipeline::CallResult Pipeline::Call(const Caller& caller, core::Action action, UpstreamInvoker& invoker) const {
  CallResult out;
  if (!action.args.is_object()) action.args = Json::MakeObject();
  out.decision = Decide(caller, action);

  static const AuditRule kDefaultRule;
  const AuditRule& rule = deps_.audit_rules ? deps_.audit_rules->For(action) : kDefaultRule;
  const std::string args_canonical = action.args.Canonical();
  Json decided = CallRecord("call.decided", caller, action);
  decided.Set("decision_id", out.decision.id);
  decided.Set("resource", out.decision.resource);
  if (rule.hash_only) {
    decided.Set("payload", "hash");  // retention configured for this action: hashes only
  } else {
    decided.Set("args", PayloadForAudit(action.args, args_canonical.size()));
  }
  const std::string args_sha256 = core::Sha256Hex(args_canonical);  // recorded, and in the txn token
  decided.Set("args_hash", args_sha256);
  if (caller.claims->model) {
    Json m = Json::MakeObject();
    m.Set("provider", caller.claims->model->provider);
    m.Set("name", caller.claims->model->name);
    m.Set("tier", caller.claims->model->tier);
    decided.Set("model", std::move(m));
  }

  // Plan: a session that declared a plan stays inside it. Matched only for calls the policy
  // lets through (with or without approval), so a denied call never spends a step.
  plan::StepMatch plan_match;
  if (deps_.plans != nullptr &&
      (out.decision.allowed() || out.decision.kind == core::Decision::Kind::kApprovalRequired)) {
    std::map<std::string, int64_t> estimate;
    if (action.cls != core::ActionClass::kRead) estimate.emplace("writes", 1);
    auto admitted = deps_.plans->Admit(caller.sid(), action.Id(), action.args, estimate);
    if (!admitted.ok()) {
      out.decision = Deny(std::move(out.decision), ErrorCode::kPlanViolation, admitted.error().message);
    } else if (admitted->planned) {
      plan_match = std::move(admitted).value();
      Json step = Json::MakeObject();
      step.Set("plan", plan_match.plan_id);
      step.Set("step", static_cast<int64_t>(plan_match.step));
      step.Set("used", plan_match.used);
      step.Set("max_count", plan_match.max_count);
      out.decision.plan_step = std::move(step);
      if (out.decision.kind == core::Decision::Kind::kApprovalRequired && !plan_match.approval_group.empty() &&
          out.decision.approval == plan_match.approval_group) {
        // The group approved this step (action, condition, count) when it approved the plan.
        out.decision.kind = core::Decision::Kind::kAllow;
        out.decision.reason = "permitted: step " + std::to_string(plan_match.step) + " of plan " +
                              plan_match.plan_id + " was approved by " + plan_match.approval_group;
        Json note = Json::MakeObject();
        note.Set("group", plan_match.approval_group);
        note.Set("plan", plan_match.plan_id);
        decided.Set("approval", std::move(note));
      }
    }
  }
  // A step is given back unless the call is forwarded.
  struct PlanGuard {
    plan::PlanBook* book;
    const plan::StepMatch& match;
    bool forwarded = false;
    ~PlanGuard() {
      if (book != nullptr && !forwarded) book->Release(match);
    }
  } plan_guard{deps_.plans, plan_match};

  // Budgets: reserve the estimated cost on every matching budget, all or nothing. The
  // reservation rides in the durable decision record, which is how a restart recovers it.
  budget::Reservation reservation;
  std::optional<budget::Exceeded> exceeded;
  const bool may_proceed =
      out.decision.allowed() ||
      (out.decision.kind == core::Decision::Kind::kApprovalRequired && deps_.approvals != nullptr);
  if (may_proceed && deps_.budgets != nullptr) {
    budget::CallFacts facts;
    facts.sid = caller.sid();
    facts.run = caller.run();
    facts.agent = caller.agent();
    facts.human = caller.human();
    facts.task = caller.claims->task;
    facts.upstream = action.upstream;
    facts.action_id = action.Id();
    facts.cls = action.cls;
    budget::Exceeded why;
    auto reserved = deps_.budgets->Reserve(facts, &why);
    if (reserved.ok()) {
      reservation = std::move(reserved).value();
      if (!reservation.empty()) {
        // Top level: what recovery replays; in the decision: what was consulted (invariant 6).
        decided.Set("budgets", reservation.ToJson());
        out.decision.budgets = reservation.ToJson();
      }
    } else {
      exceeded = why;
      decided.Set("budget_exceeded", why.ToJson());
      out.decision = Deny(std::move(out.decision), ErrorCode::kBudgetExceeded, reserved.error().message);
    }
  }
  // Every reservation is settled or released exactly once: released unless settled below.
  struct ReservationGuard {
    budget::BudgetLedger* ledger;
    const budget::Reservation& reservation;
    ~ReservationGuard() {
      if (ledger != nullptr && reservation.open()) ledger->Release(reservation);
    }
  } reservation_guard{deps_.budgets, reservation};

  // From here the call can wait (parked for approval, then on its upstream): registered so
  // that a revocation cancels the wait (CancelRevoked), observed through the thread's cancel
  // scope by the approval book and by the invoker's blocking I/O.
  auto cancel = std::make_shared<core::CancelSignal>();
  struct InflightGuard {
    const Pipeline* pipeline;
    uint64_t id;
    ~InflightGuard() {
      std::lock_guard<std::mutex> lock(pipeline->inflight_mu_);
      pipeline->inflight_.erase(id);
    }
  } inflight_guard{this, [&] {
                     std::lock_guard<std::mutex> lock(inflight_mu_);
                     const uint64_t id = next_inflight_id_++;
                     inflight_.emplace(id, InflightCall{&caller, cancel});
                     return id;
                   }()};

  // Approval (after the budgets, as DESIGN.md section 3 orders them, so a parked call holds
  // its reservation and an approval is never spent on a call its budget refuses): ask the
  // group, park up to its wait, and go on only when approved for exactly these arguments.
  if (out.decision.kind == core::Decision::Kind::kApprovalRequired && deps_.approvals != nullptr) {
    bool shutting_down = false;
    {
      std::lock_guard<std::mutex> lock(inflight_mu_);
      inflight_.at(inflight_guard.id).parked = true;
      shutting_down = releasing_parked_;
    }
    if (shutting_down) cancel->Cancel();  // never park once shutdown began
    {
      core::CancelScope scope(cancel.get());
      decided.Set("approval", SeekApproval(caller, action, args_canonical, &out.decision));
    }
    {
      std::lock_guard<std::mutex> lock(inflight_mu_);
      inflight_.at(inflight_guard.id).parked = false;
      shutting_down = releasing_parked_;
    }
    if (cancel->cancelled()) {
      // Nothing is forwarded even if the approval came at the same moment (it is used up:
      // fail closed). Revoked: the agent learns why; else Mandate is shutting down.
      if (!CheckRevocation(caller).ok() || !shutting_down) {
        out.decision = Deny(std::move(out.decision), ErrorCode::kTokenRevoked,
                            "the session was revoked while the call waited for approval");
      } else {
        out.decision = Deny(std::move(out.decision), ErrorCode::kUpstreamUnavailable,
                            "Mandate is shutting down; the call waited for approval and was not forwarded");
      }
    }
  }

  // The upstream's breaker, asked only for calls policy allows: an open breaker refuses the
  // call before anything is forwarded, and the decision record says so.
  CircuitBreaker* breaker = nullptr;
  Admission admission;
  if (out.decision.allowed() && deps_.breakers != nullptr) {
    if (auto it = deps_.breakers->find(action.upstream); it != deps_.breakers->end()) {
      breaker = it->second;
      admission = breaker->Admit();
      if (!admission.admitted()) {
        const int64_t retry_s = (admission.retry_after_micros() + 999999) / 1000000;
        out.decision = Deny(std::move(out.decision), ErrorCode::kUpstreamUnavailable,
                            "upstream " + action.upstream + " is unavailable: its circuit breaker is open" +
                                (retry_s > 0 ? " (retry in " + std::to_string(retry_s) + " s)"
                                             : std::string(" (a probe call is in flight)")));
        breaker = nullptr;
      }
    }
  }
  // Every admitted call is reported to the breaker exactly once; unless the upstream answered
  // (Record below), the call ended for a reason that is not the upstream's fault.
  struct BreakerGuard {
    CircuitBreaker* breaker;
    const Admission& admission;
    bool reported = false;
    ~BreakerGuard() {
      if (breaker != nullptr && !reported) breaker->Abandon(admission);
    }
  } breaker_guard{breaker, admission};
  if (!out.decision.allowed() && reservation.open()) {
    // Refused after reserving (approval denied or still pending, breaker open): nothing is
    // forwarded, so nothing is spent, and the record must not make recovery count it.
    decided.Erase("budgets");
    out.decision.budgets = Json::MakeArray();
    deps_.budgets->Release(reservation);
  }
  decided.Set("decision", out.decision.ToJson());

  // The decision record is appended without waiting for it to be durable; the gate opens
  // once it is (DESIGN.md invariant 2: nothing is forwarded before). An allowed call whose
  // invoker honours the gate goes on at once (revocation check, Txn-Token) and hands its
  // upstream send to the gate, so it sleeps once, for the answer, rather than once for the
  // disk and once for the answer; any other call waits for the record here, as before.
  auto gate = std::make_shared<core::ForwardGate>();
  auto append_decided = [&] {
    return deps_.audit->AppendThen(decided, [gate](const core::Status& durable) { gate->Decide(durable); });
  };
  auto appended = append_decided();
  if (!appended.ok() && (appended.error().code == ErrorCode::kBadRequest ||
                         appended.error().code == ErrorCode::kPayloadTooLarge)) {
    // Every decision leaves a record, even one whose arguments the log cannot store: keep
    // their hash and say why they are missing, so a refused probe is never invisible.
    decided.Set("args", [&] {
      Json t = Json::MakeObject();
      t.Set("_unrecordable", appended.error().message);
      return t;
    }());
    appended = append_decided();
  }
  const bool forward_through_gate = appended.ok() && out.decision.allowed() && invoker.HonoursForwardGate();
  if (appended.ok() && !forward_through_gate) {
    if (core::Status durable = gate->Wait(); !durable.ok()) appended = std::move(durable).error();
  }

  if (!out.decision.allowed()) {
    out.outcome.ok = false;
    out.outcome.error = out.decision.code;
    out.outcome.message = out.decision.reason;
    if (exceeded && appended.ok()) {
      Json r = CallRecord("budget.exceeded", caller, action);
      r.Set("decision_id", out.decision.id);
      r.Set("budget", exceeded->ToJson());
      (void)deps_.audit->Submit(r);
    }
    return out;
  }
  // Invariant 2: no side effect without its durable decision record.
  auto refuse_unrecorded = [&](const std::string& why) {
    out.decision = Deny(std::move(out.decision), ErrorCode::kInternal,
                        "the audit log cannot be written, so the call is refused: " + why);
    out.outcome = core::Outcome{};
    out.outcome.ok = false;
    out.outcome.error = ErrorCode::kInternal;
    out.outcome.message = out.decision.reason;
    return out;
  };
  if (!appended.ok()) return refuse_unrecorded(appended.error().message);
  // Stopped after the decision record (durable, or on its way: the Append below comes after
  // it in the log, so it returns once both are durable), before forwarding: the log says why
  // it never went.
  auto never_forwarded = [&](ErrorCode code, const std::string& reason) {
    out.outcome.ok = false;
    out.outcome.error = code;
    out.outcome.message = reason;
    Json r = CallRecord("call.cancelled", caller, action);
    r.Set("decision_id", out.decision.id);
    r.Set("reason", reason);
    if (reservation.open()) r.Set("budgets", reservation.ReleaseJson());  // released by its guard
    (void)deps_.audit->Append(r);
    return out;
  };
  if (auto revoked = CheckRevocation(caller); !revoked.ok()) {
    out.decision = Deny(std::move(out.decision), ErrorCode::kTokenRevoked, revoked.error().message);
    return never_forwarded(ErrorCode::kTokenRevoked, out.decision.reason);
  }

  // Broker: the transaction token this upstream is to receive.
  Forwarding forwarding;
  forwarding.decision_id = out.decision.id;
  if (deps_.txn_tokens != nullptr && deps_.txn_token_audiences != nullptr) {
    if (auto aud = deps_.txn_token_audiences->find(action.upstream); aud != deps_.txn_token_audiences->end()) {
      identity::TxnTokenRequest t;
      t.audience = aud->second;
      t.txn = out.decision.id;
      t.sub = caller.human();
      t.agent = caller.agent();
      t.action = action.Id();
      t.args_sha256 = args_sha256;
      t.run = caller.run();
      t.sid = caller.sid();
      t.task = caller.claims->task;
      t.chain = caller.chain;
      auto minted = deps_.txn_tokens->Mint(t, deps_.clock->NowUnixSeconds());
      if (!minted.ok()) {
        // Fail closed: an upstream that expects to learn who calls never gets an anonymous call.
        return never_forwarded(ErrorCode::kInternal,
                               "the call's transaction token could not be minted: " + minted.error().message);
      }
      forwarding.txn_token = std::move(minted).value();
    }
  }

  plan_guard.forwarded = true;  // the upstream may act: the step is spent
  // In flight: a revocation cancels it through the signal registered above.
  const int64_t start = deps_.clock->NowUnixMicros();
  {
    core::CancelScope scope(cancel.get());
    core::ForwardGateScope gate_scope(forward_through_gate ? gate.get() : nullptr);
    out.outcome = invoker.Invoke(action, caller, forwarding);
  }
  // Whether the upstream may have been reached. Not when the invoker returned while the gate
  // was still undecided: it gave up before its send could leave (a revocation, a deadline, a
  // closed connection while the decision record synced). Such a call spends nothing (plan
  // step, budget) and tells the breaker nothing about the upstream.
  bool upstream_reached = true;
  if (forward_through_gate) {
    upstream_reached = gate->decided().has_value();
    // The decision record's fate: known already if the send left, else waited for here.
    if (core::Status durable = gate->Wait(); !durable.ok()) {
      // The gate closed: the invoker sent nothing, so nothing was spent.
      plan_guard.forwarded = false;
      return refuse_unrecorded(durable.error().message);
    }
    if (!upstream_reached) plan_guard.forwarded = false;
  }
  out.outcome.latency_micros = deps_.clock->NowUnixMicros() - start;
  if (breaker != nullptr && !cancel->cancelled() && upstream_reached) {
    // The upstream answered (even with a tool-level error) or it did not.
    const bool upstream_failed = !out.outcome.ok && (out.outcome.error == ErrorCode::kUpstreamUnavailable ||
                                                     out.outcome.error == ErrorCode::kUpstreamTimeout ||
                                                     out.outcome.error == ErrorCode::kUpstreamError);
    breaker->Record(admission, !upstream_failed);
    breaker_guard.reported = true;
  }
  if (cancel->cancelled()) {
    // The session (or an ancestor, its agent, human or task) was revoked while the upstream
    // worked on the call: the agent learns why, whatever the upstream did or answered.
    out.outcome.ok = false;
    out.outcome.error = ErrorCode::kTokenRevoked;
    out.outcome.message = "the session was revoked while the call was in flight; the call was cancelled";
    out.outcome.result = Json();
    Json r = CallRecord("call.cancelled", caller, action);
    r.Set("decision_id", out.decision.id);
    r.Set("reason", out.outcome.message);
    // In flight at the upstream, or still waiting at the gate (then it never left).
    r.Set("in_flight", upstream_reached);
    if (deps_.budgets != nullptr && reservation.open()) {
      if (upstream_reached) {
        // The upstream may have acted before the cancellation: the cost counts.
        r.Set("budgets", reservation.SettlementJson({}));
        deps_.budgets->Settle(reservation, {});
      } else {
        r.Set("budgets", reservation.ReleaseJson());
        deps_.budgets->Release(reservation);
      }
    }
    r.Set("latency_micros", out.outcome.latency_micros);
    (void)deps_.audit->Submit(r);
    return out;
  }
  // With no secret to scrub, ScrubJson would return a copy of the result: skip it.
  if (!deps_.scrubber->empty()) out.outcome.result = deps_.scrubber->ScrubJson(out.outcome.result);
  if (!out.outcome.ok) out.outcome.message = deps_.scrubber->Scrub(out.outcome.message);

  Json completed = CallRecord("call.completed", caller, action);
  if (deps_.budgets != nullptr && reservation.open()) {
    // Released only when the upstream was certainly not reached; anything else may have had
    // its side effect and counts in full (never under-count).
    if (!out.outcome.ok && (out.outcome.error == ErrorCode::kUpstreamUnavailable || !upstream_reached)) {
      completed.Set("budgets", reservation.ReleaseJson());
      deps_.budgets->Release(reservation);
    } else {
      completed.Set("budgets", reservation.SettlementJson({}));
      deps_.budgets->Settle(reservation, {});
    }
  }
  completed.Set("decision_id", out.decision.id);
  completed.Set("status", out.outcome.ok ? (out.outcome.tool_error ? "tool_error" : "ok") : "failed");
  if (!out.outcome.ok) {
    completed.Set("error", std::string(core::PublicCode(out.outcome.error)));
    completed.Set("message", out.outcome.message);
  }
  const std::string result_canonical = out.outcome.result.Canonical();
  completed.Set("result_hash", core::Sha256Hex(result_canonical));
  if (out.outcome.ok && !rule.side_effects.empty()) {
    Json refs = Json::MakeObject();
    for (const auto& [name, pointer] : rule.side_effects) {
      std::optional<Json> v = ExtractSideEffect(out.outcome.result, pointer);
      if (!v || v->is_null()) continue;
      std::string text = v->is_string() ? v->as_string() : v->Canonical();
      if (text.size() > core::kAuditSideEffectBytesMax) text.resize(core::kAuditSideEffectBytesMax);
      refs.Set(name, deps_.scrubber->Scrub(text));
    }
    if (!refs.as_object().empty()) completed.Set("side_effects", std::move(refs));
  }
  completed.Set("latency_micros", out.outcome.latency_micros);
  // The result (already scrubbed above; bounded like the arguments) is lent to the record for
  // the Submit, which only serializes it, rather than copied into it.
  bool result_lent = false;
  if (rule.hash_only) {
    completed.Set("payload", "hash");
  } else if (out.outcome.ok) {
    if (result_canonical.size() > core::kAuditArgsBytesMax) {
      completed.Set("result", TruncatedPayload(result_canonical.size()));
    } else {
      completed.Set("result", std::move(out.outcome.result));
      result_lent = true;
    }
  }
  // The side effect already happened and its decision record is durable; the completion
  // rides the next group commit instead of holding the answer for a second fdatasync (a crash
  // can lose a completion, never a decision). A failure here cannot undo the call; it fails
  // the log, which refuses every later call.
  (void)deps_.audit->Submit(completed);
  if (result_lent) out.outcome.result = std::move(*completed.Find("result"));
  return out;
}

core::Result<uint64_t> Pipeline::Record(Json record) const { return deps_.audit->Append(record); }

}  // namespace mandate::gateway
