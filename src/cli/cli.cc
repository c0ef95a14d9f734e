#include "mandate/cli/cli.h"

#include <signal.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>

#include "mandate/audit/audit_log.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"
#include "mandate/identity/jws_key.h"
#include "mandate/net/http.h"
#include "mandate/policy/lint.h"
#include "mandate/policy/policy_set.h"
#include "mandate/policy/schema.h"
#include "mandate/policy/validator.h"
#include "cli/audit_commands.h"
#include "server/audit_replay.h"
#include "server/config.h"
#include "server/policy_schema.h"
#include "server/ptest.h"
#include "server/server.h"

namespace mandate::cli {
namespace {

using core::Json;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

int Fail(const std::string& message, int code = kExitFailed) {
  std::cerr << "mandate: " << message << "\n";
  return code;
}

// A verifier key given on the command line: the key text itself, or @FILE to read it from a
// file (e.g. a pinned copy of log.pub). Empty stays empty.
core::Result<std::string> ReadKeyArgument(const std::string& arg) {
  if (arg.empty() || arg[0] != '@') return arg;
  std::ifstream in(arg.substr(1), std::ios::binary);
  if (!in) return core::MakeError(core::ErrorCode::kBadRequest, "cannot read " + arg.substr(1));
  std::string line;
  std::getline(in, line);
  return line;
}

// The public JWK of a DPoP key file (`session start --dpop-key`, RFC 9449): a JWK (JSON) or a
// PEM public key ("BEGIN PUBLIC KEY"). Only the public members (kty, crv, x, y) of a JWK are
// kept, so the "d" of a private JWK never leaves this process; the server checks the key.
core::Result<Json> ReadDpopPublicJwk(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::MakeError(core::ErrorCode::kBadRequest, "cannot read " + path);
  std::string text(core::kKeyFileBytesMax + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > core::kKeyFileBytesMax) {
    return core::MakeError(core::ErrorCode::kBadRequest, path + " is larger than a key file may be");
  }
  Json jwk;
  if (text.find("-----BEGIN") != std::string::npos) {
    auto key = identity::JwsKey::FromPublicPem(text);
    if (!key.ok()) return core::MakeError(core::ErrorCode::kBadRequest, path + ": " + key.error().message);
    jwk = (*key)->PublicJwk();
  } else {
    auto parsed = Json::Parse(text, core::kKeyFileBytesMax);
    if (!parsed.ok() || !parsed->is_object()) {
      return core::MakeError(core::ErrorCode::kBadRequest, path + " is neither a JWK (JSON object) nor a PEM public key");
    }
    jwk = std::move(parsed).value();
  }
  Json out = Json::MakeObject();
  for (const char* member : {"kty", "crv", "x", "y"}) {
    if (const Json* v = jwk.Find(member)) out.Set(member, *v);
  }
  return out;
}

std::string DefaultConfigPath() {
  struct stat st{};
  return stat("mandate.yaml", &st) == 0 ? "mandate.yaml" : "";
}

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

struct AdminTarget {
  std::string base;   // http://host:port
  std::string token;
};

core::Result<server::Config> LoadConfigOrDefault(const std::string& path) {
  if (path.empty()) return server::ParseConfig("", "./mandate.yaml");
  return server::LoadConfig(path);
}

core::Result<AdminTarget> ResolveAdmin(const std::string& config_path) {
  AdminTarget t;
  const char* addr = std::getenv("MANDATE_ADDR");
  const char* token = std::getenv("MANDATE_TOKEN");
  std::string data_dir;
  if (addr == nullptr || token == nullptr) {
    MANDATE_ASSIGN_OR_RETURN(server::Config cfg, LoadConfigOrDefault(config_path));
    data_dir = cfg.data_dir;
    t.base = ReadFirstLine(data_dir + "/admin.addr");
    if (t.base.empty()) t.base = "http://" + cfg.admin_listen.ToString();
    t.token = ReadFirstLine(data_dir + "/admin.token");
  }
  if (addr != nullptr) t.base = addr;
  if (token != nullptr) t.token = token;
  if (t.base.rfind("http://", 0) != 0) t.base = "http://" + t.base;
  if (t.token.empty()) {
    return core::MakeError(core::ErrorCode::kUnauthenticated,
                           "no admin token: set MANDATE_TOKEN or run where " + data_dir + "/admin.token is readable");
  }
  return t;
}

// Calls the admin API. Returns the parsed body on 2xx, else an error carrying the server's
// message.
core::Result<Json> Admin(const std::string& config_path, const std::string& method, const std::string& path,
                         const Json* body, int timeout_millis = 30000) {
  MANDATE_ASSIGN_OR_RETURN(AdminTarget target, ResolveAdmin(config_path));
  net::HttpClient client;
  net::HttpClientRequest req;
  req.method = method;
  req.url = target.base + path;
  req.headers = {{"Authorization", "Bearer " + target.token}, {"Content-Type", "application/json"}};
  if (body != nullptr) req.body = body->Dump();
  req.timeout_millis = timeout_millis;
  auto res = client.Do(req);
  if (!res.ok()) return core::MakeError(res.error().code, "cannot reach the admin API at " + target.base + ": " + res.error().message);
  auto parsed = Json::Parse(res->body);
  if (res->status / 100 != 2) {
    if (parsed.ok()) {
      if (const Json* e = parsed->FindObject("error")) {
        auto code = core::ErrorCodeFromPublic(e->GetString("code")).value_or(core::ErrorCode::kInternal);
        return core::MakeError(code, e->GetString("code") + ": " + e->GetString("message"));
      }
    }
    return core::MakeError(core::ErrorCode::kInternal, "admin API answered HTTP " + std::to_string(res->status));
  }
  if (!parsed.ok()) return core::MakeError(core::ErrorCode::kInternal, "admin API answered invalid JSON");
  return parsed;
}

// GET on the admin API, the raw answer whatever its status (for bodies that are not one JSON
// document, e.g. an OTLP export of several runs).
core::Result<net::HttpResponse> AdminRaw(const std::string& config_path, const std::string& path, size_t body_max) {
  MANDATE_ASSIGN_OR_RETURN(AdminTarget target, ResolveAdmin(config_path));
  net::HttpClient client;
  net::HttpClientRequest req;
  req.method = "GET";
  req.url = target.base + path;
  req.headers = {{"Authorization", "Bearer " + target.token}};
  req.timeout_millis = 300000;
  req.response_body_max = body_max;
  auto res = client.Do(req);
  if (!res.ok()) return core::MakeError(res.error().code, "cannot reach the admin API at " + target.base + ": " + res.error().message);
  return res;
}

// Unix seconds as "2026-11-22T17:05:00Z".
std::string UtcTime(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return std::to_string(unix_seconds);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string Join(const Json* arr) {
  std::string out;
  if (arr == nullptr || !arr->is_array()) return out;
  for (const Json& e : arr->as_array()) {
    if (!out.empty()) out += ", ";
    out += e.is_string() ? e.as_string() : e.Dump();
  }
  return out;
}

// `j` as indented JSON (two spaces), for people: `mandate policy schema`. Bounded by the depth
// of `j` (at most kJsonDepthMax when parsed; the schema's types are shallower).
void AppendPrettyJson(const Json& j, size_t indent, std::string* out) {
  const std::string pad(indent + 2, ' ');
  if (j.is_object() && !j.as_object().empty()) {
    out->append("{\n");
    bool first = true;
    for (const auto& [k, v] : j.as_object()) {
      if (!first) out->append(",\n");
      first = false;
      out->append(pad);
      core::AppendJsonString(k, out);
      out->append(": ");
      AppendPrettyJson(v, indent + 2, out);
    }
    out->append("\n").append(indent, ' ').append("}");
  } else if (j.is_array() && !j.as_array().empty()) {
    out->append("[\n");
    bool first = true;
    for (const Json& v : j.as_array()) {
      if (!first) out->append(",\n");
      first = false;
      out->append(pad);
      AppendPrettyJson(v, indent + 2, out);
    }
    out->append("\n").append(indent, ' ').append("]");
  } else {
    j.DumpTo(out);
  }
}

// The schema `policy schema` and `policy check` validate against: the running server's (the
// config joined with each upstream's tools/list, GET /admin/v1/policies/schema) when it can be
// asked, else the config's alone (tools named in the config, arguments unvalidated, upstreams
// open), built. `origin` says which, `why` why not the server's.
struct PolicySchema {
  policy::SchemaSource source;
  std::string origin;  // "server" or "config"
  std::string why;
  std::optional<policy::Schema> schema;  // built from `source`
};

// Asking every upstream for its tools may take up to an upstream's timeout when one hangs.
constexpr int kSchemaRequestTimeoutMillis = 120000;

// Errors: "schema: <why>" when the server's answer is unreadable, else Schema::Build's.
core::Result<PolicySchema> LoadPolicySchema(const std::string& config_path, const server::Config& config, bool offline) {
  PolicySchema out;
  if (offline) {
    out.why = "--offline";
  } else {
    auto r = Admin(config_path, "GET", "/admin/v1/policies/schema", nullptr, kSchemaRequestTimeoutMillis);
    if (r.ok()) {
      const Json* source = r->FindObject("source");
      if (source == nullptr) return core::MakeError(core::ErrorCode::kInternal, "schema: the admin API's answer has no \"source\"");
      auto parsed = policy::SchemaSource::FromJson(*source);
      if (!parsed.ok()) return core::MakeError(parsed.error().code, "schema: " + parsed.error().message);
      out.source = std::move(*parsed);
      out.origin = "server";
    } else {
      out.why = r.error().message;
    }
  }
  if (out.origin.empty()) {
    out.source = server::SchemaSourceFromConfig(config, nullptr);
    out.origin = "config";
  }
  MANDATE_ASSIGN_OR_RETURN(policy::Schema schema, policy::Schema::Build(out.source));
  out.schema.emplace(std::move(schema));
  return out;
}

int ServeMain(const std::string& config_path) {
  auto config = LoadConfigOrDefault(config_path);
  if (!config.ok()) return Fail("config: " + config.error().message);
  // Block the shutdown signals before any thread starts, so only sigwait sees them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  server::Config cfg = *config;
  auto srv = server::Server::Start(std::move(cfg), [](const std::string& line) { std::cerr << "mandate: " << line << "\n"; });
  if (!srv.ok()) return Fail("cannot start: " + srv.error().message);
  std::cerr << "mandate: agent listener ready on http://" << config->listen.host << ":" << (*srv)->agent_port() << "\n"
            << "mandate: admin listener ready on http://" << config->admin_listen.host << ":" << (*srv)->admin_port() << "\n"
            << std::flush;
  int sig = 0;
  sigwait(&signals, &sig);
  std::cerr << "mandate: " << (sig == SIGINT ? "SIGINT" : "SIGTERM") << " received, shutting down\n";
  (*srv)->Stop();
  std::cerr << "mandate: stopped\n";
  return kExitOk;
}

}  // namespace

int Run(int argc, char** argv) {
  CLI::App app{"mandate: the control plane between AI agents and the systems they act on"};
  app.require_subcommand(1);
  // Global options (-c, --json) may also follow the subcommand: subcommands inherit this.
  app.fallthrough();
  std::string config_path = DefaultConfigPath();
  bool json = false;
  app.add_option("-c,--config", config_path, "config file (default ./mandate.yaml)");
  app.add_flag("--json", json, "print JSON");

  int rc = kExitOk;
  auto print = [&](const Json& j, const std::string& text) {
    if (json) std::cout << j.Dump() << "\n";
    else std::cout << text << "\n";
  };
  auto admin_or_fail = [&](const std::string& method, const std::string& path, const Json* body) -> std::optional<Json> {
    auto r = Admin(config_path, method, path, body);
    if (!r.ok()) {
      rc = Fail(r.error().message);
      return std::nullopt;
    }
    return std::move(r).value();
  };

  // serve
  auto* serve = app.add_subcommand("serve", "run the server");
  serve->callback([&] { rc = ServeMain(config_path); });

  // init
  auto* init = app.add_subcommand("init", "write a working quickstart into DIR");
  std::string init_dir = "quickstart";
  std::vector<std::string> mcp_command;
  init->add_option("dir", init_dir, "directory (default ./quickstart)");
  init->add_option("--mcp-command", mcp_command, "argv of the example MCP upstream (repeat per argument)");
  init->callback([&] {
    if (mcp_command.empty()) mcp_command = {"npx", "-y", "@modelcontextprotocol/server-everything@2026.8.31", "stdio"};
    Json cmd = Json::MakeArray();
    for (const auto& a : mcp_command) cmd.Push(a);
    auto st = server::WriteQuickstart(init_dir, cmd.Dump());
    if (!st.ok()) {
      rc = Fail(st.error().message);
      return;
    }
    std::cout << "wrote " << init_dir << "/mandate.yaml, " << init_dir << "/policies/quickstart.cedar\n"
              << "start it with: mandate serve -c " << init_dir << "/mandate.yaml\n";
  });

  // human add
  auto* human = app.add_subcommand("human", "humans on whose behalf agents act");
  human->require_subcommand(1);
  auto* human_add = human->add_subcommand("add", "register a human (idempotent)");
  std::string name;
  std::vector<std::string> groups;
  human_add->add_option("name", name)->required();
  human_add->add_option("--group", groups, "group (repeatable)");
  human_add->callback([&] {
    Json body = Json::MakeObject();
    body.Set("name", name);
    Json g = Json::MakeArray();
    for (const auto& x : groups) g.Push(x);
    body.Set("groups", std::move(g));
    if (auto r = admin_or_fail("POST", "/admin/v1/humans", &body)) {
      print(*r, "human " + r->GetString("name") + " (groups: " + Join(r->Find("groups")) + ")");
    }
  });
  auto* human_list = human->add_subcommand("list", "list humans");
  human_list->callback([&] {
    if (auto r = admin_or_fail("GET", "/admin/v1/humans", nullptr)) {
      std::string text;
      for (const Json& h : r->FindArray("humans")->as_array()) text += h.GetString("name") + "  groups: " + Join(h.Find("groups")) + "\n";
      print(*r, text.empty() ? "no humans" : text.substr(0, text.size() - 1));
    }
  });

  // agent add
  auto* agent = app.add_subcommand("agent", "registered agents");
  agent->require_subcommand(1);
  auto* agent_add = agent->add_subcommand("add", "register an agent (idempotent)");
  std::string owner;
  agent_add->add_option("name", name)->required();
  agent_add->add_option("--owner", owner, "the human who owns it")->required();
  agent_add->add_option("--group", groups, "group (repeatable)");
  agent_add->callback([&] {
    Json body = Json::MakeObject();
    body.Set("name", name);
    body.Set("owner", owner);
    Json g = Json::MakeArray();
    for (const auto& x : groups) g.Push(x);
    body.Set("groups", std::move(g));
    if (auto r = admin_or_fail("POST", "/admin/v1/agents", &body)) {
      print(*r, "agent " + r->GetString("name") + " owned by " + r->GetString("owner") + " (groups: " + Join(r->Find("groups")) + ")");
    }
  });
  auto* agent_list = agent->add_subcommand("list", "list agents");
  agent_list->callback([&] {
    if (auto r = admin_or_fail("GET", "/admin/v1/agents", nullptr)) {
      std::string text;
      for (const Json& a : r->FindArray("agents")->as_array()) text += a.GetString("name") + "  owner: " + a.GetString("owner") + "  groups: " + Join(a.Find("groups")) + "\n";
      print(*r, text.empty() ? "no agents" : text.substr(0, text.size() - 1));
    }
  });

  // session start | list | show
  auto* session = app.add_subcommand("session", "agent sessions (instances)");
  session->require_subcommand(1);
  auto* start = session->add_subcommand("start", "start a session and print its token");
  std::string s_agent, s_human, s_task, s_ttl, s_model;
  std::vector<std::string> s_scope;
  start->add_option("--agent", s_agent)->required();
  start->add_option("--for", s_human, "the human the agent acts for")->required();
  start->add_option("--task", s_task, "task id")->required();
  start->add_option("--scope", s_scope, "action (upstream:tool, upstream:*, *); repeatable; default *");
  start->add_option("--ttl", s_ttl, "token lifetime, e.g. 15m");
  start->add_option("--model", s_model, "PROVIDER/NAME[@TIER]");
  std::string s_dpop_key;
  start->add_option("--dpop-key", s_dpop_key,
                    "bind the session to the instance's public key (DPoP, RFC 9449): a JWK or PEM file");
  start->callback([&] {
    Json body = Json::MakeObject();
    body.Set("agent", s_agent);
    body.Set("human", s_human);
    body.Set("task", s_task);
    Json sc = Json::MakeArray();
    for (const auto& s : s_scope) {
      // Accept space-separated lists too ("a:b c:d"), as OAuth scope strings are written.
      size_t pos = 0;
      while (pos < s.size()) {
        size_t end = s.find(' ', pos);
        if (end == std::string::npos) end = s.size();
        if (end > pos) sc.Push(s.substr(pos, end - pos));
        pos = end + 1;
      }
    }
    body.Set("scope", std::move(sc));
    if (!s_ttl.empty()) {
      auto ms = server::ParseDurationMillis(s_ttl);
      if (!ms.ok() || *ms < 1000) {
        std::cerr << "mandate: --ttl: " << (ms.ok() ? "must be at least 1s" : ms.error().message) << "\n";
        rc = kExitUsage;
        return;
      }
      body.Set("ttl_seconds", *ms / 1000);
    }
    if (!s_model.empty()) {
      auto slash = s_model.find('/');
      if (slash == std::string::npos || slash == 0 || slash + 1 == s_model.size()) {
        std::cerr << "mandate: --model must be PROVIDER/NAME[@TIER]\n";
        rc = kExitUsage;
        return;
      }
      std::string rest = s_model.substr(slash + 1);
      auto at = rest.find('@');
      Json m = Json::MakeObject();
      m.Set("provider", s_model.substr(0, slash));
      m.Set("name", rest.substr(0, at));
      m.Set("tier", at == std::string::npos ? "" : rest.substr(at + 1));
      body.Set("model", std::move(m));
    }
    if (!s_dpop_key.empty()) {
      auto jwk = ReadDpopPublicJwk(s_dpop_key);
      if (!jwk.ok()) {
        std::cerr << "mandate: --dpop-key: " << jwk.error().message << "\n";
        rc = kExitUsage;
        return;
      }
      body.Set("dpop_jwk", std::move(jwk).value());
    }
    if (auto r = admin_or_fail("POST", "/admin/v1/sessions", &body)) print(*r, r->GetString("token"));
  });
  auto* list = session->add_subcommand("list", "list sessions, oldest first");
  bool quiet = false;
  list->add_flag("-q,--quiet", quiet, "print only the session ids");
  list->callback([&] {
    if (auto r = admin_or_fail("GET", "/admin/v1/sessions", nullptr)) {
      if (quiet && !json) {
        for (const Json& s : r->FindArray("sessions")->as_array()) std::cout << s.GetString("sid") << "\n";
        return;
      }
      std::string text;
      for (const Json& s : r->FindArray("sessions")->as_array()) {
        text += s.GetString("sid") + "  agent: " + s.GetString("agent") + "  for: " + s.GetString("human") +
                "  task: " + s.GetString("task") + (s.Find("revoked_at")->is_null() ? "" : "  REVOKED") + "\n";
      }
      print(*r, text.empty() ? "no sessions" : text.substr(0, text.size() - 1));
    }
  });
  auto* show = session->add_subcommand("show", "show one session");
  std::string sid;
  show->add_option("sid", sid)->required();
  show->callback([&] {
    if (auto r = admin_or_fail("GET", "/admin/v1/sessions/" + sid, nullptr)) {
      std::string text = "session " + r->GetString("sid") + "\n  agent: " + r->GetString("agent") +
                         "\n  on behalf of: " + r->GetString("human") + "\n  task: " + r->GetString("task") +
                         "\n  scope: " + Join(r->Find("scope")) + "\n  expires_at: " + UtcTime(r->GetInt("expires_at", 0)) +
                         "\n  revoked: " + (r->Find("revoked_at")->is_null() ? "no" : "yes") + "\n  delegation tree:";
      // One line per session of the subtree, indented by depth.
      std::function<void(const Json&, const std::string&)> walk = [&](const Json& s, const std::string& indent) {
        const Json* revoked = s.Find("revoked_at");
        text += "\n" + indent + s.GetString("sid") + "  " + s.GetString("agent") + "  scope: " + Join(s.Find("scope")) +
                (revoked && !revoked->is_null() ? "  REVOKED" : "");
        if (const Json* d = s.FindArray("delegations")) {
          for (const Json& c : d->as_array()) walk(c, indent + "  ");
        }
      };
      walk(*r, "    ");
      if (const Json* t = r->Find("truncated"); t && t->is_bool() && t->as_bool()) text += "\n    (truncated)";
      print(*r, text);
    }
  });

  // revoke
  auto* revoke = app.add_subcommand("revoke", "revoke a session (and its delegations), an agent, a human or a task");
  std::string r_kind, r_subject, r_reason = "revoked from the CLI";
  revoke->add_option("kind", r_kind, "session | agent | human | task")->required()->check(CLI::IsMember({"session", "agent", "human", "task"}));
  revoke->add_option("subject", r_subject)->required();
  revoke->add_option("--reason", r_reason);
  revoke->callback([&] {
    Json body = Json::MakeObject();
    body.Set("kind", r_kind);
    body.Set("subject", r_subject);
    body.Set("reason", r_reason);
    if (auto r = admin_or_fail("POST", "/admin/v1/revocations", &body)) {
      std::string text = "revoked " + r_kind + " " + r_subject;
      if (r_kind == "session") text += " (sessions: " + Join(r->Find("sessions")) + ")";
      print(*r, text);
    }
  });

  // audit tail | verify
  auto* audit = app.add_subcommand("audit", "the audit log");
  audit->require_subcommand(1);
  auto* tail = audit->add_subcommand("tail", "print the last records");
  size_t tail_n = 20;
  tail->add_option("-n", tail_n, "number of records (default 20)");
  tail->callback([&] {
    if (auto r = admin_or_fail("GET", "/admin/v1/audit?limit=" + std::to_string(tail_n), nullptr)) {
      for (const Json& rec : r->FindArray("records")->as_array()) {
        std::cout << (json ? rec.Dump() : server::FormatAuditLine(rec)) << "\n";
      }
    }
  });
  AuditCommandContext audit_ctx;
  audit_ctx.get_json = [&](const std::string& path) { return Admin(config_path, "GET", path, nullptr); };
  audit_ctx.get_raw = [&](const std::string& path, size_t body_max) { return AdminRaw(config_path, path, body_max); };
  audit_ctx.json = &json;
  audit_ctx.rc = &rc;
  AddAuditQueryCommands(audit, audit_ctx);
  auto* verify = audit->add_subcommand(
      "verify", "verify the audit log's records, Merkle tree and signed checkpoints (reads the files directly)");
  std::string verify_key;
  verify->add_option("--key", verify_key,
                     "the log's verifier key (text, or @FILE); default: <audit dir>/log.pub. Pin "
                     "the key you trust: whoever can rewrite the directory can replace log.pub");
  verify->callback([&] {
    auto cfg = LoadConfigOrDefault(config_path);
    if (!cfg.ok()) {
      rc = Fail("config: " + cfg.error().message);
      return;
    }
    audit::VerifyOptions options;
    if (auto key = ReadKeyArgument(verify_key); key.ok()) {
      options.verifier_key = *key;
    } else {
      rc = Fail("audit verify: " + key.error().message, kExitUsage);
      return;
    }
    auto report = audit::VerifyLog(cfg->audit_dir, options);
    if (!report.ok()) {
      rc = Fail("audit verify: " + report.error().message);
      return;
    }
    Json j = Json::MakeObject();
    j.Set("ok", report->ok);
    j.Set("records", static_cast<int64_t>(report->records));
    j.Set("origin", report->origin);
    j.Set("checkpoints", static_cast<int64_t>(report->checkpoints));
    j.Set("checkpointed_records", static_cast<int64_t>(report->checkpointed_records));
    if (!report->ok) {
      j.Set("first_bad_seq", report->first_bad_seq ? Json(static_cast<int64_t>(*report->first_bad_seq)) : Json());
      j.Set("file", report->file);
      j.Set("line", static_cast<int64_t>(report->line));
      j.Set("problem", report->problem);
      rc = kExitFailed;
      std::string where = report->file + (report->line ? ":" + std::to_string(report->line) : "");
      std::string what = report->first_bad_seq
                             ? "record seq " + std::to_string(*report->first_bad_seq)
                             : std::string("checkpoint");
      print(j, "audit log FAILED verification at " + what + " (" + where + "): " + report->problem);
      return;
    }
    std::string text = "audit log verified: " + std::to_string(report->records) +
                       " records, Merkle tree and " + std::to_string(report->checkpoints) +
                       " signed checkpoints intact (" + report->origin + ")";
    const uint64_t uncovered = report->records - report->checkpointed_records;
    if (uncovered > 0) {
      text += "; the newest " + std::to_string(uncovered) +
              " records are not yet covered by a checkpoint (the running log writes one "
              "within its checkpoint interval, and at shutdown)";
    }
    print(j, text);
  });

  auto* prove = audit->add_subcommand(
      "prove", "print an inclusion proof of record SEQ against the newest signed checkpoint (JSON)");
  int64_t prove_seq = -1;
  prove->add_option("SEQ", prove_seq, "the record's seq")->required();
  prove->callback([&] {
    auto cfg = LoadConfigOrDefault(config_path);
    if (!cfg.ok()) {
      rc = Fail("config: " + cfg.error().message);
      return;
    }
    if (prove_seq < 0) {
      rc = Fail("audit prove: SEQ must be a non-negative integer", kExitUsage);
      return;
    }
    auto bundle = audit::ProveInclusion(cfg->audit_dir, static_cast<uint64_t>(prove_seq));
    if (!bundle.ok()) {
      rc = Fail("audit prove: " + bundle.error().message);
      return;
    }
    // The proof is a document to hand to an auditor: always JSON.
    std::cout << bundle->ToJson().Dump() << "\n";
  });

  auto* verify_proof = audit->add_subcommand(
      "verify-proof", "check an inclusion proof offline with only the log's verifier key");
  std::string proof_file;
  std::string proof_key;
  verify_proof->add_option("FILE", proof_file, "the proof printed by `audit prove` (- for stdin)")->required();
  verify_proof->add_option("--key", proof_key, "the log's verifier key (text, or @FILE)")->required();
  verify_proof->callback([&] {
    auto key = ReadKeyArgument(proof_key);
    std::string bytes;
    if (proof_file == "-") {
      std::stringstream ss;
      ss << std::cin.rdbuf();
      bytes = ss.str();
    } else {
      std::ifstream in(proof_file, std::ios::binary);
      if (!in) {
        rc = Fail("audit verify-proof: cannot read " + proof_file, kExitUsage);
        return;
      }
      std::stringstream ss;
      ss << in.rdbuf();
      bytes = ss.str();
    }
    if (!key.ok()) {
      rc = Fail("audit verify-proof: " + key.error().message, kExitUsage);
      return;
    }
    auto parsed = Json::Parse(bytes, core::kAuditRecordBytesMax * 2);
    if (!parsed.ok()) {
      rc = Fail("audit verify-proof: the proof is not JSON: " + parsed.error().message);
      return;
    }
    auto bundle = audit::InclusionProofBundle::FromJson(*parsed);
    if (!bundle.ok()) {
      rc = Fail("audit verify-proof: " + bundle.error().message);
      return;
    }
    auto cp = audit::VerifyInclusionBundle(*bundle, *key);
    if (!cp.ok()) {
      rc = Fail("audit verify-proof: proof REJECTED: " + cp.error().message);
      return;
    }
    Json j = Json::MakeObject();
    j.Set("ok", true);
    j.Set("seq", static_cast<int64_t>(bundle->seq));
    j.Set("origin", cp->origin);
    j.Set("tree_size", static_cast<int64_t>(cp->size));
    print(j, "proof verified: record " + std::to_string(bundle->seq) + " is in " + cp->origin +
                 " at tree size " + std::to_string(cp->size) + " (signed checkpoint)");
  });

  // keys
  // approvals list | approve ID [--as H] | deny ID [--as H] [--reason R]
  auto* approvals = app.add_subcommand("approvals", "pending approvals, and deciding them");
  approvals->require_subcommand(1);
  auto* ap_list = approvals->add_subcommand("list", "pending approvals (--all: decided ones too)");
  bool ap_all = false;
  ap_list->add_flag("--all", ap_all, "also granted, used, denied and expired approvals");
  ap_list->callback([&] {
    auto r = admin_or_fail("GET", std::string("/admin/v1/approvals") + (ap_all ? "?state=all" : ""), nullptr);
    if (!r) return;
    std::string text;
    const Json* list = r->FindArray("approvals");
    if (list == nullptr || list->as_array().empty()) text = "no approvals\n";
    for (const Json& a : list ? list->as_array() : Json::Array{}) {
      text += a.GetString("id") + " " + a.GetString("state") + " " + a.GetString("action") + " agent=" +
              a.GetString("agent") + " for=" + a.GetString("human") + " task=" + a.GetString("task") +
              " group=" + a.GetString("group") + " approvers=" + std::to_string(a.FindArray("approvers") ? a.FindArray("approvers")->as_array().size() : 0) +
              "/" + std::to_string(a.GetInt("min_approvers", 1)) + " policy=" + a.GetString("policy") + "\n";
      if (const Json* args = a.Find("args"); args != nullptr && !args->is_null()) {
        text += "  args " + args->Dump() + "\n  args_sha256 " + a.GetString("args_sha256") + "\n";
      }
    }
    if (json) {
      std::cout << r->Dump() << "\n";
    } else {
      std::cout << text;
    }
  });
  std::string ap_id, ap_as, ap_reason;
  for (const char* verb : {"approve", "deny"}) {
    auto* cmd = approvals->add_subcommand(verb, std::string(verb) + " a pending approval");
    cmd->add_option("ID", ap_id, "the approval id (apr_...)")->required();
    cmd->add_option("--as", ap_as,
                    "the approving human (a member of the approval group); required with the admin "
                    "token, implied by an approver token in MANDATE_TOKEN");
    if (std::string(verb) == "deny") cmd->add_option("--reason", ap_reason, "why");
    cmd->callback([&, verb] {
      Json body = Json::MakeObject();
      if (!ap_as.empty()) body.Set("as", ap_as);
      if (!ap_reason.empty()) body.Set("reason", ap_reason);
      auto r = admin_or_fail("POST", "/admin/v1/approvals/" + ap_id + "/" + verb, &body);
      if (!r) return;
      print(*r, ap_id + ": " + r->GetString("state") + " (" + std::to_string(r->FindArray("approvers") ? r->FindArray("approvers")->as_array().size() : 0) +
                    " of " + std::to_string(r->GetInt("min_approvers", 1)) + " approvers" +
                    (r->Find("counted") && r->Find("counted")->is_bool() && !r->Find("counted")->as_bool() ? "; your vote was already counted" : "") + ")");
    });
  }

  // approver token H [--ttl D]: a token with which H decides approvals as themselves (the
  // approvals page /ui/, or MANDATE_TOKEN for `mandate approvals`).
  auto* approver = app.add_subcommand("approver", "approvers acting as themselves");
  approver->require_subcommand(1);
  auto* approver_token = approver->add_subcommand(
      "token", "mint a short-lived approver token for a human and print it");
  std::string at_human, at_ttl;
  approver_token->add_option("human", at_human, "the approving human (registered)")->required();
  approver_token->add_option("--ttl", at_ttl, "lifetime, e.g. 8h (default 8h, at most 24h)");
  approver_token->callback([&] {
    Json body = Json::MakeObject();
    if (!at_ttl.empty()) {
      auto ms = server::ParseDurationMillis(at_ttl);
      if (!ms.ok() || *ms < 1000) {
        std::cerr << "mandate: --ttl: " << (ms.ok() ? "must be at least 1s" : ms.error().message) << "\n";
        rc = kExitUsage;
        return;
      }
      body.Set("ttl_seconds", *ms / 1000);
    }
    std::string encoded;  // the human's name as one path segment
    for (unsigned char c : at_human) {
      if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
        encoded.push_back(static_cast<char>(c));
      } else {
        static constexpr char kHex[] = "0123456789ABCDEF";
        encoded += {'%', kHex[c >> 4], kHex[c & 15]};
      }
    }
    if (auto r = admin_or_fail("POST", "/admin/v1/humans/" + encoded + "/approver-token", &body)) {
      print(*r, r->GetString("token"));
    }
  });

