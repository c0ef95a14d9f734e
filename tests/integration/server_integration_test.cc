// Integration tests: the real server (server::ParseConfig + server::Server::Start) on
// 127.0.0.1 with port 0 for both listeners, an HTTP MCP upstream played by a tiny in-test
// Streamable HTTP server that records every request it receives, and a real HTTP client.
// Covers the admin API (DESIGN.md section 8), the agent listener, revocation end to end,
// credential injection and scrubbing (invariant 3), and a clean stop.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdio>
#include <ctime>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/temp_dir_test_util.h"
#include "mandate/audit/audit_log.h"
#include "mandate/core/encoding.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"
#include "mandate/net/http.h"
#include "server/config.h"
#include "server/server.h"
#include "store/old_schema_test_util.h"

namespace mandate {
namespace {

namespace fs = std::filesystem;
using core::Json;

constexpr char kSecretEnv[] = "MANDATE_IT_UPSTREAM_SECRET";
constexpr char kSecret[] = "it-secret-Zq8vXw3uTy5s";
constexpr char kFakeSessionId[] = "fake-upstream-session-1";

using core::testing::TempDir;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A minimal Streamable HTTP MCP server: initialize (issuing a session id), notifications (202),
// tools/list, tools/call, DELETE. Every request is recorded.
class FakeMcpServer {
 public:
  struct Seen {
    std::string http_method;
    std::string rpc_method;
    net::Headers headers;
    std::string body;
    std::string tool;
  };

  bool Start() {
    net::HttpServerOptions opts;
    auto server = net::HttpServer::Start(
        opts, [this](net::HttpRequest req, std::shared_ptr<net::ResponseSink> sink) {
          Handle(std::move(req), sink);
        });
    if (!server.ok()) return false;
    server_ = std::move(server).value();
    return true;
  }
  void Stop() {
    if (server_) server_->Stop();
  }
  std::string Url() const { return "http://127.0.0.1:" + std::to_string(server_->port()) + "/mcp"; }

  std::vector<Seen> seen() const {
    std::lock_guard lock(mu_);
    return seen_;
  }
  size_t ToolCalls(const std::string& tool = "") const {
    size_t n = 0;
    for (const Seen& s : seen())
      n += s.rpc_method == "tools/call" && (tool.empty() || s.tool == tool) ? 1 : 0;
    return n;
  }

 private:
  static Json Result(const Json& id, Json result) {
    Json r = Json::MakeObject();
    r.Set("jsonrpc", "2.0");
    r.Set("id", id);
    r.Set("result", std::move(result));
    return r;
  }
  static Json TextResult(const std::string& text) {
    Json t = Json::MakeObject();
    t.Set("type", "text");
    t.Set("text", text);
    Json content = Json::MakeArray();
    content.Push(std::move(t));
    Json r = Json::MakeObject();
    r.Set("content", std::move(content));
    return r;
  }
  static Json Tool(const std::string& name, bool read_only) {
    Json t = Json::MakeObject();
    t.Set("name", name);
    Json schema = Json::MakeObject();
    schema.Set("type", "object");
    t.Set("inputSchema", std::move(schema));
    if (read_only) {
      Json a = Json::MakeObject();
      a.Set("readOnlyHint", true);
      t.Set("annotations", std::move(a));
    }
    return t;
  }

  void Handle(net::HttpRequest req, const std::shared_ptr<net::ResponseSink>& sink) {
    Seen s;
    s.http_method = req.method;
    s.headers = req.headers;
    s.body = req.body;
    auto parsed = Json::Parse(req.body);
    if (parsed.ok() && parsed->is_object()) {
      s.rpc_method = parsed->GetString("method");
      if (const Json* p = parsed->FindObject("params")) s.tool = p->GetString("name");
    }
    const std::string* auth = req.Header("authorization");
    {
      std::lock_guard lock(mu_);
      seen_.push_back(s);
    }
    if (req.method == "DELETE") {
      sink->Send(net::HttpResponse::Json(200, "{}"));
      return;
    }
    if (req.method != "POST" || !parsed.ok() || !parsed->is_object()) {
      sink->Send(net::HttpResponse::Json(405, "{}"));
      return;
    }
    const Json* id = parsed->Find("id");
    if (id == nullptr) {  // a notification
      net::HttpResponse accepted;
      accepted.status = 202;
      sink->Send(std::move(accepted));
      return;
    }
    if (s.rpc_method == "initialize") {
      Json r = Json::MakeObject();
      r.Set("protocolVersion", "2025-11-25");
      Json caps = Json::MakeObject();
      caps.Set("tools", Json::MakeObject());
      r.Set("capabilities", std::move(caps));
      Json info = Json::MakeObject();
      info.Set("name", "fake");
      info.Set("version", "1.0.0");
      r.Set("serverInfo", std::move(info));
      auto res = net::HttpResponse::Json(200, Result(*id, std::move(r)).Dump());
      res.headers.emplace_back("Mcp-Session-Id", kFakeSessionId);
      sink->Send(std::move(res));
      return;
    }
    if (s.rpc_method == "tools/list") {
      Json tools = Json::MakeArray();
      tools.Push(Tool("echo", true));
      tools.Push(Tool("whoami", true));
      tools.Push(Tool("wipe", false));
      Json r = Json::MakeObject();
      r.Set("tools", std::move(tools));
      sink->Send(net::HttpResponse::Json(200, Result(*id, std::move(r)).Dump()));
      return;
    }
    if (s.rpc_method == "tools/call") {
      const Json* params = parsed->FindObject("params");
      const Json* args = params ? params->Find("arguments") : nullptr;
      std::string text;
      if (s.tool == "whoami") {
        // A careless upstream that echoes the credential it was sent.
        text = "you sent: " + (auth ? *auth : std::string("nothing"));
      } else if (s.tool == "slow") {
        // A long-running tool: answers after 3 s (the caller is cancelled long before).
        std::this_thread::sleep_for(std::chrono::seconds(3));
        text = "slow done";
      } else {
        text = "echo " + (args ? args->Dump() : std::string("{}"));
      }
      sink->Send(net::HttpResponse::Json(200, Result(*id, TextResult(text)).Dump()));
      return;
    }
    Json err = Json::MakeObject();
    err.Set("jsonrpc", "2.0");
    err.Set("id", *id);
    Json e = Json::MakeObject();
    e.Set("code", -32601);
    e.Set("message", "method not found");
    err.Set("error", std::move(e));
    sink->Send(net::HttpResponse::Json(200, err.Dump()));
  }

  std::unique_ptr<net::HttpServer> server_;
  mutable std::mutex mu_;
  std::vector<Seen> seen_;
};

struct Answer {
  int status = 0;
  net::Headers headers;
  std::string body;
  Json json;
  const std::string* Header(std::string_view name) const { return net::FindHeader(headers, name); }
  std::string ErrorCode() const {
    const Json* e = json.FindObject("error");
    if (e == nullptr) return "";
    const std::string* code = e->FindString("code");
    return code ? *code : "";
  }
};

class ServerIntegrationTest : public ::testing::Test {
 protected:
  std::string extra_config_;  // appended to ConfigText() by StartServer
  void SetUp() override {
    ASSERT_TRUE(fake_.Start());
    ASSERT_EQ(::setenv(kSecretEnv, kSecret, 1), 0);
    fs::create_directories(dir_.Sub("policies"));
    std::ofstream(dir_.Sub("policies/main.cedar")) << R"(
@id("everything") permit (principal, action, resource);
@id("no-wipe") forbid (principal, action == Action::"up:wipe", resource);
)";
    StartServer();
  }

  void TearDown() override {
    if (server_) server_->Stop();
    fake_.Stop();
    // Whatever the test did, the agent never saw the upstream secret.
    for (const std::string& body : bodies_) {
      EXPECT_EQ(body.find(kSecret), std::string::npos) << "secret leaked in a response: " << body;
    }
  }

