#include "mandate/adapters/mcp/endpoint.h"

#include "mandate/core/clock.h"
#include "mandate/core/crypto.h"
#include "mandate/core/cancel.h"
#include "mandate/core/limits.h"

namespace mandate::adapters::mcp {
namespace {

using core::ErrorCode;
using core::Json;
using core::MakeError;

// JSON-RPC 2.0 error codes.
constexpr int kParseError = -32700;
constexpr int kInvalidRequest = -32600;
constexpr int kMethodNotFound = -32601;
constexpr int kInvalidParams = -32602;
constexpr int kInternalError = -32603;

constexpr std::string_view kMcpPrefix = "/mcp/";

Json RpcError(const Json& id, int code, std::string message) {
  Json e = Json::MakeObject();
  e.Set("code", code);
  e.Set("message", std::move(message));
  Json r = Json::MakeObject();
  r.Set("jsonrpc", "2.0");
  r.Set("id", id);
  r.Set("error", std::move(e));
  return r;
}

Json RpcResult(const Json& id, Json result) {
  Json r = Json::MakeObject();
  r.Set("jsonrpc", "2.0");
  r.Set("id", id);
  r.Set("result", std::move(result));
  return r;
}

// `challenge`: the WWW-Authenticate value of an authentication refusal
// (gateway::Pipeline::AuthenticateRequest), empty for other errors.
net::HttpResponse HttpError(ErrorCode code, std::string_view message, std::string challenge = {}) {
  auto r = net::HttpResponse::Error(code, message);
  if (!challenge.empty()) r.headers.emplace_back("WWW-Authenticate", std::move(challenge));
  return r;
}

// A refused or failed call as the model sees it: a tool result it can read and adapt to.
Json RefusalResult(ErrorCode code, std::string_view reason, std::string_view decision_id) {
  Json text = Json::MakeObject();
  text.Set("type", "text");
  text.Set("text", "mandate: " + std::string(core::PublicCode(code)) + ": " + std::string(reason));
  Json content = Json::MakeArray();
  content.Push(std::move(text));
  Json r = Json::MakeObject();
  r.Set("content", std::move(content));
  r.Set("isError", true);
  if (!decision_id.empty()) {
    Json meta = Json::MakeObject();
    meta.Set("mandate/decision_id", std::string(decision_id));
    meta.Set("mandate/code", std::string(core::PublicCode(code)));
    r.Set("_meta", std::move(meta));
  }
  return r;
}

bool AcceptsEventStream(const net::HttpRequest& req) {
  const std::string* accept = req.Header("accept");
  return accept && accept->find("text/event-stream") != std::string::npos;
}

}  // namespace

bool IsSupportedProtocolVersion(std::string_view v) {
  return v == "2025-11-25" || v == "2025-06-18" || v == "2025-03-26";
}

core::Result<ResourceTemplate> ResourceTemplate::Parse(std::string_view text) {
  auto sep = text.find("::\"");
  if (sep == std::string_view::npos || sep == 0 || text.size() < sep + 4 || text.back() != '"') {
    return MakeError(ErrorCode::kBadRequest, "resource template must look like Type::\"{args.name}\"");
  }
  ResourceTemplate t;
  t.type = std::string(text.substr(0, sep));
  t.id_template = std::string(text.substr(sep + 3, text.size() - sep - 4));
  if (t.id_template.find('"') != std::string::npos || t.id_template.find('\\') != std::string::npos) {
    return MakeError(ErrorCode::kBadRequest, "resource template id must not contain quotes or backslashes");
  }
  return t;
}

core::Result<core::EntityRef> ResourceTemplate::Render(const Json& args) const {
  std::string id;
  size_t pos = 0;
  while (pos < id_template.size()) {
    size_t open = id_template.find('{', pos);
    if (open == std::string::npos) {
      id.append(id_template, pos);
      break;
    }
    id.append(id_template, pos, open - pos);
    size_t close = id_template.find('}', open);
    if (close == std::string::npos) return MakeError(ErrorCode::kBadRequest, "unclosed { in resource template");
    std::string_view var(id_template.data() + open + 1, close - open - 1);
    if (var.rfind("args.", 0) != 0) {
      return MakeError(ErrorCode::kBadRequest, "resource template variables must be {args.NAME}");
    }
    const Json* v = args.Find(var.substr(5));
    if (v == nullptr) return MakeError(ErrorCode::kBadRequest, "argument \"" + std::string(var.substr(5)) + "\" is required to name the resource");
    if (v->is_string()) {
      id += v->as_string();
    } else if (v->is_int()) {
      id += std::to_string(v->as_int());
    } else {
      return MakeError(ErrorCode::kBadRequest, "argument \"" + std::string(var.substr(5)) + "\" must be a string or integer");
    }
    pos = close + 1;
  }
  return core::EntityRef{type, id};
}

class McpEndpoint::Invoker final : public gateway::UpstreamInvoker {
 public:
  explicit Invoker(const UpstreamBinding& up) : up_(up) {}
  core::Outcome Invoke(const core::Action& action, const gateway::Caller&,
                       const gateway::Forwarding& forwarding) override {
    core::Outcome out;
    auto per_tool = up_.tool_timeouts_millis.find(action.name);
    const int timeout = per_tool != up_.tool_timeouts_millis.end() ? per_tool->second : up_.timeout_millis;
    auto res = up_.upstream->CallTool(action.name, action.args, timeout, forwarding.txn_token);
    if (!res.ok()) {
      out.ok = false;
      out.error = res.error().code;
      out.message = res.error().message;
      return out;
    }
    out.ok = true;
    const Json* is_error = res->Find("isError");
    out.tool_error = is_error && is_error->is_bool() && is_error->as_bool();
    out.result = std::move(res).value();
    return out;
  }
  bool HonoursForwardGate() const override { return up_.upstream->HonoursForwardGate(); }