  // budgets: usage of every budget's live buckets
  auto* budgets = app.add_subcommand("budgets", "usage of every budget (used, reserved, limit, reset)");
  budgets->callback([&] {
    auto r = admin_or_fail("GET", "/admin/v1/budgets", nullptr);
    if (!r) return;
    std::string text;
    const Json* list = r->FindArray("budgets");
    if (list == nullptr || list->as_array().empty()) text = "no budgets configured\n";
    for (const Json& b : list ? list->as_array() : Json::Array{}) {
      text += b.GetString("name") + ": " + b.GetString("metric") + " <= " +
              std::to_string(b.GetInt("limit", 0)) + " per " + b.GetString("scope") + ", window " +
              b.GetString("window") + "\n";
      const Json* buckets = b.FindArray("buckets");
      if (buckets == nullptr || buckets->as_array().empty()) text += "  (no usage yet)\n";
      for (const Json& k : buckets ? buckets->as_array() : Json::Array{}) {
        text += "  " + k.GetString("key") + ": used " + std::to_string(k.GetInt("used", 0)) +
                ", reserved " + std::to_string(k.GetInt("reserved", 0)) + " of " +
                std::to_string(k.GetInt("limit", 0));
        const int64_t reset = k.GetInt("reset_at_unix_micros", 0);
        if (reset > 0) text += ", resets " + UtcTime(reset / 1000000);
        text += "\n";
      }
    }
    if (json) {
      std::cout << r->Dump() << "\n";
    } else {
      std::cout << text;
    }
  });

