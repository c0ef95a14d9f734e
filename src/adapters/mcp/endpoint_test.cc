// Tests of the MCP Streamable HTTP endpoint (DESIGN.md section 8) with a real gateway pipeline
// (keys, verifier, SQLite-backed revocations, Cedar policies, audit log, scrubber), a fake
// McpUpstream that records the calls it receives, and a sink that captures the answer.
#include "mandate/adapters/mcp/endpoint.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "adapters/mcp/upstream_common.h"
#include "core/temp_dir_test_util.h"
#include "mandate/audit/audit_log.h"
#include "mandate/broker/credentials.h"
#include "mandate/core/clock.h"
#include "mandate/identity/signing_keys.h"
#include "mandate/identity/token_issuer.h"
#include "mandate/identity/token_verifier.h"
#include "mandate/policy/policy_set.h"
#include "mandate/revocation/revocation_set.h"
#include "mandate/store/sqlite_store.h"

namespace mandate::adapters::mcp {
namespace {

namespace fs = std::filesystem;
using core::ActionClass;
using core::ErrorCode;
using core::Json;

constexpr char kIssuer[] = "https://mandate.test";
constexpr char kAudience[] = "mandate";
constexpr char kSecret[] = "ghp_supersecretvalue123";

using core::testing::TempDir;

// An MCP upstream in memory. Tool classes come from the real annotation rules
// (internal::ClassFromAnnotations), as the stdio and HTTP clients compute them.
class FakeUpstream final : public McpUpstream {
 public:
  explicit FakeUpstream(std::string name) : name_(std::move(name)) {}

  const std::string& name() const override { return name_; }

  core::Result<std::vector<ToolInfo>> ListTools() override {
    std::lock_guard lock(mu_);
    if (list_error) return *list_error;
    return tools_;
  }

  core::Result<Json> CallTool(const std::string& tool, const Json& arguments, int, const std::string&) override {
    std::lock_guard lock(mu_);
    calls_.emplace_back(tool, arguments);
    if (call_error) return *call_error;
    if (result) return *result;
    Json r = Json::MakeObject();
    Json content = Json::MakeArray();
    Json text = Json::MakeObject();
    text.Set("type", "text");
    text.Set("text", "called " + tool);
    content.Push(std::move(text));
    r.Set("content", std::move(content));
    return r;
  }

  void Stop() override {}

  // Adds a tool; `annotations` null means none.
  void AddTool(const std::string& tool, Json annotations = Json()) {
    Json def = Json::MakeObject();
    def.Set("name", tool);
    def.Set("description", "the " + tool + " tool");
    Json schema = Json::MakeObject();
    schema.Set("type", "object");
    def.Set("inputSchema", std::move(schema));
    if (!annotations.is_null()) def.Set("annotations", std::move(annotations));
    ToolInfo info;
    info.name = tool;
    info.annotated_class = internal::ClassFromAnnotations(def);
    info.definition = std::move(def);
    std::lock_guard lock(mu_);
    tools_.push_back(std::move(info));
  }

  size_t calls() const {
    std::lock_guard lock(mu_);
    return calls_.size();
  }
  std::vector<std::pair<std::string, Json>> call_log() const {
    std::lock_guard lock(mu_);
    return calls_;
  }

  std::optional<core::Error> list_error;
  std::optional<core::Error> call_error;
  std::optional<Json> result;

 private:
  const std::string name_;
  mutable std::mutex mu_;
  std::vector<ToolInfo> tools_;
  std::vector<std::pair<std::string, Json>> calls_;
};

// Captures what the endpoint answers, whole or streamed.
class CapturingSink final : public net::ResponseSink {
 public:
  bool Send(net::HttpResponse r) override {
    ++sends;
    response = std::move(r);
    return true;
  }
  bool StartStream(int status, net::Headers headers) override {
    streamed = true;
    response.status = status;
    response.headers = std::move(headers);
    response.body.clear();
    return true;
  }
  bool Write(std::string chunk) override {
    response.body += chunk;
    return true;
  }
  void End() override { ended = true; }

  net::HttpResponse response;
  int sends = 0;
  bool streamed = false;
  bool ended = false;
};

struct Reply {
  int status = 0;
  net::Headers headers;
  std::string body;
  Json json;  // the parsed body when it is JSON
  bool streamed = false;

