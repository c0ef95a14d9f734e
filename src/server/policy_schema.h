// The schema source of a running Mandate (policy/schema.h; docs/policy.md, "Schema and
// validation"): what the config says about each upstream (its typed-resource type, the classes
// of the tools it names) joined with what the upstream itself says (its tools/list: every tool
// with its inputSchema and annotations), when that is known.
//
// The class of a tool is decided as the MCP adapter decides it for a call (endpoint.cc,
// ClassOf): the config's class, else the upstream's annotations, else destructive.
//
// Header-private to the server module. Thread safety: pure functions.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "mandate/adapters/mcp/upstream.h"
#include "mandate/core/result.h"
#include "mandate/policy/schema.h"
#include "server/config.h"

namespace mandate::server {

// Each upstream's tools/list, by upstream name, or why it could not be had.
using LiveToolLists = std::map<std::string, core::Result<std::vector<adapters::mcp::ToolInfo>>>;

// The source of the schema. With `live` null, or for an upstream missing from it or whose list
// failed: only the tools the config names, with unknown inputSchemas, and the upstream marked as
// not listed (open; the failure, if any, in tools_error). Otherwise the listed tools; a tool the
// config names that the upstream does not list is kept (without inputSchema) with a note, since
// a call to it would still be decided by policy.
policy::SchemaSource SchemaSourceFromConfig(const Config& config, const LiveToolLists* live);

}  // namespace mandate::server