  std::string ConfigText() const {
    return "listen: 127.0.0.1:0\n"
           "admin_listen: 127.0.0.1:0\n"
           "data_dir: " +
           dir_.Sub("data") +
           "\n"
           "policies: " +
           dir_.Sub("policies") +
           "\n"
           "upstreams:\n"
           "  " +
           upstream_name_ + ": { kind: mcp, url: \"" + fake_.Url() +
           "\", credential: up, timeout: 10s }\n"
           "credentials:\n"
           "  up: { env: " +
           kSecretEnv + " }\n";
  }

  void StartServer() {
    auto config = server::ParseConfig(ConfigText() + extra_config_, dir_.Sub("mandate.yaml"));
    ASSERT_TRUE(config.ok()) << config.error().message;
    auto server = server::Server::Start(std::move(config).value(), [this](const std::string& line) {
      std::lock_guard lock(log_mu_);
      log_.push_back(line);
    });
    ASSERT_TRUE(server.ok()) << server.error().message;
    server_ = std::move(server).value();
    ASSERT_NE(server_->agent_port(), 0);
    ASSERT_NE(server_->admin_port(), 0);
    ASSERT_NE(server_->agent_port(), server_->admin_port());
    admin_token_ = ReadFile(dir_.Sub("data/admin.token"));
    while (!admin_token_.empty() && admin_token_.back() == '\n') admin_token_.pop_back();
    ASSERT_FALSE(admin_token_.empty());
  }

  Answer Do(uint16_t port, const std::string& method, const std::string& path,
            const std::string& body, net::Headers headers) {
    net::HttpClientRequest req;
    req.method = method;
    req.url = "http://127.0.0.1:" + std::to_string(port) + path;
    req.headers = std::move(headers);
    req.body = body;
    req.timeout_millis = 15000;
    auto res = client_.Do(req);
    Answer a;
    EXPECT_TRUE(res.ok()) << method << " " << path << ": " << res.error().message;
    if (!res.ok()) return a;
    a.status = res->status;
    a.headers = res->headers;
    a.body = res->body;
    bodies_.push_back(a.body);
    for (const auto& [k, v] : a.headers) bodies_.push_back(k + ": " + v);
    if (auto j = Json::Parse(a.body); j.ok()) a.json = std::move(j).value();
    return a;
  }

  Answer Admin(const std::string& method, const std::string& path, const std::string& body = "",
               std::optional<std::string> token = std::nullopt) {
    net::Headers h;
    const std::string t = token.value_or(admin_token_);
    if (!t.empty()) h.emplace_back("Authorization", "Bearer " + t);
    if (!body.empty()) h.emplace_back("Content-Type", "application/json");
    return Do(server_->admin_port(), method, path, body, std::move(h));
  }

  Answer Agent(const std::string& method, const std::string& path, const std::string& body = "",
               const std::string& token = "", const std::string& mcp_session = "") {
    net::Headers h;
    if (!token.empty()) h.emplace_back("Authorization", "Bearer " + token);
    if (!mcp_session.empty()) h.emplace_back("Mcp-Session-Id", mcp_session);
    h.emplace_back("Content-Type", "application/json");
    h.emplace_back("Accept", "application/json");
    return Do(server_->agent_port(), method, path, body, std::move(h));
  }

  static std::string Rpc(const std::string& method, Json params = Json::MakeObject(), int id = 1) {
    Json m = Json::MakeObject();
    m.Set("jsonrpc", "2.0");
    m.Set("id", id);
    m.Set("method", method);
    m.Set("params", std::move(params));
    return m.Dump();
  }

  static std::string CallParams(const std::string& tool, Json args = Json::MakeObject()) {
    Json p = Json::MakeObject();
    p.Set("name", tool);
    p.Set("arguments", std::move(args));
    return Rpc("tools/call", std::move(p), 2);
  }

  // Registers alice and bot; returns {token, sid} of a new session.
  std::pair<std::string, std::string> StartSession(const std::string& extra = "") {
    EXPECT_EQ(Admin("POST", "/admin/v1/humans", R"({"name":"alice","groups":["finance"]})").status,
              200);
    EXPECT_EQ(Admin("POST", "/admin/v1/agents", R"({"name":"bot","owner":"alice"})").status, 200);
    Answer s =
        Admin("POST", "/admin/v1/sessions",
              R"({"agent":"bot","human":"alice","task":"T-1","scope":["up:*"])" + extra + "}");
    EXPECT_EQ(s.status, 201) << s.body;
    return {s.json.GetString("token"), s.json.GetString("sid")};
  }

  std::string McpInitialize(const std::string& token) {
    Json params = Json::MakeObject();
    params.Set("protocolVersion", "2025-11-25");
    params.Set("capabilities", Json::MakeObject());
    Json info = Json::MakeObject();
    info.Set("name", "it");
    info.Set("version", "1");
    params.Set("clientInfo", std::move(info));
    Answer a = Agent("POST", "/mcp/up", Rpc("initialize", params), token);
    EXPECT_EQ(a.status, 200) << a.body;
    const std::string* sid = a.Header("Mcp-Session-Id");
    EXPECT_NE(sid, nullptr) << a.body;
    return sid ? *sid : "";
  }

  static std::string FirstText(const Answer& a) {
    const Json* result = a.json.FindObject("result");
    if (result == nullptr) return "";
    const Json* content = result->FindArray("content");
    if (content == nullptr || content->as_array().empty()) return "";
    return content->as_array()[0].GetString("text");
  }

  std::vector<Json> AuditRecords() {
    Answer a = Admin("GET", "/admin/v1/audit?limit=1000");
    EXPECT_EQ(a.status, 200) << a.body;
    const Json* records = a.json.FindArray("records");
    return records ? records->as_array() : std::vector<Json>{};
  }

  TempDir dir_;
  std::string upstream_name_ = "up";
  FakeMcpServer fake_;
  std::unique_ptr<server::Server> server_;
  std::string admin_token_;
  net::HttpClient client_;
  std::vector<std::string> bodies_;  // every response body and header seen by the test
  std::mutex log_mu_;
  std::vector<std::string> log_;
};

// --- admin API ----------------------------------------------------------------------------------

TEST_F(ServerIntegrationTest, AdminApiRequiresTheAdminToken) {
  Answer none = Admin("GET", "/admin/v1/humans", "", std::string());
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.ErrorCode(), "unauthenticated");
  EXPECT_NE(none.Header("WWW-Authenticate"), nullptr);
  Answer wrong = Admin("GET", "/admin/v1/humans", "", std::string("mdt_wrong"));
  EXPECT_EQ(wrong.status, 401);
  Answer prefix =
      Admin("GET", "/admin/v1/humans", "", admin_token_.substr(0, admin_token_.size() - 1));
  EXPECT_EQ(prefix.status, 401);
  Answer writes = Admin("POST", "/admin/v1/humans", R"({"name":"eve"})", std::string("mdt_wrong"));
  EXPECT_EQ(writes.status, 401);
  // The agent's listener does not serve the admin API either.
  EXPECT_EQ(Agent("GET", "/admin/v1/humans", "", admin_token_).status, 404);

  Answer ok = Admin("GET", "/admin/v1/humans");
  EXPECT_EQ(ok.status, 200) << ok.body;
  ASSERT_NE(ok.json.FindArray("humans"), nullptr);
  EXPECT_TRUE(ok.json.FindArray("humans")->as_array().empty())
      << "the unauthenticated POST created a human";
}

