// The Streamable HTTP MCP upstream (upstream.h): one POST per JSON-RPC message over a shared,
// pooled net::HttpClient; JSON or SSE answers; the session id issued at initialize is echoed.
//
// Threads: callers run their own HTTP exchanges (HttpClient::Do blocks). One background
// thread posts fire-and-forget messages (notifications/cancelled, answers to server requests)
// so a timed-out caller returns at once.
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "adapters/mcp/upstream_common.h"
#include "mandate/adapters/mcp/upstream.h"
#include "mandate/core/limits.h"
#include "mandate/core/thread_name.h"

namespace mandate::adapters::mcp {
namespace {

using core::Error;
using core::ErrorCode;
using core::Json;
using core::MakeError;
using internal::SteadyTime;

constexpr const char* kAcceptBoth = "application/json, text/event-stream";
constexpr size_t kSessionIdBytesMax = 1024;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// The media type of a Content-Type header, lower-cased, without parameters.
std::string MediaType(const net::Headers& headers) {
  const std::string* ct = net::FindHeader(headers, "Content-Type");
  if (ct == nullptr) return {};
  std::string type = Lower(ct->substr(0, ct->find(';')));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  while (!type.empty() && type.front() == ' ') type.erase(type.begin());
  return type;
}

bool IsHeaderNameToken(std::string_view s) {
  if (s.empty()) return false;
  for (unsigned char c : s) {
    if (std::isalnum(c) == 0 &&
        std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

bool IsHeaderValue(std::string_view s) {
  return std::none_of(s.begin(), s.end(),
                      [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

// Spec: a session id contains only visible ASCII (0x21 to 0x7E).
bool IsVisibleAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x21 && c <= 0x7e; });
}

class HttpUpstream final : public internal::JsonRpcUpstream {
 public:
  explicit HttpUpstream(HttpUpstreamOptions options)
      : options_(std::move(options)), limiter_(options_.max_inflight, core::kUpstreamQueueMax) {}

  ~HttpUpstream() override { Stop(); }

  // Starts the notifier and tries the initialize handshake (see StartHttpUpstream).
  core::Status Init() {
    notifier_ = std::thread([this] {
      core::NameThisThread("mcp-http-notify");
      NotifyLoop();
    });
    auto session = EnsureSession(internal::DeadlineAfterMillis(options_.init_timeout_millis));
    if (!session.ok() && session.error().code != ErrorCode::kUpstreamUnavailable &&
        session.error().code != ErrorCode::kUpstreamTimeout) {
      Stop();
      return std::move(session).error();
    }
    // Down or slow: the first call initializes (EnsureSession), so Start does not fail.
    return core::OkStatus();
  }

  const std::string& name() const override { return options_.name; }
  // Every request goes through net::HttpClient::Do on the calling thread, which holds it at the
  // thread's forward gate.
  bool HonoursForwardGate() const override { return true; }

  void Stop() override {
    std::lock_guard stop_lock(stop_mu_);
    if (stopped_.exchange(true)) return;
    limiter_.Stop();
    {
      std::lock_guard lock(notify_mu_);
      notify_stop_ = true;
    }
    notify_cv_.notify_all();
    if (notifier_.joinable()) notifier_.join();
    std::optional<Session> session;
    {
      std::lock_guard lock(mu_);
      session = session_;
    }
    if (session.has_value() && !session->id.empty()) {
      // The spec's polite goodbye: the server may free the session at once.
      net::HttpClientRequest req;
      req.method = "DELETE";
      req.url = options_.url;
      req.headers = Headers(&*session, "application/json");
      req.headers.erase(req.headers.begin());  // no Content-Type: there is no body
      req.timeout_millis = core::kUpstreamNotifyTimeoutMillis;
      (void)options_.client->Do(req);
    }
  }

 private:
  struct Session {
    std::string id;       // empty when the server issued none
    std::string version;  // negotiated protocol version
    uint64_t generation = 0;
  };
  struct Answer {
    Json message;  // the response to our request
    net::Headers headers;
  };

  net::Headers Headers(const Session* session, const char* accept) const {
    net::Headers h;
    h.emplace_back("Content-Type", "application/json");
    h.emplace_back("Accept", accept);
    if (session != nullptr) {
      if (!session->version.empty()) h.emplace_back("MCP-Protocol-Version", session->version);
      if (!session->id.empty()) h.emplace_back("Mcp-Session-Id", session->id);
    }
    if (!options_.credential_value.empty()) {
      h.emplace_back(options_.credential_header, options_.credential_value);
    }
    return h;
  }

  Error Prefixed(ErrorCode code, const std::string& text) const {
    return MakeError(code, "upstream " + name() + ": " + text);
  }

  // One request with a slot, an initialized session and one retry after a lost session.
  core::Result<Json> Request(std::string_view method, Json params, SteadyTime deadline,
                             int timeout_millis, const std::string& what, const std::string& txn_token) override {
    if (stopped_) return Prefixed(ErrorCode::kUpstreamUnavailable, "stopped");
    MANDATE_RETURN_IF_ERROR(limiter_.Acquire(name(), deadline));
    internal::InflightSlot slot(&limiter_);
    MANDATE_ASSIGN_OR_RETURN(Session session, EnsureSession(deadline));
    for (int attempt = 0;; ++attempt) {
      int64_t id = next_id_.fetch_add(1);
      bool session_gone = false;
      auto answer = Exchange(&session, internal::MakeRequest(id, method, params), id, deadline,
                             &session_gone, txn_token);
      if (session_gone && attempt == 0) {
        // HTTP 404 for our session id: the server forgot it (restart, expiry). The request was
        // not processed, so a fresh session and one retry are safe.
        MANDATE_ASSIGN_OR_RETURN(session, Reinitialize(session.generation, deadline));
        continue;
      }
      if (!answer.ok()) {
        if (answer.error().code == ErrorCode::kUpstreamTimeout) {
          Enqueue(session, internal::MakeCancelled(
                               id, "timed out after " + std::to_string(timeout_millis) + " ms"));
          return Prefixed(ErrorCode::kUpstreamTimeout,
                          what + " timed out after " + std::to_string(timeout_millis) + " ms");
        }
        return std::move(answer).error();
      }
      return internal::ResultOfResponse(name(), method, std::move(answer->message));
    }
  }

  core::Result<Session> EnsureSession(SteadyTime deadline) {
    {
      std::lock_guard lock(mu_);
      if (session_.has_value()) return *session_;
    }
    std::unique_lock init_lock(init_mu_, std::defer_lock);
    if (!init_lock.try_lock_until(deadline)) {
      return Prefixed(ErrorCode::kUpstreamTimeout, "timed out waiting for initialization");
    }
    {
      std::lock_guard lock(mu_);
      if (session_.has_value()) return *session_;
    }
    return InitializeLocked(deadline);
  }

  core::Result<Session> Reinitialize(uint64_t lost_generation, SteadyTime deadline) {
    std::unique_lock init_lock(init_mu_, std::defer_lock);
    if (!init_lock.try_lock_until(deadline)) {
      return Prefixed(ErrorCode::kUpstreamTimeout, "timed out waiting for re-initialization");
    }
    {
      std::lock_guard lock(mu_);
      // Another caller already replaced the lost session: use its new one.
      if (session_.has_value() && session_->generation != lost_generation) return *session_;
      session_.reset();
    }
    return InitializeLocked(deadline);
  }

  // Runs initialize + notifications/initialized. Requires init_mu_.
  core::Result<Session> InitializeLocked(SteadyTime deadline) {
    if (stopped_) return Prefixed(ErrorCode::kUpstreamUnavailable, "stopped");
    deadline = std::min(deadline, internal::DeadlineAfterMillis(options_.init_timeout_millis));
    int64_t id = next_id_.fetch_add(1);
    bool unused = false;
    MANDATE_ASSIGN_OR_RETURN(
        Answer answer,
        Exchange(nullptr, internal::MakeRequest(id, "initialize", internal::InitializeParams()), id,
                 deadline, &unused));
    MANDATE_ASSIGN_OR_RETURN(
        Json result, internal::ResultOfResponse(name(), "initialize", std::move(answer.message)));
    Session session;
    MANDATE_ASSIGN_OR_RETURN(session.version, internal::CheckInitializeResult(name(), result));
    if (const std::string* sid = net::FindHeader(answer.headers, "Mcp-Session-Id")) {
      if (sid->empty() || sid->size() > kSessionIdBytesMax || !IsVisibleAscii(*sid)) {
        return Prefixed(ErrorCode::kUpstreamError,
                        "initialize returned a malformed Mcp-Session-Id");
      }
      session.id = *sid;
    }
    session.generation = ++generations_;
    MANDATE_RETURN_IF_ERROR(PostWithoutAnswer(
        session, internal::MakeNotification("notifications/initialized", Json()), deadline));
    cache_.Invalidate();  // a new session may see other tools
    std::lock_guard lock(mu_);
    session_ = session;
    return session;
  }

  // Maps a non-2xx status. Sets *session_gone for 404 on a request that carried a session id.
  core::Status CheckStatus(const Session* session, const net::HttpResponse& res,
                           bool* session_gone) const {
    int s = res.status;
    if (s >= 200 && s < 300) return core::OkStatus();
    std::string status = "HTTP " + std::to_string(s);
    if (s == 404 && session != nullptr && !session->id.empty()) {
      *session_gone = true;
      return Prefixed(ErrorCode::kUpstreamError, "the MCP session expired (" + status + ")");
    }
    if (s == 401 || s == 403) {
      return Prefixed(ErrorCode::kUpstreamError,
                      "the server refused Mandate's credential (" + status + ")");
    }
    if (s == 408 || s == 429 || s >= 500) {
      return Prefixed(ErrorCode::kUpstreamUnavailable, "the server answered " + status);
    }
    // A JSON-RPC error in the body (e.g. 400 for a bad request) says more than the status.
    if (MediaType(res.headers) == "application/json") {
      if (auto body = Json::Parse(res.body); body.ok() && body->FindObject("error") != nullptr) {
        auto r = internal::ResultOfResponse(name(), "request", std::move(*body));
        if (!r.ok())
          return MakeError(ErrorCode::kUpstreamError, r.error().message + " (" + status + ")");
      }
    }
    return Prefixed(ErrorCode::kUpstreamError, "the server answered " + status);
  }

  core::Result<net::HttpResponse> Send(net::HttpClientRequest req, SteadyTime deadline) {
    int64_t left = internal::MillisUntil(deadline);
    if (left == 0) return Prefixed(ErrorCode::kUpstreamTimeout, "no time left for the request");
    req.url = options_.url;
    req.timeout_millis = static_cast<int>(left);
    auto res = options_.client->Do(req);
    if (!res.ok()) {
      ErrorCode code = res.error().code;
      if (code != ErrorCode::kUpstreamUnavailable && code != ErrorCode::kUpstreamTimeout) {
        code = ErrorCode::kUpstreamError;
      }
      return Prefixed(code, res.error().message);
    }
    return res;
  }

  // POSTs one request and finds the response with `id` in the JSON or SSE answer, resuming an
  // SSE stream that ended early. `session` is null for initialize.
  core::Result<Answer> Exchange(const Session* session, const Json& request, int64_t id,
                                SteadyTime deadline, bool* session_gone, const std::string& txn_token = {}) {
    net::HttpClientRequest req;
    req.method = "POST";
    req.headers = Headers(session, kAcceptBoth);
    if (!txn_token.empty()) req.headers.emplace_back("Txn-Token", txn_token);
    req.body = request.Dump();
    MANDATE_ASSIGN_OR_RETURN(net::HttpResponse res, Send(std::move(req), deadline));
    MANDATE_RETURN_IF_ERROR(CheckStatus(session, res, session_gone));
    if (res.status == 202) {
      return Prefixed(ErrorCode::kUpstreamError,
                      "the server accepted the request without answering it");
    }
    std::string type = MediaType(res.headers);
    if (type == "application/json") {
      auto body = Json::Parse(res.body);
      if (!body.ok()) return Prefixed(ErrorCode::kUpstreamError, "the answer is not valid JSON");
      std::optional<Json> found = Scan(session, std::move(*body), id);
      if (!found.has_value()) {
        return Prefixed(ErrorCode::kUpstreamError,
                        "the JSON answer does not answer request " + std::to_string(id));
      }
      return Answer{std::move(*found), std::move(res.headers)};
    }
    if (type != "text/event-stream") {
      return Prefixed(ErrorCode::kUpstreamError, "unexpected Content-Type \"" + type + "\"");
    }
    net::Headers first_headers = std::move(res.headers);
    std::string last_event_id;
    std::string body = std::move(res.body);
    for (size_t resumes = 0;; ++resumes) {
      internal::SseStream stream = internal::ParseSse(body);
      for (internal::SseEvent& event : stream.events) {
        if (!event.type.empty() && event.type != "message") continue;
        auto message = Json::Parse(event.data);
        if (!message.ok()) continue;  // not JSON-RPC: ignore the event
        if (std::optional<Json> found = Scan(session, std::move(*message), id)) {
          return Answer{std::move(*found), std::move(first_headers)};
        }
      }
      if (!stream.last_event_id.empty()) last_event_id = stream.last_event_id;
      if (last_event_id.empty() || resumes == core::kSseResumesMax) {
        return Prefixed(ErrorCode::kUpstreamError,
                        "the event stream ended without answering request " + std::to_string(id));
      }
      // The server closed the stream early (2025-11-25 lets it, after a priming event id):
      // wait the retry interval it asked for, then resume with GET + Last-Event-ID.
      if (stream.retry_millis.has_value()) {
        int64_t wait = std::min(*stream.retry_millis, internal::MillisUntil(deadline));
        std::this_thread::sleep_for(std::chrono::milliseconds(wait));
      }
      net::HttpClientRequest get;
      get.method = "GET";
      get.headers = Headers(session, "text/event-stream");
      get.headers.erase(get.headers.begin());  // no Content-Type: there is no body
      get.headers.emplace_back("Last-Event-ID", last_event_id);
      MANDATE_ASSIGN_OR_RETURN(net::HttpResponse resumed, Send(std::move(get), deadline));
      bool unused = false;
      MANDATE_RETURN_IF_ERROR(CheckStatus(session, resumed, &unused));
      if (MediaType(resumed.headers) != "text/event-stream") {
        return Prefixed(ErrorCode::kUpstreamError, "resuming the event stream did not return one");
      }
      body = std::move(resumed.body);
    }
  }

  // Looks through one received JSON-RPC message (or batch) for the response to `id`; handles
  // everything else: server requests are answered, list_changed drops the cache.
  std::optional<Json> Scan(const Session* session, Json message, int64_t id) {
    std::optional<Json> found;
    auto one = [&](Json m) {
      switch (internal::Classify(m)) {
        case internal::MessageKind::kResponse:
          if (!found.has_value() && internal::ResponseId(m) == id) found = std::move(m);
          return;
        case internal::MessageKind::kRequest:
          if (session != nullptr) Enqueue(*session, internal::AnswerServerRequest(m));
          return;
        case internal::MessageKind::kNotification:
          if (m.GetString("method") == "notifications/tools/list_changed") cache_.Invalidate();
          return;
        case internal::MessageKind::kInvalid:
          return;
      }
    };
    if (message.is_array()) {
      for (Json& m : message.as_array()) one(std::move(m));
    } else {
      one(std::move(message));
    }
    return found;
  }

  // POSTs a notification or a response; the server answers 202 Accepted (any 2xx is fine).
  core::Status PostWithoutAnswer(const Session& session, const Json& message, SteadyTime deadline) {
    net::HttpClientRequest req;
    req.method = "POST";
    req.headers = Headers(&session, kAcceptBoth);
    req.body = message.Dump();
    MANDATE_ASSIGN_OR_RETURN(net::HttpResponse res, Send(std::move(req), deadline));
    bool unused = false;
    return CheckStatus(&session, res, &unused);
  }

  void Enqueue(const Session& session, Json message) {
    if (message.is_null()) return;
    std::lock_guard lock(notify_mu_);
    // Bounded: beyond the limit a cancellation is dropped (the call already failed) rather
    // than letting a flood of them grow memory.
    if (notify_stop_ || notify_queue_.size() >= core::kUpstreamNotifyQueueMax) return;
    notify_queue_.emplace_back(session, std::move(message));
    notify_cv_.notify_one();
  }

  void NotifyLoop() {
    for (;;) {
      std::unique_lock lock(notify_mu_);
      notify_cv_.wait(lock, [&] { return notify_stop_ || !notify_queue_.empty(); });
      if (notify_stop_) return;
      // Moved out under the lock (constructed, not default-constructed then assigned: clang
      // does not see the nested Session as default-constructible inside its class).
      std::pair<Session, Json> item = std::move(notify_queue_.front());
      notify_queue_.pop_front();
      lock.unlock();
      (void)PostWithoutAnswer(item.first, item.second,
                              internal::DeadlineAfterMillis(core::kUpstreamNotifyTimeoutMillis));
    }
  }

  const HttpUpstreamOptions options_;
  internal::InflightLimiter limiter_;
  std::atomic<int64_t> next_id_{1};
  std::atomic<bool> stopped_{false};
  std::mutex stop_mu_;

  internal::TimedMutex init_mu_;  // one initialization at a time
  uint64_t generations_ = 0;      // guarded by init_mu_
  std::mutex mu_;
  std::optional<Session> session_;  // guarded by mu_; set once initialized

  std::mutex notify_mu_;
  std::condition_variable notify_cv_;
  std::deque<std::pair<Session, Json>> notify_queue_;  // guarded by notify_mu_
  bool notify_stop_ = false;                           // guarded by notify_mu_
  std::thread notifier_;
};

}  // namespace

core::Result<std::unique_ptr<McpUpstream>> StartHttpUpstream(HttpUpstreamOptions options) {
  auto bad = [&](const std::string& why) {
    return MakeError(ErrorCode::kBadRequest, "http upstream \"" + options.name + "\": " + why);
  };
  if (options.name.empty()) return bad("the name is empty");
  if (options.client == nullptr) return bad("no HTTP client");
  if (auto url = net::ParseHttpUrl(options.url); !url.ok()) return bad(url.error().message);
  if (options.max_inflight < 1 || options.max_inflight > core::kUpstreamInflightMax) {
    return bad("max_inflight must be between 1 and " + std::to_string(core::kUpstreamInflightMax));
  }
  if (options.init_timeout_millis <= 0) return bad("init_timeout_millis must be positive");
  if (!options.credential_value.empty() &&
      (!IsHeaderNameToken(options.credential_header) || !IsHeaderValue(options.credential_value))) {
    return bad("the credential header name or value is not a valid HTTP field");
  }
  auto upstream = std::make_unique<HttpUpstream>(std::move(options));
  MANDATE_RETURN_IF_ERROR(upstream->Init());
  return std::unique_ptr<McpUpstream>(std::move(upstream));
}

}  // namespace mandate::adapters::mcp
