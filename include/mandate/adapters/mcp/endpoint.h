// The MCP Streamable HTTP endpoint (revision 2025-11-25) agents reach at /mcp/<upstream>.
// It only translates: JSON-RPC in, core::Action to the gateway pipeline, core::Outcome back as
// a JSON-RPC result (JSON or SSE). Decisions are the pipeline's.
//
// Supported: initialize (with Mcp-Session-Id, bound to the caller's Mandate session),
// notifications (202), ping, tools/list (only the tools the session may call), tools/call
// (governed; a refusal is a CallToolResult with isError:true and text "mandate: <code>: why"),
// DELETE (ends the MCP session). GET (server-initiated stream) is answered 405.
// Thread safety: Handle may be called concurrently.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "mandate/adapters/mcp/upstream.h"
#include "mandate/core/action.h"
#include "mandate/gateway/pipeline.h"
#include "mandate/net/http.h"

namespace mandate::adapters::mcp {

// A typed-resource template from the config, e.g. Repo::"{args.owner}/{args.repo}".
struct ResourceTemplate {
  std::string type;
  std::string id_template;
  // Parses `Type::"template"`. Errors: kBadRequest naming what is wrong.
  static core::Result<ResourceTemplate> Parse(std::string_view text);
  // Substitutes {args.NAME} with the argument's string or integer value. Errors: kBadRequest
  // when an argument is missing or not a string/integer.
  core::Result<core::EntityRef> Render(const core::Json& args) const;
};

struct UpstreamBinding {
  std::string name;
  McpUpstream* upstream = nullptr;  // not owned
  std::map<std::string, core::ActionClass> tool_classes;  // config overrides annotations
  std::optional<ResourceTemplate> resource;
  int timeout_millis = 30000;
  std::map<std::string, int> tool_timeouts_millis;  // per-tool overrides of timeout_millis
};

inline constexpr std::string_view kLatestProtocolVersion = "2025-11-25";
bool IsSupportedProtocolVersion(std::string_view v);

class McpEndpoint {
 public:
  // `pipeline` is not owned and must outlive the endpoint.
  McpEndpoint(const gateway::Pipeline* pipeline, std::vector<UpstreamBinding> upstreams);
  ~McpEndpoint();

  // A JSON-RPC answer: a result, or an error object (never inferred from the result's shape,
  // which the upstream controls).
  struct RpcAnswer {
    core::Json result;
    bool is_error = false;
    int error_code = 0;
    std::string error_message;
  };

  // Handles a request whose path starts with /mcp/.
  void Handle(const net::HttpRequest& request, const std::shared_ptr<net::ResponseSink>& sink);

  // The Action a tools/call of `tool` on `upstream` with `args` would be decided as (class
  // from the config, else the tool's annotations, else destructive; resource from the
  // upstream's template). For `policy explain`. Errors: kNotFound (no such upstream),
  // kBadRequest (empty or oversize tool name, args not an object, resource template not
  // satisfiable from args). May ask the upstream for its tool list (annotations).
  core::Result<core::Action> ActionFor(std::string_view upstream, std::string_view tool, core::Json args);

 private:
  struct Session {
    std::string mandate_sid;  // the caller's session; another token cannot use this session
    std::string upstream;
    std::string protocol_version;
    int64_t last_used_micros = 0;
  };
  class Invoker;

  RpcAnswer HandleRequest(const gateway::Caller& caller, const UpstreamBinding& up, const std::string& method,
                          const core::Json& params, std::string* new_session_id);
  RpcAnswer ListTools(const gateway::Caller& caller, const UpstreamBinding& up);
  RpcAnswer CallTool(const gateway::Caller& caller, const UpstreamBinding& up, const core::Json& params,
                     const std::string& path);
  core::ActionClass ClassOf(const UpstreamBinding& up, const std::string& tool);
  core::Result<core::Action> BuildAction(const UpstreamBinding& up, const std::string& tool, core::Json args);

  const gateway::Pipeline* pipeline_;
  std::map<std::string, UpstreamBinding, std::less<>> upstreams_;
  std::mutex mu_;
  std::map<std::string, Session, std::less<>> sessions_;
};

}  // namespace mandate::adapters::mcp
