// Pieces shared by the stdio and HTTP upstream clients (upstream.h): JSON-RPC message
// construction and answer decoding, the tools/list walk and its cache, the in-flight limiter,
// and the SSE parser. Internal to src/adapters/mcp.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/adapters/mcp/upstream.h"
#include "mandate/core/json.h"
#include "mandate/core/result.h"

namespace mandate::adapters::mcp::internal {

using SteadyTime = std::chrono::steady_clock::time_point;

// The `version` Mandate sends in clientInfo.
inline constexpr const char* kClientVersion = "0.1.0";

// JSON-RPC error code for "method not found", used to answer server requests we cannot serve.
inline constexpr int kJsonRpcMethodNotFound = -32601;

SteadyTime DeadlineAfterMillis(int64_t millis);
// Milliseconds left until `deadline`, at least 0.
int64_t MillisUntil(SteadyTime deadline);

// {"jsonrpc":"2.0","id":id,"method":method,"params":params} (params omitted when null).
core::Json MakeRequest(int64_t id, std::string_view method, core::Json params);
// {"jsonrpc":"2.0","method":method,"params":params} (params omitted when null).
core::Json MakeNotification(std::string_view method, core::Json params);
// notifications/cancelled for `request_id`, with a reason.
core::Json MakeCancelled(int64_t request_id, std::string reason);
// The params of our initialize request.
core::Json InitializeParams();

// Validates an initialize result: an object whose protocolVersion is one we speak. Returns
// the negotiated version. Errors: kUpstreamError.
core::Result<std::string> CheckInitializeResult(const std::string& upstream,
                                                const core::Json& result);

// The kind of one message received from an upstream.
enum class MessageKind { kResponse, kRequest, kNotification, kInvalid };
MessageKind Classify(const core::Json& message);

// The integer id of a response, or nullopt (we only ever send integer ids).
std::optional<int64_t> ResponseId(const core::Json& message);

// Our answer to a server-to-client request: ping gets {}, everything else -32601. Returns a
// null Json when `request` has no id (nothing to answer).
core::Json AnswerServerRequest(const core::Json& request);

// The `result` of a response to our request `method`. Errors (all kUpstreamError): the
// response carries an error object ("JSON-RPC error <code>: <message>"), or has no result,
// or (require_object) its result is not an object.
core::Result<core::Json> ResultOfResponse(const std::string& upstream, std::string_view method,
                                          core::Json response, bool require_object = true);

// The timeout a call runs with: timeout_millis, or kUpstreamTimeoutMillisDefault when it is
// not positive, capped at kUpstreamTimeoutMillisMax.
int EffectiveTimeoutMillis(int timeout_millis);

// The params of tools/call: {name, arguments} (a null `arguments` is sent as {}). Errors:
// kBadRequest when `arguments` is neither an object nor null.
core::Result<core::Json> CallToolParams(const std::string& tool, const core::Json& arguments);

// The class a tool's annotations claim (see ToolInfo::annotated_class).
std::optional<core::ActionClass> ClassFromAnnotations(const core::Json& tool);

// Walks every page of tools/list. `request` sends one tools/list with the given params and
// returns its result object. Errors: those of `request`, and kUpstreamError for a malformed
// listing (see McpUpstream::ListTools).
core::Result<std::vector<ToolInfo>> ListAllTools(
    const std::string& upstream,
    const std::function<core::Result<core::Json>(const core::Json& params)>& request);

// The cached tool list of one upstream. Invalidate() bumps a generation, so a listing that
// was in flight when the list changed is not stored. Thread-safe.
class ToolCache {
 public:
  std::optional<std::vector<ToolInfo>> Get(uint64_t* generation) const;
  // Stores `tools` unless the cache was invalidated since Get returned `generation`.
  void Put(uint64_t generation, std::vector<ToolInfo> tools);
  void Invalidate();