  auto* keys = app.add_subcommand("keys", "token-signing keys");
  keys->require_subcommand(1);
  auto* keys_list = keys->add_subcommand("list", "the keys that verify tokens now, the signer first");
  keys_list->callback([&] {
    auto r = admin_or_fail("GET", "/admin/v1/keys", nullptr);
    if (!r) return;
    std::string text;
    for (const Json& k : r->FindArray("keys")->as_array()) {
      const Json* at = k.Find("retires_at");
      text += k.GetString("kid") + " " + k.GetString("alg") +
              (k.Find("active") && k.Find("active")->as_bool() ? " active (signs new tokens)"
                                                               : " verify-only, retires at " + (at && at->is_int() ? UtcTime(at->as_int()) : std::string("never"))) +
              "\n";
    }
    if (!text.empty()) text.pop_back();
    print(*r, text);
  });
  auto* keys_rotate = keys->add_subcommand("rotate", "sign with a new key; the old one verifies until its tokens expire");
  keys_rotate->callback([&] {
    Json body = Json::MakeObject();
    auto r = admin_or_fail("POST", "/admin/v1/keys/rotate", &body);
    if (!r) return;
    print(*r, "new signing key " + r->GetString("kid") + " (" + r->GetString("alg") + "); " + r->GetString("previous_kid") +
                  " verifies until " + UtcTime(r->GetInt("previous_retires_at", 0)));
  });

