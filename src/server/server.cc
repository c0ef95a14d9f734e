#include "server/server.h"

#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "mandate/adapters/mcp/endpoint.h"
#include "mandate/adapters/mcp/upstream.h"
#include "mandate/audit/audit_log.h"
#include "mandate/audit/merkle_log.h"
#include "mandate/audit/reader.h"
#include "mandate/approval/approval.h"
#include "mandate/budget/budget.h"
#include "mandate/broker/credentials.h"
#include "mandate/core/crypto.h"
#include "mandate/core/encoding.h"
#include "mandate/core/limits.h"
#include "mandate/gateway/pipeline.h"
#include "mandate/identity/dpop.h"
#include "mandate/identity/signing_keys.h"
#include "mandate/identity/token_issuer.h"
#include "mandate/identity/token_verifier.h"
#include "mandate/net/http.h"
#include "mandate/policy/policy_set.h"
#include "mandate/revocation/revocation_set.h"
#include "mandate/store/sqlite_store.h"
#include "server/admin_api.h"
#include "server/approver_tokens.h"
#include "server/audit_indexer.h"
#include "server/plans.h"
#include "server/policy_reloader.h"
#include "server/policy_schema.h"
#include "server/token_exchange.h"

namespace mandate::server {
namespace {

using core::ErrorCode;
using core::MakeError;

core::Status EnsureDir(const std::string& path, mode_t mode) {
  struct stat st{};
  if (stat(path.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return MakeError(ErrorCode::kInternal, path + " exists and is not a directory");
    return core::OkStatus();
  }
  // Create parents too.
  auto slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) MANDATE_RETURN_IF_ERROR(EnsureDir(path.substr(0, slash), 0755));
  if (mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return MakeError(ErrorCode::kInternal, "cannot create directory " + path + ": " + std::strerror(errno));
  }
  return core::OkStatus();
}

// Writes `content` to `path` with mode 0600, created exclusively (never widening an existing
// file's mode after the fact).
core::Status WriteSecretFile(const std::string& path, const std::string& content) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return MakeError(ErrorCode::kInternal, "cannot create " + path + ": " + std::strerror(errno));
  bool ok = write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  ok = fsync(fd) == 0 && ok;
  close(fd);
  if (!ok) return MakeError(ErrorCode::kInternal, "cannot write " + path);
  return core::OkStatus();
}

core::Result<std::string> LoadOrCreateAdminToken(const std::string& data_dir) {
  const std::string path = data_dir + "/admin.token";
  struct stat st{};
  if (stat(path.c_str(), &st) == 0) {
    if ((st.st_mode & 077) != 0) {
      return MakeError(ErrorCode::kInternal, path + " is readable by group or others; chmod 600 it");
    }
    std::ifstream in(path);
    std::string token;
    std::getline(in, token);
    if (token.size() < 32) return MakeError(ErrorCode::kInternal, path + " does not hold a valid admin token");
    return token;
  }
  std::string token = "mdt_" + core::HexEncode(core::RandomBytes(32));
  MANDATE_RETURN_IF_ERROR(WriteSecretFile(path, token + "\n"));
  return token;
}

class ServerImpl final : public Server {
 public:
  ~ServerImpl() override { Stop(); }

