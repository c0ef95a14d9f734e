// MCP upstream clients: how Mandate talks to the real MCP servers agents call through it, over
// stdio (a child process Mandate spawns and supervises) or Streamable HTTP (MCP revision
// 2025-11-25: lifecycle, tools/list, tools/call, notifications/cancelled, ping).
//
// An upstream client only moves JSON-RPC messages: it never decides anything (the gateway
// pipeline does) and never scrubs secrets (the broker does). Messages from the upstream are
// untrusted input: malformed ones become errors, never crashes or assertions.
//
// Errors of ListTools and CallTool use these codes (plus kBadRequest for CallTool arguments
// that are not an object):
//   kUpstreamUnavailable  the process is down or restarting, the connection was refused, the
//                         upstream was stopped, or the in-flight queue is full;
//   kUpstreamTimeout      no answer within the caller's timeout (or the initialize timeout);
//   kUpstreamError        the upstream answered with a JSON-RPC error object (the message
//                         includes its code and message), an HTTP status that is not a
//                         transient failure, or something that is not a valid MCP answer.
// Start functions may also return kBadRequest for invalid options. Error messages start with
// "upstream <name>: " and may quote the upstream's own text (a JSON-RPC error message, the last
// stderr line of a stdio child, at most ~1 KiB each): they never contain the configured
// credential or env values, but an upstream could echo a secret, so scrub them like results
// before they reach an agent.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mandate/core/action.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"
#include "mandate/core/result.h"
#include "mandate/net/http.h"

namespace mandate::adapters::mcp {

// The MCP protocol revision Mandate asks for in initialize. Upstreams answering 2025-06-18,
// 2025-03-26 or 2024-11-05 are accepted too (tools/list and tools/call are unchanged); any
// other answer fails the initialization with kUpstreamError.
inline constexpr const char* kMcpProtocolVersion = "2025-11-25";

// One tool of an upstream, as listed by tools/list.
struct ToolInfo {
  std::string name;
  // The tool object exactly as the upstream listed it (name, description, inputSchema,
  // annotations, ...), so the agent-facing tools/list can pass it on unchanged.
  core::Json definition;
  // The class the upstream's annotations claim: readOnlyHint true -> kRead; otherwise
  // destructiveHint false -> kWrite; otherwise nullopt, and the caller defaults to
  // kDestructive. Annotations are hints from an untrusted server; configured classes win.
  std::optional<core::ActionClass> annotated_class;
};

// A connection to one MCP server. Thread-safe: any number of threads may call ListTools and
// CallTool at once; each request gets its own JSON-RPC id and its own answer. At most
// max_inflight requests are outstanding at the upstream; further callers wait for a slot (the
// wait counts toward their timeout), and when kUpstreamQueueMax callers already wait, a call
// fails at once with kUpstreamUnavailable. Stop() (or destruction) ends the connection;
// callers must have returned before the object is destroyed.
class McpUpstream {
 public:
  virtual ~McpUpstream() = default;

  // The configured upstream name (used in every error message).
  virtual const std::string& name() const = 0;

  // The upstream's tools: every page of tools/list (following nextCursor), in listing order.
  // The list is cached after the first success; the cache is dropped when the upstream sends
  // notifications/tools/list_changed, when a stdio child restarts and when an HTTP session is
  // re-initialized. The whole listing has kUpstreamTimeoutMillisDefault. Errors:
  // kUpstreamUnavailable, kUpstreamTimeout, kUpstreamError (also for a listing that is not an
  // array of objects with unique non-empty names of at most kNameBytesMax bytes, that has more
  // than kToolsPerUpstreamMax tools or kUpstreamToolsPagesMax pages, or repeats a cursor).
  virtual core::Result<std::vector<ToolInfo>> ListTools() = 0;

  // Sends tools/call {name: tool, arguments} and returns the upstream's `result` object (a
  // CallToolResult). A result with isError: true is a result, not an error. timeout_millis
  // covers waiting for a slot and for the answer; a value <= 0 means
  // kUpstreamTimeoutMillisDefault, and it is capped at kUpstreamTimeoutMillisMax. Errors:
  //   kBadRequest          `arguments` is neither a JSON object nor null (null is sent as {});
  //   kUpstreamTimeout     no answer within timeout_millis: notifications/cancelled is then sent
  //                        upstream for that request id, and a late answer is dropped;
  //   kUpstreamUnavailable the process is down or restarting, the connection was refused, the
  //                        in-flight queue is full, or the upstream was stopped;
  //   kUpstreamError       a JSON-RPC error object (the message includes its code and message),
  //                        or a malformed response, e.g. a result that is not an object.
  // `txn_token`, when not empty, is the call's signed transaction token (DESIGN.md section 4):
  // over HTTP the `Txn-Token` request header; over stdio params._meta["io.mandate/txn-token"].
  virtual core::Result<core::Json> CallTool(const std::string& tool, const core::Json& arguments,
                                            int timeout_millis, const std::string& txn_token) = 0;
  core::Result<core::Json> CallTool(const std::string& tool, const core::Json& arguments, int timeout_millis) {
    return CallTool(tool, arguments, timeout_millis, std::string());
  }

  // Whether every message CallTool sends passes the calling thread's core::ForwardGate (the
  // HTTP upstream's requests do: net::HttpClient::Do on the calling thread honours it); a
  // stdio upstream writes to its child without one, so the pipeline waits for the call's
  // decision record before calling it.
  virtual bool HonoursForwardGate() const { return false; }