  const std::string* Header(std::string_view name) const { return net::FindHeader(headers, name); }
  const Json* result() const { return json.FindObject("result"); }
  const Json* error() const { return json.FindObject("error"); }
};

Json Rpc(const std::string& method, Json params = Json::MakeObject(), Json id = Json(1)) {
  Json m = Json::MakeObject();
  m.Set("jsonrpc", "2.0");
  if (!id.is_null()) m.Set("id", std::move(id));
  m.Set("method", method);
  if (!params.is_null()) m.Set("params", std::move(params));
  return m;
}

std::string FirstText(const Json& result) {
  const Json* content = result.FindArray("content");
  if (content == nullptr || content->as_array().empty()) return "";
  return content->as_array()[0].GetString("text");
}

bool IsError(const Json& result) {
  const Json* e = result.Find("isError");
  return e != nullptr && e->is_bool() && e->as_bool();
}

class McpEndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto keys = identity::SigningKeys::LoadOrCreate(dir_.Sub("keys"));
    ASSERT_TRUE(keys.ok()) << keys.error().message;
    keys_ = std::move(keys).value();
    issuer_ = std::make_unique<identity::TokenIssuer>(*keys_);
    identity::VerifierOptions vopts;
    vopts.issuer = kIssuer;
    vopts.audience = kAudience;
    auto verifier = identity::TokenVerifier::Create(vopts, *keys_, clock_);
    ASSERT_TRUE(verifier.ok());
    verifier_ = std::move(verifier).value();
    auto store = store::SqliteStore::Open(dir_.Sub("mandate.db"));
    ASSERT_TRUE(store.ok()) << store.error().message;
    store_ = std::move(store).value();
    auto revocations = revocation::RevocationSet::Load(*store_);
    ASSERT_TRUE(revocations.ok());
    revocations_ = std::move(revocations).value();
    auto log = audit::OpenAuditLog(dir_.Sub("audit"), clock_);
    ASSERT_TRUE(log.ok()) << log.error().message;
    audit_ = std::move(log).value();
    scrubber_.Add(kSecret);
    directory_.PutHuman("alice", {});
    directory_.PutAgent("bot", "alice", {});

    gateway::PipelineDeps deps;
    deps.clock = &clock_;
    deps.verifier = verifier_.get();
    deps.revocations = revocations_.get();
    deps.policies = &policies_;
    deps.directory = &directory_;
    deps.audit = audit_.get();
    deps.scrubber = &scrubber_;
    pipeline_ = std::make_unique<gateway::Pipeline>(deps);

    up_.AddTool("read_doc", Json::Parse(R"({"readOnlyHint":true})").value());
    up_.AddTool("edit_doc",
                Json::Parse(R"({"readOnlyHint":false,"destructiveHint":false})").value());
    up_.AddTool("delete_doc", Json::Parse(R"({"destructiveHint":true})").value());
    up_.AddTool("plain");
    up_.AddTool("configured_ro", Json::Parse(R"({"readOnlyHint":true})").value());
    up_.AddTool("configured_write");
    up_.AddTool("string_hint", Json::Parse(R"({"readOnlyHint":"true"})").value());
    other_.AddTool("read_doc", Json::Parse(R"({"readOnlyHint":true})").value());

    UpstreamBinding up;
    up.name = "up";
    up.upstream = &up_;
    up.tool_classes["configured_ro"] = ActionClass::kDestructive;
    up.tool_classes["configured_write"] = ActionClass::kWrite;
    UpstreamBinding other;
    other.name = "other";
    other.upstream = &other_;
    UpstreamBinding repo;
    repo.name = "repo";
    repo.upstream = &repo_up_;
    auto tmpl = ResourceTemplate::Parse(R"(Repo::"{args.owner}/{args.repo}")");
    ASSERT_TRUE(tmpl.ok());
    repo.resource = *tmpl;
    repo_up_.AddTool("merge", Json::Parse(R"({"destructiveHint":false})").value());
    std::vector<UpstreamBinding> bindings;
    bindings.push_back(std::move(up));
    bindings.push_back(std::move(other));
    bindings.push_back(std::move(repo));
    endpoint_ = std::make_unique<McpEndpoint>(pipeline_.get(), std::move(bindings));

    SetPolicies("permit (principal, action, resource);");
    token_ = Mint("ses_a");
    token_b_ = Mint("ses_b");
  }

  void SetPolicies(std::string_view text) {
    auto set = policy::PolicySet::Parse(text, "test.cedar");
    ASSERT_TRUE(set.ok()) << set.error().message;
    policies_.Set(std::make_shared<const policy::PolicySet>(std::move(set).value()));
  }

  std::string Mint(const std::string& sid, std::vector<std::string> scope = {"*"}) {
    identity::Claims c;
    c.iss = kIssuer;
    c.aud = {kAudience};
    c.sub = "alice";
    c.client_id = "bot";
    c.sid = sid;
    c.jti = "tok_" + sid + std::to_string(++jti_);
    c.act = {identity::Actor{"agent:bot", sid}};
    c.task = "SUP-1";
    c.scope = std::move(scope);
    c.iat = clock_.NowUnixSeconds();
    c.nbf = c.iat;
    c.exp = c.iat + 900;
    auto t = issuer_->Mint(c);
    EXPECT_TRUE(t.ok()) << t.error().message;
    return t.ok() ? *t : "";
  }

