#include "adapters/mcp/upstream_common.h"

#include <algorithm>
#include <set>
#include <utility>

#include "mandate/core/limits.h"

namespace mandate::adapters::mcp::internal {
namespace {

using core::ErrorCode;
using core::Json;
using core::MakeError;

// Bytes of an upstream's own error text quoted in our error messages.
constexpr size_t kQuotedMessageBytesMax = 1024;

std::string Quote(std::string_view text) {
  if (text.size() <= kQuotedMessageBytesMax) return std::string(text);
  return std::string(text.substr(0, kQuotedMessageBytesMax)) + "...";
}

bool IsSupportedVersion(std::string_view v) {
  return v == kMcpProtocolVersion || v == "2025-06-18" || v == "2025-03-26" || v == "2024-11-05";
}

}  // namespace

SteadyTime DeadlineAfterMillis(int64_t millis) {
  return std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max<int64_t>(millis, 0));
}

int64_t MillisUntil(SteadyTime deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - std::chrono::steady_clock::now())
                  .count();
  return std::max<int64_t>(left, 0);
}

Json MakeRequest(int64_t id, std::string_view method, Json params) {
  Json m = Json::MakeObject();
  m.Set("jsonrpc", "2.0");
  m.Set("id", id);
  m.Set("method", method);
  if (!params.is_null()) m.Set("params", std::move(params));
  return m;
}

Json MakeNotification(std::string_view method, Json params) {
  Json m = Json::MakeObject();
  m.Set("jsonrpc", "2.0");
  m.Set("method", method);
  if (!params.is_null()) m.Set("params", std::move(params));
  return m;
}

Json MakeCancelled(int64_t request_id, std::string reason) {
  Json params = Json::MakeObject();
  params.Set("requestId", request_id);
  params.Set("reason", std::move(reason));
  return MakeNotification("notifications/cancelled", std::move(params));
}

Json InitializeParams() {
  Json client_info = Json::MakeObject();
  client_info.Set("name", "mandate");
  client_info.Set("version", kClientVersion);
  Json params = Json::MakeObject();
  params.Set("protocolVersion", kMcpProtocolVersion);
  // No client capabilities: Mandate serves no roots, sampling or elicitation to upstreams.
  params.Set("capabilities", Json::MakeObject());
  params.Set("clientInfo", std::move(client_info));
  return params;
}

core::Result<std::string> CheckInitializeResult(const std::string& upstream, const Json& result) {
  const std::string* version = result.FindString("protocolVersion");
  if (version == nullptr) {
    return MakeError(ErrorCode::kUpstreamError,
                     "upstream " + upstream + ": initialize result has no protocolVersion");
  }
  if (!IsSupportedVersion(*version)) {
    return MakeError(
        ErrorCode::kUpstreamError,
        "upstream " + upstream + ": unsupported MCP protocol version \"" + Quote(*version) + "\"");
  }
  return *version;
}

MessageKind Classify(const Json& message) {
  if (!message.is_object()) return MessageKind::kInvalid;
  const Json* method = message.Find("method");
  const Json* id = message.Find("id");
  if (method != nullptr) {
    if (!method->is_string()) return MessageKind::kInvalid;
    if (id == nullptr) return MessageKind::kNotification;
    if (id->is_int() || id->is_string()) return MessageKind::kRequest;
    return MessageKind::kInvalid;
  }
  if (id != nullptr && (message.Find("result") != nullptr || message.Find("error") != nullptr)) {
    return MessageKind::kResponse;
  }
  return MessageKind::kInvalid;
}

std::optional<int64_t> ResponseId(const Json& message) {
  const Json* id = message.Find("id");
  if (id == nullptr || !id->is_int()) return std::nullopt;
  return id->as_int();
}

Json AnswerServerRequest(const Json& request) {
  const Json* id = request.Find("id");
  if (id == nullptr) return Json();
  Json answer = Json::MakeObject();
  answer.Set("jsonrpc", "2.0");
  answer.Set("id", *id);
  if (request.GetString("method") == "ping") {
    answer.Set("result", Json::MakeObject());
  } else {
    Json error = Json::MakeObject();
    error.Set("code", kJsonRpcMethodNotFound);
    error.Set("message", "Method not found: mandate does not serve this to upstreams");
    answer.Set("error", std::move(error));
  }
  return answer;
}

core::Result<Json> ResultOfResponse(const std::string& upstream, std::string_view method,
                                    Json response, bool require_object) {
  if (const Json* error = response.Find("error")) {
    std::string text =
        "upstream " + upstream + ": " + std::string(method) + " failed with JSON-RPC error ";
    if (error->is_object()) {
      const Json* code = error->Find("code");
      text += code != nullptr && code->is_int() ? std::to_string(code->as_int()) : "(no code)";
      text += ": " + Quote(error->GetString("message", "(no message)"));
    } else {
      text += "(malformed error member)";
    }
    return MakeError(ErrorCode::kUpstreamError, std::move(text));
  }
  Json* result = response.Find("result");
  if (result == nullptr || (require_object && !result->is_object())) {
    return MakeError(ErrorCode::kUpstreamError, "upstream " + upstream + ": malformed " +
                                                    std::string(method) +
                                                    " response (no result object)");
  }
  return std::move(*result);
}

