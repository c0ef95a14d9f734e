#include "server/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/doc_blocks_test_util.h"
#include "core/temp_dir_test_util.h"

namespace mandate::server {
namespace {

using core::ErrorCode;

constexpr const char* kSource = "/etc/mandate/mandate.yaml";

// Parses `yaml` and returns the error message; fails the test if parsing succeeded.
std::string ErrorOf(const std::string& yaml, ErrorCode code = ErrorCode::kBadRequest) {
  auto config = ParseConfig(yaml, "mandate.yaml");
  if (config.ok()) {
    ADD_FAILURE() << "expected an error for:\n" << yaml;
    return "";
  }
  EXPECT_EQ(config.error().code, code) << config.error().message;
  return config.error().message;
}

Config Parsed(const std::string& yaml) {
  auto config = ParseConfig(yaml, kSource);
  EXPECT_TRUE(config.ok()) << config.error().message;
  return config.ok() ? *std::move(config) : Config{};
}

bool StartsWith(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

bool Contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

using core::testing::TempDir;

TEST(Config, EmptyFileGivesDefaults) {
  for (const char* text : {"", "\n", "# only a comment\n", "---\n", "~\n"}) {
    Config c = Parsed(text);
    EXPECT_EQ(c.config_dir, "/etc/mandate");
    EXPECT_EQ(c.listen, (ListenAddress{"127.0.0.1", 8080}));
    EXPECT_EQ(c.admin_listen, (ListenAddress{"127.0.0.1", 8081}));
    EXPECT_EQ(c.data_dir, "/etc/mandate/mandate-data");
    EXPECT_EQ(c.store, StoreKind::kSqlite);
    EXPECT_EQ(c.policies_dir, "/etc/mandate/policies");
    EXPECT_EQ(c.audit_dir, "/etc/mandate/mandate-data/audit");
    EXPECT_EQ(c.tokens.issuer, "http://127.0.0.1:8080");
    EXPECT_EQ(c.tokens.audience, "mandate");
    EXPECT_EQ(c.tokens.ttl_seconds, 15 * 60);
    EXPECT_EQ(c.tokens.max_ttl_seconds, 24 * 60 * 60);
    EXPECT_EQ(c.tokens.alg, TokenAlg::kEdDSA);
    EXPECT_EQ(c.max_connections, core::kAgentConnectionsDefault);
    EXPECT_TRUE(c.upstreams.empty());
    EXPECT_TRUE(c.credentials.empty());
    EXPECT_TRUE(c.budgets.empty());
    EXPECT_TRUE(c.approvals.empty());
  }
}

TEST(Config, EmptyFileOnDiskGivesDefaults) {
  TempDir dir;
  auto c = LoadConfig(dir.Write("mandate.yaml", ""));
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->data_dir, dir.path() + "/mandate-data");
}

TEST(Config, EmptySectionsGiveDefaults) {
  Config c = Parsed("tokens:\naudit: {}\nupstreams:\ncredentials: {}\nbudgets: []\napprovals:\n");
  EXPECT_EQ(c.tokens.ttl_seconds, 15 * 60);
  EXPECT_TRUE(c.upstreams.empty());
}

constexpr const char* kFullExample = R"yaml(
listen: 0.0.0.0:0
admin_listen: "[::1]:9091"
data_dir: /var/lib/mandate
store: sqlite
policies: ./policies.d
tokens:
  issuer: https://mandate.example
  audience: mandate-prod
  ttl: 10m
  max_ttl: 12h
  alg: ES256
audit:
  dir: audit-log
max_connections: 8
upstreams:
  files:
    kind: mcp
    command: [npx, -y, "@modelcontextprotocol/server-filesystem", /srv/data]
    env: { NODE_ENV: production, DEBUG: "" }
    cwd: servers/files
    credential: fs-token
    credential_env: FS_TOKEN
    timeout: 500ms
    max_inflight: 4
    tools:
      write_file: { class: write }
      read_file: { class: read }
  github:
    kind: mcp
    url: "http://127.0.0.1:9001/mcp"
    credential: github-token
    timeout: 10s
    tools: { merge_pull_request: { class: destructive } }
    resource: 'Repo::"{args.owner}/{args.repo}"'
  search.v2:
    url: http://search.internal:8000/mcp?x=1
    credential: search-key
    credential_header: X-Api-Key
credentials:
  github-token: { env: GITHUB_TOKEN }
  fs-token: { file: secrets/fs-token }
  search-key: { file: /run/secrets/search }
)yaml";

TEST(Config, FullExampleParses) {
  Config c = Parsed(kFullExample);
  EXPECT_EQ(c.listen, (ListenAddress{"0.0.0.0", 0}));
  EXPECT_EQ(c.admin_listen, (ListenAddress{"::1", 9091}));
  EXPECT_EQ(c.admin_listen.ToString(), "[::1]:9091");
  EXPECT_EQ(c.data_dir, "/var/lib/mandate");
  EXPECT_EQ(c.policies_dir, "/etc/mandate/policies.d");
  EXPECT_EQ(c.audit_dir, "/etc/mandate/audit-log");  // relative to the config, not data_dir
  EXPECT_EQ(c.tokens.issuer, "https://mandate.example");
  EXPECT_EQ(c.tokens.audience, "mandate-prod");
  EXPECT_EQ(c.tokens.ttl_seconds, 600);
  EXPECT_EQ(c.tokens.max_ttl_seconds, 12 * 3600);
  EXPECT_EQ(c.tokens.alg, TokenAlg::kES256);
  EXPECT_EQ(c.max_connections, 8u);
  ASSERT_EQ(c.upstreams.size(), 3u);

  const UpstreamConfig& files = c.upstreams.at("files");
  EXPECT_EQ(files.name, "files");
  EXPECT_EQ(files.kind, UpstreamKind::kMcp);
  EXPECT_EQ(files.transport, UpstreamTransport::kStdio);
  EXPECT_EQ(files.command,
            (std::vector<std::string>{"npx", "-y", "@modelcontextprotocol/server-filesystem",
                                      "/srv/data"}));
  EXPECT_EQ(files.env.at("NODE_ENV"), "production");
  EXPECT_EQ(files.env.at("DEBUG"), "");
  EXPECT_EQ(files.cwd, "/etc/mandate/servers/files");
  EXPECT_EQ(files.credential, "fs-token");
  EXPECT_EQ(files.credential_env, "FS_TOKEN");
  EXPECT_EQ(files.credential_header, "");
  EXPECT_EQ(files.timeout_millis, 500);
  EXPECT_EQ(files.max_inflight, 4u);
  EXPECT_EQ(files.tools.at("write_file").action_class, core::ActionClass::kWrite);
  EXPECT_EQ(files.tools.at("read_file").action_class, core::ActionClass::kRead);
  EXPECT_EQ(files.resource_type, "");

  const UpstreamConfig& github = c.upstreams.at("github");
  EXPECT_EQ(github.transport, UpstreamTransport::kHttp);
  EXPECT_EQ(github.url, "http://127.0.0.1:9001/mcp");
  EXPECT_TRUE(github.command.empty());
  EXPECT_EQ(github.credential_header, "Authorization");
  EXPECT_EQ(github.credential_header_prefix, "Bearer ");
  EXPECT_EQ(github.timeout_millis, 10000);
  EXPECT_EQ(github.max_inflight, 16u);
  EXPECT_EQ(github.tools.at("merge_pull_request").action_class, core::ActionClass::kDestructive);
  EXPECT_EQ(github.resource_type, "Repo");
  EXPECT_EQ(github.resource_id_template, "{args.owner}/{args.repo}");

  const UpstreamConfig& search = c.upstreams.at("search.v2");
  EXPECT_EQ(search.kind, UpstreamKind::kMcp);  // kind defaults to mcp
  EXPECT_EQ(search.credential_header, "X-Api-Key");
  EXPECT_EQ(search.credential_header_prefix, "");
  EXPECT_EQ(search.timeout_millis, 30000);

  ASSERT_EQ(c.credentials.size(), 3u);
  EXPECT_EQ(c.credentials.at("github-token").source, CredentialSource::kEnv);
  EXPECT_EQ(c.credentials.at("github-token").env_var, "GITHUB_TOKEN");
  EXPECT_EQ(c.credentials.at("fs-token").source, CredentialSource::kFile);
  EXPECT_EQ(c.credentials.at("fs-token").file_path, "/etc/mandate/secrets/fs-token");
  EXPECT_EQ(c.credentials.at("search-key").file_path, "/run/secrets/search");
}

// The example of docs/configuration.md is what operators copy: every ```yaml block there
// must parse with this version's parser (a renamed key or a dropped feature fails here).
TEST(Config, TheDocumentedExamplesParse) {
  const auto blocks = core::testing::FencedBlocks("docs/configuration.md", "yaml");
  EXPECT_GE(blocks.size(), 1u) << "docs/configuration.md has no ```yaml example any more";
  for (const auto& b : blocks) {
    auto parsed = ParseConfig(b.text, "/etc/mandate/mandate.yaml");
    EXPECT_TRUE(parsed.ok()) << "docs/configuration.md, the yaml block at line " << b.line << ": "
                             << parsed.error().message;
  }
}

TEST(Config, IssuerDefaultsToTheAgentListener) {
  EXPECT_EQ(Parsed("listen: 10.0.0.5:9000\n").tokens.issuer, "http://10.0.0.5:9000");
}

TEST(Config, UnknownTopLevelKeyNamesKeyAndLine) {
  std::string message = ErrorOf("listen: 127.0.0.1:8080\n\nlistn: 127.0.0.1:9\n");
  EXPECT_TRUE(StartsWith(message,
                         "mandate.yaml:3:1: unknown key \"listn\" in the top level (expected one "
                         "of: listen, admin_listen, data_dir, store, policies, tokens, audit, "
                         "max_connections, upstreams, credentials, budgets, approvals)"))
      << message;
}

TEST(Config, UnknownNestedKeyNamesKeyAndLine) {
  std::string message = ErrorOf(
      "upstreams:\n"
      "  files:\n"
      "    comand: [srv]\n");
  EXPECT_TRUE(StartsWith(message, "mandate.yaml:3:5: unknown key \"comand\" in upstream \"files\""))
      << message;
  EXPECT_TRUE(Contains(message, "expected one of: kind, command, url")) << message;

  message = ErrorOf("tokens:\n  ttl: 5m\n  tll: 5m\n");
  EXPECT_TRUE(StartsWith(message, "mandate.yaml:3:3: unknown key \"tll\" in tokens")) << message;

  message = ErrorOf(
      "upstreams:\n"
      "  gh: { url: \"http://h/mcp\", tools: { merge: { clas: write } } }\n");
  EXPECT_TRUE(StartsWith(message,
                         "mandate.yaml:2:48: unknown key \"clas\" in tool \"merge\" of upstream "
                         "\"gh\" (expected one of: class, audit, timeout)"))
      << message;

  message = ErrorOf("credentials:\n  k: { env: K, path: /x }\n");
  EXPECT_TRUE(StartsWith(message, "mandate.yaml:2:16: unknown key \"path\" in credential \"k\""))
      << message;
  message = ErrorOf("audit: { directory: x }\n");
  EXPECT_TRUE(StartsWith(message, "mandate.yaml:1:10: unknown key \"directory\" in audit"))
      << message;
}

TEST(Config, DuplicateKeyIsRejected) {
  std::string message = ErrorOf("listen: 127.0.0.1:1\nmax_connections: 2\nlisten: 0.0.0.0:1\n");
  EXPECT_TRUE(StartsWith(message, "mandate.yaml:3:1: duplicate key \"listen\"")) << message;
  message = ErrorOf("upstreams:\n  a: { command: [x], command: [y] }\n");
  EXPECT_TRUE(StartsWith(message, "mandate.yaml:2:22: duplicate key \"command\" in upstreams.a"))
      << message;
}

TEST(Config, WrongTypeNamesKeyLineAndExpectedType) {
  std::string message = ErrorOf("listen: 127.0.0.1:8080\nmax_connections: [2]\n");
  EXPECT_EQ(message, "mandate.yaml:2:18: max_connections: expected an integer from 1 to 4096, got a list");

  message = ErrorOf("max_connections: \"2\"\n");  // a quoted number is a string
  EXPECT_EQ(message, "mandate.yaml:1:18: max_connections: expected an integer from 1 to 4096, got \"2\"");

  message = ErrorOf("max_connections: 4097\n");
  EXPECT_EQ(message, "mandate.yaml:1:18: max_connections: expected an integer from 1 to 4096, got \"4097\"");

  message = ErrorOf("tokens: strict\n");
  EXPECT_EQ(message, "mandate.yaml:1:9: tokens: expected a mapping, got \"strict\"");

  message = ErrorOf("data_dir:\n");
  EXPECT_EQ(message, "mandate.yaml:1:1: data_dir: expected a string, got nothing (null)");

  message = ErrorOf("upstreams:\n  a: { command: srv }\n");
  EXPECT_EQ(message,
            "mandate.yaml:2:17: upstreams.a.command: expected a list of strings, got \"srv\"");

  message = ErrorOf("upstreams:\n  a: { command: [srv, [x]] }\n");
  EXPECT_TRUE(StartsWith(message, "mandate.yaml:2:23: upstreams.a.command[1]: expected a string"))
      << message;

  message = ErrorOf("approvals:\n  g: { exclude_requester: yes }\n");
  EXPECT_EQ(
      message,
      "mandate.yaml:2:27: approvals.g.exclude_requester: expected true or false, got \"yes\"");

  message = ErrorOf("- listen\n");
  EXPECT_TRUE(StartsWith(message, "mandate.yaml:1:1: the top level must be a mapping")) << message;

  message = ErrorOf("upstreams:\n  a: { max_inflight: 0, command: [x] }\n");
  EXPECT_TRUE(Contains(message, "upstreams.a.max_inflight: expected an integer from 1 to 64"))
      << message;
}

TEST(Config, MissingFileNamesPath) {
  TempDir dir;
  std::string path = dir.path() + "/nope/mandate.yaml";
  auto config = LoadConfig(path);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().code, ErrorCode::kNotFound);
  EXPECT_TRUE(Contains(config.error().message, path)) << config.error().message;
  EXPECT_TRUE(Contains(config.error().message, "No such file or directory"))
      << config.error().message;