  Reply Send(const std::string& method, const std::string& path, const std::string& body,
             const std::string& token, const std::string& session = "", net::Headers extra = {}) {
    net::HttpRequest req;
    req.method = method;
    req.path = path;
    req.target = path;
    req.body = body;
    req.remote = "127.0.0.1:5555";
    if (!token.empty()) req.headers.emplace_back("Authorization", "Bearer " + token);
    if (!session.empty()) req.headers.emplace_back("Mcp-Session-Id", session);
    req.headers.emplace_back("Content-Type", "application/json");
    for (auto& h : extra) req.headers.push_back(std::move(h));
    auto sink = std::make_shared<CapturingSink>();
    endpoint_->Handle(req, sink);
    Reply r;
    EXPECT_TRUE(sink->sends == 1 || (sink->streamed && sink->ended))
        << "the endpoint must answer exactly once";
    r.status = sink->response.status;
    r.headers = sink->response.headers;
    r.body = sink->response.body;
    r.streamed = sink->streamed;
    if (auto j = Json::Parse(r.body); j.ok()) r.json = std::move(j).value();
    return r;
  }

  Reply Post(const Json& message, const std::string& session, const std::string& token,
             const std::string& path = "/mcp/up", net::Headers extra = {}) {
    return Send("POST", path, message.Dump(), token, session, std::move(extra));
  }

  std::string Initialize(const std::string& token, const std::string& path = "/mcp/up") {
    Json params = Json::MakeObject();
    params.Set("protocolVersion", "2025-11-25");
    params.Set("capabilities", Json::MakeObject());
    Reply r = Post(Rpc("initialize", params), "", token, path);
    EXPECT_EQ(r.status, 200) << r.body;
    const std::string* sid = r.Header("Mcp-Session-Id");
    EXPECT_NE(sid, nullptr);
    return sid ? *sid : "";
  }

  // tools/call on /mcp/up; returns the CallToolResult (or an empty object).
  Json CallTool(const std::string& session, const std::string& tool, Json args = Json::MakeObject(),
                const std::string& path = "/mcp/up") {
    Json params = Json::MakeObject();
    params.Set("name", tool);
    params.Set("arguments", std::move(args));
    Reply r = Post(Rpc("tools/call", params, Json(7)), session, token_, path);
    EXPECT_EQ(r.status, 200) << r.body;
    const Json* result = r.result();
    EXPECT_NE(result, nullptr) << r.body;
    return result ? *result : Json::MakeObject();
  }

  std::vector<std::string> ListedTools(const std::string& session, const std::string& token) {
    Reply r = Post(Rpc("tools/list"), session, token);
    EXPECT_EQ(r.status, 200) << r.body;
    std::vector<std::string> names;
    const Json* result = r.result();
    if (result == nullptr || result->FindArray("tools") == nullptr) {
      ADD_FAILURE() << r.body;
      return names;
    }
    for (const Json& t : result->FindArray("tools")->as_array())
      names.push_back(t.GetString("name"));
    return names;
  }

  // The class the pipeline sees for `tool`, observed through policies that permit one class.
  std::string ObservedClass(const std::string& session, const std::string& tool) {
    std::string found = "none";
    for (const char* cls : {"read", "write", "destructive"}) {
      SetPolicies(std::string("permit (principal, action in Action::\"") + cls + "\", resource);");
      if (!IsError(CallTool(session, tool))) {
        if (found != "none") return "several";
        found = cls;
      }
    }
    return found;
  }

  TempDir dir_;
  core::FakeClock clock_;
  int jti_ = 0;
  std::unique_ptr<identity::SigningKeys> keys_;
  std::unique_ptr<identity::TokenIssuer> issuer_;
  std::unique_ptr<identity::TokenVerifier> verifier_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<revocation::RevocationSet> revocations_;
  std::unique_ptr<audit::AuditLog> audit_;
  broker::Scrubber scrubber_;
  gateway::PolicyHolder policies_;
  gateway::Directory directory_;
  std::unique_ptr<gateway::Pipeline> pipeline_;
  FakeUpstream up_{"up"};
  FakeUpstream other_{"other"};
  FakeUpstream repo_up_{"repo"};
  std::unique_ptr<McpEndpoint> endpoint_;
  std::string token_;
  std::string token_b_;
};

// --- lifecycle and transport ---------------------------------------------------------------------