 private:
  const UpstreamBinding& up_;
};

McpEndpoint::McpEndpoint(const gateway::Pipeline* pipeline, std::vector<UpstreamBinding> upstreams)
    : pipeline_(pipeline) {
  for (auto& u : upstreams) {
    std::string name = u.name;
    upstreams_.emplace(std::move(name), std::move(u));
  }
}

McpEndpoint::~McpEndpoint() = default;

core::ActionClass McpEndpoint::ClassOf(const UpstreamBinding& up, const std::string& tool) {
  auto it = up.tool_classes.find(tool);
  if (it != up.tool_classes.end()) return it->second;
  auto tools = up.upstream->ListTools();
  if (tools.ok()) {
    for (const ToolInfo& t : *tools) {
      if (t.name == tool && t.annotated_class) return *t.annotated_class;
    }
  }
  return core::ActionClass::kDestructive;  // unknown: fail closed
}

void McpEndpoint::Handle(const net::HttpRequest& req, const std::shared_ptr<net::ResponseSink>& sink) {
  std::string_view name = std::string_view(req.path).substr(kMcpPrefix.size());
  if (!name.empty() && name.back() == '/') name.remove_suffix(1);
  auto up_it = upstreams_.find(name);
  if (up_it == upstreams_.end()) {
    sink->Send(HttpError(ErrorCode::kNotFound, "no upstream named \"" + std::string(name) + "\""));
    return;
  }
  const UpstreamBinding& up = up_it->second;

  if (req.method == "GET") {
    auto r = HttpError(ErrorCode::kBadRequest, "this endpoint offers no server-initiated stream; use POST");
    r.status = 405;
    r.headers.emplace_back("Allow", "POST, DELETE");
    sink->Send(std::move(r));
    return;
  }
  if (req.method != "POST" && req.method != "DELETE") {
    auto r = HttpError(ErrorCode::kBadRequest, "method not allowed");
    r.status = 405;
    r.headers.emplace_back("Allow", "POST, DELETE");
    sink->Send(std::move(r));
    return;
  }

  // Authenticate every request: a token can expire or be revoked mid-session, and a
  // DPoP-bound session needs a fresh proof on each request (Bearer or DPoP, pipeline.h).
  std::string challenge;
  auto caller = pipeline_->AuthenticateRequest(gateway::AgentRequest{req.method, req.target, &req.headers}, &challenge);
  if (!caller.ok()) {
    sink->Send(HttpError(caller.error().code, caller.error().message, std::move(challenge)));
    return;
  }

  const std::string* session_header = req.Header("mcp-session-id");
  if (req.method == "DELETE") {
    std::lock_guard lock(mu_);
    auto it = session_header ? sessions_.find(*session_header) : sessions_.end();
    if (it == sessions_.end() || it->second.mandate_sid != caller->sid()) {
      sink->Send(HttpError(ErrorCode::kNotFound, "unknown MCP session"));
      return;
    }
    sessions_.erase(it);
    sink->Send(net::HttpResponse::Json(200, "{}"));
    return;
  }

  if (const std::string* pv = req.Header("mcp-protocol-version"); pv && !IsSupportedProtocolVersion(*pv)) {
    sink->Send(net::HttpResponse::Json(400, RpcError(Json(), kInvalidRequest, "unsupported MCP-Protocol-Version " + *pv).Dump()));
    return;
  }

  auto parsed = Json::Parse(req.body, core::kHttpRequestBodyBytesMax);
  if (!parsed.ok()) {
    sink->Send(net::HttpResponse::Json(400, RpcError(Json(), kParseError, "parse error: " + parsed.error().message).Dump()));
    return;
  }
  const Json& msg = *parsed;
  if (!msg.is_object()) {
    std::string why = msg.is_array() ? "JSON-RPC batches are not supported (MCP 2025-11-25)" : "a JSON-RPC message must be an object";
    sink->Send(net::HttpResponse::Json(400, RpcError(Json(), kInvalidRequest, why).Dump()));
    return;
  }
  const Json* id = msg.Find("id");
  const std::string* method = msg.FindString("method");
  const std::string* version = msg.FindString("jsonrpc");
  if (version == nullptr || *version != "2.0") {
    sink->Send(net::HttpResponse::Json(400, RpcError(id ? *id : Json(), kInvalidRequest, "jsonrpc must be \"2.0\"").Dump()));
    return;
  }
  if (id != nullptr && !(id->is_string() || id->is_int())) {
    sink->Send(net::HttpResponse::Json(400, RpcError(Json(), kInvalidRequest, "id must be a string or an integer").Dump()));
    return;
  }
  // Notifications and client responses are accepted without a body.
  if (id == nullptr || method == nullptr) {
    if (method == nullptr && id == nullptr) {
      sink->Send(net::HttpResponse::Json(400, RpcError(Json(), kInvalidRequest, "not a JSON-RPC message").Dump()));
      return;
    }
    net::HttpResponse accepted;
    accepted.status = 202;
    sink->Send(std::move(accepted));
    return;
  }

  std::string new_session;
  if (*method != "initialize") {
    std::lock_guard lock(mu_);
    if (session_header == nullptr) {
      sink->Send(net::HttpResponse::Json(400, RpcError(*id, kInvalidRequest, "Mcp-Session-Id header is required; call initialize first").Dump()));
      return;
    }
    auto it = sessions_.find(*session_header);
    // A session belongs to the Mandate session that created it: another token cannot ride it.
    if (it == sessions_.end() || it->second.mandate_sid != caller->sid() || it->second.upstream != up.name) {
      sink->Send(net::HttpResponse::Json(404, RpcError(*id, kInvalidRequest, "unknown or expired MCP session").Dump()));
      return;
    }
    it->second.last_used_micros = core::SystemClock::Instance().NowUnixMicros();
  }

  const Json* params = msg.Find("params");
  Json empty = Json::MakeObject();
  if (params != nullptr && !params->is_object()) {
    sink->Send(net::HttpResponse::Json(200, RpcError(*id, kInvalidParams, "params must be an object").Dump()));
    return;
  }
  // A tools/call whose client accepts SSE and sent a progressToken hears how a long wait (a
  // call parked for approval) goes: notifications/progress events on the response stream,
  // then the answer as the stream's last event.
  const bool sse = *method == "tools/call" && AcceptsEventStream(req);
  const Json* meta = params != nullptr ? params->FindObject("_meta") : nullptr;
  const Json* progress_token = meta != nullptr ? meta->Find("progressToken") : nullptr;
  bool streaming = false;
  core::ProgressSink on_progress = [&](const core::Progress& p) {
    if (!streaming) {
      streaming = sink->StartStream(200, {{"Content-Type", "text/event-stream"}, {"Cache-Control", "no-cache"}});
      if (!streaming) return;
    }
    Json note = Json::MakeObject();
    note.Set("progressToken", *progress_token);
    note.Set("progress", p.progress);
    if (p.total > 0) note.Set("total", p.total);
    note.Set("message", p.message);
    Json msg = Json::MakeObject();
    msg.Set("jsonrpc", "2.0");
    msg.Set("method", "notifications/progress");
    msg.Set("params", std::move(note));
    (void)sink->Write("event: message\ndata: " + msg.Dump() + "\n\n");
  };
  const bool wants_progress =
      sse && progress_token != nullptr && (progress_token->is_string() || progress_token->is_int());
  core::ProgressScope progress_scope(wants_progress ? &on_progress : nullptr);
  RpcAnswer answer = HandleRequest(*caller, up, *method, params ? *params : empty, &new_session);
  Json reply = answer.is_error ? RpcError(*id, answer.error_code, std::move(answer.error_message))
                               : RpcResult(*id, std::move(answer.result));
  if (streaming) {
    (void)sink->Write("event: message\ndata: " + reply.Dump() + "\n\n");
    sink->End();
    return;
  }

  net::Headers headers;
  if (!new_session.empty()) headers.emplace_back("Mcp-Session-Id", new_session);
  // tools/call answers as an SSE stream when the client accepts one (long calls can then
  // carry progress); everything else as plain JSON.
  if (sse) {
    // The whole stream is known here (one event), so it goes out as one body in one write.
    net::HttpResponse r;
    r.status = 200;
    r.headers = std::move(headers);
    r.headers.emplace_back("Content-Type", "text/event-stream");
    r.headers.emplace_back("Cache-Control", "no-cache");
    r.body = "event: message\ndata: " + reply.Dump() + "\n\n";
    sink->Send(std::move(r));
    return;
  }
  auto r = net::HttpResponse::Json(200, reply.Dump());
  for (auto& h : headers) r.headers.push_back(std::move(h));
  sink->Send(std::move(r));
}

namespace {
McpEndpoint::RpcAnswer Result(Json result) { return {std::move(result), false, 0, {}}; }
}  // namespace

McpEndpoint::RpcAnswer McpEndpoint::HandleRequest(const gateway::Caller& caller, const UpstreamBinding& up,
                                                  const std::string& method, const Json& params,
                                                  std::string* new_session_id) {
  if (method == "initialize") {
    std::string requested = params.GetString("protocolVersion");
    std::string version = IsSupportedProtocolVersion(requested) ? requested : std::string(kLatestProtocolVersion);
    {
      std::lock_guard lock(mu_);
      if (sessions_.size() >= core::kMcpSessionsMax) {
        // Evict the least recently used session: bounded memory, and a client whose session
        // was evicted gets 404 and re-initializes, as the transport specifies.
        auto oldest = sessions_.begin();
        for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
          if (it->second.last_used_micros < oldest->second.last_used_micros) oldest = it;
        }
        sessions_.erase(oldest);
      }
      *new_session_id = core::NewId("mcp");
      sessions_[*new_session_id] = Session{caller.sid(), up.name, version, core::SystemClock::Instance().NowUnixMicros()};
    }
    Json caps = Json::MakeObject();
    Json tools = Json::MakeObject();
    tools.Set("listChanged", false);
    caps.Set("tools", std::move(tools));
    Json info = Json::MakeObject();
    info.Set("name", "mandate/" + up.name);
    info.Set("version", "0.1.0");
    Json r = Json::MakeObject();
    r.Set("protocolVersion", version);
    r.Set("capabilities", std::move(caps));
    r.Set("serverInfo", std::move(info));
    r.Set("instructions", "Tools of upstream \"" + up.name + "\", governed by Mandate: calls are authorized, recorded and may be refused with a reason.");
    return Result(std::move(r));
  }
  if (method == "ping") return Result(Json::MakeObject());
  if (method == "tools/list") return ListTools(caller, up);
  if (method == "tools/call") return CallTool(caller, up, params, "/mcp/" + up.name);
  return {Json(), true, kMethodNotFound, "method not found: " + method};
}

