// The running Mandate node: config -> objects (store, keys, verifier, policies, audit log,
// credentials, upstreams, pipeline, adapters) and the two listeners (agent, admin).
// Thread safety: Start and Stop from one thread; everything else is internal.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "mandate/core/result.h"
#include "server/config.h"

namespace mandate::server {

class Server {
 public:
  // Builds every component and starts both listeners. Errors name what failed (a bad policy
  // file with file:line:column, an unset credential, a port in use, an unwritable data dir).
  // `log` receives one line per event worth an operator's attention.
  static core::Result<std::unique_ptr<Server>> Start(Config config, std::function<void(const std::string&)> log);
  virtual ~Server() = default;

  virtual uint16_t agent_port() const = 0;
  virtual uint16_t admin_port() const = 0;
  // Stops listeners, upstreams and the audit writer (flushing it). Idempotent.
  virtual void Stop() = 0;
};

// Files `mandate init DIR` writes: a working quickstart (config, policies, and an example
// MCP upstream). Errors: kConflict if DIR/mandate.yaml exists; kInternal on I/O failure.
core::Status WriteQuickstart(const std::string& dir, const std::string& upstream_command_json);

}  // namespace mandate::server