TEST_F(McpEndpointTest, InitializeReturnsSessionIdAndNegotiatesVersion) {
  Json params = Json::MakeObject();
  params.Set("protocolVersion", "2025-06-18");
  Reply r = Post(Rpc("initialize", params), "", token_);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string* sid = r.Header("Mcp-Session-Id");
  ASSERT_NE(sid, nullptr);
  EXPECT_FALSE(sid->empty());
  for (char ch : *sid) EXPECT_TRUE(ch >= 0x21 && ch <= 0x7e) << "session ids are visible ASCII";
  ASSERT_NE(r.result(), nullptr) << r.body;
  EXPECT_EQ(r.json.GetInt("id", -1), 1);
  EXPECT_EQ(r.result()->GetString("protocolVersion"), "2025-06-18");
  EXPECT_NE(r.result()->FindObject("capabilities"), nullptr);
  EXPECT_NE(r.result()->FindObject("capabilities")->FindObject("tools"), nullptr);
  EXPECT_NE(r.result()->FindObject("serverInfo"), nullptr);

  // An unknown version is answered with the latest one the endpoint supports.
  params.Set("protocolVersion", "1999-01-01");
  Reply latest = Post(Rpc("initialize", params), "", token_);
  ASSERT_NE(latest.result(), nullptr);
  EXPECT_EQ(latest.result()->GetString("protocolVersion"), std::string(kLatestProtocolVersion));
  ASSERT_NE(latest.Header("Mcp-Session-Id"), nullptr);
  EXPECT_NE(*latest.Header("Mcp-Session-Id"), *sid) << "every initialize starts a new session";

  // The new session works.
  Reply ping = Post(Rpc("ping"), *sid, token_);
  EXPECT_EQ(ping.status, 200);
  ASSERT_NE(ping.result(), nullptr) << ping.body;
  EXPECT_TRUE(ping.result()->is_object());
}

TEST_F(McpEndpointTest, SupportedVersionsAreTheDocumentedOnes) {
  EXPECT_TRUE(IsSupportedProtocolVersion("2025-11-25"));
  EXPECT_TRUE(IsSupportedProtocolVersion("2025-06-18"));
  EXPECT_TRUE(IsSupportedProtocolVersion("2025-03-26"));
  EXPECT_FALSE(IsSupportedProtocolVersion(""));
  EXPECT_FALSE(IsSupportedProtocolVersion("2099-01-01"));
}

TEST_F(McpEndpointTest, MissingSessionIdIs400) {
  Reply r = Post(Rpc("tools/list"), "", token_);
  EXPECT_EQ(r.status, 400);
  ASSERT_NE(r.error(), nullptr) << r.body;
  EXPECT_EQ(r.error()->GetInt("code", 0), -32600);
}

TEST_F(McpEndpointTest, UnknownSessionIs404) {
  Reply r = Post(Rpc("tools/list"), "mcp_does_not_exist", token_);
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(r.error(), nullptr) << r.body;
}

TEST_F(McpEndpointTest, SessionOfAnotherTokenIs404) {
  const std::string session = Initialize(token_);
  ASSERT_FALSE(session.empty());
  // Token B belongs to another Mandate session: it cannot ride A's MCP session.
  Reply hijack = Post(Rpc("tools/list"), session, token_b_);
  EXPECT_EQ(hijack.status, 404) << hijack.body;
  Json params = Json::MakeObject();
  params.Set("name", "read_doc");
  Reply call = Post(Rpc("tools/call", params), session, token_b_);
  EXPECT_EQ(call.status, 404) << call.body;
  EXPECT_EQ(up_.calls(), 0u);
  // Nor can the session be used on another upstream.
  Reply cross = Post(Rpc("tools/list"), session, token_, "/mcp/other");
  EXPECT_EQ(cross.status, 404) << cross.body;
  // A new token of the same Mandate session (e.g. after a refresh) still can.
  EXPECT_EQ(Post(Rpc("tools/list"), session, Mint("ses_a")).status, 200);
}

TEST_F(McpEndpointTest, UnsupportedProtocolVersionHeaderIs400) {
  const std::string session = Initialize(token_);
  Reply r =
      Post(Rpc("tools/list"), session, token_, "/mcp/up", {{"MCP-Protocol-Version", "2020-01-01"}});
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.error(), nullptr) << r.body;
  Reply ok =
      Post(Rpc("tools/list"), session, token_, "/mcp/up", {{"MCP-Protocol-Version", "2025-11-25"}});
  EXPECT_EQ(ok.status, 200) << ok.body;
}

TEST_F(McpEndpointTest, BatchIs400InvalidRequest) {
  const std::string session = Initialize(token_);
  Reply r = Send("POST", "/mcp/up", "[" + Rpc("ping").Dump() + "]", token_, session);
  EXPECT_EQ(r.status, 400);
  ASSERT_NE(r.error(), nullptr) << r.body;
  EXPECT_EQ(r.error()->GetInt("code", 0), -32600);
}

TEST_F(McpEndpointTest, ParseErrorIs400) {
  const std::string session = Initialize(token_);
  for (const char* body :
       {"{", "", "{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"ping\"}", "\xff"}) {
    Reply r = Send("POST", "/mcp/up", body, token_, session);
    EXPECT_EQ(r.status, 400) << body;
    ASSERT_NE(r.error(), nullptr) << r.body;
    EXPECT_EQ(r.error()->GetInt("code", 0), -32700) << body;
  }
}