  auto directory = LoadConfig(dir.path());
  ASSERT_FALSE(directory.ok());
  EXPECT_TRUE(Contains(directory.error().message, dir.path())) << directory.error().message;
}

TEST(Config, ErrorsOnDiskNameTheFileAsGiven) {
  TempDir dir;
  std::string path = dir.Write("m.yaml", "max_connections: 1\nmax_connections: 2\n");
  auto config = LoadConfig(path);
  ASSERT_FALSE(config.ok());
  EXPECT_TRUE(StartsWith(config.error().message, path + ":2:1: duplicate key"))
      << config.error().message;
}

TEST(Config, ParsesDurations) {
  EXPECT_EQ(*ParseDurationMillis("500ms"), 500);
  EXPECT_EQ(*ParseDurationMillis("10s"), 10000);
  EXPECT_EQ(*ParseDurationMillis("15m"), 15 * 60000);
  EXPECT_EQ(*ParseDurationMillis("24h"), 24 * 3600000);
  EXPECT_EQ(*ParseDurationMillis("1d"), 86400000);
  EXPECT_EQ(*ParseDurationMillis("0s"), 0);  // callers decide whether zero is meaningful
  for (const char* bad : {"", "15", "15 m", " 15m", "-5s", "+5s", "1.5h", "5sec", "5S", "m", "10s5",
                          "999999999999999999999d", "1h30m", "0x10s"}) {
    auto d = ParseDurationMillis(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.error().code, ErrorCode::kBadRequest);
  }
  EXPECT_TRUE(Contains(ParseDurationMillis("-5s").error().message, "negative"));
  EXPECT_TRUE(Contains(ParseDurationMillis("15").error().message, "needs a unit"));
}