McpEndpoint::RpcAnswer McpEndpoint::ListTools(const gateway::Caller& caller, const UpstreamBinding& up) {
  auto tools = up.upstream->ListTools();
  if (!tools.ok()) {
    return {Json(), true, kInternalError,
            "mandate: " + std::string(core::PublicCode(tools.error().code)) + ": " +
                pipeline_->scrubber().Scrub(tools.error().message)};
  }
  Json list = Json::MakeArray();
  for (const ToolInfo& t : *tools) {
    core::Action action;
    action.protocol = "mcp";
    action.upstream = up.name;
    action.name = t.name;
    action.cls = ClassOf(up, t.name);
    action.args = Json::MakeObject();
    action.resource = core::EntityRef{"Upstream", up.name};
    action.method = "tools/call";
    action.path = "/mcp/" + up.name;
    // Listing asks "could this session call the tool at all": typed resources and argument
    // conditions are decided per call, so a tool whose resource needs arguments is listed
    // when the upstream-level decision allows it.
    core::Decision d = pipeline_->Decide(caller, action);
    if (d.kind != core::Decision::Kind::kDeny) list.Push(pipeline_->scrubber().ScrubJson(t.definition));
  }
  Json r = Json::MakeObject();
  r.Set("tools", std::move(list));
  return Result(std::move(r));
}

