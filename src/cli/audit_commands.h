// `mandate audit query | replay | export`: the audit index through the admin API
// (docs/formats/audit.md, "Query, replay and export"). Wired into the `audit` subcommand by
// cli.cc.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "mandate/core/json.h"
#include "mandate/core/result.h"
#include "mandate/net/http.h"

namespace mandate::cli {

struct AuditCommandContext {
  // GET `path` on the admin API: the parsed body on 2xx, else an error with the server's
  // code and message.
  std::function<core::Result<core::Json>(const std::string& path)> get_json;
  // GET `path` on the admin API: the raw answer (any status), its body at most `body_max`.
  std::function<core::Result<net::HttpResponse>(const std::string& path, size_t body_max)> get_raw;
  const bool* json = nullptr;  // the global --json flag
  int* rc = nullptr;           // the process exit status
};

// Adds query, replay and export under `audit`. `ctx` is copied; what it points to must
// outlive the parse.
void AddAuditQueryCommands(CLI::App* audit, const AuditCommandContext& ctx);

// `s` percent-encoded for a query string (everything but RFC 3986 unreserved characters).
std::string QueryEscape(const std::string& s);

}  // namespace mandate::cli