TEST(Config, BadDurationIsRejected) {
  std::string message = ErrorOf("tokens: { ttl: soon }\n");
  EXPECT_TRUE(StartsWith(message, "mandate.yaml:1:16: tokens.ttl: invalid duration \"soon\""))
      << message;
  message = ErrorOf("tokens:\n  ttl: -15m\n");
  EXPECT_TRUE(StartsWith(message,
                         "mandate.yaml:2:8: tokens.ttl: invalid duration \"-15m\": it "
                         "must not be negative"))
      << message;
  message = ErrorOf("upstreams:\n  a: { command: [x], timeout: 0s }\n");
  EXPECT_TRUE(StartsWith(message, "mandate.yaml:2:31: upstreams.a.timeout: must be from 1ms to 1h"))
      << message;
  message = ErrorOf("tokens: { ttl: 1500ms }\n");
  EXPECT_TRUE(Contains(message, "whole number of seconds")) << message;
  message = ErrorOf("tokens: { max_ttl: 2d }\n");
  EXPECT_TRUE(Contains(message, "tokens.max_ttl: must be from 1s to 1d")) << message;
  message = ErrorOf("tokens: { ttl: 2h, max_ttl: 1h }\n");
  EXPECT_TRUE(Contains(message, "tokens.ttl: 2h is longer than tokens.max_ttl (1h)")) << message;
  message = ErrorOf("upstreams:\n  a: { command: [x], timeout: [1s] }\n");
  EXPECT_TRUE(Contains(message, "expected a duration like 500ms")) << message;
}