  core::Status Init(Config config, std::function<void(const std::string&)> log) {
    config_ = std::move(config);
    log_ = std::move(log);
    MANDATE_RETURN_IF_ERROR(EnsureDir(config_.data_dir, 0700));

    MANDATE_ASSIGN_OR_RETURN(admin_token_, LoadOrCreateAdminToken(config_.data_dir));
    MANDATE_ASSIGN_OR_RETURN(store_, store::SqliteStore::Open(config_.data_dir + "/mandate.db"));
    MANDATE_ASSIGN_OR_RETURN(keys_, identity::SigningKeys::LoadOrCreate(
                                        config_.data_dir + "/keys",
                                        config_.tokens.alg == TokenAlg::kES256 ? identity::Alg::kES256 : identity::Alg::kEdDSA));
    issuer_ = std::make_unique<identity::TokenIssuer>(*keys_);

    // Credentials first: an unset secret must stop the start, not surface at the first call.
    std::vector<broker::CredentialSource> sources;
    for (const auto& [name, c] : config_.credentials) {
      sources.push_back({name, c.source == CredentialSource::kEnv ? c.env_var : "",
                         c.source == CredentialSource::kFile ? c.file_path : ""});
    }
    MANDATE_ASSIGN_OR_RETURN(credentials_, broker::CredentialStore::Load(sources, [](const char* n) { return std::getenv(n); }));

    auto policies = policy::PolicySet::LoadDir(config_.policies_dir);
    if (!policies.ok()) return MakeError(policies.error().code, "policies: " + policies.error().message);
    policies_.Set(std::make_shared<const policy::PolicySet>(std::move(policies).value()));
    MANDATE_ASSIGN_OR_RETURN(revocations_, revocation::RevocationSet::Load(*store_));
    audit::MerkleLog::Options audit_options;
    audit_options.origin = config_.audit_origin;
    audit_options.checkpoint_records = config_.audit_checkpoint_records;
    audit_options.checkpoint_interval_micros = config_.audit_checkpoint_interval_millis * 1000;
    MANDATE_ASSIGN_OR_RETURN(auto audit_log,
                             audit::MerkleLog::Open(config_.audit_dir, clock_, audit_options));
    audit_ = std::move(audit_log);

    MANDATE_ASSIGN_OR_RETURN(auto humans, store_->ListHumans());
    for (const auto& h : humans) directory_.PutHuman(h.name, h.groups);
    MANDATE_ASSIGN_OR_RETURN(auto agents, store_->ListAgents());
    for (const auto& a : agents) directory_.PutAgent(a.name, a.owner, a.groups);

    identity::VerifierOptions vopts;
    vopts.issuer = config_.tokens.issuer;
    vopts.audience = config_.tokens.audience;
    vopts.alg = config_.tokens.alg == TokenAlg::kES256 ? identity::Alg::kES256 : identity::Alg::kEdDSA;
    MANDATE_ASSIGN_OR_RETURN(verifier_, identity::TokenVerifier::Create(vopts, *keys_, clock_));

    gateway::PipelineDeps deps;
    deps.clock = &clock_;
    deps.verifier = verifier_.get();
    deps.revocations = revocations_.get();
    deps.policies = &policies_;
    deps.directory = &directory_;
    deps.audit = audit_.get();
    deps.scrubber = &credentials_->scrubber();
    BuildAuditRules();
    deps.audit_rules = &audit_rules_;
    BuildBreakers();
    deps.breakers = &breaker_index_;
    MANDATE_RETURN_IF_ERROR(BuildBudgets());
    deps.budgets = budgets_.get();
    MANDATE_RETURN_IF_ERROR(BuildApprovals());
    deps.approvals = approvals_.get();
    // Plan events are durable before the answer to POST /v1/plans (fail closed on the log).
    plans_ = std::make_unique<plan::PlanBook>(clock_, [this](const core::Json& event) {
      (void)audit_->Append(event);
    });
    deps.plans = plans_.get();
    txn_tokens_ = std::make_unique<identity::TxnTokenIssuer>(*keys_, config_.tokens.issuer);
    for (const auto& [name, uc] : config_.upstreams) {
      if (uc.txn_token) txn_token_audiences_.emplace(name, uc.txn_token_audience);
    }
    deps.txn_tokens = txn_tokens_.get();
    deps.txn_token_audiences = &txn_token_audiences_;
    // DPoP (RFC 9449): one verifier, so one replay cache, for every endpoint of the agent
    // listener. Agents address the listener by the scheme of tokens.issuer (http by default;
    // https when a TLS-terminating proxy serves it): the scheme of the URI proofs sign (htu).
    MANDATE_ASSIGN_OR_RETURN(dpop_, identity::DpopVerifier::Create());
    deps.dpop = dpop_.get();
    deps.dpop_scheme = config_.tokens.issuer.rfind("https://", 0) == 0 ? "https" : "http";
    pipeline_ = std::make_unique<gateway::Pipeline>(deps);
    plan_service_ = std::make_unique<PlanService>(PlanServiceDeps{
        pipeline_.get(), plans_.get(), approvals_.get(),
        [this](std::string_view upstream, std::string_view tool, core::Json args) {
          return mcp_->ActionFor(upstream, tool, std::move(args));
        }});

    // The set every decision from now on is made with, in the log before the first decision.
    {
      auto active = policies_.Get();
      core::Json rec = core::Json::MakeObject();
      rec.Set("type", "policy.loaded");
      rec.Set("dir", config_.policies_dir);
      rec.Set("sha256", active->source_sha256());
      rec.Set("policies", static_cast<int64_t>(active->size()));
      rec.Set("previous_sha256", core::Json());
      MANDATE_RETURN_IF_ERROR(pipeline_->Record(std::move(rec)));
    }
    reloader_ = std::make_unique<PolicyReloader>(config_.policies_dir, &policies_, pipeline_.get(), log_);
    MANDATE_RETURN_IF_ERROR(reloader_->Start());
    // The audit index follows the log on its own thread, never on a call's path.
    audit_index_ = std::make_unique<AuditIndexer>(config_.audit_dir, store_.get(), &clock_, log_);
    audit_index_->Start();

    MANDATE_RETURN_IF_ERROR(StartUpstreams());

    AdminContext admin;
    admin.config = &config_;
    admin.admin_token = admin_token_;
    admin.clock = &clock_;
    admin.store = store_.get();
    admin.issuer = issuer_.get();
    admin.revocations = revocations_.get();
    admin.directory = &directory_;
    admin.pipeline = pipeline_.get();
    admin.upstream_names = upstream_names_;
    token_exchange_ = std::make_unique<TokenExchange>(
        SessionDeps{&config_, &clock_, store_.get(), issuer_.get(), pipeline_.get(), revocations_.get()}, upstream_names_);
    admin.reload_policies = [this] { return reloader_->Reload().ToJson(); };
    // The config joined with each upstream's tools/list (cached by the upstream once fetched).
    // inputSchemas are scrubbed like the tools/list agents see.
    admin.policy_schema_source = [this] {
      LiveToolLists live;
      for (size_t i = 0; i < upstreams_.size(); ++i) live.emplace(upstream_names_[i], upstreams_[i]->ListTools());
      policy::SchemaSource source = SchemaSourceFromConfig(config_, &live);
      for (policy::UpstreamSource& u : source.upstreams) {
        u.tools_error = credentials_->scrubber().Scrub(u.tools_error);
        for (policy::ToolSource& t : u.tools) t.input_schema = credentials_->scrubber().ScrubJson(t.input_schema);
      }
      return source;
    };
    admin.keys = keys_.get();
    // Approver tokens: the approvals page's and approvers' credential (admin listener only).
    {
      ApproverTokenDeps approver_deps;
      approver_deps.config = &config_;
      approver_deps.clock = &clock_;
      approver_deps.keys = keys_.get();
      approver_deps.issuer = issuer_.get();
      approver_deps.revocations = revocations_.get();
      approver_deps.directory = &directory_;
      approver_deps.record = [this](core::Json rec) -> core::Status {
        auto appended = pipeline_->Record(std::move(rec));
        if (!appended.ok()) return std::move(appended).error();
        return core::OkStatus();
      };
      MANDATE_ASSIGN_OR_RETURN(approver_tokens_, ApproverTokens::Create(std::move(approver_deps)));
    }
    admin.approver_tokens = approver_tokens_.get();
    // Cached verifications must not outlive a key that was retired early.
    admin.on_keys_rotated = [this] {
      verifier_->ClearCache();
      approver_tokens_->ClearCache();
    };
    admin.audit_index = audit_index_.get();
    if (budgets_) admin.budget_usage = [this] { return budgets_->Usage(); };
    admin.approvals = approvals_.get();
    admin.on_approval_decided = [this](const std::string& id) { plan_service_->OnApprovalDecided(id); };
    admin.show_plan = [this](std::string_view id) { return plan_service_->Show(id); };
    admin.upstream_health = [this] {
      core::Json list = core::Json::MakeArray();
      for (const auto& b : breakers_) list.Push(b->Snapshot());
      core::Json out = core::Json::MakeObject();
      out.Set("upstreams", std::move(list));
      return out;
    };
    admin.action_for = [this](std::string_view upstream, std::string_view tool, core::Json args) {
      return mcp_->ActionFor(upstream, tool, std::move(args));
    };
    admin_api_ = std::make_unique<AdminApi>(admin);

    net::HttpServerOptions admin_opts;
    admin_opts.host = config_.admin_listen.host;
    admin_opts.port = config_.admin_listen.port;
    admin_opts.connections_max = core::kAdminConnectionsMax;
    MANDATE_ASSIGN_OR_RETURN(admin_server_, net::HttpServer::Start(admin_opts, [this](net::HttpRequest req, std::shared_ptr<net::ResponseSink> sink) {
                               admin_api_->Serve(req, sink);
                             }));
    net::HttpServerOptions agent_opts;
    agent_opts.host = config_.listen.host;
    agent_opts.port = config_.listen.port;
    agent_opts.connections_max = config_.max_connections;
    MANDATE_ASSIGN_OR_RETURN(agent_server_, net::HttpServer::Start(agent_opts, [this](net::HttpRequest req, std::shared_ptr<net::ResponseSink> sink) {
                               HandleAgent(req, sink);
                             }));
    // Publish the admin address for the CLI (port 0 picks a free port).
    const std::string addr = "http://" + config_.admin_listen.host + ":" + std::to_string(admin_server_->port());
    std::string tmp = config_.data_dir + "/admin.addr.tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << addr << "\n";
    }
    std::rename(tmp.c_str(), (config_.data_dir + "/admin.addr").c_str());
    return core::OkStatus();
  }