TEST_F(McpEndpointTest, MalformedJsonRpcIs400) {
  const std::string session = Initialize(token_);
  Reply version =
      Send("POST", "/mcp/up", R"({"jsonrpc":"1.0","id":1,"method":"ping"})", token_, session);
  EXPECT_EQ(version.status, 400);
  Reply bad_id =
      Send("POST", "/mcp/up", R"({"jsonrpc":"2.0","id":{"x":1},"method":"ping"})", token_, session);
  EXPECT_EQ(bad_id.status, 400);
  Reply scalar = Send("POST", "/mcp/up", "42", token_, session);
  EXPECT_EQ(scalar.status, 400);
  Reply empty = Send("POST", "/mcp/up", R"({"jsonrpc":"2.0"})", token_, session);
  EXPECT_EQ(empty.status, 400);
  Reply bad_params =
      Send("POST", "/mcp/up", R"({"jsonrpc":"2.0","id":3,"method":"tools/list","params":[1]})",
           token_, session);
  ASSERT_NE(bad_params.error(), nullptr) << bad_params.body;
  EXPECT_EQ(bad_params.error()->GetInt("code", 0), -32602);
}

TEST_F(McpEndpointTest, NotificationIs202) {
  const std::string session = Initialize(token_);
  Reply r = Post(Rpc("notifications/initialized", Json(), Json()), session, token_);
  EXPECT_EQ(r.status, 202);
  EXPECT_TRUE(r.body.empty()) << r.body;
  // A client's response to a server request is accepted the same way.
  Reply response =
      Send("POST", "/mcp/up", R"({"jsonrpc":"2.0","id":9,"result":{}})", token_, session);
  EXPECT_EQ(response.status, 202);
}

TEST_F(McpEndpointTest, GetIs405) {
  Reply r = Send("GET", "/mcp/up", "", token_);
  EXPECT_EQ(r.status, 405);
  ASSERT_NE(r.Header("Allow"), nullptr);
  Reply put = Send("PUT", "/mcp/up", "{}", token_);
  EXPECT_EQ(put.status, 405);
}

TEST_F(McpEndpointTest, DeleteEndsSession) {
  const std::string session = Initialize(token_);
  // Another Mandate session cannot end it.
  EXPECT_EQ(Send("DELETE", "/mcp/up", "", token_b_, session).status, 404);
  EXPECT_EQ(Post(Rpc("tools/list"), session, token_).status, 200);

  EXPECT_EQ(Send("DELETE", "/mcp/up", "", token_, session).status, 200);
  EXPECT_EQ(Post(Rpc("tools/list"), session, token_).status, 404);
  EXPECT_EQ(Send("DELETE", "/mcp/up", "", token_, session).status, 404);
  EXPECT_EQ(Send("DELETE", "/mcp/up", "", token_).status, 404);
}

TEST_F(McpEndpointTest, UnknownUpstreamIs404) {
  Reply r = Post(Rpc("initialize"), "", token_, "/mcp/nope");
  EXPECT_EQ(r.status, 404);
  ASSERT_NE(r.json.FindObject("error"), nullptr) << r.body;
  EXPECT_EQ(r.json.FindObject("error")->GetString("code"), "not_found");
  EXPECT_EQ(Post(Rpc("initialize"), "", token_, "/mcp/").status, 404);
}

TEST_F(McpEndpointTest, MissingOrInvalidBearerIs401WithWwwAuthenticate) {
  for (const std::string& token : {std::string(), std::string("garbage"), token_ + "x"}) {
    Reply r = Post(Rpc("initialize"), "", token);
    EXPECT_EQ(r.status, 401) << token;
    const std::string* www = r.Header("WWW-Authenticate");
    ASSERT_NE(www, nullptr);
    EXPECT_EQ(www->rfind("Bearer", 0), 0u) << *www;
    ASSERT_NE(r.json.FindObject("error"), nullptr) << r.body;
    EXPECT_EQ(r.json.FindObject("error")->GetString("code"), "unauthenticated");
  }
  // Basic auth is not a bearer token.
  Reply basic = Send("POST", "/mcp/up", Rpc("initialize").Dump(), "", "",
                     {{"Authorization", "Basic " + token_}});
  EXPECT_EQ(basic.status, 401);
}

TEST_F(McpEndpointTest, ExpiredAndRevokedTokensAre401MidSession) {
  const std::string session = Initialize(token_);
  ASSERT_TRUE(
      revocations_
          ->Revoke(*store_, revocation::Kind::kAgent, "bot", "stop", clock_.NowUnixSeconds())
          .ok());
  Reply revoked = Post(Rpc("tools/list"), session, token_);
  EXPECT_EQ(revoked.status, 401);
  ASSERT_NE(revoked.json.FindObject("error"), nullptr) << revoked.body;
  EXPECT_EQ(revoked.json.FindObject("error")->GetString("code"), "token_revoked");
  ASSERT_NE(revoked.Header("WWW-Authenticate"), nullptr);
  EXPECT_EQ(up_.calls(), 0u);
}

