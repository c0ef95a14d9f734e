// mcp_upstream_fast: the peer of the governed-vs-direct benchmark (docs/performance.md). A
// Streamable HTTP MCP server (revision 2025-11-25) that does as little as a correct server can,
// so that what the benchmark measures is Mandate, not the upstream:
//
//   POST /mcp  initialize                 -> result + Mcp-Session-Id header
//              notifications / responses  -> 202, no body
//              ping                       -> {}
//              tools/list                 -> one tool, `echo` (annotations.readOnlyHint: true)
//              tools/call echo            -> {"content":[{"type":"text","text":<message>}]}
//   DELETE /mcp                           -> ends the session
//
// Every answer is application/json (never SSE). Requests other than initialize must carry a
// session id this server issued (404 otherwise, as the transport specifies), so a client
// that skips the handshake is caught rather than measured.
//
// Usage: mcp_upstream_fast [--port N] [--io-threads N] [--workers N]
// Prints `ready on http://127.0.0.1:<port>` on stdout once listening; serves until SIGTERM or
// SIGINT. Loopback only.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_set>

#include "mandate/core/json.h"
#include "event_loop_http_server.h"
#include "mandate/net/http.h"
#include "stop_signals.h"

namespace {

using mandate::core::Json;
namespace net = mandate::net;

constexpr const char* kProtocolVersion = "2025-11-25";
// Sessions kept; beyond it the set is cleared (a benchmark opens a few dozen).
constexpr size_t kSessionsMax = 100000;
// Echoed messages longer than this are refused (the benchmark sends short ones).
constexpr size_t kMessageBytesMax = 64 * 1024;

class FastMcpServer {
 public:
  void Handle(const net::HttpRequest& req, net::ResponseSink& sink) {
    if (req.path != "/mcp") {
      sink.Send(net::HttpResponse::Json(404, R"({"error":"not found"})"));
      return;
    }
    if (req.method == "DELETE") {
      const std::string* sid = req.Header("mcp-session-id");
      std::lock_guard lock(mu_);
      sink.Send(
          net::HttpResponse::Json(sid != nullptr && sessions_.erase(*sid) > 0 ? 200 : 404, "{}"));
      return;
    }
    if (req.method != "POST") {
      auto r = net::HttpResponse::Json(405, R"({"error":"use POST"})");
      r.headers.emplace_back("Allow", "POST, DELETE");
      sink.Send(std::move(r));
      return;
    }
    auto parsed = Json::Parse(req.body);
    if (!parsed.ok() || !parsed->is_object()) {
      sink.Send(net::HttpResponse::Json(400, RpcError(Json(), -32700, "parse error").Dump()));
      return;
    }
    const Json& msg = *parsed;
    const Json* id = msg.Find("id");
    const std::string* method = msg.FindString("method");
    if (id == nullptr || method == nullptr) {  // a notification or a client response
      net::HttpResponse accepted;
      accepted.status = 202;
      sink.Send(std::move(accepted));
      return;
    }
    if (*method == "initialize") {
      std::string sid = NewSession();
      Json result = Json::MakeObject();
      const Json* params = msg.FindObject("params");
      std::string version =
          params ? params->GetString("protocolVersion", kProtocolVersion) : kProtocolVersion;
      result.Set("protocolVersion", version);
      Json tools = Json::MakeObject();
      tools.Set("listChanged", false);
      Json caps = Json::MakeObject();
      caps.Set("tools", std::move(tools));
      result.Set("capabilities", std::move(caps));
      Json info = Json::MakeObject();
      info.Set("name", "mcp-upstream-fast");
      info.Set("version", "1.0.0");
      result.Set("serverInfo", std::move(info));
      auto r = net::HttpResponse::Json(200, RpcResult(*id, std::move(result)).Dump());
      r.headers.emplace_back("Mcp-Session-Id", std::move(sid));
      sink.Send(std::move(r));
      return;
    }
    if (!KnownSession(req.Header("mcp-session-id"))) {
      sink.Send(net::HttpResponse::Json(404, RpcError(*id, -32600, "unknown session").Dump()));
      return;
    }
    if (*method == "ping") {
      sink.Send(net::HttpResponse::Json(200, RpcResult(*id, Json::MakeObject()).Dump()));
      return;
    }
    if (*method == "tools/list") {
      sink.Send(net::HttpResponse::Json(200, RpcResult(*id, ToolList()).Dump()));
      return;
    }
    if (*method == "tools/call") {
      const Json* params = msg.FindObject("params");
      const std::string* name = params ? params->FindString("name") : nullptr;
      if (name == nullptr || *name != "echo") {
        sink.Send(net::HttpResponse::Json(200, RpcError(*id, -32602, "unknown tool").Dump()));
        return;
      }
      const Json* args = params->FindObject("arguments");
      const std::string* message = args ? args->FindString("message") : nullptr;
      if (message == nullptr || message->size() > kMessageBytesMax) {
        sink.Send(net::HttpResponse::Json(
            200, RpcError(*id, -32602, "echo needs a short string `message`").Dump()));
        return;
      }
      Json text = Json::MakeObject();
      text.Set("type", "text");
      text.Set("text", *message);
      Json content = Json::MakeArray();
      content.Push(std::move(text));
      Json result = Json::MakeObject();
      result.Set("content", std::move(content));
      sink.Send(net::HttpResponse::Json(200, RpcResult(*id, std::move(result)).Dump()));
      return;
    }
    sink.Send(net::HttpResponse::Json(200, RpcError(*id, -32601, "method not found").Dump()));
  }