TEST(Config, ShorterMaxTtlCapsTheDefaultTtl) {
  EXPECT_EQ(Parsed("tokens: { max_ttl: 5m }\n").tokens.ttl_seconds, 300);
}

TEST(Config, BadListenIsRejected) {
  for (const char* bad : {"8080", ":8080", "localhost", "127.0.0.1:", "127.0.0.1:65536",
                          "127.0.0.1:-1", "127.0.0.1:80a", "::1:8080", "[::1]", "[::1:80",
                          "[abc]:80", "bad host:80", "127.0.0.1:123456"}) {
    auto a = ParseListenAddress(bad);
    EXPECT_FALSE(a.ok()) << bad;
  }
  EXPECT_EQ(*ParseListenAddress("127.0.0.1:0"), (ListenAddress{"127.0.0.1", 0}));
  EXPECT_EQ(*ParseListenAddress("localhost:65535"), (ListenAddress{"localhost", 65535}));
  EXPECT_EQ(*ParseListenAddress("[::]:80"), (ListenAddress{"::", 80}));

  std::string message = ErrorOf("listen: 127.0.0.1:70000\n");
  EXPECT_EQ(message,
            "mandate.yaml:1:9: listen: invalid address \"127.0.0.1:70000\": port 70000 is out of "
            "range (0 to 65535)");
  message = ErrorOf("admin_listen: 8081\n");
  EXPECT_TRUE(StartsWith(message, "mandate.yaml:1:15: admin_listen: invalid address \"8081\""))
      << message;
}

TEST(Config, ListenersMustNotCollide) {
  std::string message = ErrorOf("listen: 127.0.0.1:9000\nadmin_listen: 127.0.0.1:9000\n");
  EXPECT_TRUE(Contains(message, "collides with listen")) << message;
  ErrorOf("listen: 0.0.0.0:9000\nadmin_listen: 127.0.0.1:9000\n");
  Parsed("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n");  // port 0: two free ports
}

TEST(Config, BadUpstreamNameIsRejected) {
  std::string message = ErrorOf("upstreams:\n  \"git:hub\": { url: \"http://h/\" }\n");
  EXPECT_TRUE(StartsWith(message, "mandate.yaml:2:3: invalid upstream name \"git:hub\""))
      << message;
  EXPECT_TRUE(Contains(message, "<upstream>:<tool>")) << message;
  for (const char* name : {"\"\"", "a/b", "\"a b\"", "é",
                           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}) {
    ErrorOf(std::string("upstreams:\n  ") + name + ": { command: [x] }\n");
  }
  Parsed(
      "upstreams:\n  aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: "
      "{ command: [x] }\n");  // exactly 64
}

TEST(Config, BadToolNameIsRejected) {
  std::string message =
      ErrorOf("upstreams:\n  a:\n    command: [x]\n    tools:\n      \"b:c\": { class: read }\n");
  EXPECT_TRUE(StartsWith(message, "mandate.yaml:5:7: invalid tool name \"b:c\"")) << message;
  message = ErrorOf("upstreams:\n  a: { command: [x], tools: { t: { class: readonly } } }\n");
  EXPECT_TRUE(Contains(message, "expected read, write or destructive, got \"readonly\""))
      << message;
  message = ErrorOf("upstreams:\n  a: { command: [x], tools: { t: {} } }\n");
  EXPECT_TRUE(Contains(message, "upstreams.a.tools.t: needs class")) << message;
}