TEST_F(McpEndpointTest, ExpiredTokenIs401) {
  const std::string session = Initialize(token_);
  clock_.AdvanceSeconds(900 + core::kTokenClockSkewSeconds + 1);
  Reply r = Post(Rpc("tools/list"), session, token_);
  EXPECT_EQ(r.status, 401);
  ASSERT_NE(r.json.FindObject("error"), nullptr) << r.body;
  EXPECT_EQ(r.json.FindObject("error")->GetString("code"), "token_expired");
}

// --- tools ---------------------------------------------------------------------------------------

TEST_F(McpEndpointTest, ToolsListHidesForbiddenAndOutOfScopeTools) {
  SetPolicies(R"(
    permit (principal, action, resource);
    forbid (principal, action == Action::"up:edit_doc", resource);
  )");
  const std::string scoped = Mint("ses_scoped", {"up:read_doc", "up:edit_doc", "up:plain"});
  const std::string session = Initialize(scoped);
  std::vector<std::string> names = ListedTools(session, scoped);
  EXPECT_EQ(names, (std::vector<std::string>{"read_doc", "plain"}));

  // The full-scope session sees everything but the forbidden tool, with definitions intact.
  const std::string all = Initialize(token_);
  Reply r = Post(Rpc("tools/list"), all, token_);
  ASSERT_NE(r.result(), nullptr);
  const auto& tools = r.result()->FindArray("tools")->as_array();
  EXPECT_EQ(tools.size(), 6u);
  for (const Json& t : tools) {
    EXPECT_NE(t.GetString("name"), "edit_doc");
    EXPECT_NE(t.FindObject("inputSchema"), nullptr);
  }
  EXPECT_EQ(up_.calls(), 0u) << "listing must not call tools";
}

TEST_F(McpEndpointTest, ToolsListShowsApprovalGatedTools) {
  SetPolicies(R"(@approval("g") permit (principal, action, resource);)");
  const std::string session = Initialize(token_);
  EXPECT_EQ(ListedTools(session, token_).size(), 7u);
}

TEST_F(McpEndpointTest, ToolsListUpstreamErrorIsScrubbedJsonRpcError) {
  up_.list_error = core::MakeError(ErrorCode::kUpstreamUnavailable,
                                   std::string("upstream up: down, key ") + kSecret);
  const std::string session = Initialize(token_);
  Reply r = Post(Rpc("tools/list"), session, token_);
  EXPECT_EQ(r.status, 200);
  ASSERT_NE(r.error(), nullptr) << r.body;
  EXPECT_EQ(r.body.find(kSecret), std::string::npos) << r.body;
  EXPECT_NE(r.error()->GetString("message").find("upstream_unavailable"), std::string::npos);
}

TEST_F(McpEndpointTest, ToolsCallRefusedIsErrorResultAndNeverForwarded) {
  SetPolicies(R"(@id("reads") permit (principal, action in Action::"read", resource);)");
  const std::string session = Initialize(token_);
  Json result = CallTool(session, "delete_doc");
  EXPECT_TRUE(IsError(result)) << result.Dump();
  EXPECT_EQ(FirstText(result).rfind("mandate: policy_denied: ", 0), 0u) << FirstText(result);
  ASSERT_NE(result.FindObject("_meta"), nullptr);
  EXPECT_EQ(result.FindObject("_meta")->GetString("mandate/code"), "policy_denied");
  EXPECT_EQ(result.FindObject("_meta")->GetString("mandate/decision_id").rfind("dec", 0), 0u);
  EXPECT_EQ(up_.calls(), 0u);

  // Out of scope reads the same way, with its own code.
  const std::string narrow = Mint("ses_narrow", {"up:plain"});
  const std::string nsession = Initialize(narrow);
  Json params = Json::MakeObject();
  params.Set("name", "read_doc");
  Reply r = Post(Rpc("tools/call", params), nsession, narrow);
  ASSERT_NE(r.result(), nullptr) << r.body;
  EXPECT_EQ(FirstText(*r.result()).rfind("mandate: out_of_scope: ", 0), 0u) << r.body;
  EXPECT_EQ(up_.calls(), 0u);
}

TEST_F(McpEndpointTest, ToolsCallAllowedReturnsUpstreamResultScrubbed) {
  Json upstream_result = Json::MakeObject();
  Json content = Json::MakeArray();
  Json text = Json::MakeObject();
  text.Set("type", "text");
  text.Set("text", std::string("token=") + kSecret);
  content.Push(std::move(text));
  upstream_result.Set("content", std::move(content));
  up_.result = upstream_result;
  const std::string session = Initialize(token_);
  Json args = Json::MakeObject();
  args.Set("id", 3);
  Json result = CallTool(session, "read_doc", args);
  EXPECT_FALSE(IsError(result)) << result.Dump();
  EXPECT_EQ(FirstText(result), "token=[REDACTED]");
  ASSERT_EQ(up_.calls(), 1u);
  EXPECT_EQ(up_.call_log()[0].first, "read_doc");
  EXPECT_EQ(up_.call_log()[0].second, args);
}