int EffectiveTimeoutMillis(int timeout_millis) {
  if (timeout_millis <= 0) return core::kUpstreamTimeoutMillisDefault;
  return std::min(timeout_millis, core::kUpstreamTimeoutMillisMax);
}

core::Result<Json> CallToolParams(const std::string& tool, const Json& arguments) {
  if (!arguments.is_null() && !arguments.is_object()) {
    return MakeError(ErrorCode::kBadRequest, "tools/call arguments must be a JSON object");
  }
  Json params = Json::MakeObject();
  params.Set("name", tool);
  params.Set("arguments", arguments.is_null() ? Json::MakeObject() : arguments);
  return params;
}

std::optional<core::ActionClass> ClassFromAnnotations(const Json& tool) {
  const Json* annotations = tool.FindObject("annotations");
  if (annotations == nullptr) return std::nullopt;
  const Json* read_only = annotations->Find("readOnlyHint");
  if (read_only != nullptr && read_only->is_bool() && read_only->as_bool()) {
    return core::ActionClass::kRead;
  }
  const Json* destructive = annotations->Find("destructiveHint");
  if (destructive != nullptr && destructive->is_bool() && !destructive->as_bool()) {
    return core::ActionClass::kWrite;
  }
  return std::nullopt;
}

core::Result<std::vector<ToolInfo>> ListAllTools(
    const std::string& upstream,
    const std::function<core::Result<Json>(const Json& params)>& request) {
  auto malformed = [&](const std::string& why) {
    return MakeError(ErrorCode::kUpstreamError,
                     "upstream " + upstream + ": malformed tools/list answer: " + why);
  };
  std::vector<ToolInfo> tools;
  std::set<std::string, std::less<>> names;
  std::set<std::string, std::less<>> cursors;
  Json params = Json::MakeObject();
  for (size_t page = 0; page < core::kUpstreamToolsPagesMax; ++page) {
    MANDATE_ASSIGN_OR_RETURN(Json result, request(params));
    Json* list = result.Find("tools");
    if (list == nullptr || !list->is_array()) return malformed("no tools array");
    for (Json& tool : list->as_array()) {
      if (!tool.is_object()) return malformed("a tool is not an object");
      const std::string* name = tool.FindString("name");
      if (name == nullptr || name->empty() || name->size() > core::kNameBytesMax) {
        return malformed("a tool has no name, or a name over " +
                         std::to_string(core::kNameBytesMax) + " bytes");
      }
      if (!names.insert(*name).second)
        return malformed("tool \"" + Quote(*name) + "\" is listed twice");
      if (tools.size() == core::kToolsPerUpstreamMax) {
        return malformed("more than " + std::to_string(core::kToolsPerUpstreamMax) + " tools");
      }
      ToolInfo info;
      info.name = *name;
      info.annotated_class = ClassFromAnnotations(tool);
      info.definition = std::move(tool);
      tools.push_back(std::move(info));
    }
    const Json* next = result.Find("nextCursor");
    // An absent, null or empty cursor ends the listing (some servers send "" on the last page).
    if (next == nullptr || next->is_null() || (next->is_string() && next->as_string().empty())) {
      return tools;
    }
    if (!next->is_string()) return malformed("nextCursor is not a string");
    if (!cursors.insert(next->as_string()).second) return malformed("nextCursor repeats");
    params = Json::MakeObject();
    params.Set("cursor", next->as_string());
  }
  return malformed("more than " + std::to_string(core::kUpstreamToolsPagesMax) + " pages");
}

std::optional<std::vector<ToolInfo>> ToolCache::Get(uint64_t* generation) const {
  std::lock_guard lock(mu_);
  *generation = generation_;
  return tools_;
}

void ToolCache::Put(uint64_t generation, std::vector<ToolInfo> tools) {
  std::lock_guard lock(mu_);
  if (generation == generation_) tools_ = std::move(tools);
}

void ToolCache::Invalidate() {
  std::lock_guard lock(mu_);
  ++generation_;
  tools_.reset();
}

core::Status InflightLimiter::Acquire(const std::string& upstream, SteadyTime deadline) {
  std::unique_lock lock(mu_);
  auto stopped_error = [&] {
    return MakeError(ErrorCode::kUpstreamUnavailable, "upstream " + upstream + " is stopped");
  };
  if (stopped_) return stopped_error();
  if (inflight_ < max_inflight_ && waiting_ == 0) {
    ++inflight_;
    return core::OkStatus();
  }
  if (waiting_ >= queue_max_) {
    return MakeError(ErrorCode::kUpstreamUnavailable,
                     "upstream " + upstream + " is overloaded: " + std::to_string(waiting_) +
                         " calls already wait for one of " + std::to_string(max_inflight_) +
                         " in-flight slots");
  }
  ++waiting_;
  bool got = cv_.wait_until(lock, deadline, [&] { return stopped_ || inflight_ < max_inflight_; });
  --waiting_;
  if (stopped_) {
    cv_.notify_all();
    return stopped_error();
  }
  if (!got) {
    return MakeError(ErrorCode::kUpstreamTimeout,
                     "upstream " + upstream + ": timed out waiting for an in-flight slot");
  }
  ++inflight_;
  return core::OkStatus();
}

