// Fuzz target: the MCP endpoint agents reach at /mcp/<upstream>
// (adapters::mcp::McpEndpoint::Handle), with the body of the HTTP request as the fuzzed bytes:
// JSON parsing, the JSON-RPC shape checks, session handling, initialize / ping / tools/list /
// tools/call, and behind them the real gateway pipeline (token verification, revocation,
// scope, Cedar policies, audit, scrubbing).
//
// Built once, wired as src/server/server.cc wires it, in a temporary directory ($TMPDIR)
// removed at exit (all but the audit log is removed right after setup): SigningKeys + TokenIssuer + TokenVerifier (FakeClock), a SqliteStore and
// the RevocationSet loaded from it (task "revoked-task" revoked), a Directory (human alice,
// agent orchestrator), the policies below, a real audit log (re-created every
// kAuditRotateRecords records so it stays small), a Scrubber holding kSecret, and two stub
// upstreams: "echo" (plain) and "repo" (typed resource Repo::"{args.owner}/{args.repo}").
// Both list fixed tools and answer tools/call by echoing the arguments ("leak" answers with
// the secret, "fail" fails with the secret in the message, "tool_error" sets isError).
//
// Input: the first byte is a set of flags for the HTTP request, the rest is its body.
//   0x01 Accept: application/json, text/event-stream (else application/json only)
//   0x02 Mcp-Session-Id of a live session (initialized with the main token)
//   0x04 MCP-Protocol-Version: 2025-11-25; with 0x08 an unsupported version instead
//   0x30 token: 0x00 main (scope echo:* repo:*), 0x10 narrow (echo:echo), 0x20 revoked task,
//        0x30 a malformed bearer token
//   0x40 path /mcp/repo (else /mcp/echo)
//   0x80 method DELETE (else POST)
//
// Invariants (a violation traps, so libFuzzer saves the input):
//   - the handler answers exactly once: one Send, or StartStream + Write... + End;
//   - a body is empty only for 202; a text/event-stream answer (sent whole or streamed) is a
//     200 whose every data: line is a JSON-RPC 2.0 response (exactly one of result / error)
//     with the request's id; any other body is valid JSON, and for a POST answered 200 such a
//     JSON-RPC response;
//   - the secret never reaches the agent unless the agent sent it itself (DESIGN.md
//     invariant 3);
//   - the pipeline's audit records are always accepted by the audit log.
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "mandate/adapters/mcp/endpoint.h"
#include "mandate/adapters/mcp/upstream.h"
#include "mandate/audit/audit_log.h"
#include "mandate/broker/credentials.h"
#include "mandate/core/action.h"
#include "mandate/core/clock.h"
#include "mandate/core/crypto.h"
#include "mandate/core/encoding.h"
#include "mandate/core/json.h"
#include "mandate/gateway/pipeline.h"
#include "mandate/identity/claims.h"
#include "mandate/identity/signing_keys.h"
#include "mandate/identity/token_issuer.h"
#include "mandate/identity/token_verifier.h"
#include "mandate/net/http.h"
#include "mandate/policy/policy_set.h"
#include "mandate/revocation/revocation_set.h"
#include "mandate/store/sqlite_store.h"

namespace {

namespace core = mandate::core;
namespace mcp = mandate::adapters::mcp;
namespace net = mandate::net;
using core::ErrorCode;
using core::Json;

constexpr char kIssuer[] = "https://mandate.example";
constexpr char kAudience[] = "mandate";
constexpr char kSid[] = "ses_fuzz";
constexpr std::string_view kSecret = "mandateFuzzSecret_0123456789";
constexpr uint64_t kAuditRotateRecords = 20000;
constexpr uint64_t kEndpointRecycleRequests = 4096;  // bounds the endpoint's session map

constexpr char kPolicies[] = R"cedar(
@id("humans")
permit (principal is Human, action, resource);

@id("orchestrator-read")
permit (principal == Agent::"orchestrator", action in Action::"read", resource);

@id("orchestrator-echo")
permit (principal in Group::"agents", action in Action::"echo", resource)
unless { context.args has blocked };

@id("repo-writes-need-approval") @approval("maintainers")
permit (principal in Group::"agents", action in Action::"write", resource in Upstream::"repo")
when { context.args has owner && context.args.owner == "acme" };

@id("no-prod-deletes")
forbid (principal, action in Action::"destructive", resource)
when { context.args has env && context.args.env == "prod" };

@id("refund-cap")
forbid (principal, action, resource)
when { context.args has amount_cents && context.args.amount_cents > 50000 };
)cedar";

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