  // Ends the connection. Idempotent and safe to call from any thread. Callers waiting for a
  // slot or (stdio) for an answer fail with kUpstreamUnavailable; later calls fail with
  // kUpstreamUnavailable. Stdio: closes the child's stdin, sends SIGTERM to its process group
  // if it has not exited after kUpstreamStopEofGraceMillis, SIGKILL after
  // kUpstreamStopTermGraceMillis more, and reaps it; no fd or zombie is left behind. HTTP:
  // HTTP requests already sent finish within their own timeout; the session is ended with
  // DELETE (best effort, kUpstreamNotifyTimeoutMillis).
  virtual void Stop() = 0;
};

struct StdioUpstreamOptions {
  std::string name;
  // argv of the server; command[0] is looked up in Mandate's own PATH unless it has a '/'.
  std::vector<std::string> command;
  // Added to (or replacing in) the inherited environment, e.g. {"FS_TOKEN", "<secret>"}: this
  // is how a credential reaches a stdio server. Values never appear in error messages.
  std::vector<std::pair<std::string, std::string>> env;
  std::string cwd;  // working directory of the child; empty: Mandate's own
  // Concurrent requests, 1..kUpstreamInflightMax.
  size_t max_inflight = core::kUpstreamInflightDefault;
  // Spawn-to-ready limit of the initialize handshake (each start and restart).
  int init_timeout_millis = 30000;
};

// Spawns the server (its own process group; pipes for stdin, stdout and stderr; no other fd
// inherited) and completes the initialize handshake (protocolVersion kMcpProtocolVersion,
// clientInfo {name: "mandate", version}, capabilities {}, then notifications/initialized)
// before returning. Errors: kBadRequest (empty name or command, bad max_inflight or timeout,
// an env name that is empty or has '='); kUpstreamUnavailable (the command cannot be spawned,
// or the child exits during the handshake: the message carries its last stderr line);
// kUpstreamTimeout (no initialize answer within init_timeout_millis); kUpstreamError (the
// initialize answer is an error or names an unsupported protocol version). On error the child
// is killed and reaped.
//
// Once started, the child is supervised: stdout is read as newline-delimited JSON-RPC (a line
// over kStdioLineBytesMax, or a write to stdin that stalls half-way, is a protocol failure
// that kills the child; a line that is not JSON is skipped); stderr is drained and its last
// kUpstreamStderrTailLines lines are kept for error messages; server-to-client requests are
// answered (ping with {}, anything else with JSON-RPC error -32601). When the child dies, its
// in-flight calls fail with kUpstreamUnavailable and it is restarted after a backoff that
// starts at kUpstreamRestartBackoffMillisMin and doubles up to
// kUpstreamRestartBackoffMillisMax (reset once a child stayed up kUpstreamRestartHealthyMillis).
// Calls during the backoff fail at once with kUpstreamUnavailable ("restarting in N ms");
// calls during a restart's handshake wait for it, within their own timeout.
core::Result<std::unique_ptr<McpUpstream>> StartStdioUpstream(StdioUpstreamOptions options);

struct HttpUpstreamOptions {
  std::string name;
  std::string url;  // http://host:port/path of the MCP endpoint
  // Sent on every request when credential_value is not empty.
  std::string credential_header = "Authorization";
  std::string credential_value;  // e.g. "Bearer <secret>"; never appears in error messages
  size_t max_inflight = core::kUpstreamInflightDefault;  // 1..kUpstreamInflightMax
  int init_timeout_millis = 30000;    // the initialize exchange (request + initialized)
  net::HttpClient* client = nullptr;  // not owned; must outlive the upstream
};

// Connects to a Streamable HTTP server. Each JSON-RPC message is one POST (Content-Type
// application/json; Accept "application/json, text/event-stream"; MCP-Protocol-Version after
// initialization; Mcp-Session-Id when the server issued one; the credential header). The
// answer is a JSON body, or an SSE body whose `data:` events carry JSON-RPC messages: the one
// answering our id is the result, notifications are handled (tools/list_changed drops the
// cache), server requests are answered like over stdio (but only after the stream ended: the
// HTTP client reads whole bodies), and a stream that ends before the answer is resumed with
// GET + Last-Event-ID (at most kSseResumesMax times, within the timeout). HTTP 404 on a
// request that carried a session id re-initializes the session once and retries. 408, 429
// and 5xx statuses are kUpstreamUnavailable; other non-2xx statuses are kUpstreamError.
//
// Initialization is eager: Start runs the initialize handshake, and fails with its error when
// the upstream answers wrongly (kUpstreamError: e.g. HTTP 401, a JSON-RPC error, an
// unsupported version). When the upstream is merely down (kUpstreamUnavailable or
// kUpstreamTimeout), Start still succeeds and the first call initializes. Errors: kBadRequest
// (empty name, no client, a URL net::ParseHttpUrl refuses, bad max_inflight or timeout, a
// credential header name or value that is not a valid HTTP field), kUpstreamError as above.
//
// Limitation: there is no standalone GET event stream, so notifications the server sends only
// on it (e.g. tools/list_changed outside a request) are not seen.
core::Result<std::unique_ptr<McpUpstream>> StartHttpUpstream(HttpUpstreamOptions options);

}  // namespace mandate::adapters::mcp
