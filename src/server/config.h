// Config: the server's configuration (`mandate.yaml`), parsed and fully validated into plain
// data. The format (every key, its type, default and limits) is specified in
// docs/configuration.md; DESIGN.md section 8 is the contract it implements.
//
// Header-private to the server module (src/server/); depends only on core and yaml-cpp.
//
// Validation is strict and fails closed: an unknown key, a duplicate key, a wrong type, a
// value out of range, a reference to an undeclared credential or upstream, and any feature
// this version cannot enforce yet (PostgreSQL, https upstreams, upstream kinds http and llm)
// is an error. Nothing is silently ignored, because a security product must not pretend to
// apply a limit it does not apply.
//
// Every error message starts with `<source>:<line>:<column>: ` (1-based) when the problem has
// a place in the file, e.g.
//   mandate.yaml:7:1: unknown key "listn" in the top level (expected one of: listen, ...)
//
// Thread safety: the functions below keep no state and may be called concurrently. A Config
// is a value.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/core/action.h"
#include "mandate/core/limits.h"
#include "mandate/core/result.h"

namespace mandate::server {

// A listener address. `host` is a hostname or an IP literal (IPv6 without brackets); port 0
// asks the OS for a free port (tests).
struct ListenAddress {
  std::string host;
  uint16_t port = 0;