TEST_F(ServerIntegrationTest, PolicyExplainNamesTheDeterminingPoliciesOfEveryPrincipal) {
  ASSERT_EQ(Admin("POST", "/admin/v1/humans", R"({"name":"alice"})").status, 200);
  ASSERT_EQ(Admin("POST", "/admin/v1/agents", R"({"name":"bot","owner":"alice"})").status, 200);
  const size_t upstream_calls = fake_.ToolCalls();

  Answer allow = Admin("POST", "/admin/v1/policies/explain",
                       R"({"agent":"bot","for":"alice","action":"up:echo","args":{"text":"hi"}})");
  ASSERT_EQ(allow.status, 200) << allow.body;
  EXPECT_EQ(allow.json.GetString("decision"), "allow");
  EXPECT_EQ(allow.json.GetString("action"), "up:echo");
  EXPECT_EQ(allow.json.GetString("class"), "read");  // from the upstream's annotations
  const Json* checks = allow.json.FindArray("checks");
  ASSERT_NE(checks, nullptr);
  ASSERT_EQ(checks->as_array().size(), 2u);
  EXPECT_EQ(checks->as_array()[0].GetString("principal"), "Human::\"alice\"");
  EXPECT_EQ(checks->as_array()[1].GetString("principal"), "Agent::\"bot\"");
  for (const Json& c : checks->as_array()) {
    EXPECT_EQ(c.FindArray("permits")->Dump(), R"(["everything"])");
  }

  Answer deny = Admin("POST", "/admin/v1/policies/explain", R"({"agent":"bot","for":"alice","action":"up:wipe"})");
  ASSERT_EQ(deny.status, 200) << deny.body;
  EXPECT_EQ(deny.json.GetString("decision"), "deny");
  EXPECT_EQ(deny.json.GetString("code"), "policy_denied");
  EXPECT_EQ(deny.json.FindArray("checks")->as_array()[0].FindArray("forbids")->Dump(), R"(["no-wipe"])");

  Answer out_of_scope = Admin("POST", "/admin/v1/policies/explain",
                              R"({"agent":"bot","for":"alice","action":"up:echo","scope":["up:other"]})");
  ASSERT_EQ(out_of_scope.status, 200);
  EXPECT_EQ(out_of_scope.json.GetString("code"), "out_of_scope");

  // Explaining never calls the upstream, never writes the audit log.
  EXPECT_EQ(fake_.ToolCalls(), upstream_calls);
  Answer audit = Admin("GET", "/admin/v1/audit?limit=1000");
  EXPECT_EQ(audit.body.find("up:wipe"), std::string::npos);

  // Bad input: a clear error with a stable code.
  EXPECT_EQ(Admin("POST", "/admin/v1/policies/explain", R"({"agent":"bot","for":"alice"})").status, 400);
  EXPECT_EQ(Admin("POST", "/admin/v1/policies/explain", R"({"agent":"nobody","for":"alice","action":"up:echo"})").status, 404);
  EXPECT_EQ(Admin("POST", "/admin/v1/policies/explain", R"({"agent":"bot","for":"nobody","action":"up:echo"})").status, 404);
  EXPECT_EQ(Admin("POST", "/admin/v1/policies/explain", R"({"agent":"bot","for":"alice","action":"nope:echo"})").status, 404);
  EXPECT_EQ(Admin("POST", "/admin/v1/policies/explain", R"({"agent":"bot","for":"alice","action":"echo"})").status, 400);
  EXPECT_EQ(Admin("POST", "/admin/v1/policies/explain", R"({"agent":"bot","for":"alice","action":"up:echo","args":[1]})").status, 400);
}