void Die(const char* what, const std::string& why) {
  std::fprintf(stderr, "mcp_message fuzzer setup: %s: %s\n", what, why.c_str());
  std::abort();
}

Json TextContent(std::string text) {
  Json t = Json::MakeObject();
  t.Set("type", "text");
  t.Set("text", std::move(text));
  Json content = Json::MakeArray();
  content.Push(std::move(t));
  Json r = Json::MakeObject();
  r.Set("content", std::move(content));
  return r;
}

class StubUpstream final : public mcp::McpUpstream {
 public:
  explicit StubUpstream(std::string name) : name_(std::move(name)) {}

  const std::string& name() const override { return name_; }

  core::Result<std::vector<mcp::ToolInfo>> ListTools() override {
    std::vector<mcp::ToolInfo> tools;
    auto add = [&](const char* name, const char* annotations,
                   std::optional<core::ActionClass> cls) {
      mcp::ToolInfo t;
      t.name = name;
      auto def = Json::Parse(std::string(R"({"name":")") + name +
                             R"(","description":"stub","inputSchema":{"type":"object"},)" +
                             R"("annotations":)" + annotations + "}");
      Check(def.ok());
      t.definition = std::move(def).value();
      t.annotated_class = cls;
      tools.push_back(std::move(t));
    };
    add("echo", R"({"readOnlyHint":true})", core::ActionClass::kRead);
    add("leak", R"({"readOnlyHint":true})", core::ActionClass::kRead);
    add("fail", R"({"readOnlyHint":true})", core::ActionClass::kRead);
    add("tool_error", R"({"readOnlyHint":true})", core::ActionClass::kRead);
    add("write_thing", R"({"destructiveHint":false})", core::ActionClass::kWrite);
    add("delete_thing", R"({"destructiveHint":true})", std::nullopt);
    return tools;
  }

  core::Result<Json> CallTool(const std::string& tool, const Json& arguments, int timeout_millis,
                              const std::string& /*txn_token*/) override {
    Check(timeout_millis > 0);
    if (!arguments.is_object() && !arguments.is_null()) {
      return core::MakeError(ErrorCode::kBadRequest, "arguments must be an object");
    }
    if (tool == "fail") {
      return core::MakeError(ErrorCode::kUpstreamError,
                             "upstream " + name_ + ": denied for key " + std::string(kSecret));
    }
    if (tool == "leak") {
      return TextContent("the key is " + std::string(kSecret) + " (" +
                         core::Base64Encode(kSecret) + ")");
    }
    Json r = TextContent(arguments.Dump());
    r.Set("structuredContent", arguments.is_null() ? Json::MakeObject() : arguments);
    if (tool == "tool_error") r.Set("isError", true);
    return r;
  }

  void Stop() override {}

 private:
  std::string name_;
};

// The real audit log, re-created in a fresh directory every kAuditRotateRecords records so a
// long run does not fill the disk. Every append must succeed: the pipeline only builds
// records the log accepts.
class RotatingAuditLog final : public mandate::audit::AuditLog {
 public:
  RotatingAuditLog(std::string base_dir, const core::Clock& clock)
      : base_dir_(std::move(base_dir)), clock_(clock) {
    Open();
  }

  core::Result<uint64_t> Append(const Json& record) override {
    std::lock_guard lock(mu_);
    if (++appended_ % kAuditRotateRecords == 0) {
      log_->Close();
      std::error_code ec;
      std::filesystem::remove_all(Dir(), ec);
      ++generation_;
      Open();
    }
    auto r = log_->Append(record);
    if (!r.ok()) {
      std::fprintf(stderr, "audit append refused: %s\n", r.error().message.c_str());
      __builtin_trap();
    }
    return r;
  }

  core::Status Submit(const Json& record) override {
    auto r = Append(record);
    if (!r.ok()) return std::move(r).error();
    return core::OkStatus();
  }

  void Close() override {
    std::lock_guard lock(mu_);
    log_->Close();
  }

 private:
  std::string Dir() const { return base_dir_ + "/audit-" + std::to_string(generation_); }
  void Open() {
    auto log = mandate::audit::OpenAuditLog(Dir(), clock_);
    if (!log.ok()) Die("OpenAuditLog", log.error().message);
    log_ = std::move(log).value();
  }