TEST_F(McpEndpointTest, UpstreamFailureBecomesIsErrorResult) {
  up_.call_error = core::MakeError(ErrorCode::kUpstreamTimeout,
                                   std::string("upstream up: timed out; ") + kSecret);
  const std::string session = Initialize(token_);
  Json result = CallTool(session, "read_doc");
  EXPECT_TRUE(IsError(result));
  EXPECT_EQ(FirstText(result).rfind("mandate: upstream_timeout: ", 0), 0u) << FirstText(result);
  EXPECT_EQ(result.Dump().find(kSecret), std::string::npos) << result.Dump();
}

TEST_F(McpEndpointTest, ToolsCallNeedsAName) {
  const std::string session = Initialize(token_);
  Reply r = Post(Rpc("tools/call"), session, token_);
  ASSERT_NE(r.error(), nullptr) << r.body;
  EXPECT_EQ(r.error()->GetInt("code", 0), -32602);
  Json params = Json::MakeObject();
  params.Set("name", "read_doc");
  params.Set("arguments", Json::MakeArray());
  Reply arr = Post(Rpc("tools/call", params), session, token_);
  ASSERT_NE(arr.error(), nullptr) << arr.body;
  EXPECT_EQ(arr.error()->GetInt("code", 0), -32602);
  EXPECT_EQ(up_.calls(), 0u);
}

TEST_F(McpEndpointTest, UnknownMethodIsMethodNotFound) {
  const std::string session = Initialize(token_);
  Reply r = Post(Rpc("resources/list"), session, token_);
  EXPECT_EQ(r.status, 200);
  ASSERT_NE(r.error(), nullptr) << r.body;
  EXPECT_EQ(r.error()->GetInt("code", 0), -32601);
  EXPECT_EQ(r.json.GetInt("id", -1), 1);
}

TEST_F(McpEndpointTest, SseResponseWhenAcceptIncludesEventStream) {
  const std::string session = Initialize(token_);
  Json params = Json::MakeObject();
  params.Set("name", "read_doc");
  Reply r = Post(Rpc("tools/call", params, Json("call-1")), session, token_, "/mcp/up",
                 {{"Accept", "application/json, text/event-stream"}});
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.streamed);  // one event, known whole: sent as one body (one write)
  ASSERT_NE(r.Header("Content-Type"), nullptr);
  EXPECT_EQ(*r.Header("Content-Type"), "text/event-stream");
  const std::string prefix = "event: message\ndata: ";
  ASSERT_EQ(r.body.rfind(prefix, 0), 0u) << r.body;
  ASSERT_GE(r.body.size(), prefix.size() + 2);
  EXPECT_EQ(r.body.substr(r.body.size() - 2), "\n\n");
  auto data = Json::Parse(r.body.substr(prefix.size(), r.body.size() - prefix.size() - 2));
  ASSERT_TRUE(data.ok()) << r.body;
  EXPECT_EQ(data->GetString("id"), "call-1");
  ASSERT_NE(data->FindObject("result"), nullptr);
  EXPECT_EQ(FirstText(*data->FindObject("result")), "called read_doc");

  // Without text/event-stream in Accept: plain JSON.
  Reply plain =
      Post(Rpc("tools/call", params), session, token_, "/mcp/up", {{"Accept", "application/json"}});
  EXPECT_FALSE(plain.streamed);
  EXPECT_NE(plain.result(), nullptr) << plain.body;
}

TEST_F(McpEndpointTest, ToolClassFromConfigOverridesAnnotations) {
  const std::string session = Initialize(token_);
  EXPECT_EQ(ObservedClass(session, "configured_ro"), "destructive")
      << "config must win over readOnlyHint";
  EXPECT_EQ(ObservedClass(session, "configured_write"), "write");
}

TEST_F(McpEndpointTest, AnnotationsGiveTheClassOtherwiseDestructive) {
  const std::string session = Initialize(token_);
  EXPECT_EQ(ObservedClass(session, "read_doc"), "read");            // readOnlyHint: true
  EXPECT_EQ(ObservedClass(session, "edit_doc"), "write");           // destructiveHint: false
  EXPECT_EQ(ObservedClass(session, "delete_doc"), "destructive");   // destructiveHint: true
  EXPECT_EQ(ObservedClass(session, "plain"), "destructive");        // no annotations
  EXPECT_EQ(ObservedClass(session, "string_hint"), "destructive");  // "true" is not a bool
  EXPECT_EQ(ObservedClass(session, "not_listed"), "destructive");   // unknown tool
}