TEST_F(ServerIntegrationTest, PoliciesReloadWholeOrNotAtAllAndEveryReloadIsAudited) {
  ASSERT_EQ(Admin("POST", "/admin/v1/humans", R"({"name":"alice"})").status, 200);
  ASSERT_EQ(Admin("POST", "/admin/v1/agents", R"({"name":"bot","owner":"alice"})").status, 200);
  auto decision = [&] {
    return Admin("POST", "/admin/v1/policies/explain", R"({"agent":"bot","for":"alice","action":"up:echo"})")
        .json.GetString("decision");
  };
  auto audit_types = [&] {
    std::vector<std::string> types;
    Answer a = Admin("GET", "/admin/v1/audit?limit=1000");
    if (const Json* recs = a.json.FindArray("records")) {
      for (const Json& r : recs->as_array()) types.push_back(r.GetString("type"));
    }
    return types;
  };
  ASSERT_EQ(decision(), "allow");
  // The set the server started with is in the log before any decision.
  auto types = audit_types();
  ASSERT_FALSE(types.empty());
  EXPECT_EQ(types.front(), "policy.loaded");

  // A good change is picked up by the watcher, without any call.
  std::ofstream(dir_.Sub("policies/extra.cedar")) << R"(@id("no-echo") forbid (principal, action == Action::"up:echo", resource);)";
  for (int i = 0; i < 100 && decision() != "deny"; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(decision(), "deny");
  types = audit_types();
  EXPECT_EQ(std::count(types.begin(), types.end(), "policy.loaded"), 2);

  // A bad change is rejected whole: the set in force stays (echo still forbidden), and the
  // rejection is audited; the reload endpoint says why.
  std::ofstream(dir_.Sub("policies/broken.cedar")) << "permit (principal, action, resource";
  Answer rejected = Admin("POST", "/admin/v1/policies/reload");
  EXPECT_EQ(rejected.status, 400);
  EXPECT_NE(rejected.body.find("broken.cedar"), std::string::npos) << rejected.body;
  EXPECT_EQ(decision(), "deny");
  types = audit_types();
  EXPECT_GE(std::count(types.begin(), types.end(), "policy.rejected"), 1);

  // Fixing it loads the fixed set; reloading an unchanged directory changes nothing.
  fs::remove(dir_.Sub("policies/broken.cedar"));
  fs::remove(dir_.Sub("policies/extra.cedar"));
  Answer loaded = Admin("POST", "/admin/v1/policies/reload");
  ASSERT_EQ(loaded.status, 200) << loaded.body;
  EXPECT_EQ(decision(), "allow");
  Answer again = Admin("POST", "/admin/v1/policies/reload");
  EXPECT_EQ(again.json.GetString("status"), "unchanged");
  EXPECT_EQ(again.json.GetString("sha256"), loaded.json.GetString("sha256"));
}

TEST_F(ServerIntegrationTest, KeyRotationSignsWithANewKeyWhileOldTokensKeepWorking) {
  auto kid_of = [](const std::string& token) {
    auto header = core::Base64UrlDecode(token.substr(0, token.find('.')));
    if (!header) return std::string();
    auto j = Json::Parse(*header);
    return j.ok() ? j->GetString("kid") : std::string();
  };
  auto [old_token, sid] = StartSession();
  const std::string old_kid = kid_of(old_token);
  ASSERT_FALSE(old_kid.empty());

  Answer rotated = Admin("POST", "/admin/v1/keys/rotate");
  ASSERT_EQ(rotated.status, 200) << rotated.body;
  const std::string new_kid = rotated.json.GetString("kid");
  EXPECT_NE(new_kid, old_kid);
  EXPECT_EQ(rotated.json.GetString("previous_kid"), old_kid);
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  // The old key verifies until its longest-lived token has expired (max_ttl 24 h + 30 s skew).
  EXPECT_NEAR(static_cast<double>(rotated.json.GetInt("previous_retires_at", 0)),
              static_cast<double>(now + core::kTokenTtlSecondsMax + core::kTokenClockSkewSeconds), 5.0);

  // The JWKS serves exactly the keys that verify, the signer first.
  Answer jwks = Do(server_->agent_port(), "GET", "/.well-known/jwks.json", "", {});
  ASSERT_EQ(jwks.status, 200);
  const auto& jkeys = jwks.json.FindArray("keys")->as_array();
  ASSERT_EQ(jkeys.size(), 2u);
  EXPECT_EQ(jkeys[0].GetString("kid"), new_kid);
  EXPECT_EQ(jkeys[1].GetString("kid"), old_kid);
  Answer listed = Admin("GET", "/admin/v1/keys");
  ASSERT_EQ(listed.status, 200);
  EXPECT_EQ(listed.json.FindArray("keys")->as_array().size(), 2u);

  // A token signed before the rotation still works; new sessions get the new key.
  EXPECT_FALSE(McpInitialize(old_token).empty());
  Answer fresh = Admin("POST", "/admin/v1/sessions", R"({"agent":"bot","human":"alice","task":"T-2"})");
  ASSERT_EQ(fresh.status, 201) << fresh.body;
  const std::string new_token = fresh.json.GetString("token");
  EXPECT_EQ(kid_of(new_token), new_kid);
  EXPECT_FALSE(McpInitialize(new_token).empty());

  Answer audit = Admin("GET", "/admin/v1/audit?limit=1000");
  EXPECT_NE(audit.body.find("\"key.rotated\""), std::string::npos);
  EXPECT_EQ(audit.body.find("PRIVATE"), std::string::npos);

  // Across a restart the new key still signs and the old one still verifies.
  server_->Stop();
  server_.reset();
  StartServer();
  EXPECT_FALSE(McpInitialize(old_token).empty());
  EXPECT_FALSE(McpInitialize(new_token).empty());
}

// POST /oauth/token (RFC 8693) with a form body; returns the answer.
static std::string Form(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string out;
  for (const auto& [k, v] : kv) {
    if (!out.empty()) out += "&";
    out += k + "=";
    for (char c : v) {
      if (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '~') out.push_back(c);
      else if (c == ' ') out.push_back('+');
      else {
        char buf[4];
        std::snprintf(buf, sizeof(buf), "%%%02X", static_cast<unsigned char>(c));
        out += buf;
      }
    }
  }
  return out;
}

TEST_F(ServerIntegrationTest, TokenExchangeDelegatesAnAttenuatedChildWhoseRevocationCascades) {
  auto [parent, parent_sid] = StartSession();  // bot for alice, scope up:*
  for (const char* a : {"helper", "a2", "a3", "a4", "a5"}) {
    ASSERT_EQ(Admin("POST", "/admin/v1/agents", std::string(R"({"owner":"alice","name":")") + a + "\"}").status, 200);
  }
  auto exchange = [&](const std::string& subject, const std::string& audience, const std::string& scope) {
    std::vector<std::pair<std::string, std::string>> kv = {
        {"grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"},
        {"subject_token", subject},
        {"subject_token_type", "urn:ietf:params:oauth:token-type:access_token"},
        {"audience", audience}};
    if (!scope.empty()) kv.emplace_back("scope", scope);
    return Do(server_->agent_port(), "POST", "/oauth/token", Form(kv),
              {{"Content-Type", "application/x-www-form-urlencoded"}});
  };

  Answer child = exchange(parent, "helper", "up:echo");
  ASSERT_EQ(child.status, 200) << child.body;
  EXPECT_EQ(child.json.GetString("token_type"), "Bearer");
  EXPECT_EQ(child.json.GetString("issued_token_type"), "urn:ietf:params:oauth:token-type:access_token");
  EXPECT_EQ(child.json.GetString("scope"), "up:echo");
  const std::string child_token = child.json.GetString("access_token");
  const std::string child_sid = child.json.GetString("sid");
  // The nested act chain: the child outermost, then its parent (RFC 8693 section 4.1).
  auto payload = core::Base64UrlDecode(child_token.substr(child_token.find('.') + 1,
                                                          child_token.rfind('.') - child_token.find('.') - 1));
  ASSERT_TRUE(payload.has_value());
  auto claims = Json::Parse(*payload);
  ASSERT_TRUE(claims.ok());
  EXPECT_EQ(claims->GetString("client_id"), "helper");
  EXPECT_EQ(claims->GetString("sub"), "alice");
  const Json* act = claims->FindObject("act");
  ASSERT_NE(act, nullptr) << *payload;
  EXPECT_EQ(act->GetString("sub"), "agent:helper");
  EXPECT_EQ(act->GetString("sid"), child_sid);
  ASSERT_NE(act->FindObject("act"), nullptr) << *payload;
  EXPECT_EQ(act->FindObject("act")->GetString("sub"), "agent:bot");
  EXPECT_EQ(act->FindObject("act")->GetString("sid"), parent_sid);

  // The child may call what it was given and nothing more.
  const std::string mcp = McpInitialize(child_token);
  Answer echo = Agent("POST", "/mcp/up", CallParams("echo"), child_token, mcp);
  EXPECT_EQ(FirstText(echo).rfind("echo", 0), 0u) << echo.body;
  Answer whoami = Agent("POST", "/mcp/up", CallParams("whoami"), child_token, mcp);
  EXPECT_EQ(FirstText(whoami).rfind("mandate: out_of_scope: ", 0), 0u) << whoami.body;

  // Never more than the parent holds.
  Answer wider = exchange(child_token, "a2", "up:*");
  EXPECT_EQ(wider.status, 400);
  EXPECT_EQ(wider.json.GetString("error"), "invalid_scope");
  // Bad input: the OAuth error codes.
  EXPECT_EQ(exchange(parent, "nobody", "").json.GetString("error"), "invalid_target");
  EXPECT_EQ(exchange("not.a.token", "helper", "").json.GetString("error"), "invalid_request");
  // Without audience: a refresh of the same session, never wider.
  Answer refreshed = exchange(child_token, "", "");
  ASSERT_EQ(refreshed.status, 200) << refreshed.body;
  EXPECT_EQ(refreshed.json.GetString("sid"), child_sid);
  EXPECT_EQ(refreshed.json.GetString("scope"), "up:echo");
  EXPECT_NE(refreshed.json.GetString("access_token"), child_token);
  EXPECT_FALSE(McpInitialize(refreshed.json.GetString("access_token")).empty());
  EXPECT_EQ(exchange(child_token, "", "up:*").json.GetString("error"), "invalid_scope");
  EXPECT_EQ(Do(server_->agent_port(), "POST", "/oauth/token", "grant_type=password",
               {{"Content-Type", "application/x-www-form-urlencoded"}}).json.GetString("error"),
            "unsupported_grant_type");
  EXPECT_EQ(Do(server_->agent_port(), "POST", "/oauth/token", R"({"grant_type":"x"})",
               {{"Content-Type", "application/json"}}).json.GetString("error"),
            "invalid_request");

  // Depth: bot (0) -> helper (1) -> a2 (2) -> a3 (3) -> a4 (4) -> a5 (5) is one hop too many.
  std::string t = child_token;
  for (const char* a : {"a2", "a3", "a4"}) {
    Answer next = exchange(t, a, "");
    ASSERT_EQ(next.status, 200) << a << ": " << next.body;
    t = next.json.GetString("access_token");
  }
  Answer too_deep = exchange(t, "a5", "");
  EXPECT_EQ(too_deep.status, 400);
  EXPECT_EQ(too_deep.json.GetString("error"), "invalid_request");
  EXPECT_NE(too_deep.json.GetString("error_description").find("max_delegation_depth"), std::string::npos);

  // Policy decides who may delegate to whom.
  std::ofstream(dir_.Sub("policies/delegation.cedar"))
      << R"(@id("no-delegating-to-a5") forbid (principal, action == Action::"mandate:delegate", resource == Agent::"a5");)";
  ASSERT_EQ(Admin("POST", "/admin/v1/policies/reload").status, 200);
  Answer forbidden = exchange(parent, "a5", "");
  EXPECT_EQ(forbidden.json.GetString("error"), "invalid_target");
  EXPECT_NE(forbidden.json.GetString("error_description").find("no-delegating-to-a5"), std::string::npos);

  // Revoking the parent stops the whole subtree at its next call.
  ASSERT_EQ(Admin("POST", "/admin/v1/revocations", R"({"kind":"session","subject":")" + parent_sid + "\"}").status, 200);
  Answer after = Agent("POST", "/mcp/up", CallParams("echo"), child_token, mcp);
  EXPECT_EQ(after.status, 401) << after.body;
  EXPECT_NE(after.body.find("token_revoked"), std::string::npos) << after.body;
  EXPECT_EQ(exchange(child_token, "a2", "").json.GetString("error"), "invalid_request");

  // The tree and every step are in the audit log.
  std::vector<std::string> types;
  for (const Json& r : AuditRecords()) types.push_back(r.GetString("type"));
  EXPECT_EQ(std::count(types.begin(), types.end(), "session.delegated"), 4);
  EXPECT_GE(std::count(types.begin(), types.end(), "session.delegation_refused"), 7);
  EXPECT_EQ(std::count(types.begin(), types.end(), "session.refreshed"), 1);
  // The delegation tree: parent -> helper -> a2 -> a3 -> a4, each level nested.
  Answer tree = Admin("GET", "/admin/v1/sessions/" + parent_sid);
  ASSERT_EQ(tree.status, 200);
  const Json* level = &tree.json;
  std::vector<std::string> agents;
  while (level != nullptr) {
    agents.push_back(level->GetString("agent"));
    const Json* d = level->FindArray("delegations");
    level = d && !d->as_array().empty() ? &d->as_array()[0] : nullptr;
  }
  EXPECT_EQ(agents, (std::vector<std::string>{"bot", "helper", "a2", "a3", "a4"})) << tree.body;
  // Revoking the parent marked the stored subtree revoked too.
  const Json& child_node = tree.json.FindArray("delegations")->as_array()[0];
  EXPECT_EQ(child_node.GetString("sid"), child_sid);
  EXPECT_FALSE(child_node.Find("revoked_at")->is_null()) << tree.body;
}