  uint16_t agent_port() const override { return agent_server_ ? agent_server_->port() : 0; }
  uint16_t admin_port() const override { return admin_server_ ? admin_server_->port() : 0; }

  void Stop() override {
    if (stopped_) return;
    stopped_ = true;
    // Parked calls would hold the listener's workers for up to their approval wait.
    if (pipeline_) pipeline_->ReleaseParked();
    if (agent_server_) agent_server_->Stop();
    if (admin_server_) admin_server_->Stop();
    if (reloader_) reloader_->Stop();
    if (audit_index_) audit_index_->Stop();
    for (auto& u : upstreams_) u->Stop();
    if (audit_) audit_->Close();
  }

 private:
  core::Status StartUpstreams() {
    std::vector<adapters::mcp::UpstreamBinding> bindings;
    for (const auto& [name, uc] : config_.upstreams) {
      std::string secret;
      if (!uc.credential.empty()) {
        MANDATE_ASSIGN_OR_RETURN(secret, credentials_->Get(uc.credential));
      }
      std::unique_ptr<adapters::mcp::McpUpstream> up;
      if (uc.transport == UpstreamTransport::kStdio) {
        adapters::mcp::StdioUpstreamOptions o;
        o.name = name;
        o.command = uc.command;
        for (const auto& [k, v] : uc.env) o.env.emplace_back(k, v);
        if (!uc.credential_env.empty()) o.env.emplace_back(uc.credential_env, secret);
        o.cwd = uc.cwd;
        o.max_inflight = uc.max_inflight;
        auto started = adapters::mcp::StartStdioUpstream(std::move(o));
        if (!started.ok()) return MakeError(started.error().code, "upstream \"" + name + "\": " + started.error().message);
        up = std::move(started).value();
      } else {
        adapters::mcp::HttpUpstreamOptions o;
        o.name = name;
        o.url = uc.url;
        o.credential_header = uc.credential_header.empty() ? "Authorization" : uc.credential_header;
        if (!secret.empty()) o.credential_value = uc.credential_header_prefix + secret;
        o.max_inflight = uc.max_inflight;
        o.client = &http_client_;
        auto started = adapters::mcp::StartHttpUpstream(std::move(o));
        if (!started.ok()) return MakeError(started.error().code, "upstream \"" + name + "\": " + started.error().message);
        up = std::move(started).value();
      }
      adapters::mcp::UpstreamBinding b;
      b.name = name;
      b.upstream = up.get();
      for (const auto& [tool, tc] : uc.tools) {
        b.tool_classes[tool] = tc.action_class;
        if (tc.timeout_millis > 0) b.tool_timeouts_millis[tool] = static_cast<int>(tc.timeout_millis);
      }
      if (!uc.resource_type.empty()) b.resource = adapters::mcp::ResourceTemplate{uc.resource_type, uc.resource_id_template};
      b.timeout_millis = static_cast<int>(uc.timeout_millis);
      bindings.push_back(std::move(b));
      upstream_names_.push_back(name);
      upstreams_.push_back(std::move(up));
      log_("upstream \"" + name + "\" started");
    }
    mcp_ = std::make_unique<adapters::mcp::McpEndpoint>(pipeline_.get(), std::move(bindings));
    return core::OkStatus();
  }