  const std::string base_dir_;
  const core::Clock& clock_;
  std::mutex mu_;
  uint64_t appended_ = 0;
  uint64_t generation_ = 0;
  std::unique_ptr<mandate::audit::AuditLog> log_;
};

struct Response {
  int sends = 0;
  int starts = 0;
  int ends = 0;
  int writes_after_end = 0;
  int status = 0;
  net::Headers headers;
  std::string body;
};

class CaptureSink final : public net::ResponseSink {
 public:
  bool Send(net::HttpResponse response) override {
    r.sends++;
    r.status = response.status;
    r.headers = std::move(response.headers);
    r.body = std::move(response.body);
    return true;
  }
  bool StartStream(int status, net::Headers headers) override {
    r.starts++;
    r.status = status;
    r.headers = std::move(headers);
    return true;
  }
  bool Write(std::string chunk) override {
    if (r.ends > 0 || r.starts == 0) r.writes_after_end++;
    r.body += chunk;
    return true;
  }
  void End() override { r.ends++; }

  Response r;
};

std::string MintToken(const mandate::identity::TokenIssuer& issuer, const core::Clock& clock,
                      std::vector<std::string> scope, std::string task) {
  mandate::identity::Claims c;
  c.iss = kIssuer;
  c.aud = {kAudience};
  c.sub = "alice";
  c.client_id = "orchestrator";
  c.sid = kSid;
  c.jti = core::NewId("tok");
  c.act = {{"agent:orchestrator", kSid}};
  c.task = std::move(task);
  c.scope = std::move(scope);
  c.model = mandate::identity::ModelInfo{"anthropic", "claude-opus-4-5", "frontier"};
  c.iat = clock.NowUnixSeconds();
  c.nbf = c.iat;
  c.exp = c.iat + 900;
  auto t = issuer.Mint(c);
  if (!t.ok()) Die("TokenIssuer::Mint", t.error().message);
  return *t;
}

struct Env {
  std::string dir;
  core::FakeClock clock;
  std::unique_ptr<mandate::identity::SigningKeys> keys;
  std::unique_ptr<mandate::identity::TokenIssuer> issuer;
  std::unique_ptr<mandate::identity::TokenVerifier> verifier;
  std::unique_ptr<mandate::store::SqliteStore> store;
  std::unique_ptr<mandate::revocation::RevocationSet> revocations;
  mandate::gateway::PolicyHolder policies;
  mandate::gateway::Directory directory;
  std::unique_ptr<RotatingAuditLog> audit;
  mandate::broker::Scrubber scrubber;
  std::unique_ptr<mandate::gateway::Pipeline> pipeline;
  StubUpstream echo{"echo"};
  StubUpstream repo{"repo"};
  std::unique_ptr<mcp::McpEndpoint> endpoint;
  uint64_t endpoint_requests = 0;
  std::string tokens[4];
  std::string sessions[2];  // live Mcp-Session-Id for echo, repo; empty when gone