  // policy
  auto* pol = app.add_subcommand("policy", "policies: check, schema, test cases, explain a decision");
  pol->require_subcommand(1);
  auto* explain = pol->add_subcommand("explain", "decide a hypothetical call and say which policies determined it");
  std::string e_agent, e_human, e_action, e_args;
  std::vector<std::string> e_scope;
  explain->add_option("--agent", e_agent)->required();
  explain->add_option("--for", e_human, "the human the agent acts for")->required();
  explain->add_option("--action", e_action, "upstream:tool")->required();
  explain->add_option("--args", e_args, "the call's arguments, a JSON object");
  explain->add_option("--scope", e_scope, "the session's scope; repeatable; default *");
  explain->callback([&] {
    Json body = Json::MakeObject();
    body.Set("agent", e_agent);
    body.Set("for", e_human);
    body.Set("action", e_action);
    if (!e_args.empty()) {
      auto args = Json::Parse(e_args);
      if (!args.ok() || !args->is_object()) {
        std::cerr << "mandate: --args must be a JSON object" << (args.ok() ? "" : ": " + args.error().message) << "\n";
        rc = kExitUsage;
        return;
      }
      body.Set("args", std::move(args).value());
    }
    Json sc = Json::MakeArray();
    for (const auto& s : e_scope) sc.Push(s);
    body.Set("scope", std::move(sc));
    auto r = admin_or_fail("POST", "/admin/v1/policies/explain", &body);
    if (!r) return;
    std::string text = r->GetString("action") + " (class " + r->GetString("class") + ") on " +
                       r->GetString("resource") + ": " + r->GetString("decision");
    if (const Json* code = r->Find("code"); code != nullptr && code->is_string()) text += " (" + code->as_string() + ")";
    text += "\n  why: " + r->GetString("reason");
    const Json* scope_ok = r->Find("scope_ok");
    text += std::string("\n  scope: ") + (scope_ok && scope_ok->is_bool() && scope_ok->as_bool() ? "inside the session's scope" : "OUTSIDE the session's scope");
    if (const Json* checks = r->FindArray("checks")) {
      for (const Json& c : checks->as_array()) {
        text += "\n  " + c.GetString("principal") + ": " + c.GetString("decision");
        const std::string permits = Join(c.FindArray("permits"));
        const std::string forbids = Join(c.FindArray("forbids"));
        const std::string errors = Join(c.FindArray("errors"));
        if (!forbids.empty()) text += "; forbidden by " + forbids;
        if (!permits.empty()) text += "; permitted by " + permits;
        if (forbids.empty() && permits.empty()) text += "; no permit applies (default deny)";
        if (!errors.empty()) text += "; errors (policy skipped, the call is denied): " + errors;
      }
    }
    print(*r, text);
  });