  // Per upstream and per tool: what the audit log keeps of payloads, and the side-effect
  // references it extracts. A tool inherits each unset field from its upstream.
  void BuildAuditRules() {
    auto resolve = [](const AuditPayloadConfig& c, const gateway::AuditRule* base) {
      gateway::AuditRule r = base ? *base : gateway::AuditRule{};
      if (c.hash_only) r.hash_only = *c.hash_only;
      if (c.side_effects) r.side_effects.assign(c.side_effects->begin(), c.side_effects->end());
      return r;
    };
    for (const auto& [name, uc] : config_.upstreams) {
      gateway::AuditRule up = resolve(uc.audit, nullptr);
      for (const auto& [tool, tc] : uc.tools) {
        if (tc.audit.hash_only || tc.audit.side_effects) {
          audit_rules_.SetTool(name + ":" + tool, resolve(tc.audit, &up));
        }
      }
      audit_rules_.SetUpstream(name, std::move(up));
    }
  }

  // The budgets of the config, with their usage recovered from the audit log: every durable
  // decision record carries its reservation and every completion its settlement, so a restart
  // never resets a window and never forgets a reservation (an unsettled one counts in full).
  core::Status BuildBudgets() {
    if (config_.budgets.empty()) return core::OkStatus();
    std::vector<budget::BudgetSpec> specs;
    for (const BudgetConfig& b : config_.budgets) {
      budget::BudgetSpec spec;
      spec.name = b.name;
      MANDATE_ASSIGN_OR_RETURN(spec.metric, budget::ParseMetric(b.metric));
      std::string window = b.window_kind == BudgetWindowKind::kRun          ? "run"
                           : b.window_kind == BudgetWindowKind::kCalendarDay ? "1d"
                                                                             : std::to_string(b.window_millis) + "ms";
      MANDATE_ASSIGN_OR_RETURN(spec.window, budget::ParseWindow(window));
      static constexpr std::string_view kScopes[] = {"session", "session_tree", "agent", "human", "task"};
      MANDATE_ASSIGN_OR_RETURN(spec.scope, budget::ParseScope(kScopes[static_cast<size_t>(b.scope)]));
      spec.limit = b.limit;
      if (!b.match.agent.empty()) spec.match.agents.push_back(b.match.agent);
      if (!b.match.human.empty()) spec.match.humans.push_back(b.match.human);
      if (!b.match.upstream.empty()) spec.match.upstreams.push_back(b.match.upstream);
      if (!b.match.action.empty()) spec.match.actions.push_back(b.match.action);
      if (b.match.action_class) spec.match.classes.push_back(*b.match.action_class);
      specs.push_back(std::move(spec));
    }
    MANDATE_ASSIGN_OR_RETURN(budgets_, budget::BudgetLedger::Create(std::move(specs), clock_));
    uint64_t reservations = 0;
    auto scanned = audit::ScanLog(
        config_.audit_dir, audit::ScanCursor{}, std::numeric_limits<size_t>::max(),
        [&](const audit::ScannedRecord& r) -> core::Status {
          const core::Json* b = r.record->Find("budgets");
          if (b == nullptr) return core::OkStatus();
          const std::string& type = r.record->GetString("type");
          if (type == "call.decided") {
            ++reservations;
            return budgets_->Recover(*b);
          }
          if (type == "call.completed" || type == "call.cancelled") return budgets_->RecoverSettlement(*b);
          return core::OkStatus();
        });
    if (!scanned.ok()) {
      return MakeError(core::ErrorCode::kInternal,
                       "budgets: cannot recover usage from the audit log: " + scanned.error().message);
    }
    log_("budgets: " + std::to_string(config_.budgets.size()) + " enforced; usage recovered from " +
         std::to_string(reservations) + " reservations in the audit log");
    return core::OkStatus();
  }