void InflightLimiter::Release() {
  {
    std::lock_guard lock(mu_);
    --inflight_;
  }
  cv_.notify_one();
}

void InflightLimiter::Stop() {
  {
    std::lock_guard lock(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
}

void TimedMutex::lock() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !held_; });
  held_ = true;
}

bool TimedMutex::try_lock() {
  std::lock_guard lock(mu_);
  if (held_) return false;
  held_ = true;
  return true;
}

bool TimedMutex::try_lock_until(SteadyTime deadline) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_until(lock, deadline, [&] { return !held_; })) return false;
  held_ = true;
  return true;
}

void TimedMutex::unlock() {
  {
    std::lock_guard lock(mu_);
    held_ = false;
  }
  cv_.notify_one();
}

SseStream ParseSse(std::string_view body) {
  SseStream out;
  std::string data;
  bool has_data = false;
  std::string type;
  auto dispatch = [&] {
    if (has_data) {
      if (!data.empty() && data.back() == '\n') data.pop_back();
      if (!data.empty()) out.events.push_back(SseEvent{type, data, out.last_event_id});
    }
    data.clear();
    has_data = false;
    type.clear();
  };
  size_t pos = 0;
  while (pos < body.size()) {
    size_t end = body.find_first_of("\r\n", pos);
    if (end == std::string_view::npos) end = body.size();
    std::string_view line = body.substr(pos, end - pos);
    pos = end;
    if (pos < body.size()) {
      pos += (body[pos] == '\r' && pos + 1 < body.size() && body[pos + 1] == '\n') ? 2 : 1;
    }
    if (line.empty()) {
      dispatch();
      continue;
    }
    if (line.front() == ':') continue;  // a comment
    size_t colon = line.find(':');
    std::string_view field = line.substr(0, colon);
    std::string_view value;
    if (colon != std::string_view::npos) {
      value = line.substr(colon + 1);
      if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    }
    if (field == "data") {
      data.append(value);
      data.push_back('\n');
      has_data = true;
    } else if (field == "event") {
      type = std::string(value);
    } else if (field == "id") {
      if (value.find('\0') == std::string_view::npos) out.last_event_id = std::string(value);
    } else if (field == "retry") {
      if (!value.empty() && value.size() <= 9 &&
          value.find_first_not_of("0123456789") == std::string_view::npos) {
        out.retry_millis = std::stoll(std::string(value));
      }
    }
  }
  dispatch();  // lenient: an event cut off by the end of the body still counts
  return out;
}

void LineTail::Append(std::string_view bytes) {
  for (char c : bytes) {
    if (c == '\n') {
      PushLine();
      continue;
    }
    if (partial_.size() < line_bytes_max_) {
      partial_.push_back(c);
    } else {
      partial_truncated_ = true;
    }
  }
}

void LineTail::PushLine() {
  if (!partial_.empty() && partial_.back() == '\r') partial_.pop_back();
  if (partial_truncated_) partial_ += "...";
  if (!partial_.empty()) {
    if (lines_.size() == max_lines_) lines_.erase(lines_.begin());
    lines_.push_back(std::move(partial_));
  }
  partial_.clear();
  partial_truncated_ = false;
}

std::string LineTail::LastLine() const {
  if (!partial_.empty()) return partial_;
  return lines_.empty() ? std::string() : lines_.back();
}

std::vector<std::string> LineTail::Lines() const { return lines_; }

core::Result<std::vector<ToolInfo>> JsonRpcUpstream::ListTools() {
  uint64_t generation = 0;
  if (auto cached = cache_.Get(&generation)) return *std::move(cached);
  SteadyTime deadline = DeadlineAfterMillis(core::kUpstreamTimeoutMillisDefault);
  auto tools = ListAllTools(name(), [&](const core::Json& params) {
    return Request("tools/list", params, deadline, core::kUpstreamTimeoutMillisDefault, "tools/list", std::string());
  });
  if (tools.ok()) cache_.Put(generation, *tools);
  return tools;
}

core::Result<core::Json> JsonRpcUpstream::CallTool(const std::string& tool, const core::Json& arguments,
                                                   int timeout_millis, const std::string& txn_token) {
  MANDATE_ASSIGN_OR_RETURN(core::Json params, CallToolParams(tool, arguments));
  int timeout = EffectiveTimeoutMillis(timeout_millis);
  return Request("tools/call", std::move(params), DeadlineAfterMillis(timeout), timeout, "tools/call " + tool,
                 txn_token);
}

}  // namespace mandate::adapters::mcp::internal