  auto* check = pol->add_subcommand(
      "check", "parse the policies, validate them against the schema (errors) and warn about likely mistakes (lint)");
  std::string c_dir;
  bool c_strict = false;
  bool c_offline = false;
  check->add_option("DIR", c_dir, "policies directory (default: the config's)");
  check->add_flag("--strict", c_strict, "exit 1 when there are warnings");
  check->add_flag("--offline", c_offline,
                  "do not ask the running server: the schema from the config only, no human or agent names");
  check->callback([&] {
    auto cfg = LoadConfigOrDefault(config_path);
    if (!cfg.ok()) {
      rc = Fail("config: " + cfg.error().message);
      return;
    }
    const std::string dir = c_dir.empty() ? cfg->policies_dir : c_dir;
    auto set = policy::PolicySet::LoadDir(dir);
    if (!set.ok()) {
      rc = Fail(set.error().message);
      return;
    }
    auto loaded = LoadPolicySchema(config_path, *cfg, c_offline);
    if (!loaded.ok()) {
      rc = Fail(loaded.error().message);
      return;
    }
    const policy::Schema* schema = &*loaded->schema;
    std::string note;
    if (loaded->origin == "config") {
      note += "note: schema from the config only (" + loaded->why +
              "): tools the config does not name are accepted and arguments are not validated\n";
    }
    if (!schema->notes().empty()) {
      note += "note: " + std::to_string(schema->notes().size()) +
              " part(s) of the schema are not validated (mandate policy schema lists them)\n";
    }
    const std::vector<policy::ValidationFinding> findings = policy::Validate(*set, *schema);

    // The classes calls are decided with: the config's, else (from the server) the tools'
    // annotations, else destructive.
    policy::LintContext lc;
    for (const policy::UpstreamSource& up : loaded->source.upstreams) {
      lc.upstreams.insert(up.name);
      for (const policy::ToolSource& t : up.tools) lc.tool_classes.emplace(up.name + ":" + t.name, t.action_class);
    }
    // Registered humans and agents, when a server is reachable; otherwise those names are
    // not checked (said below), rather than every name being reported.
    core::Result<Json> humans = core::MakeError(core::ErrorCode::kBadRequest, "--offline");
    core::Result<Json> agents = humans;
    if (!c_offline) {
      humans = Admin(config_path, "GET", "/admin/v1/humans", nullptr);
      agents = humans.ok() ? Admin(config_path, "GET", "/admin/v1/agents", nullptr) : humans;
    }
    if (humans.ok() && agents.ok()) {
      lc.humans.emplace();
      lc.agents.emplace();
      lc.groups.emplace();
      auto add_groups = [&](const Json& principal) {
        if (const Json* gs = principal.FindArray("groups")) {
          for (const Json& g : gs->as_array()) {
            if (g.is_string()) lc.groups->insert(g.as_string());
          }
        }
      };
      if (const Json* hs = humans->FindArray("humans")) {
        for (const Json& h : hs->as_array()) {
          lc.humans->insert(h.GetString("name"));
          add_groups(h);
        }
      }
      if (const Json* as = agents->FindArray("agents")) {
        for (const Json& a : as->as_array()) {
          lc.agents->insert(a.GetString("name"));
          add_groups(a);
        }
      }
    } else {
      note += "note: human, agent and group names not checked (" +
              (c_offline ? std::string("--offline")
                         : "admin API not reachable: " + (humans.ok() ? agents.error().message : humans.error().message)) +
              ")\n";
    }
    auto warnings = policy::Lint(*set, lc);

    Json errors_json = Json::MakeArray();
    Json warnings_json = Json::MakeArray();
    std::string errors_text, warnings_text;
    size_t error_count = 0, warning_count = 0;
    auto item = [](const std::string& rule, const std::string& policy_id, const policy::SourceLocation& at,
                   const std::string& message) {
      Json j = Json::MakeObject();
      j.Set("rule", rule);
      j.Set("policy", policy_id);
      j.Set("location", at.ToString());
      j.Set("message", message);
      return j;
    };
    for (const auto& f : findings) {
      const bool error = f.severity == policy::ValidationFinding::Severity::kError;
      (error ? errors_json : warnings_json).Push(item(f.rule, f.policy_id, f.location, f.message));
      (error ? errors_text : warnings_text) += f.ToString() + "\n";
      ++(error ? error_count : warning_count);
    }
    for (const auto& w : warnings) {
      warnings_json.Push(item(w.rule, w.policy_id, w.location, w.message));
      warnings_text += w.ToString() + "\n";
      ++warning_count;
    }
    Json j = Json::MakeObject();
    j.Set("dir", dir);
    j.Set("policies", static_cast<int64_t>(set->size()));
    j.Set("sha256", set->source_sha256());
    j.Set("names_checked", lc.humans.has_value());
    Json schema_json = Json::MakeObject();
    schema_json.Set("origin", loaded->origin);
    schema_json.Set("tools", static_cast<int64_t>(schema->tool_count()));
    schema_json.Set("notes", Json::StringArray(schema->notes()));
    j.Set("schema", std::move(schema_json));
    j.Set("errors", std::move(errors_json));
    j.Set("warnings", std::move(warnings_json));
    const std::string text = errors_text + warnings_text + note + std::to_string(set->size()) + " policies in " + dir +
                             " parse; validated against the " +
                             (loaded->origin == "server" ? "server's schema" : "config's schema") + " (" +
                             std::to_string(schema->tool_count()) + " tools); " + std::to_string(error_count) +
                             " error(s), " + std::to_string(warning_count) + " warning(s)";
    print(j, text);
    if (error_count > 0 || (c_strict && warning_count > 0)) rc = kExitFailed;
  });