  // The approval groups of the config. Every approval event is appended durably before the
  // book lets a parked call go on, so the log has the decision before the call's records.
  core::Status BuildApprovals() {
    std::vector<approval::ApprovalGroup> groups;
    for (const auto& [name, g] : config_.approvals) {
      approval::ApprovalGroup a;
      a.name = name;
      a.min_approvers = g.min_approvers;
      a.exclude_requester = g.exclude_requester;
      a.wait_micros = g.wait_millis * 1000;
      a.expiry_micros = g.expiry_millis * 1000;
      groups.push_back(std::move(a));
    }
    MANDATE_ASSIGN_OR_RETURN(approvals_, approval::ApprovalBook::Create(
                                             std::move(groups), clock_, [this](const core::Json& event) {
                                               (void)audit_->Append(event);
                                             }));
    return core::OkStatus();
  }

  // One breaker per upstream; each state change is audited (circuit.opened, circuit.half_open,
  // circuit.closed) on the thread whose call caused it.
  void BuildBreakers() {
    for (const auto& [name, uc] : config_.upstreams) {
      gateway::CircuitBreakerOptions o;
      o.failure_threshold = uc.breaker_failures;
      o.cool_down_micros = uc.breaker_cool_down_millis * 1000;
      auto breaker = std::make_unique<gateway::CircuitBreaker>(
          name, o, clock_, [this](const gateway::CircuitBreaker::Transition& t) {
            core::Json rec = core::Json::MakeObject();
            rec.Set("type", std::string(gateway::TransitionRecordType(t.to)));
            rec.Set("upstream", std::string(t.upstream));
            rec.Set("from", std::string(gateway::StateName(t.from)));
            rec.Set("to", std::string(gateway::StateName(t.to)));
            rec.Set("consecutive_failures", static_cast<int64_t>(t.consecutive_failures));
            if (t.retry_at_unix_micros > 0) rec.Set("retry_at", (t.retry_at_unix_micros + 999999) / 1000000);
            (void)audit_->Submit(rec);
            log_("upstream \"" + std::string(t.upstream) + "\" circuit " + std::string(gateway::StateName(t.to)));
          });
      breaker_index_.emplace(name, breaker.get());
      breakers_.push_back(std::move(breaker));
    }
  }