 private:
  static Json RpcResult(const Json& id, Json result) {
    Json r = Json::MakeObject();
    r.Set("jsonrpc", "2.0");
    r.Set("id", id);
    r.Set("result", std::move(result));
    return r;
  }

  static Json RpcError(const Json& id, int code, std::string message) {
    Json e = Json::MakeObject();
    e.Set("code", code);
    e.Set("message", std::move(message));
    Json r = Json::MakeObject();
    r.Set("jsonrpc", "2.0");
    r.Set("id", id);
    r.Set("error", std::move(e));
    return r;
  }

  static Json ToolList() {
    Json message = Json::MakeObject();
    message.Set("type", "string");
    Json props = Json::MakeObject();
    props.Set("message", std::move(message));
    Json required = Json::MakeArray();
    required.Push("message");
    Json schema = Json::MakeObject();
    schema.Set("type", "object");
    schema.Set("properties", std::move(props));
    schema.Set("required", std::move(required));
    Json annotations = Json::MakeObject();
    annotations.Set("readOnlyHint", true);
    Json echo = Json::MakeObject();
    echo.Set("name", "echo");
    echo.Set("description", "Returns its message.");
    echo.Set("inputSchema", std::move(schema));
    echo.Set("annotations", std::move(annotations));
    Json tools = Json::MakeArray();
    tools.Push(std::move(echo));
    Json r = Json::MakeObject();
    r.Set("tools", std::move(tools));
    return r;
  }

  std::string NewSession() {
    std::lock_guard lock(mu_);
    if (sessions_.size() >= kSessionsMax) sessions_.clear();
    std::string sid = "fast-" + std::to_string(++next_session_);
    sessions_.insert(sid);
    return sid;
  }

  bool KnownSession(const std::string* sid) {
    if (sid == nullptr) return false;
    std::lock_guard lock(mu_);
    return sessions_.count(*sid) > 0;
  }

  std::mutex mu_;
  std::unordered_set<std::string> sessions_;  // guarded by mu_
  uint64_t next_session_ = 0;                 // guarded by mu_
};

int ParseIntFlag(const char* name, const char* value, int lo, int hi) {
  char* end = nullptr;
  long v = value ? std::strtol(value, &end, 10) : 0;
  if (value == nullptr || *end != '\0' || v < lo || v > hi) {
    std::fprintf(stderr, "mcp_upstream_fast: %s needs an integer from %d to %d\n", name, lo, hi);
    std::exit(2);
  }
  return static_cast<int>(v);
}

}  // namespace

int main(int argc, char** argv) {
  mandate::bench::EventLoopServerOptions options;
  options.host = "127.0.0.1";  // loopback only
  options.io_threads = 1;
  options.worker_threads = 2;  // handlers never block
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--port") {
      options.port = static_cast<uint16_t>(ParseIntFlag("--port", v, 0, 65535));
    } else if (a == "--io-threads") {
      options.io_threads = ParseIntFlag("--io-threads", v, 1, 16);
    } else if (a == "--workers") {
      options.worker_threads = ParseIntFlag("--workers", v, 1, 64);
    } else {
      std::fprintf(stderr, "usage: mcp_upstream_fast [--port N] [--io-threads N] [--workers N]\n");
      return 2;
    }
    ++i;
  }

  const sigset_t stop_signals = mandate::bench::BlockStopSignals();

  FastMcpServer mcp;
  auto server = mandate::bench::StartEventLoopServer(
      options, [&mcp](net::HttpRequest req, std::shared_ptr<net::ResponseSink> sink) {
        mcp.Handle(req, *sink);
      });
  if (!server.ok()) {
    std::fprintf(stderr, "mcp_upstream_fast: %s\n", server.error().message.c_str());
    return 1;
  }
  return mandate::bench::ServeUntilStopSignal(**server, stop_signals);
}