core::Result<core::Action> McpEndpoint::BuildAction(const UpstreamBinding& up, const std::string& tool,
                                                   Json args) {
  core::Action action;
  action.protocol = "mcp";
  action.upstream = up.name;
  action.name = tool;
  action.cls = ClassOf(up, tool);
  action.args = std::move(args);
  action.method = "tools/call";
  action.path = std::string(kMcpPrefix) + up.name;
  action.resource = core::EntityRef{"Upstream", up.name};
  if (up.resource) {
    MANDATE_ASSIGN_OR_RETURN(action.resource, up.resource->Render(action.args));
  }
  return action;
}

core::Result<core::Action> McpEndpoint::ActionFor(std::string_view upstream, std::string_view tool,
                                                  Json args) {
  auto it = upstreams_.find(upstream);
  if (it == upstreams_.end()) {
    return core::MakeError(ErrorCode::kNotFound, "no MCP upstream named \"" + std::string(upstream) + "\"");
  }
  if (tool.empty() || tool.size() > core::kNameBytesMax) {
    return core::MakeError(ErrorCode::kBadRequest, "a tool name must be 1 to " +
                                                       std::to_string(core::kNameBytesMax) + " bytes");
  }
  if (!args.is_object()) return core::MakeError(ErrorCode::kBadRequest, "arguments must be a JSON object");
  return BuildAction(it->second, std::string(tool), std::move(args));
}