TEST_F(ServerIntegrationTest, RevokingASessionCancelsItsCallInFlight) {
  auto [token, sid] = StartSession();
  const std::string mcp = McpInitialize(token);
  Answer answer;
  auto start = std::chrono::steady_clock::now();
  std::thread caller([&, tok = token, m = mcp] { answer = Agent("POST", "/mcp/up", CallParams("slow"), tok, m); });
  // Wait until the call is waiting on the upstream, then revoke its session.
  for (int i = 0; i < 200 && fake_.ToolCalls("slow") == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(fake_.ToolCalls("slow"), 1u);
  Answer revoked = Admin("POST", "/admin/v1/revocations", R"({"kind":"session","subject":")" + sid + "\"}");
  ASSERT_EQ(revoked.status, 200) << revoked.body;
  EXPECT_EQ(revoked.json.GetInt("cancelled_calls", -1), 1);
  caller.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2500)) << "the call waited for the upstream";
  EXPECT_EQ(FirstText(answer).rfind("mandate: token_revoked: ", 0), 0u) << answer.body;
  // call.cancelled rides the next group commit (at most kAuditFlushIntervalMillis later).
  bool found = false;
  for (int i = 0; i < 100 && !found; ++i) {
    for (const Json& r : AuditRecords()) {
      found = found || (r.GetString("type") == "call.cancelled" && r.GetString("sid") == sid);
    }
    if (!found) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(found) << "no call.cancelled record";
}

TEST_F(ServerIntegrationTest, RefreshStopsAtTheRunsMaximumLifetime) {
  server_->Stop();
  server_.reset();
  extra_config_ = "tokens: { ttl: 1s, max_ttl: 2s }\n";
  StartServer();
  auto [token, sid] = StartSession(R"(,"ttl_seconds":1)");
  auto refresh = [&] {
    return Do(server_->agent_port(), "POST", "/oauth/token",
              "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=" + token +
                  "&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token",
              {{"Content-Type", "application/x-www-form-urlencoded"}});
  };
  Answer first = refresh();
  ASSERT_EQ(first.status, 200) << first.body;
  EXPECT_LE(first.json.GetInt("expires_in", 99), 2);
  // Past created_at + max_ttl the (still skew-accepted) token can no longer be refreshed.
  std::this_thread::sleep_for(std::chrono::milliseconds(2200));
  Answer late = refresh();
  EXPECT_EQ(late.status, 400) << late.body;
  EXPECT_EQ(late.json.GetString("error"), "invalid_request");
  EXPECT_NE(late.json.GetString("error_description").find("maximum lifetime"), std::string::npos) << late.body;
}

TEST_F(ServerIntegrationTest, AuditPageLimitIsEnforced) {
  EXPECT_EQ(Admin("GET", "/admin/v1/audit?limit=0").status, 400);
  EXPECT_EQ(Admin("GET", "/admin/v1/audit?limit=abc").status, 400);
  EXPECT_EQ(Admin("GET", "/admin/v1/audit?limit=" + std::to_string(core::kAdminAuditPageMax + 1)).status,
            400);
  EXPECT_EQ(Admin("GET", "/admin/v1/audit?limit=" + std::to_string(core::kAdminAuditPageMax)).status, 200);
}

TEST_F(ServerIntegrationTest, HumansAndAgentsAreIdempotentAndConflictsAre409) {
  EXPECT_EQ(
      Admin("POST", "/admin/v1/humans", R"({"name":"alice","groups":["finance","ops"]})").status,
      200);
  Answer again =
      Admin("POST", "/admin/v1/humans", R"({"name":"alice","groups":["ops","finance"]})");
  EXPECT_EQ(again.status, 200) << again.body;
  Answer conflict = Admin("POST", "/admin/v1/humans", R"({"name":"alice","groups":["sales"]})");
  EXPECT_EQ(conflict.status, 409) << conflict.body;
  EXPECT_EQ(conflict.ErrorCode(), "conflict");

  EXPECT_EQ(
      Admin("POST", "/admin/v1/agents", R"({"name":"bot","owner":"alice","groups":["support"]})")
          .status,
      200);
  EXPECT_EQ(
      Admin("POST", "/admin/v1/agents", R"({"name":"bot","owner":"alice","groups":["support"]})")
          .status,
      200);
  Answer orphan = Admin("POST", "/admin/v1/agents", R"({"name":"bot2","owner":"nobody"})");
  EXPECT_EQ(orphan.status, 404) << orphan.body;
  EXPECT_EQ(orphan.ErrorCode(), "not_found");
  EXPECT_EQ(Admin("POST", "/admin/v1/humans", R"({"name":"bob"})").status, 200);
  Answer other_owner =
      Admin("POST", "/admin/v1/agents", R"({"name":"bot","owner":"bob","groups":["support"]})");
  EXPECT_EQ(other_owner.status, 409) << other_owner.body;

  Answer list = Admin("GET", "/admin/v1/agents");
  ASSERT_NE(list.json.FindArray("agents"), nullptr) << list.body;
  ASSERT_EQ(list.json.FindArray("agents")->as_array().size(), 1u);
  EXPECT_EQ(list.json.FindArray("agents")->as_array()[0].GetString("owner"), "alice");

  EXPECT_EQ(Admin("POST", "/admin/v1/humans", "{not json").status, 400);
  EXPECT_EQ(Admin("POST", "/admin/v1/humans", R"(["alice"])").status, 400);
  EXPECT_EQ(Admin("POST", "/admin/v1/humans", R"({"name":""})").status, 400);
  EXPECT_EQ(Admin("POST", "/admin/v1/humans", R"({"name":"carol","groups":"g"})").status, 400);
}

TEST_F(ServerIntegrationTest, SessionStartIsValidated) {
  EXPECT_EQ(Admin("POST", "/admin/v1/humans", R"({"name":"alice"})").status, 200);
  EXPECT_EQ(Admin("POST", "/admin/v1/agents", R"({"name":"bot","owner":"alice"})").status, 200);

  Answer unknown_upstream =
      Admin("POST", "/admin/v1/sessions", R"({"agent":"bot","human":"alice","scope":["nope:*"]})");
  EXPECT_EQ(unknown_upstream.status, 400) << unknown_upstream.body;
  EXPECT_EQ(unknown_upstream.ErrorCode(), "bad_request");
  Answer malformed_scope =
      Admin("POST", "/admin/v1/sessions", R"({"agent":"bot","human":"alice","scope":["up"]})");
  EXPECT_EQ(malformed_scope.status, 400) << malformed_scope.body;

  Answer too_long = Admin("POST", "/admin/v1/sessions",
                          R"({"agent":"bot","human":"alice","ttl_seconds":)" +
                              std::to_string(core::kTokenTtlSecondsMax + 1) + "}");
  EXPECT_EQ(too_long.status, 400) << too_long.body;
  EXPECT_EQ(
      Admin("POST", "/admin/v1/sessions", R"({"agent":"bot","human":"alice","ttl_seconds":0})")
          .status,
      400);
  EXPECT_EQ(
      Admin("POST", "/admin/v1/sessions", R"({"agent":"bot","human":"alice","ttl_seconds":"60"})")
          .status,
      400);

  EXPECT_EQ(Admin("POST", "/admin/v1/sessions", R"({"agent":"ghost","human":"alice"})").status,
            404);
  EXPECT_EQ(Admin("POST", "/admin/v1/sessions", R"({"agent":"bot","human":"nobody"})").status, 404);
  EXPECT_EQ(Admin("POST", "/admin/v1/sessions", R"({"human":"alice"})").status, 400);

  Answer list = Admin("GET", "/admin/v1/sessions");
  ASSERT_NE(list.json.FindArray("sessions"), nullptr) << list.body;
  EXPECT_TRUE(list.json.FindArray("sessions")->as_array().empty())
      << "a refused start left a session behind";

  Answer ok =
      Admin("POST", "/admin/v1/sessions", R"({"agent":"bot","human":"alice","ttl_seconds":120})");
  EXPECT_EQ(ok.status, 201) << ok.body;
  EXPECT_FALSE(ok.json.GetString("token").empty());
  EXPECT_EQ(ok.json.GetString("sid").rfind("ses", 0), 0u);
  EXPECT_GT(ok.json.GetInt("expires_at", 0), 0);
}