TEST(Config, UnknownCredentialReferenceIsRejected) {
  std::string message = ErrorOf(
      "credentials:\n  gh: { env: GH }\n"
      "upstreams:\n  a: { url: \"http://h/mcp\", credential: github }\n");
  EXPECT_EQ(message,
            "mandate.yaml:4:41: upstreams.a.credential: unknown credential \"github\" (declared: "
            "gh)");
  message = ErrorOf("upstreams:\n  a: { url: \"http://h/mcp\", credential: github }\n");
  EXPECT_TRUE(Contains(message, "(no credentials are declared)")) << message;
}

TEST(Config, CredentialsDeclaredAfterUpstreamsResolve) {
  Config c = Parsed(
      "upstreams:\n  a: { url: \"http://h/mcp\", credential: k }\n"
      "credentials:\n  k: { env: K }\n");
  EXPECT_EQ(c.upstreams.at("a").credential, "k");
}

TEST(Config, CredentialNeedsExactlyOneSource) {
  std::string message = ErrorOf("credentials:\n  k: { env: K, file: /x }\n");
  EXPECT_TRUE(StartsWith(message, "mandate.yaml:2:3: credentials.k: needs exactly one of env"))
      << message;
  ErrorOf("credentials:\n  k: {}\n");
  ErrorOf("credentials:\n  k: { env: \"1BAD\" }\n");
  ErrorOf("credentials:\n  \"k:x\": { env: K }\n");
}

TEST(Config, CredentialDeliveryMatchesTransport) {
  const std::string creds = "credentials:\n  k: { env: K }\n";
  std::string message = ErrorOf(
      creds + "upstreams:\n  a: { url: \"http://h/\", credential: k, credential_env: T }\n");
  EXPECT_TRUE(Contains(message, "upstreams.a.credential_env: only for stdio upstreams")) << message;
  message = ErrorOf(creds +
                    "upstreams:\n  a: { command: [x], credential: k, credential_header: X-Key }\n");
  EXPECT_TRUE(Contains(message, "upstreams.a.credential_header: only for url upstreams"))
      << message;
  // A stdio credential with nowhere to go would be silently unused.
  message = ErrorOf(creds + "upstreams:\n  a: { command: [x], credential: k }\n");
  EXPECT_TRUE(Contains(message, "needs credential_env")) << message;
  message = ErrorOf("upstreams:\n  a: { command: [x], credential_env: T }\n");
  EXPECT_TRUE(Contains(message, "credential_env: needs credential")) << message;
  message = ErrorOf(creds +
                    "upstreams:\n  a: { url: \"http://h/\", credential: k, credential_header: "
                    "Host }\n");
  EXPECT_TRUE(Contains(message, "is reserved")) << message;
  message = ErrorOf(creds +
                    "upstreams:\n  a: { command: [x], env: { T: v }, credential: k, "
                    "credential_env: T }\n");
  EXPECT_TRUE(Contains(message, "also set under env")) << message;
  ErrorOf("upstreams:\n  a: { url: \"http://h/\", env: { A: b } }\n");
  ErrorOf("upstreams:\n  a: { url: \"http://h/\", cwd: /tmp }\n");
}

TEST(Config, UpstreamWithBothCommandAndUrlIsRejected) {
  std::string message = ErrorOf("upstreams:\n  a: { command: [x], url: \"http://h/\" }\n");
  EXPECT_TRUE(StartsWith(message, "mandate.yaml:2:3: upstreams.a: has both command and url"))
      << message;
}

TEST(Config, UpstreamWithNeitherCommandNorUrlIsRejected) {
  std::string message = ErrorOf("upstreams:\n  a: { kind: mcp }\n");
  EXPECT_TRUE(StartsWith(message, "mandate.yaml:2:3: upstreams.a: has neither command nor url"))
      << message;
  ErrorOf("upstreams:\n  a:\n");
  message = ErrorOf("upstreams:\n  a: { command: [] }\n");
  EXPECT_TRUE(Contains(message, "needs at least the program")) << message;
}

TEST(Config, UnsupportedUpstreamKindsAndSchemesAreRefused) {
  std::string message = ErrorOf(
      "upstreams:\n  stripe: { kind: http, url: \"https://api.stripe.com\", routes: [] }\n");
  EXPECT_EQ(message,
            "mandate.yaml:2:19: upstreams.stripe.kind: kind http is not supported in this version "
            "(only mcp upstreams are)");
  message = ErrorOf("upstreams:\n  o: { kind: llm, provider: openai }\n");
  EXPECT_TRUE(Contains(message, "kind llm is not supported in this version")) << message;
  message = ErrorOf("upstreams:\n  o: { kind: grpc, command: [x] }\n");
  EXPECT_TRUE(Contains(message, "expected mcp, got \"grpc\"")) << message;
  message = ErrorOf("upstreams:\n  g: { url: \"https://h/mcp\" }\n");
  EXPECT_TRUE(Contains(message, "not supported in this version")) << message;
  for (const char* url : {"ftp://h/", "http://", "http://user:pw@h/", "http://h:0/",
                          "http://h:99999/", "http://h/a b", "http://h/#x", "http://[::1/"}) {
    ErrorOf(std::string("upstreams:\n  g: { url: \"") + url + "\" }\n");
  }
  Parsed("upstreams:\n  g: { url: \"http://[::1]:9/mcp\" }\n");
}