  Env() {
    dir = (std::filesystem::temp_directory_path() / "mandate_fuzz_XXXXXX").string();
    if (::mkdtemp(dir.data()) == nullptr) Die("mkdtemp", dir);

    auto k = mandate::identity::SigningKeys::LoadOrCreate(dir + "/keys");
    if (!k.ok()) Die("SigningKeys", k.error().message);
    keys = std::move(k).value();
    issuer = std::make_unique<mandate::identity::TokenIssuer>(*keys);
    mandate::identity::VerifierOptions vopts;
    vopts.issuer = kIssuer;
    vopts.audience = kAudience;
    auto v = mandate::identity::TokenVerifier::Create(vopts, *keys, clock);
    if (!v.ok()) Die("TokenVerifier", v.error().message);
    verifier = std::move(v).value();

    auto s = mandate::store::SqliteStore::Open(dir + "/mandate.db");
    if (!s.ok()) Die("SqliteStore", s.error().message);
    store = std::move(s).value();
    auto rs = mandate::revocation::RevocationSet::Load(*store);
    if (!rs.ok()) Die("RevocationSet", rs.error().message);
    revocations = std::move(rs).value();
    auto revoked = revocations->Revoke(*store, mandate::revocation::Kind::kTask, "revoked-task",
                                       "fuzz", clock.NowUnixSeconds());
    if (!revoked.ok()) Die("Revoke", revoked.error().message);

    auto set = mandate::policy::PolicySet::Parse(kPolicies, "fuzz.cedar");
    if (!set.ok()) Die("policies", set.error().message);
    policies.Set(std::make_shared<const mandate::policy::PolicySet>(std::move(set).value()));
    directory.PutHuman("alice", {"finance"});
    directory.PutAgent("orchestrator", "alice", {"agents"});

    audit = std::make_unique<RotatingAuditLog>(dir, clock);
    scrubber.Add(kSecret);

    mandate::gateway::PipelineDeps deps;
    deps.clock = &clock;
    deps.verifier = verifier.get();
    deps.revocations = revocations.get();
    deps.policies = &policies;
    deps.directory = &directory;
    deps.audit = audit.get();
    deps.scrubber = &scrubber;
    pipeline = std::make_unique<mandate::gateway::Pipeline>(deps);

    tokens[0] = MintToken(*issuer, clock, {"echo:*", "repo:*"}, "FUZZ-1");
    tokens[1] = MintToken(*issuer, clock, {"echo:echo"}, "FUZZ-1");
    tokens[2] = MintToken(*issuer, clock, {"echo:*", "repo:*"}, "revoked-task");
    tokens[3] = "not.a.token";
    NewEndpoint();

    // Keys and revocations are in memory now: only the audit log stays on disk, so a crash
    // (which skips the atexit cleanup) leaves little behind.
    store.reset();
    std::error_code ec;
    for (const char* name : {"/keys", "/mandate.db", "/mandate.db-wal", "/mandate.db-shm"}) {
      std::filesystem::remove_all(dir + name, ec);
    }
  }

  void NewEndpoint() {
    std::vector<mcp::UpstreamBinding> bindings;
    mcp::UpstreamBinding e;
    e.name = "echo";
    e.upstream = &echo;
    e.tool_classes["echo"] = core::ActionClass::kRead;
    e.timeout_millis = 1000;
    bindings.push_back(std::move(e));
    mcp::UpstreamBinding r;
    r.name = "repo";
    r.upstream = &repo;
    auto tmpl = mcp::ResourceTemplate::Parse(R"(Repo::"{args.owner}/{args.repo}")");
    if (!tmpl.ok()) Die("ResourceTemplate", tmpl.error().message);
    r.resource = std::move(tmpl).value();
    r.timeout_millis = 1000;
    bindings.push_back(std::move(r));
    endpoint = std::make_unique<mcp::McpEndpoint>(pipeline.get(), std::move(bindings));
    endpoint_requests = 0;
    sessions[0].clear();
    sessions[1].clear();
  }

  // The live session of upstream `index`, initializing one if there is none.
  const std::string& Session(size_t index) {
    if (sessions[index].empty()) {
      net::HttpRequest req;
      req.method = "POST";
      req.path = index == 0 ? "/mcp/echo" : "/mcp/repo";
      req.target = req.path;
      req.headers = {{"Authorization", "Bearer " + tokens[0]},
                     {"Content-Type", "application/json"},
                     {"Accept", "application/json, text/event-stream"}};
      req.body = R"({"jsonrpc":"2.0","id":0,"method":"initialize","params":{)"
                 R"("protocolVersion":"2025-11-25","capabilities":{},)"
                 R"("clientInfo":{"name":"fuzz","version":"1"}}})";
      req.remote = "127.0.0.1:1";
      auto sink = std::make_shared<CaptureSink>();
      endpoint->Handle(req, sink);
      const std::string* id = net::FindHeader(sink->r.headers, "mcp-session-id");
      if (sink->r.status != 200 || id == nullptr) Die("initialize", sink->r.body);
      sessions[index] = *id;
    }
    return sessions[index];
  }