// --- the governed path, end to end
// ------------------------------------------------------------------

TEST_F(ServerIntegrationTest, SessionTokenWorksOnTheAgentListenerUntilRevoked) {
  auto [token, sid] = StartSession();
  ASSERT_FALSE(token.empty());
  const std::string mcp = McpInitialize(token);
  ASSERT_FALSE(mcp.empty());

  Answer list = Agent("POST", "/mcp/up", Rpc("tools/list"), token, mcp);
  ASSERT_EQ(list.status, 200) << list.body;
  std::vector<std::string> names;
  for (const Json& t : list.json.FindObject("result")->FindArray("tools")->as_array())
    names.push_back(t.GetString("name"));
  EXPECT_EQ(names, (std::vector<std::string>{"echo", "whoami"})) << "the forbidden tool is listed";

  Json args = Json::MakeObject();
  args.Set("msg", "hi");
  Answer echo = Agent("POST", "/mcp/up", CallParams("echo", args), token, mcp);
  ASSERT_EQ(echo.status, 200) << echo.body;
  EXPECT_EQ(FirstText(echo), "echo {\"msg\":\"hi\"}");
  EXPECT_EQ(fake_.ToolCalls("echo"), 1u);

  Answer wipe = Agent("POST", "/mcp/up", CallParams("wipe"), token, mcp);
  ASSERT_EQ(wipe.status, 200) << wipe.body;
  EXPECT_EQ(FirstText(wipe).rfind("mandate: policy_denied: ", 0), 0u) << wipe.body;
  EXPECT_EQ(fake_.ToolCalls("wipe"), 0u);

  Answer revoke = Admin("POST", "/admin/v1/revocations",
                        R"({"kind":"session","subject":")" + sid + R"(","reason":"test"})");
  ASSERT_EQ(revoke.status, 200) << revoke.body;
  EXPECT_EQ(*revoke.json.Find("audited"), Json(true));
  ASSERT_NE(revoke.json.FindArray("sessions"), nullptr);
  EXPECT_EQ(revoke.json.FindArray("sessions")->as_array()[0], Json(sid));

  const size_t calls_before = fake_.ToolCalls();
  Answer after = Agent("POST", "/mcp/up", CallParams("echo", args), token, mcp);
  EXPECT_EQ(after.status, 401) << after.body;
  EXPECT_EQ(after.ErrorCode(), "token_revoked") << after.body;
  EXPECT_NE(after.Header("WWW-Authenticate"), nullptr);
  EXPECT_EQ(fake_.ToolCalls(), calls_before) << "a revoked session's call reached the upstream";

  Answer session = Admin("GET", "/admin/v1/sessions/" + sid);
  ASSERT_EQ(session.status, 200) << session.body;
  EXPECT_TRUE(session.json.Find("revoked_at") != nullptr &&
              session.json.Find("revoked_at")->is_int())
      << session.body;
  EXPECT_EQ(Admin("GET", "/admin/v1/sessions/ses_nope").status, 404);
  EXPECT_EQ(
      Admin("POST", "/admin/v1/revocations", R"({"kind":"session","subject":"ses_nope"})").status,
      404);
  EXPECT_EQ(Admin("POST", "/admin/v1/revocations", R"({"kind":"planet","subject":"x"})").status,
            400);

  // The audit log tells the story in order.
  std::vector<std::string> types;
  for (const Json& r : AuditRecords()) types.push_back(r.GetString("type"));
  auto pos = [&](const std::string& t) {
    return std::find(types.begin(), types.end(), t) - types.begin();
  };
  ASSERT_LT(pos("session.started"), static_cast<long>(types.size()));
  ASSERT_LT(pos("call.decided"), static_cast<long>(types.size()));
  ASSERT_LT(pos("call.completed"), static_cast<long>(types.size()));
  ASSERT_LT(pos("session.revoked"), static_cast<long>(types.size()));
  EXPECT_LT(pos("session.started"), pos("call.decided"));
  EXPECT_LT(pos("call.decided"), pos("call.completed"));
  EXPECT_LT(pos("call.completed"), pos("session.revoked"));
}

TEST_F(ServerIntegrationTest, RevocationSurvivesRestart) {
  auto [token, sid] = StartSession();
  ASSERT_EQ(Admin("POST", "/admin/v1/revocations", R"({"kind":"agent","subject":"bot"})").status,
            200);
  const std::string old_admin_token = admin_token_;
  server_->Stop();
  server_.reset();
  StartServer();
  EXPECT_EQ(admin_token_, old_admin_token) << "the admin token must persist across restarts";
  Answer a = Agent("POST", "/mcp/up", Rpc("initialize"), token);
  EXPECT_EQ(a.status, 401) << a.body;
  EXPECT_EQ(a.ErrorCode(), "token_revoked");
  // The directory was reloaded from the store: alice and bot still exist.
  EXPECT_EQ(Admin("POST", "/admin/v1/agents", R"({"name":"bot","owner":"alice"})").status, 200);
}

TEST_F(ServerIntegrationTest, CredentialReachesTheUpstreamAndNeverTheAgent) {
  auto [token, sid] = StartSession();
  const std::string mcp = McpInitialize(token);
  Answer who = Agent("POST", "/mcp/up", CallParams("whoami"), token, mcp);
  ASSERT_EQ(who.status, 200) << who.body;
  EXPECT_EQ(FirstText(who), "you sent: Bearer [REDACTED]") << who.body;
  EXPECT_EQ(who.body.find(kSecret), std::string::npos);

  const auto seen = fake_.seen();
  ASSERT_FALSE(seen.empty());
  for (const auto& s : seen) {
    const std::string* auth = net::FindHeader(s.headers, "Authorization");
    ASSERT_NE(auth, nullptr) << s.http_method << " " << s.rpc_method;
    EXPECT_EQ(*auth, std::string("Bearer ") + kSecret);
    // The agent's own Mandate token never travels upstream.
    for (const auto& [k, v] : s.headers) EXPECT_EQ(v.find(token), std::string::npos) << k;
    EXPECT_EQ(s.body.find(token), std::string::npos);
  }
  // Nor does the audit log hold the secret.
  for (const Json& r : AuditRecords())
    EXPECT_EQ(r.Dump().find(kSecret), std::string::npos) << r.Dump();
  for (const std::string& line : log_) EXPECT_EQ(line.find(kSecret), std::string::npos) << line;
}