TEST(Config, ResourceTemplateIsValidated) {
  Config c = Parsed("upstreams:\n  a: { command: [x], resource: 'Git::Repo::\"r-{args.id}\"' }\n");
  EXPECT_EQ(c.upstreams.at("a").resource_type, "Git::Repo");
  EXPECT_EQ(c.upstreams.at("a").resource_id_template, "r-{args.id}");
  for (const char* bad : {"Repo", "Repo::\"\"", "Repo::\"{owner}\"", "Repo::\"{args.}\"",
                          "Repo::\"{args.a\"", "Repo::\"a}\"", "1Repo::\"x\"", "Repo::\"a\\\"b\"",
                          "Upstream::\"{args.name}\"", "Human::\"x\""}) {
    std::string yaml =
        "upstreams:\n  a:\n    command: [x]\n    resource: '" + std::string(bad) + "'\n";
    ErrorOf(yaml);
  }
  std::string message =
      ErrorOf("upstreams:\n  a: { command: [x], resource: 'Upstream::\"{args.u}\"' }\n");
  EXPECT_TRUE(Contains(message, "reserved by Mandate")) << message;
}

TEST(Config, RelativePathsResolveAgainstConfigDir) {
  TempDir dir;
  std::string path = dir.Write("mandate.yaml",
                               "data_dir: ./state\n"
                               "policies: ../shared/policies\n"
                               "audit: { dir: state/../audit }\n"
                               "credentials:\n  k: { file: keys/k.txt }\n"
                               "upstreams:\n  a: { command: [./srv], cwd: . }\n");
  // The current directory must not matter.
  auto c = LoadConfig(path);
  ASSERT_TRUE(c.ok()) << c.error().message;
  std::string parent = std::filesystem::path(dir.path()).parent_path().string();
  EXPECT_EQ(c->config_dir, dir.path());
  EXPECT_EQ(c->data_dir, dir.path() + "/state");
  EXPECT_EQ(c->policies_dir, parent + "/shared/policies");
  EXPECT_EQ(c->audit_dir, dir.path() + "/audit");
  EXPECT_EQ(c->credentials.at("k").file_path, dir.path() + "/keys/k.txt");
  EXPECT_EQ(c->upstreams.at("a").cwd, dir.path());
  EXPECT_EQ(c->upstreams.at("a").command[0], "./srv");  // argv is passed through untouched

  // A config path relative to the current directory still yields absolute paths.
  std::string old_cwd = std::filesystem::current_path().string();
  std::filesystem::current_path(parent);
  std::string relative = std::filesystem::path(dir.path()).filename().string() + "/mandate.yaml";
  auto r = LoadConfig(relative);
  std::filesystem::current_path(old_cwd);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->data_dir, dir.path() + "/state");
}

TEST(Config, BudgetsAreParsedWithTheirMatch) {
  Config c = Parsed(
      "upstreams:\n  jira: { command: [x] }\n"
      "budgets:\n"
      "  - { name: triage-writes, metric: writes, limit: 50, window: 1d, scope: agent,\n"
      "      match: { agent: triage-bot, upstream: jira, action: \"jira:create\", class: write } "
      "}\n"
      "  - { name: spend, metric: spend_usd_micros, limit: 0, window: 1h, scope: human }\n"
      "  - { name: custom, metric: pages_printed, limit: 5, window: run, scope: session_tree }\n");
  ASSERT_EQ(c.budgets.size(), 3u);
  EXPECT_EQ(c.budgets[0].name, "triage-writes");
  EXPECT_EQ(c.budgets[0].window_kind, BudgetWindowKind::kCalendarDay);
  EXPECT_EQ(c.budgets[0].scope, BudgetScope::kAgent);
  EXPECT_EQ(c.budgets[0].match.action, "jira:create");
  EXPECT_EQ(c.budgets[1].window_kind, BudgetWindowKind::kRolling);
  EXPECT_EQ(c.budgets[1].window_millis, 3600 * 1000);
  EXPECT_EQ(c.budgets[2].metric, "pages_printed");
  // An empty list configures no budget.
  EXPECT_TRUE(Parsed("budgets: []\n").budgets.empty());
}