McpEndpoint::RpcAnswer McpEndpoint::CallTool(const gateway::Caller& caller, const UpstreamBinding& up,
                                             const Json& params, const std::string& path) {
  const std::string* name = params.FindString("name");
  if (name == nullptr || name->empty() || name->size() > core::kNameBytesMax) {
    return {Json(), true, kInvalidParams, "tools/call needs a tool name (a non-empty string)"};
  }
  const Json* args = params.Find("arguments");
  if (args != nullptr && !args->is_object() && !args->is_null()) {
    return {Json(), true, kInvalidParams, "tools/call arguments must be an object"};
  }
  auto action = BuildAction(up, *name, args && args->is_object() ? *args : Json::MakeObject());
  if (!action.ok()) return Result(RefusalResult(ErrorCode::kBadRequest, action.error().message, ""));
  action->path = path;
  Invoker invoker(up);
  gateway::Pipeline::CallResult result = pipeline_->Call(caller, std::move(action).value(), invoker);
  if (!result.decision.allowed()) {
    return Result(RefusalResult(result.decision.code, result.decision.reason, result.decision.id));
  }
  if (!result.outcome.ok) {
    return Result(RefusalResult(result.outcome.error, result.outcome.message, result.decision.id));
  }
  return Result(std::move(result.outcome.result));
}

}  // namespace mandate::adapters::mcp