// Action::"<upstream>" and Action::"<class>" share one namespace (DESIGN.md section 5): an
// upstream named like a class must not make its destructive tools members of that class.
TEST_F(ServerIntegrationTest, UpstreamNamedLikeAClassDoesNotGrantThatClass) {
  server_->Stop();
  server_.reset();
  upstream_name_ = "read";
  auto config = server::ParseConfig(ConfigText(), dir_.Sub("mandate.yaml"));
  if (!config.ok()) {
    // Refusing such names at load is one valid fix.
    EXPECT_NE(config.error().message.find("read"), std::string::npos) << config.error().message;
    return;
  }
  std::ofstream(dir_.Sub("policies/main.cedar"), std::ios::trunc)
      << R"(@id("reads-only") permit (principal, action in Action::"read", resource);)";
  StartServer();
  EXPECT_EQ(Admin("POST", "/admin/v1/humans", R"({"name":"alice"})").status, 200);
  EXPECT_EQ(Admin("POST", "/admin/v1/agents", R"({"name":"bot","owner":"alice"})").status, 200);
  Answer s =
      Admin("POST", "/admin/v1/sessions", R"({"agent":"bot","human":"alice","scope":["read:*"]})");
  ASSERT_EQ(s.status, 201) << s.body;
  const std::string token = s.json.GetString("token");
  Json params = Json::MakeObject();
  params.Set("protocolVersion", "2025-11-25");
  Answer init = Agent("POST", "/mcp/read", Rpc("initialize", params), token);
  ASSERT_EQ(init.status, 200) << init.body;
  const std::string* mcp = init.Header("Mcp-Session-Id");
  ASSERT_NE(mcp, nullptr);
  // "wipe" has no annotations: it is destructive, and a read-only policy must not permit it.
  Answer wipe = Agent("POST", "/mcp/read", CallParams("wipe"), token, *mcp);
  ASSERT_EQ(wipe.status, 200) << wipe.body;
  EXPECT_EQ(FirstText(wipe).rfind("mandate: policy_denied: ", 0), 0u)
      << "a destructive tool passed a read-only policy because its upstream is named \"read\": "
      << wipe.body;
  EXPECT_EQ(fake_.ToolCalls("wipe"), 0u);
}

// --- listeners ----------------------------------------------------------------------------------

TEST_F(ServerIntegrationTest, HealthzOnBothListeners) {
  Answer agent = Agent("GET", "/healthz");
  EXPECT_EQ(agent.status, 200);
  EXPECT_EQ(agent.json.GetString("status"), "ok");
  Answer admin = Admin("GET", "/healthz", "", std::string());
  EXPECT_EQ(admin.status, 200) << "healthz needs no token";
  EXPECT_EQ(admin.json.GetString("status"), "ok");
}

TEST_F(ServerIntegrationTest, JwksHasKidAndUseSig) {
  Answer a = Agent("GET", "/.well-known/jwks.json");
  ASSERT_EQ(a.status, 200);
  const Json* keys = a.json.FindArray("keys");
  ASSERT_NE(keys, nullptr) << a.body;
  ASSERT_FALSE(keys->as_array().empty());
  for (const Json& k : keys->as_array()) {
    EXPECT_FALSE(k.GetString("kid").empty());
    EXPECT_EQ(k.GetString("use"), "sig");
    EXPECT_EQ(k.GetString("alg"), "EdDSA");
    EXPECT_EQ(k.Find("d"), nullptr) << "private key material in the JWKS";
  }
  // The session token's kid is one of them.
  auto [token, sid] = StartSession();
  auto header_bytes = core::Base64UrlDecode(token.substr(0, token.find('.')));
  ASSERT_TRUE(header_bytes.has_value());
  auto header = Json::Parse(*header_bytes);
  ASSERT_TRUE(header.ok());
  bool kid_served = false;
  for (const Json& k : keys->as_array())
    kid_served = kid_served || k.GetString("kid") == header->GetString("kid");
  EXPECT_TRUE(kid_served) << header_bytes.value();

  Answer prm = Agent("GET", "/.well-known/oauth-protected-resource");
  EXPECT_EQ(prm.status, 200);
  EXPECT_NE(prm.json.GetString("jwks_uri").find("/.well-known/jwks.json"), std::string::npos);
}

TEST_F(ServerIntegrationTest, UnknownPathsAre404) {
  Answer agent = Agent("GET", "/nope");
  EXPECT_EQ(agent.status, 404);
  EXPECT_EQ(agent.ErrorCode(), "not_found");
  Answer admin = Admin("GET", "/admin/v1/nope");
  EXPECT_EQ(admin.status, 404);
  EXPECT_EQ(admin.ErrorCode(), "not_found");
  auto [token, sid] = StartSession();
  EXPECT_EQ(Agent("POST", "/mcp/nope", Rpc("initialize"), token).status, 404);
}

TEST_F(ServerIntegrationTest, OversizeBodyIs413) {
  std::string big(core::kHttpRequestBodyBytesMax + 1, 'x');
  Answer agent = Agent("POST", "/mcp/up", big);
  EXPECT_EQ(agent.status, 413);
  EXPECT_NE(agent.body.find("payload_too_large"), std::string::npos) << agent.body.substr(0, 200);
  Answer admin = Admin("POST", "/admin/v1/humans", big);
  EXPECT_EQ(admin.status, 413);
  EXPECT_EQ(fake_.ToolCalls(), 0u);
  // The listener still serves afterwards.
  EXPECT_EQ(Agent("GET", "/healthz").status, 200);
}