  // "host:port", with an IPv6 host in brackets: "[::1]:8080".
  std::string ToString() const;
  bool operator==(const ListenAddress&) const = default;
};

enum class StoreKind : uint8_t { kSqlite };
enum class TokenAlg : uint8_t { kEdDSA, kES256 };
enum class UpstreamKind : uint8_t { kMcp };
// How Mandate reaches an upstream: a child process speaking over stdin/stdout (`command`), or
// HTTP (`url`). Exactly one of the two is configured.
enum class UpstreamTransport : uint8_t { kStdio, kHttp };
enum class CredentialSource : uint8_t { kEnv, kFile };
enum class BudgetScope : uint8_t { kSession, kSessionTree, kAgent, kHuman, kTask };
enum class BudgetWindowKind : uint8_t { kRun, kRolling, kCalendarDay };

struct TokensConfig {
  std::string issuer;  // "iss"; defaults to "http://" + listen
  std::string audience = "mandate";
  int64_t ttl_seconds = core::kTokenTtlSecondsDefault;
  int64_t max_ttl_seconds = core::kTokenTtlSecondsMax;
  TokenAlg alg = TokenAlg::kEdDSA;
  // Delegation hops below a root session (token exchange); 1..kDelegationDepthMax.
  uint32_t max_delegation_depth = core::kDelegationDepthDefault;
};

// What the audit log keeps of a call's payloads, and which side-effect references it
// extracts from the result (docs/configuration.md, `audit` of an upstream or tool).
struct AuditPayloadConfig {
  std::optional<bool> hash_only;  // payload: hash; unset: inherit (upstream: full)
  // name -> JSON pointer (RFC 6901) into the result; unset: inherit.
  std::optional<std::map<std::string, std::string>> side_effects;
};

struct ToolConfig {
  core::ActionClass action_class = core::ActionClass::kDestructive;
  int64_t timeout_millis = 0;  // 0: the upstream's timeout
  AuditPayloadConfig audit;
};

struct UpstreamConfig {
  std::string name;  // [A-Za-z0-9_.-]{1,64}; the `<upstream>` of action ids
  UpstreamKind kind = UpstreamKind::kMcp;
  UpstreamTransport transport = UpstreamTransport::kStdio;
  std::vector<std::string> command;        // stdio: argv; command[0] is the program
  std::string url;                         // http: "http://host[:port]/path"
  std::map<std::string, std::string> env;  // stdio: extra environment of the child
  std::string cwd;                         // stdio: absolute working directory of the child
  std::string credential;                  // a key of Config::credentials; empty = none
  std::string credential_env;              // stdio: env var of the child holding the secret
  std::string credential_header;           // http: header carrying the secret
  std::string credential_header_prefix;    // http: "Bearer " for Authorization, else ""
  int64_t timeout_millis = core::kUpstreamTimeoutMillisDefault;
  uint32_t max_inflight = static_cast<uint32_t>(core::kUpstreamInflightDefault);
  std::map<std::string, ToolConfig> tools;  // tool name -> overrides
  AuditPayloadConfig audit;                 // for every tool without its own
  // Circuit breaker: this many consecutive failed calls (unavailable, timeout, error) open it
  // for the cool-down, then one probe call decides; 0 disables it.
  uint32_t breaker_failures = core::kBreakerFailuresDefault;
  int64_t breaker_cool_down_millis = core::kBreakerCoolDownMillisDefault;
  // Transaction tokens: each forwarded call carries a Txn-Token for `txn_token_audience`
  // (default: the upstream's name) unless `txn_token: false`.
  bool txn_token = true;
  std::string txn_token_audience;
  // Typed resource: `Repo::"{args.owner}/{args.repo}"` becomes type "Repo" and id template
  // "{args.owner}/{args.repo}". Both empty: the resource is Upstream::"<name>".
  std::string resource_type;
  std::string resource_id_template;
};

struct CredentialConfig {
  std::string name;
  CredentialSource source = CredentialSource::kEnv;
  std::string env_var;    // kEnv: Mandate's own environment variable holding the secret
  std::string file_path;  // kFile: absolute path of the file holding the secret
};

struct BudgetMatch {  // every non-empty field must match; all empty = every call
  std::string agent;
  std::string human;
  std::string upstream;
  std::string action;  // "<upstream>:<tool>"
  std::optional<core::ActionClass> action_class;
};

struct BudgetConfig {
  std::string name;
  std::string metric;  // calls | writes | input_tokens | output_tokens | spend_usd_micros | custom
  int64_t limit = 0;
  BudgetWindowKind window_kind = BudgetWindowKind::kRun;
  int64_t window_millis = 0;  // kRolling only
  BudgetScope scope = BudgetScope::kSession;
  BudgetMatch match;
};

struct ApprovalGroupConfig {
  std::string name;
  uint32_t min_approvers = 1;
  bool exclude_requester = true;
  int64_t wait_millis = 60 * 1000;
  int64_t expiry_millis = core::kApprovalExpiryMicrosDefault / 1000;
};

struct Config {
  std::string config_dir;  // absolute; relative paths in the file were resolved against it
  ListenAddress listen{"127.0.0.1", 8080};
  ListenAddress admin_listen{"127.0.0.1", 8081};
  std::string data_dir;  // absolute; default <config_dir>/mandate-data
  StoreKind store = StoreKind::kSqlite;
  std::string policies_dir;  // absolute; default <config_dir>/policies
  TokensConfig tokens;
  std::string audit_dir;  // absolute; default <data_dir>/audit
  std::string audit_origin;  // checkpoint origin of a new log; empty: generated
  uint64_t audit_checkpoint_records = core::kAuditCheckpointRecordsDefault;
  int64_t audit_checkpoint_interval_millis = core::kAuditCheckpointIntervalMicrosDefault / 1000;
  // Connections the agent listener serves at once (each has its own thread); more are refused.
  uint32_t max_connections = core::kAgentConnectionsDefault;
  std::map<std::string, UpstreamConfig> upstreams;      // by name
  std::map<std::string, CredentialConfig> credentials;  // by name
  std::vector<BudgetConfig> budgets;  // in file order; enforced by the server's BudgetLedger
  std::map<std::string, ApprovalGroupConfig> approvals;  // by group name
};

// Reads and parses the config file at `path`. Relative paths inside it resolve against the
// absolute directory containing `path`. Error messages name `path` as given.
// Errors: kNotFound when the file cannot be opened or read (the message names the path and
// the OS reason); kPayloadTooLarge over kConfigBytesMax; otherwise those of ParseConfig.
core::Result<Config> LoadConfig(const std::string& path);

// Parses config text. `source_name` is the file name used in error messages; relative paths
// resolve against the absolute directory containing `source_name` (the current directory if
// it names none). An empty text (or one holding only comments) gives the defaults.
// Errors: kPayloadTooLarge over kConfigBytesMax; kBadRequest for YAML syntax errors, several
// YAML documents, unknown or duplicate keys, wrong types, invalid values, exceeded limits,
// dangling references, and features not supported in this version (see the file comment);
// kInternal when the directory of `source_name` cannot be made absolute, or on an unexpected
// failure such as running out of memory. No exception escapes this function or LoadConfig.
core::Result<Config> ParseConfig(std::string_view yaml_text, const std::string& source_name);

// Parses a duration: a non-negative decimal integer followed by one unit of ms, s, m, h or d,
// e.g. "500ms", "10s", "15m", "24h", "1d". Returns milliseconds.
// Errors (kBadRequest): empty, no unit or an unknown one, a sign, a fraction, overflow.
core::Result<int64_t> ParseDurationMillis(std::string_view text);

// Parses "host:port" ("[v6]:port" for IPv6); port 0..65535, host required.
// Errors (kBadRequest): missing host or port, unbracketed IPv6, bad characters, port range.
core::Result<ListenAddress> ParseListenAddress(std::string_view text);

}  // namespace mandate::server