  auto* schema_cmd = pol->add_subcommand(
      "schema", "print the Cedar schema (JSON) the policies are validated against");
  bool s_offline = false;
  schema_cmd->add_flag("--offline", s_offline, "do not ask the running server: the schema from the config only");
  schema_cmd->callback([&] {
    auto cfg = LoadConfigOrDefault(config_path);
    if (!cfg.ok()) {
      rc = Fail("config: " + cfg.error().message);
      return;
    }
    auto loaded = LoadPolicySchema(config_path, *cfg, s_offline);
    if (!loaded.ok()) {
      rc = Fail(loaded.error().message);
      return;
    }
    const policy::Schema* schema = &*loaded->schema;
    if (json) {
      Json j = Json::MakeObject();
      j.Set("origin", loaded->origin);
      j.Set("schema", schema->ToCedarJson());
      j.Set("source", loaded->source.ToJson());
      j.Set("notes", Json::StringArray(schema->notes()));
      std::cout << j.Dump() << "\n";
      return;
    }
    std::string out;
    AppendPrettyJson(schema->ToCedarJson(), 0, &out);
    std::cout << out << "\n";
    // Notes go to stderr, so that stdout is the schema alone (mandate policy schema > s.json).
    if (loaded->origin == "config") {
      std::cerr << "mandate: note: schema from the config only (" << loaded->why
                << "): tools the config does not name are not in it and arguments are not typed\n";
    }
    for (const std::string& n : schema->notes()) std::cerr << "mandate: note: " << n << "\n";
  });

  auto* ptest = pol->add_subcommand("test", "run the golden cases of .ptest files (offline; no server needed)");
  std::vector<std::string> t_files;
  ptest->add_option("FILE", t_files, ".ptest files")->required();
  ptest->callback([&] {
    Json reports = Json::MakeArray();
    std::string text;
    size_t passed = 0, failed = 0;
    for (const std::string& f : t_files) {
      auto report = server::RunPolicyTestFile(f);
      if (!report.ok()) {
        rc = Fail(report.error().message);
        return;
      }
      passed += report->passed();
      failed += report->failed();
      for (const auto& c : report->cases) {
        text += std::string(c.passed ? "PASS " : "FAIL ") + f + ": " + c.name;
        if (!c.passed) text += "\n       " + c.failure;
        text += "\n";
      }
      reports.Push(report->ToJson());
    }
    text += std::to_string(passed) + " passed, " + std::to_string(failed) + " failed";
    Json j = Json::MakeObject();
    j.Set("passed", static_cast<int64_t>(passed));
    j.Set("failed", static_cast<int64_t>(failed));
    j.Set("files", std::move(reports));
    print(j, text);
    if (failed > 0) rc = kExitFailed;
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  return rc;
}

}  // namespace mandate::cli