  void HandleAgent(const net::HttpRequest& req, const std::shared_ptr<net::ResponseSink>& sink) {
    if (req.path.rfind("/mcp/", 0) == 0) {
      mcp_->Handle(req, sink);
      return;
    }
    if (req.method == "GET" && req.path == "/healthz") {
      sink->Send(net::HttpResponse::Json(200, R"({"status":"ok"})"));
      return;
    }
    if (req.path == "/oauth/token") {
      if (req.method != "POST") {
        auto r = net::HttpResponse::Json(405, R"({"error":"invalid_request","error_description":"use POST"})");
        r.headers.emplace_back("Allow", "POST");
        sink->Send(std::move(r));
        return;
      }
      sink->Send(token_exchange_->Handle(req));
      return;
    }
    if (req.method == "GET" && req.path == "/.well-known/jwks.json") {
      auto r = net::HttpResponse::Json(200, keys_->Jwks().Dump());
      r.headers.emplace_back("Cache-Control", "max-age=300");
      sink->Send(std::move(r));
      return;
    }
    if (req.method == "GET" && req.path == "/.well-known/oauth-protected-resource") {
      core::Json j = core::Json::MakeObject();
      j.Set("resource", config_.tokens.issuer);
      core::Json servers = core::Json::MakeArray();
      servers.Push(config_.tokens.issuer);
      j.Set("authorization_servers", std::move(servers));
      j.Set("jwks_uri", config_.tokens.issuer + "/.well-known/jwks.json");
      core::Json methods = core::Json::MakeArray();
      methods.Push("header");
      j.Set("bearer_methods_supported", std::move(methods));
      // RFC 9728 section 2: the proof algorithms DPoP-bound sessions may sign with.
      core::Json dpop_algs = core::Json::MakeArray();
      dpop_algs.Push("EdDSA");
      dpop_algs.Push("ES256");
      j.Set("dpop_signing_alg_values_supported", std::move(dpop_algs));
      sink->Send(net::HttpResponse::Json(200, j.Dump()));
      return;
    }
    if (req.path == "/v1/plans" || req.path.rfind("/v1/plans/", 0) == 0) {
      sink->Send(Plans(req));
      return;
    }
    if (req.method == "GET" && req.path.rfind("/v1/approvals/", 0) == 0) {
      sink->Send(ApprovalStatus(req, req.path.substr(std::string_view("/v1/approvals/").size())));
      return;
    }
    sink->Send(net::HttpResponse::Error(core::ErrorCode::kNotFound, "no such endpoint"));
  }