TEST_F(ServerIntegrationTest, AdminTokenFileIsMode0600) {
  struct stat st {};
  ASSERT_EQ(::stat(dir_.Sub("data/admin.token").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_GE(admin_token_.size(), 32u);
  struct stat dst {};
  ASSERT_EQ(::stat(dir_.Sub("data").c_str(), &dst), 0);
  EXPECT_EQ(dst.st_mode & 077, 0u) << "the data directory is open to group or others";
}

TEST_F(ServerIntegrationTest, ServerStopsCleanly) {
  auto [token, sid] = StartSession();
  const std::string mcp = McpInitialize(token);
  EXPECT_EQ(Agent("POST", "/mcp/up", CallParams("echo"), token, mcp).status, 200);
  const uint16_t agent_port = server_->agent_port();
  const uint16_t admin_port = server_->admin_port();
  server_->Stop();
  server_->Stop();  // idempotent

  net::HttpClient fresh;
  for (uint16_t port : {agent_port, admin_port}) {
    auto res = fresh.Do({.method = "GET",
                         .url = "http://127.0.0.1:" + std::to_string(port) + "/healthz",
                         .timeout_millis = 2000});
    EXPECT_FALSE(res.ok() && res->status == 200) << "port " << port << " still answers after Stop";
  }
  // The audit writer flushed and closed: the log verifies.
  auto report = audit::VerifyLog(dir_.Sub("data/audit"));
  ASSERT_TRUE(report.ok()) << report.error().message;
  EXPECT_TRUE(report->ok) << report->problem;
  EXPECT_GE(report->records, 3u);
  // The upstream session was ended politely.
  bool deleted = false;
  for (const auto& s : fake_.seen()) deleted = deleted || s.http_method == "DELETE";
  EXPECT_TRUE(deleted);
  server_.reset();
}

// --- audit query, replay and export (docs/formats/audit.md, "Query, replay and export") ------

TEST_F(ServerIntegrationTest, AuditQueryReplayAndExportFindARunsRecords) {
  auto [token, sid] = StartSession();
  const std::string mcp = McpInitialize(token);
  Json args = Json::MakeObject();
  args.Set("msg", "audited");
  ASSERT_EQ(Agent("POST", "/mcp/up", CallParams("echo", args), token, mcp).status, 200);
  ASSERT_EQ(Agent("POST", "/mcp/up", CallParams("wipe"), token, mcp).status, 200);  // denied
  auto [other_token, other_sid] = StartSession();

  // Filters: the indexed fields, and every answer is a page with its cursor.
  Answer decided = Admin("GET", "/admin/v1/audit?agent=bot&type=call.decided&run=" + sid);
  ASSERT_EQ(decided.status, 200) << decided.body;
  const auto& calls = decided.json.FindArray("records")->as_array();
  ASSERT_EQ(calls.size(), 2u) << decided.body;
  EXPECT_EQ(calls[0].GetString("action"), "up:echo");
  EXPECT_EQ(calls[1].GetString("action"), "up:wipe");
  EXPECT_EQ(calls[1].FindObject("decision")->GetString("decision"), "deny");
  EXPECT_TRUE(decided.json.Find("next_after_seq")->is_null());
  Answer denied = Admin("GET", "/admin/v1/audit?action=up%3Awipe");
  ASSERT_EQ(denied.status, 200) << denied.body;
  EXPECT_EQ(denied.json.FindArray("records")->as_array().size(), 1u);

  Answer first = Admin("GET", "/admin/v1/audit?run=" + sid + "&limit=1");
  ASSERT_EQ(first.status, 200) << first.body;
  ASSERT_EQ(first.json.FindArray("records")->as_array().size(), 1u);
  const Json* next = first.json.Find("next_after_seq");
  ASSERT_TRUE(next != nullptr && next->is_int()) << first.body;
  EXPECT_EQ(next->as_int(), first.json.FindArray("records")->as_array()[0].GetInt("seq", -1));
  Answer rest = Admin("GET", "/admin/v1/audit?run=" + sid + "&after_seq=" + std::to_string(next->as_int()));
  ASSERT_EQ(rest.status, 200);
  for (const Json& r : rest.json.FindArray("records")->as_array()) {
    EXPECT_GT(r.GetInt("seq", -1), next->as_int());
    EXPECT_EQ(r.GetString("run"), sid);
  }

  // Replay: the run's records in seq order, and nothing of the other run.
  Answer replay = Admin("GET", "/admin/v1/audit/replay?run=" + sid);
  ASSERT_EQ(replay.status, 200) << replay.body;
  EXPECT_EQ(replay.json.GetString("run"), sid);
  std::vector<std::string> types;
  int64_t last = -1;
  for (const Json& r : replay.json.FindArray("records")->as_array()) {
    EXPECT_GT(r.GetInt("seq", -1), last);
    last = r.GetInt("seq", -1);
    EXPECT_NE(r.GetString("sid"), other_sid);
    types.push_back(r.GetString("type"));
  }
  EXPECT_EQ(types.front(), "session.started");
  EXPECT_EQ(std::count(types.begin(), types.end(), "call.decided"), 2);

  // JSONL export: streamed, each line exactly as stored in the log.
  Answer jsonl = Admin("GET", "/admin/v1/audit/export?format=jsonl&run=" + sid);
  ASSERT_EQ(jsonl.status, 200) << jsonl.body;
  ASSERT_NE(jsonl.Header("Content-Type"), nullptr);
  EXPECT_EQ(*jsonl.Header("Content-Type"), "application/x-ndjson");
  const std::string stored = ReadFile(dir_.Sub("data/audit/audit-000001.jsonl"));
  size_t lines = 0;
  std::istringstream in(jsonl.body);
  for (std::string line; std::getline(in, line);) {
    ++lines;
    EXPECT_NE(stored.find(line + "\n"), std::string::npos) << "not a stored line: " << line;
    EXPECT_EQ(Json::Parse(line)->GetString("run"), sid);
  }
  EXPECT_EQ(lines, replay.json.FindArray("records")->as_array().size());

  // OTLP: one trace, the session span and a span per call under it.
  Answer otlp = Admin("GET", "/admin/v1/audit/export?format=otlp&run=" + sid);
  ASSERT_EQ(otlp.status, 200) << otlp.body;
  const auto& spans = otlp.json.FindArray("resourceSpans")->as_array()[0].FindArray("scopeSpans")->as_array()[0]
                          .FindArray("spans")->as_array();
  ASSERT_EQ(spans.size(), 3u) << otlp.body;
  EXPECT_EQ(spans[0].Find("parentSpanId"), nullptr);
  for (size_t i = 1; i < spans.size(); ++i) {
    EXPECT_EQ(spans[i].GetString("parentSpanId"), spans[0].GetString("spanId"));
    EXPECT_EQ(spans[i].GetString("traceId"), spans[0].GetString("traceId"));
  }
  EXPECT_EQ(spans[2].FindObject("status")->GetInt("code", 0), 2);  // the denied wipe

  // The index survives a restart and keeps following the log.
  server_->Stop();
  server_.reset();
  StartServer();
  Answer after = Admin("GET", "/admin/v1/audit?run=" + sid + "&type=call.decided");
  ASSERT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(after.json.FindArray("records")->as_array().size(), 2u);
  ASSERT_EQ(Admin("POST", "/admin/v1/revocations", R"({"kind":"session","subject":")" + sid + R"("})").status, 200);
  Answer revoked = Admin("GET", "/admin/v1/audit?type=session.revoked&run=" + sid);
  ASSERT_EQ(revoked.status, 200) << revoked.body;
  ASSERT_EQ(revoked.json.FindArray("records")->as_array().size(), 1u) << revoked.body;
  EXPECT_EQ(revoked.json.FindArray("records")->as_array()[0].GetString("sid"), sid);
}

// An upgrade from a build whose audit index kept text (store schema version 2): the
// migration drops that index, and the server rebuilds it from the log, so every record is
// found again.
TEST_F(ServerIntegrationTest, AnAuditIndexOfSchemaVersionTwoIsRebuiltFromTheLog) {
  auto [token, sid] = StartSession();
  const std::string mcp = McpInitialize(token);
  ASSERT_EQ(Agent("POST", "/mcp/up", CallParams("echo"), token, mcp).status, 200);
  ASSERT_EQ(Agent("POST", "/mcp/up", CallParams("wipe"), token, mcp).status, 200);  // denied
  server_->Stop();
  server_.reset();

  // What version 2 left: its text-keyed index (here empty, as after a crash before its
  // first batch; the rows would be dropped all the same) and no terms table.
  ASSERT_TRUE(store::testing::ExecOnDatabase(dir_.Sub("data/mandate.db"),
                                             store::testing::kBackToSchemaVersionTwoSql));

  StartServer();
  Answer decided = Admin("GET", "/admin/v1/audit?type=call.decided&run=" + sid);
  ASSERT_EQ(decided.status, 200) << decided.body;
  const auto& calls = decided.json.FindArray("records")->as_array();
  ASSERT_EQ(calls.size(), 2u) << decided.body;
  EXPECT_EQ(calls[0].GetString("action"), "up:echo");
  EXPECT_EQ(calls[1].GetString("action"), "up:wipe");
  Answer started = Admin("GET", "/admin/v1/audit?type=session.started&agent=bot");
  ASSERT_EQ(started.status, 200) << started.body;
  EXPECT_EQ(started.json.FindArray("records")->as_array().size(), 1u) << started.body;
}

TEST_F(ServerIntegrationTest, AuditQueryEndpointsNeedTheAdminTokenAndRefuseBadFilters) {
  for (const char* path : {"/admin/v1/audit?agent=bot", "/admin/v1/audit/replay?run=ses_x",
                           "/admin/v1/audit/export?format=jsonl", "/admin/v1/audit/export?format=otlp&run=x"}) {
    Answer none = Admin("GET", path, "", std::string());
    EXPECT_EQ(none.status, 401) << path;
    EXPECT_EQ(none.ErrorCode(), "unauthenticated") << path;
    EXPECT_EQ(Admin("GET", path, "", std::string("mdt_wrong")).status, 401) << path;
  }
  struct Bad {
    const char* path;
    const char* says;
  };
  for (const Bad& b : {Bad{"/admin/v1/audit?since=tomorrow", "since: "}, Bad{"/admin/v1/audit?until=2026-02-30T00:00:00Z", "until: "},
                       Bad{"/admin/v1/audit?agnet=bot", "unknown parameter"}, Bad{"/admin/v1/audit?after_seq=x", "after_seq"},
                       Bad{"/admin/v1/audit?agent=", "agent must be"}, Bad{"/admin/v1/audit?since=1h&until=2h", "before until"},
                       Bad{"/admin/v1/audit/replay", "run is required"}, Bad{"/admin/v1/audit/replay?run=x&agent=y", "unknown parameter"},
                       Bad{"/admin/v1/audit/export?format=xml", "format must be"}, Bad{"/admin/v1/audit/export?since=x", "since: "}}) {
    Answer a = Admin("GET", b.path);
    EXPECT_EQ(a.status, 400) << b.path << ": " << a.body;
    EXPECT_EQ(a.ErrorCode(), "bad_request") << b.path;
    EXPECT_NE(a.body.find(b.says), std::string::npos) << b.path << ": " << a.body;
  }
  EXPECT_EQ(Admin("GET", "/admin/v1/audit/replay?run=ses_nobody").status, 404);
  EXPECT_EQ(Admin("GET", "/admin/v1/audit/export?format=otlp&run=ses_nobody").status, 404);
  EXPECT_EQ(Admin("POST", "/admin/v1/audit/replay?run=x").status, 405);
}

}  // namespace
}  // namespace mandate