TEST(Config, UpstreamAuditBreakerAndToolTimeoutAreParsedAndChecked) {
  Config c = Parsed(
      "upstreams:\n"
      "  gh: { url: \"http://127.0.0.1:9/mcp\", circuit_breaker: { failures: 3, cool_down: 10s },\n"
      "        audit: { payload: full, side_effects: { pr_url: /structuredContent/html_url } },\n"
      "        tools: { merge: { class: destructive, timeout: 2s, audit: { payload: hash } } } }\n");
  const UpstreamConfig& gh = c.upstreams.at("gh");
  EXPECT_EQ(gh.breaker_failures, 3u);
  EXPECT_EQ(gh.breaker_cool_down_millis, 10000);
  ASSERT_TRUE(gh.audit.side_effects.has_value());
  EXPECT_EQ(gh.audit.side_effects->at("pr_url"), "/structuredContent/html_url");
  EXPECT_EQ(gh.tools.at("merge").timeout_millis, 2000);
  EXPECT_EQ(gh.tools.at("merge").audit.hash_only, std::optional<bool>(true));
  EXPECT_TRUE(StartsWith(ErrorOf("upstreams:\n  gh: { command: [x], audit: { payload: some } }\n"),
                         "mandate.yaml:2:41: upstreams.gh.audit.payload: expected full or hash"));
  EXPECT_TRUE(StartsWith(
      ErrorOf("upstreams:\n  gh: { command: [x], audit: { side_effects: { u: html_url } } }\n"),
      "mandate.yaml:2:51: upstreams.gh.audit.side_effects.u: expected a JSON pointer"));
  EXPECT_TRUE(StartsWith(
      ErrorOf("upstreams:\n  gh: { command: [x], circuit_breaker: { failures: -1 } }\n"),
      "mandate.yaml:2:"));
  EXPECT_TRUE(StartsWith(ErrorOf("audit: { origin: \"has space\" }\n"), "mandate.yaml:1:"));
  Config a = Parsed("audit: { origin: example.com/m/1, checkpoint_records: 10, checkpoint_interval: 250ms }\n");
  EXPECT_EQ(a.audit_origin, "example.com/m/1");
  EXPECT_EQ(a.audit_checkpoint_records, 10u);
  EXPECT_EQ(a.audit_checkpoint_interval_millis, 250);
}

TEST(Config, UpstreamTxnTokenIsOnByDefaultForTheUpstreamsName) {
  Config c = Parsed(
      "upstreams:\n"
      "  gh: { url: \"http://127.0.0.1:9/mcp\" }\n"
      "  jira: { url: \"http://127.0.0.1:9/mcp\", txn_token_audience: \"https://jira.internal\" }\n"
      "  local: { command: [x], txn_token: false }\n");
  EXPECT_TRUE(c.upstreams.at("gh").txn_token);
  EXPECT_EQ(c.upstreams.at("gh").txn_token_audience, "gh");
  EXPECT_EQ(c.upstreams.at("jira").txn_token_audience, "https://jira.internal");
  EXPECT_FALSE(c.upstreams.at("local").txn_token);
  EXPECT_TRUE(Contains(ErrorOf("upstreams:\n  mandate: { command: [x] }\n"), "reserved for Mandate's own actions"));
  EXPECT_TRUE(StartsWith(ErrorOf("upstreams:\n  gh: { command: [x], txn_token: maybe }\n"), "mandate.yaml:2:"));
  EXPECT_TRUE(Contains(ErrorOf("upstreams:\n  gh: { command: [x], txn_token_audience: \"\" }\n"),
                       "upstreams.gh.txn_token_audience: must be 1 to"));
}

TEST(Config, MalformedBudgetsReportTheirShapeError) {
  const std::string head = "budgets:\n  - ";
  EXPECT_TRUE(Contains(ErrorOf(head + "{ name: b, metric: writes, limit: 5, window: 1d }\n"),
                       "budgets[0]: needs scope"));
  EXPECT_TRUE(
      Contains(ErrorOf(head + "{ name: b, metric: Writes, limit: 5, window: 1d, scope: agent }\n"),
               "budgets[0].metric: expected calls, writes"));
  EXPECT_TRUE(
      Contains(ErrorOf(head + "{ name: b, metric: calls, limit: -1, window: 1d, scope: agent }\n"),
               "budgets[0].limit: expected an integer from 0"));
  EXPECT_TRUE(Contains(
      ErrorOf(head + "{ name: b, metric: calls, limit: 1, window: weekly, scope: agent }\n"),
      "budgets[0].window: expected run, 1d"));
  EXPECT_TRUE(
      Contains(ErrorOf(head + "{ name: b, metric: calls, limit: 1, window: run, scope: team }\n"),
               "budgets[0].scope: expected session"));
  EXPECT_TRUE(
      Contains(ErrorOf(head + "{ name: b, metric: calls, limit: 1, window: run, scope: agent, "
                              "match: { upstream: nowhere } }\n"),
               "budgets[0].match.upstream: unknown upstream \"nowhere\""));
  EXPECT_TRUE(
      Contains(ErrorOf(head + "{ name: b, metric: calls, limit: 1, window: run, scope: agent, "
                              "match: { tool: x } }\n"),
               "unknown key \"tool\" in budgets[0].match"));
  EXPECT_TRUE(
      Contains(ErrorOf(head + "{ name: b, metric: calls, limit: 1, window: run, scope: agent }\n"
                              "  - { name: b, metric: calls, limit: 1, window: run, scope: agent "
                              "}\n"),
               "duplicate budget name \"b\""));
  EXPECT_TRUE(Contains(ErrorOf("budgets: { name: b }\n"), "budgets: expected a list of budgets"));
}