  // Authenticates a request of the agent listener, Bearer or DPoP
  // (gateway::Pipeline::AuthenticateRequest); on failure *refusal is the 401 to send, with its
  // WWW-Authenticate challenge.
  core::Result<gateway::Caller> AuthenticateAgent(const net::HttpRequest& req, net::HttpResponse* refusal) const {
    std::string challenge;
    auto caller = pipeline_->AuthenticateRequest(gateway::AgentRequest{req.method, req.target, &req.headers}, &challenge);
    if (!caller.ok()) {
      *refusal = net::HttpResponse::Error(caller.error().code, caller.error().message);
      refusal->headers.emplace_back("WWW-Authenticate", std::move(challenge));
    }
    return caller;
  }

  // POST /v1/plans (submit) and GET /v1/plans/<id> (the session's own plans only: another
  // session's plan is not_found, so ids reveal nothing).
  net::HttpResponse Plans(const net::HttpRequest& req) {
    const bool submit = req.path == "/v1/plans";
    if (req.method != (submit ? "POST" : "GET")) {
      auto r =
          net::HttpResponse::Error(core::ErrorCode::kBadRequest,
                                   submit ? "use POST to submit a plan" : "use GET to read a plan");
      r.status = 405;
      r.headers.emplace_back("Allow", submit ? "POST" : "GET");
      return r;
    }
    net::HttpResponse refusal;
    auto caller = AuthenticateAgent(req, &refusal);
    if (!caller.ok()) return refusal;
    if (!submit) {
      const std::string_view id = std::string_view(req.path).substr(std::string_view("/v1/plans/").size());
      auto shown = plan_service_->Show(id, &caller->sid());
      if (!shown)
        return net::HttpResponse::Error(core::ErrorCode::kNotFound,
                                        "no plan " + std::string(id) + " of this session");
      return net::HttpResponse::Json(200, shown->Dump());
    }
    auto document = core::Json::Parse(req.body, core::kHttpRequestBodyBytesMax);
    if (!document.ok())
      return net::HttpResponse::Error(core::ErrorCode::kBadRequest,
                                      "the plan is not JSON: " + document.error().message);
    auto submitted = plan_service_->Submit(*caller, *document);
    if (!submitted.ok())
      return net::HttpResponse::Error(submitted.error().code, submitted.error().message);
    return net::HttpResponse::Json(submitted->GetString("state") == "active" ? 201 : 202, submitted->Dump());
  }

