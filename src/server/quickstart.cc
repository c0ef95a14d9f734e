#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "mandate/core/crypto.h"
#include "mandate/core/encoding.h"
#include "server/server.h"

namespace mandate::server {
namespace {

using core::ErrorCode;
using core::MakeError;

core::Status WriteFile(const std::string& path, const std::string& content, mode_t mode) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return MakeError(errno == EEXIST ? ErrorCode::kConflict : ErrorCode::kInternal,
                               "cannot create " + path + ": " + std::strerror(errno));
  bool ok = write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  close(fd);
  if (!ok) return MakeError(ErrorCode::kInternal, "cannot write " + path);
  return core::OkStatus();
}

constexpr char kPolicies[] = R"(// Quickstart policies (Cedar). A call is allowed only if it is permitted for the human AND
// for every agent of the delegation chain, and no forbid matches. See docs/policy.md.

// Humans may use the example upstream's tools.
@id("humans-use-everything")
permit (principal is Human, action in Action::"everything", resource);

// The assistant agent may call read-only tools of the example upstream.
@id("assistant-reads")
permit (principal == Agent::"assistant", action in Action::"read", resource in Upstream::"everything");

// Nobody dumps the upstream's environment (it holds the brokered credential).
@id("no-env-dumps")
forbid (principal, action == Action::"everything:get-env", resource);
)";

}  // namespace

core::Status WriteQuickstart(const std::string& dir, const std::string& upstream_command_json) {
  mkdir(dir.c_str(), 0755);
  struct stat st{};
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return MakeError(ErrorCode::kInternal, "cannot create directory " + dir);
  }
  if (stat((dir + "/mandate.yaml").c_str(), &st) == 0) {
    return MakeError(ErrorCode::kConflict, dir + "/mandate.yaml already exists; not overwriting it");
  }
  mkdir((dir + "/policies").c_str(), 0755);
  std::string config = R"(# Mandate quickstart: the embedded default (SQLite store + local audit log in data_dir).
# Every key is documented in docs/configuration.md.
listen: 127.0.0.1:8080          # agent listener (data plane)
admin_listen: 127.0.0.1:8081    # admin listener (operators; the CLI talks to it)
data_dir: ./data
policies: ./policies
tokens: { issuer: "http://127.0.0.1:8080", audience: mandate, ttl: 15m }
upstreams:
  everything:                   # the reference MCP server, spawned over stdio
    kind: mcp
    command: )" + upstream_command_json + R"(
    credential: demo-token      # injected into the child's environment, never shown to agents
    credential_env: DEMO_TOKEN
    timeout: 30s
    tools:
      echo: { class: read }
      get-sum: { class: read }
      get-env: { class: read }
      get-tiny-image: { class: read }
credentials:
  demo-token: { file: ./demo-token.secret }
)";
  MANDATE_RETURN_IF_ERROR(WriteFile(dir + "/demo-token.secret",
                                    "demo_" + core::HexEncode(core::RandomBytes(16)) + "\n", 0600));
  MANDATE_RETURN_IF_ERROR(WriteFile(dir + "/policies/quickstart.cedar", kPolicies, 0644));
  MANDATE_RETURN_IF_ERROR(WriteFile(dir + "/mandate.yaml", config, 0644));
  return core::OkStatus();
}

}  // namespace mandate::server