TEST(Config, ApprovalGroupsAreParsedAndChecked) {
  Config c = Parsed(
      "approvals:\n"
      "  finance-approvers: { min_approvers: 2, exclude_requester: true, wait: 60s, expiry: 30m }\n");
  const ApprovalGroupConfig& g = c.approvals.at("finance-approvers");
  EXPECT_EQ(g.min_approvers, 2u);
  EXPECT_TRUE(g.exclude_requester);
  EXPECT_EQ(g.wait_millis, 60000);
  EXPECT_EQ(g.expiry_millis, 30 * 60000);
  EXPECT_TRUE(Contains(ErrorOf("approvals:\n  g: { wait: 10m, expiry: 1m }\n"),
                       "expiry must be at least wait"));
  EXPECT_TRUE(Contains(ErrorOf("approvals:\n  g: { min_approvers: 0 }\n"),
                       "approvals.g.min_approvers: expected an integer from 1 to 16"));
  EXPECT_TRUE(Contains(ErrorOf("approvals:\n  g: { wait: 0s }\n"), "approvals.g.wait: must be"));
  EXPECT_TRUE(Contains(ErrorOf("approvals:\n  g: { quorum: 2 }\n"),
                       "unknown key \"quorum\" in approval group \"g\""));
}

TEST(Config, PostgresStoreIsRefused) {
  std::string message = ErrorOf("store: postgres://mandate@db/mandate\n");
  EXPECT_EQ(message,
            "mandate.yaml:1:8: store: PostgreSQL (a postgres:// URL) is not supported in this "
            "version; use store: sqlite");
  EXPECT_TRUE(Contains(ErrorOf("store: postgresql://db/m\n"), "not supported in this version"));
  EXPECT_TRUE(Contains(ErrorOf("store: mysql\n"), "store: expected sqlite, got \"mysql\""));
}

TEST(Config, TokenSettingsAreValidated) {
  EXPECT_TRUE(Contains(ErrorOf("tokens: { alg: RS256 }\n"), "expected EdDSA or ES256"));
  EXPECT_TRUE(Contains(ErrorOf("tokens: { issuer: mandate.example }\n"), "tokens.issuer"));
  EXPECT_TRUE(Contains(ErrorOf("tokens: { audience: \"\" }\n"), "tokens.audience"));
}

TEST(Config, InvalidYamlReportsLineAndColumn) {
  std::string message = ErrorOf("listen: [1,\nmax_connections: 2\n");
  EXPECT_TRUE(StartsWith(message, "mandate.yaml:")) << message;
  EXPECT_TRUE(Contains(message, "invalid YAML")) << message;
  message = ErrorOf("max_connections: 2\n---\nmax_connections: 3\n");
  EXPECT_TRUE(Contains(message, "one YAML document")) << message;
  message = ErrorOf("[1, 2]: x\n");
  EXPECT_TRUE(Contains(message, "keys must be strings")) << message;
  // Deep nesting is refused by the YAML parser or by the schema, never a crash.
  ErrorOf("upstreams: " + std::string(5000, '[') + std::string(5000, ']') + "\n");
}

TEST(Config, LimitsAreEnforced) {
  std::string many = "upstreams:\n";
  for (size_t i = 0; i <= core::kUpstreamsMax; ++i) {
    many += "  u" + std::to_string(i) + ": { command: [x] }\n";
  }
  EXPECT_TRUE(Contains(ErrorOf(many), "more than 256 entries"));

  std::string big(core::kConfigBytesMax + 1, '#');
  ErrorOf(big, ErrorCode::kPayloadTooLarge);
  TempDir dir;
  auto c = LoadConfig(dir.Write("big.yaml", big));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, ErrorCode::kPayloadTooLarge);

  ErrorOf(std::string("max_connections: 2\0", 19) + "\n");
}

TEST(Config, DesignExampleIsRefusedForItsUnsupportedParts) {
  // DESIGN.md section 8's example uses kind http, which this version refuses by name.
  std::string message = ErrorOf(R"yaml(
listen: 127.0.0.1:8080
admin_listen: 127.0.0.1:8081
data_dir: ./mandate-data
store: sqlite
policies: ./policies
upstreams:
  files:  { kind: mcp, command: [npx, -y, "@modelcontextprotocol/server-filesystem", /srv/data],
            credential: fs-token, credential_env: FS_TOKEN }
  github: { kind: mcp, url: "http://127.0.0.1:9001/mcp", credential: github-token, timeout: 10s,
            tools: { merge_pull_request: { class: destructive } } }
  stripe: { kind: http, url: "https://api.stripe.com", credential: stripe-key,
            routes: [ { name: create_refund, method: POST, path: /v1/refunds, class: write } ] }
credentials:
  github-token: { env: GITHUB_TOKEN }
  fs-token: { env: FS_TOKEN }
  stripe-key: { env: STRIPE_KEY }
)yaml");
  EXPECT_TRUE(Contains(message,
                       "mandate.yaml:12:19: upstreams.stripe.kind: kind http is not "
                       "supported in this version"))
      << message;
}

TEST(Config, RefusesUpstreamNamedLikeAnActionClass) {
  for (const char* name : {"read", "write", "destructive"}) {
    std::string yaml = std::string("upstreams:\n  ") + name + ":\n    kind: mcp\n    url: http://127.0.0.1:9/mcp\n";
    auto c = ParseConfig(yaml, "mandate.yaml");
    ASSERT_FALSE(c.ok()) << name;
    EXPECT_NE(c.error().message.find("reserved"), std::string::npos) << c.error().message;
    EXPECT_NE(c.error().message.find("mandate.yaml:2:"), std::string::npos) << c.error().message;
  }
}

}  // namespace
}  // namespace mandate::server