TEST_F(McpEndpointTest, TypedResourceFromTemplateReachesPolicy) {
  SetPolicies(R"(permit (principal, action, resource == Repo::"acme/web");)");
  const std::string session = Initialize(token_, "/mcp/repo");
  Json args = Json::MakeObject();
  args.Set("owner", "acme");
  args.Set("repo", "web");
  EXPECT_FALSE(IsError(CallTool(session, "merge", args, "/mcp/repo")));
  args.Set("repo", "api");
  EXPECT_TRUE(IsError(CallTool(session, "merge", args, "/mcp/repo")));
  EXPECT_EQ(repo_up_.calls(), 1u);

  // A missing argument cannot name the resource: refused as bad_request, never forwarded.
  Json missing = Json::MakeObject();
  missing.Set("owner", "acme");
  Json refused = CallTool(session, "merge", missing, "/mcp/repo");
  EXPECT_TRUE(IsError(refused));
  EXPECT_EQ(FirstText(refused).rfind("mandate: bad_request: ", 0), 0u) << FirstText(refused);
  EXPECT_EQ(repo_up_.calls(), 1u);
}

// An upstream's CallToolResult is untrusted data and must reach the agent as a result, whatever
// members it has.
TEST_F(McpEndpointTest, UpstreamResultWithErrorAndCodeMembersPassesThrough) {
  up_.result = Json::Parse(R"({"error":"quota","code":-1,"structuredContent":{}})").value();
  const std::string session = Initialize(token_);
  Json params = Json::MakeObject();
  params.Set("name", "read_doc");
  Reply r = Post(Rpc("tools/call", params), session, token_);
  EXPECT_EQ(r.error(), nullptr) << "an upstream result was turned into a JSON-RPC error: "
                                << r.body;
  ASSERT_NE(r.result(), nullptr) << r.body;
  EXPECT_EQ(r.result()->GetString("error"), "quota");
}

// --- ResourceTemplate ----------------------------------------------------------------------------

TEST(ResourceTemplate, ParsesAndRenders) {
  auto t = ResourceTemplate::Parse(R"(Repo::"{args.owner}/{args.repo}")");
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->type, "Repo");
  EXPECT_EQ(t->id_template, "{args.owner}/{args.repo}");
  Json args = Json::MakeObject();
  args.Set("owner", "acme");
  args.Set("repo", "web");
  auto ref = t->Render(args);
  ASSERT_TRUE(ref.ok()) << ref.error().message;
  EXPECT_EQ(ref->type, "Repo");
  EXPECT_EQ(ref->id, "acme/web");

  auto numbered = ResourceTemplate::Parse(R"(Git::Issue::"#{args.n}")");
  ASSERT_TRUE(numbered.ok());
  EXPECT_EQ(numbered->type, "Git::Issue");
  Json n = Json::MakeObject();
  n.Set("n", 42);
  EXPECT_EQ(numbered->Render(n)->id, "#42");

  auto fixed = ResourceTemplate::Parse(R"(Doc::"static")");
  ASSERT_TRUE(fixed.ok());
  EXPECT_EQ(fixed->Render(Json::MakeObject())->id, "static");
}

TEST(ResourceTemplate, ParseErrors) {
  for (const char* bad :
       {"Repo", "Repo::", R"(::"x")", R"(Repo::"x)", R"(Repo::"a"b")", R"(Repo::"a\b")", ""}) {
    auto t = ResourceTemplate::Parse(bad);
    EXPECT_FALSE(t.ok()) << bad;
    if (!t.ok()) {
      EXPECT_EQ(t.error().code, ErrorCode::kBadRequest) << bad;
    }
  }
}

TEST(ResourceTemplate, RenderErrors) {
  auto t = ResourceTemplate::Parse(R"(Repo::"{args.owner}/{args.repo}")");
  ASSERT_TRUE(t.ok());
  Json missing = Json::MakeObject();
  missing.Set("owner", "acme");
  EXPECT_EQ(t->Render(missing).error().code, ErrorCode::kBadRequest);
  for (Json v : {Json(true), Json(1.5), Json::MakeObject(), Json::MakeArray(), Json()}) {
    Json args = Json::MakeObject();
    args.Set("owner", "acme");
    args.Set("repo", v);
    auto r = t->Render(args);
    EXPECT_FALSE(r.ok()) << v.Dump();
    if (!r.ok()) {
      EXPECT_EQ(r.error().code, ErrorCode::kBadRequest);
    }
  }
  auto unclosed = ResourceTemplate::Parse(R"(Repo::"{args.owner")");
  ASSERT_TRUE(unclosed.ok());
  EXPECT_EQ(unclosed->Render(missing).error().code, ErrorCode::kBadRequest);
  auto not_args = ResourceTemplate::Parse(R"(Repo::"{env.HOME}")");
  ASSERT_TRUE(not_args.ok());
  EXPECT_EQ(not_args->Render(missing).error().code, ErrorCode::kBadRequest);
}

}  // namespace
}  // namespace mandate::adapters::mcp