  // GET /v1/approvals/<id>: a parked or refused call's approval, for the session that asked
  // for it only (another session's approval is not_found, so ids reveal nothing).
  net::HttpResponse ApprovalStatus(const net::HttpRequest& req, std::string_view id) {
    net::HttpResponse refusal;
    auto caller = AuthenticateAgent(req, &refusal);
    if (!caller.ok()) return refusal;
    auto a = approvals_ ? approvals_->Get(std::string(id)) : std::nullopt;
    if (!a || a->GetString("sid") != caller->sid()) {
      return net::HttpResponse::Error(core::ErrorCode::kNotFound,
                                      "no approval " + std::string(id) + " of this session");
    }
    core::Json out = core::Json::MakeObject();
    for (const char* k : {"id", "state", "action", "group", "args_sha256", "min_approvers", "expires_at",
                          "decided_at", "usable_until"}) {
      if (const core::Json* v = a->Find(k)) out.Set(k, *v);
    }
    const core::Json* approvers = a->FindArray("approvers");
    out.Set("approvals", static_cast<int64_t>(approvers ? approvers->as_array().size() : 0));
    return net::HttpResponse::Json(200, out.Dump());
  }

  Config config_;
  std::function<void(const std::string&)> log_;
  const core::SystemClock& clock_ = core::SystemClock::Instance();
  std::string admin_token_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<identity::SigningKeys> keys_;
  std::unique_ptr<identity::TokenIssuer> issuer_;
  std::unique_ptr<identity::TokenVerifier> verifier_;
  std::unique_ptr<broker::CredentialStore> credentials_;
  gateway::PolicyHolder policies_;
  gateway::Directory directory_;
  gateway::AuditRules audit_rules_;
  std::vector<std::unique_ptr<gateway::CircuitBreaker>> breakers_;
  std::unique_ptr<budget::BudgetLedger> budgets_;
  std::unique_ptr<approval::ApprovalBook> approvals_;
  std::unique_ptr<plan::PlanBook> plans_;
  std::unique_ptr<identity::TxnTokenIssuer> txn_tokens_;
  std::map<std::string, std::string, std::less<>> txn_token_audiences_;
  std::unique_ptr<PlanService> plan_service_;
  std::map<std::string, gateway::CircuitBreaker*, std::less<>> breaker_index_;
  std::unique_ptr<revocation::RevocationSet> revocations_;
  std::unique_ptr<audit::AuditLog> audit_;
  std::unique_ptr<identity::DpopVerifier> dpop_;  // before pipeline_, which uses it
  std::unique_ptr<gateway::Pipeline> pipeline_;
  std::unique_ptr<PolicyReloader> reloader_;
  std::unique_ptr<AuditIndexer> audit_index_;
  std::unique_ptr<TokenExchange> token_exchange_;
  net::HttpClient http_client_;
  std::vector<std::unique_ptr<adapters::mcp::McpUpstream>> upstreams_;
  std::vector<std::string> upstream_names_;
  std::unique_ptr<adapters::mcp::McpEndpoint> mcp_;
  std::unique_ptr<ApproverTokens> approver_tokens_;
  std::unique_ptr<AdminApi> admin_api_;
  std::unique_ptr<net::HttpServer> admin_server_;
  std::unique_ptr<net::HttpServer> agent_server_;
  bool stopped_ = false;
};

}  // namespace

core::Result<std::unique_ptr<Server>> Server::Start(Config config, std::function<void(const std::string&)> log) {
  auto server = std::make_unique<ServerImpl>();
  MANDATE_RETURN_IF_ERROR(server->Init(std::move(config), std::move(log)));
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace mandate::server