 private:
  mutable std::mutex mu_;
  uint64_t generation_ = 0;
  std::optional<std::vector<ToolInfo>> tools_;
};

// What both transports share: tools/list (cached, every page) and tools/call on top of one
// transport-specific Request(). Thread-safe as McpUpstream requires.
class JsonRpcUpstream : public McpUpstream {
 public:
  core::Result<std::vector<ToolInfo>> ListTools() final;
  core::Result<core::Json> CallTool(const std::string& tool, const core::Json& arguments,
                                    int timeout_millis, const std::string& txn_token) final;
  using McpUpstream::CallTool;

 protected:
  // Sends one request and waits for its result. `what` names it in error messages;
  // `txn_token` (may be empty) goes with it as the transport allows (see CallTool).
  virtual core::Result<core::Json> Request(std::string_view method, core::Json params,
                                           SteadyTime deadline, int timeout_millis,
                                           const std::string& what, const std::string& txn_token) = 0;

  ToolCache cache_;
};

// A counting semaphore for in-flight requests with a bounded wait queue. Thread-safe.
class InflightLimiter {
 public:
  InflightLimiter(size_t max_inflight, size_t queue_max)
      : max_inflight_(max_inflight), queue_max_(queue_max) {}

  // Takes a slot. Errors: kUpstreamUnavailable when stopped or when queue_max callers already
  // wait; kUpstreamTimeout when no slot freed before `deadline`.
  core::Status Acquire(const std::string& upstream, SteadyTime deadline);
  void Release();
  // Fails current and future Acquire calls with kUpstreamUnavailable.
  void Stop();

 private:
  const size_t max_inflight_;
  const size_t queue_max_;
  std::mutex mu_;
  std::condition_variable cv_;
  size_t inflight_ = 0;
  size_t waiting_ = 0;
  bool stopped_ = false;
};

// A mutex whose lock can give up at a deadline. Usable with std::unique_lock. (Not
// std::timed_mutex: its try_lock_until uses pthread_mutex_clocklock, which ThreadSanitizer does
// not intercept, so every use would be reported as a race.)
class TimedMutex {
 public:
  void lock();
  bool try_lock();
  bool try_lock_until(SteadyTime deadline);
  void unlock();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = false;
};

// Holds one limiter slot for a scope.
class InflightSlot {
 public:
  explicit InflightSlot(InflightLimiter* limiter) : limiter_(limiter) {}
  ~InflightSlot() { limiter_->Release(); }
  InflightSlot(const InflightSlot&) = delete;
  InflightSlot& operator=(const InflightSlot&) = delete;

 private:
  InflightLimiter* limiter_;
};

// One Server-Sent Event (WHATWG HTML "server-sent events" parsing rules).
struct SseEvent {
  std::string type;  // the `event:` field; empty means "message"
  std::string data;  // `data:` lines joined with '\n'
  std::string id;    // the last event id in effect when the event was dispatched
};
struct SseStream {
  std::vector<SseEvent> events;  // only events with non-empty data (priming events are not)
  std::string last_event_id;     // the last `id:` seen, empty if none
  std::optional<int64_t> retry_millis;
};
// Parses a complete SSE body. Never fails: unknown fields and comments are ignored, and an
// event cut off by the end of the body is still delivered.
SseStream ParseSse(std::string_view body);

// Keeps only the last `max_lines` lines (each cut to `line_bytes_max`) of a byte stream, e.g.
// a child's stderr. Not thread-safe.
class LineTail {
 public:
  LineTail(size_t max_lines, size_t line_bytes_max)
      : max_lines_(max_lines), line_bytes_max_(line_bytes_max) {}
  void Append(std::string_view bytes);
  // The most recent line: the pending partial line if any, else the last complete one.
  std::string LastLine() const;
  std::vector<std::string> Lines() const;  // complete lines, oldest first

 private:
  void PushLine();
  size_t max_lines_;
  size_t line_bytes_max_;
  std::vector<std::string> lines_;
  std::string partial_;
  bool partial_truncated_ = false;
};

}  // namespace mandate::adapters::mcp::internal