  void Cleanup() {
    audit->Close();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

Env* g_env = nullptr;

Env& GetEnv() {
  if (g_env == nullptr) {
    g_env = new Env();  // never destroyed: the fuzzer may exit at any point
    std::atexit([] { g_env->Cleanup(); });
  }
  return *g_env;
}

// A JSON-RPC 2.0 response: an object with "jsonrpc":"2.0", an "id" and exactly one of
// "result" / "error" (an object with an integer code and a string message).
void CheckRpcResponse(const Json& msg, const Json* request_id) {
  Check(msg.is_object());
  const std::string* version = msg.FindString("jsonrpc");
  Check(version != nullptr && *version == "2.0");
  const Json* id = msg.Find("id");
  Check(id != nullptr);
  if (request_id != nullptr) Check(*id == *request_id);
  const Json* result = msg.Find("result");
  const Json* error = msg.Find("error");
  Check((result != nullptr) != (error != nullptr));
  if (error != nullptr) {
    Check(error->is_object());
    Check(error->Find("code") != nullptr && error->Find("code")->is_int());
    Check(error->FindString("message") != nullptr);
  } else {
    Check(result->is_object());
  }
}

// An SSE body: complete lines; events separated by blank lines; every data: line one JSON-RPC
// response; at least one.
void CheckEventStream(const std::string& body, const Json* request_id) {
  size_t events = 0;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t eol = body.find('\n', pos);
    Check(eol != std::string::npos);  // every line is terminated
    std::string_view line(body.data() + pos, eol - pos);
    pos = eol + 1;
    if (line.rfind("data: ", 0) == 0) {
      auto msg = Json::Parse(line.substr(6));
      Check(msg.ok());
      CheckRpcResponse(*msg, request_id);
      ++events;
    } else {
      Check(line.empty() || line.rfind("event: ", 0) == 0 || line.rfind("id: ", 0) == 0);
    }
  }
  Check(events >= 1);
}

bool Contains(std::string_view hay, std::string_view needle) {
  return hay.find(needle) != std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  Env& env = GetEnv();
  if (++env.endpoint_requests > kEndpointRecycleRequests) env.NewEndpoint();

  const uint8_t flags = data[0];
  const size_t upstream = (flags & 0x40) ? 1 : 0;
  net::HttpRequest req;
  req.method = (flags & 0x80) ? "DELETE" : "POST";
  req.path = upstream == 1 ? "/mcp/repo" : "/mcp/echo";
  req.target = req.path;
  req.remote = "127.0.0.1:1";
  req.body.assign(reinterpret_cast<const char*>(data) + 1, size - 1);
  req.headers.emplace_back("Authorization", "Bearer " + env.tokens[(flags >> 4) & 3]);
  req.headers.emplace_back("Content-Type", "application/json");
  req.headers.emplace_back("Accept", (flags & 0x01) ? "application/json, text/event-stream"
                                                    : "application/json");
  if (flags & 0x02) req.headers.emplace_back("Mcp-Session-Id", env.Session(upstream));
  if (flags & 0x04) {
    req.headers.emplace_back("MCP-Protocol-Version", (flags & 0x08) ? "1999-01-01" : "2025-11-25");
  }

  auto sink = std::make_shared<CaptureSink>();
  env.endpoint->Handle(req, sink);
  const Response& r = sink->r;

  // What the request was, as far as the endpoint could tell.
  auto parsed = Json::Parse(req.body);
  const Json* request_id = nullptr;
  if (parsed.ok() && parsed->is_object()) {
    const Json* id = parsed->Find("id");
    if (id != nullptr && (id->is_string() || id->is_int())) request_id = id;
  }

  // Exactly one answer.
  Check(r.writes_after_end == 0);
  Check((r.sends == 1 && r.starts == 0 && r.ends == 0) ||
        (r.sends == 0 && r.starts == 1 && r.ends == 1));

  // The body: nothing for 202, an SSE stream when the answer says text/event-stream (sent
  // whole or streamed), else one JSON value.
  const std::string* ct = net::FindHeader(r.headers, "content-type");
  const bool sse = ct != nullptr && ct->rfind("text/event-stream", 0) == 0;
  if (r.starts == 1) Check(sse);
  if (r.status == 202) {
    Check(r.body.empty() && !sse);
  } else if (sse) {
    Check(r.status == 200);
    CheckEventStream(r.body, request_id);
  } else {
    auto body = Json::Parse(r.body);
    Check(body.ok());
    if (req.method == "POST" && r.status == 200) CheckRpcResponse(*body, request_id);
  }

  // Secrets reach the agent only if the agent itself sent them.
  const std::string request_text = parsed.ok() ? parsed->Dump() : std::string();
  for (const std::string& form : {std::string(kSecret), core::Base64Encode(kSecret),
                                  core::Base64UrlEncode(kSecret)}) {
    if (Contains(r.body, form)) Check(Contains(req.body, form) || Contains(request_text, form));
  }

  // Keep the live sessions accurate: DELETE ends one; a 404 means it is gone.
  if ((flags & 0x02) && (r.status == 404 || (req.method == "DELETE" && r.status == 200))) {
    env.sessions[upstream].clear();
  }
  return 0;
}
