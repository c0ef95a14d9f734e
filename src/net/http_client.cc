// HttpClient: blocking HTTP/1.1 exchanges run on the calling thread.
//
// Why not an I/O thread: every governed call is made from a worker thread that blocks until
// the answer anyway. Handing the exchange to an I/O thread and back through a future cost two
// context switches and ~70 us of CPU per call (docs/performance.md, "Why"); doing the socket
// I/O here costs one wake-up, when the answer arrives. Sockets are non-blocking and every
// wait is a poll() bounded by the request's deadline, so a slow or silent upstream cannot
// hold the thread past timeout_millis.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>

#include "mandate/core/cancel.h"
#include "mandate/core/forward_gate.h"
#include "mandate/core/limits.h"
#include "mandate/net/http.h"
#include "net/socket_io.h"
#include "net/wire.h"

namespace mandate::net {
namespace {

// RFC 9110 section 9.2.2: a request that can be repeated without a further effect.
bool IsIdempotentMethod(std::string_view method) {
  return method == "GET" || method == "HEAD" || method == "OPTIONS" || method == "PUT" ||
         method == "DELETE" || method == "TRACE";
}

// Whether a pooled keep-alive connection is still open: an idle connection has nothing to
// read, so readability (EOF, an error, or stray bytes) means it must not carry a request.
bool IdleConnectionUsable(int fd) {
  struct pollfd p {};
  p.fd = fd;
  p.events = POLLIN | POLLRDHUP;
  int n;
  do {
    n = ::poll(&p, 1, 0);
  } while (n < 0 && errno == EINTR);
  return n == 0;
}

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using core::ErrorCode;
using core::MakeError;
using internal::DeadlineStream;
using internal::Fd;
using internal::WaitReady;
using Clock = std::chrono::steady_clock;

using core::kIdleConnectionsPerHostMax;  // idle keep-alive connections per host:port

// Resolves and connects within the deadline. Errors: kUpstreamUnavailable, kUpstreamTimeout.
core::Result<Fd> Connect(const ParsedUrl& url, const std::string& key, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  int gai = ::getaddrinfo(url.host.c_str(), url.port.c_str(), &hints, &res);
  if (gai != 0) return MakeError(ErrorCode::kUpstreamUnavailable, "cannot resolve " + url.host + ": " + ::gai_strerror(gai));
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> guard(res, ::freeaddrinfo);
  std::string last = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
    if (fd.get() < 0) {
      last = std::strerror(errno);
      continue;
    }
    int rc = ::connect(fd.get(), ai->ai_addr, ai->ai_addrlen);
    if (rc != 0 && errno != EINPROGRESS) {
      last = std::strerror(errno);
      continue;
    }
    if (rc != 0) {
      int w = WaitReady(fd.get(), POLLOUT, deadline);
      if (w == ETIMEDOUT) return MakeError(ErrorCode::kUpstreamTimeout, "connect to " + key + " timed out");
      int err = w;
      socklen_t len = sizeof(err);
      if (err == 0 && ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
      if (err != 0) {
        last = std::strerror(err);
        continue;
      }
    }
    int one = 1;
    (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
  }
  return MakeError(ErrorCode::kUpstreamUnavailable, "cannot connect to " + key + ": " + last);
}

// This thread's wake-up for a handed-over send that could not finish (an eventfd, made once
// per thread); -1 when none can be made.
int ThreadNotifyFd() {
  thread_local struct Holder {
    int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    ~Holder() {
      if (fd >= 0) ::close(fd);
    }
  } holder;
  return holder.fd;
}

// A request handed over to the thread that decides its call's forward gate (core/forward_gate.h):
// that thread sends it right after the call's decision record is durable, while this one
// already waits for the answer, so the call sleeps once rather than once for the audit log
// and once for the upstream.
struct HandedOver {
  int fd;
  std::string_view wire;
  int notify_fd;
  // Written by the continuation, read by the caller once Withdraw() said it ran.
  std::optional<core::Status> decided;
  size_t sent = 0;
  int err = 0;  // errno of a send that stopped short
  bool notified = false;  // the continuation wrote to notify_fd
};

// The continuation: sends without blocking, at most kGateSendBytesMax; wakes the caller only
// when it must act (the gate closed, or bytes are left: the socket took less, or the request
// is larger); a complete send lets the answer wake it.
void SendHandedOver(HandedOver* h, const core::Status& decided) {
  h->decided = decided;
  if (decided.ok()) {
    const size_t here = std::min(h->wire.size(), core::kGateSendBytesMax);
    while (h->sent < here) {
      ssize_t n = ::send(h->fd, h->wire.data() + h->sent, here - h->sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        h->sent += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      h->err = n < 0 ? errno : EIO;
      break;
    }
    if (h->sent == h->wire.size()) return;
    if (h->err == 0) h->err = EAGAIN;  // the rest is the caller's to send
  }
  const uint64_t one = 1;
  h->notified = true;
  (void)!::write(h->notify_fd, &one, sizeof one);
}

// What waiting for a handed-over send ended with.
enum class HandOverEnd {
  kSent,       // all bytes sent: the answer is to be read
  kPartlySent, // the continuation ran but sent less than all (h.sent, h.err): finish or fail
  kClosed,     // the gate closed: nothing was sent
  kWithdrawn,  // nothing was sent and nothing will be: the deadline passed, the call was
               // cancelled, or the connection became readable (closed by the server)
};

// Hands `wire` over to `gate` and waits until the answer's first bytes arrive, the
// continuation wakes this thread, the connection closes or the deadline passes.
HandOverEnd HandOver(core::ForwardGate& gate, HandedOver& h, Clock::time_point deadline, bool* readable) {
  gate.WhenDecided([&h](const core::Status& decided) { SendHandedOver(&h, decided); });
  *readable = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    pollfd p[2] = {{h.fd, POLLIN, 0}, {h.notify_fd, POLLIN, 0}};
    int n = ::poll(p, 2, static_cast<int>(std::min<int64_t>(left, internal::kPollSliceMillis)));
    if (n < 0 && errno != EINTR) break;
    if (n > 0) {
      *readable = (p[0].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
      break;
    }
  }
  const bool withdrawn = gate.Withdraw();
  // The thread's eventfd must be left at zero for its next request. Only a continuation that
  // ran can have written to it, and Withdraw returned after it finished, so one read drains
  // it, and none is needed when it did not write (the common case: a complete send).
  if (!withdrawn && h.notified) {
    uint64_t drained;
    (void)!::read(h.notify_fd, &drained, sizeof drained);
  }
  if (withdrawn) return HandOverEnd::kWithdrawn;
  if (!h.decided.has_value() || !h.decided->ok()) return HandOverEnd::kClosed;
  return h.sent == h.wire.size() ? HandOverEnd::kSent : HandOverEnd::kPartlySent;
}

}  // namespace

core::Result<ParsedUrl> ParseHttpUrl(std::string_view url) {
  ParsedUrl out;
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return MakeError(ErrorCode::kBadRequest, "URL has no scheme");
  out.scheme = std::string(url.substr(0, scheme_end));
  if (out.scheme != "http") {
    return MakeError(ErrorCode::kBadRequest, "only http:// URLs are supported in this version");
  }
  std::string_view rest = url.substr(scheme_end + 3);
  auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  out.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  if (authority.empty() || authority.find('@') != std::string_view::npos) {
    return MakeError(ErrorCode::kBadRequest, "URL has an empty or userinfo authority");
  }
  if (authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return MakeError(ErrorCode::kBadRequest, "bad IPv6 literal in URL");
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    out.port = after.size() > 1 && after[0] == ':' ? std::string(after.substr(1)) : "80";
  } else {
    auto colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    out.port = colon == std::string_view::npos ? "80" : std::string(authority.substr(colon + 1));
  }
  if (out.host.empty() || out.port.empty() || out.port.size() > 5 ||
      out.port.find_first_not_of("0123456789") != std::string::npos || std::stoi(out.port) > 65535) {
    return MakeError(ErrorCode::kBadRequest, "bad host or port in URL");
  }
  return out;
}

struct HttpClient::Impl {
  std::mutex mu;
  std::map<std::string, std::vector<Fd>, std::less<>> idle;  // guarded by mu

  // A pooled connection to `key` that is still open, or an invalid Fd. The check is a
  // syscall, so it runs outside the lock, which every upstream request of every thread takes.
  Fd TakeIdle(const std::string& key) {
    for (;;) {
      Fd fd;
      {
        std::lock_guard<std::mutex> lock(mu);
        auto it = idle.find(key);
        if (it == idle.end() || it->second.empty()) return Fd();
        fd = std::move(it->second.back());
        it->second.pop_back();
      }
      if (IdleConnectionUsable(fd.get())) return fd;
    }
  }
  void PutIdle(const std::string& key, Fd fd) {
    std::lock_guard<std::mutex> lock(mu);
    auto& pool = idle[key];
    if (pool.size() < kIdleConnectionsPerHostMax) pool.push_back(std::move(fd));
  }
  void DropIdle(const std::string& key) {
    std::vector<Fd> dropped;
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = idle.find(key); it != idle.end()) dropped.swap(it->second);
  }
};

HttpClient::HttpClient() : impl_(std::make_unique<Impl>()) {}
HttpClient::~HttpClient() = default;

core::Result<HttpResponse> HttpClient::Do(const HttpClientRequest& request) {
  MANDATE_ASSIGN_OR_RETURN(ParsedUrl url, ParseHttpUrl(request.url));
  const std::string key = url.host + ":" + url.port;
  const auto deadline = Clock::now() + std::chrono::milliseconds(request.timeout_millis);
  if (http::string_to_verb(request.method) == http::verb::unknown) {
    return MakeError(ErrorCode::kBadRequest, "bad HTTP method");
  }
  // The request's bytes, sent here or handed to the forward gate's sender.
  MANDATE_ASSIGN_OR_RETURN(const std::string wire,
                           internal::RequestBytes(request.method, url.target, key, request.headers,
                                                  request.body));

  // The thread's cancel signal (a revoked session's call): it aborts the connection, so the
  // wait below ends at once; the connection is never reused.
  core::CancelSignal* cancel = core::CurrentCancelSignal();
  // The call's forward gate: no byte of the request leaves before it opens.
  core::ForwardGate* gate = core::CurrentForwardGate();
  auto cancelled = [&] {
    return MakeError(ErrorCode::kUpstreamUnavailable, "request to " + key + " cancelled");
  };
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (cancel && cancel->cancelled()) return cancelled();
    Fd fd;
    bool reused = false;
    // The retry always dials: after one stale pooled connection the others idled as long.
    if (attempt > 0) impl_->DropIdle(key);
    if (attempt == 0) fd = impl_->TakeIdle(key);
    if (fd.get() >= 0) {
      reused = true;
    } else {
      MANDATE_ASSIGN_OR_RETURN(fd, Connect(url, key, deadline));
    }
    const int raw_fd = fd.get();
    std::optional<core::CancelRegistration> abort_on_cancel;
    abort_on_cancel.emplace(cancel, [raw_fd] { ::shutdown(raw_fd, SHUT_RDWR); });
    DeadlineStream stream(fd.get(), deadline);
    beast::error_code wec;
    bool written = false;  // the whole request is sent
    bool answer_waiting = false;  // a poll already saw the answer's first bytes
    const bool undecided = gate != nullptr && !gate->decided().has_value();
    const int notify_fd = undecided ? ThreadNotifyFd() : -1;
    if (undecided && notify_fd >= 0) {
      HandedOver h{raw_fd, wire, notify_fd, std::nullopt, 0, 0, false};
      bool readable = false;
      switch (HandOver(*gate, h, deadline, &readable)) {
        case HandOverEnd::kSent:
          written = true;
          answer_waiting = readable;
          break;
        case HandOverEnd::kPartlySent:
          if (h.err == EAGAIN || h.err == EWOULDBLOCK) {
            asio::write(stream, asio::buffer(wire.data() + h.sent, wire.size() - h.sent), wec);
          } else {
            wec = beast::error_code(h.err, boost::system::system_category());
            if (reused && h.sent == 0) continue;  // stale pooled connection: nothing delivered
          }
          written = !wec;
          break;
        case HandOverEnd::kClosed:
          return MakeError(ErrorCode::kInternal,
                           "request to " + key + " not sent: its forward gate closed: " +
                               (h.decided.has_value() && !h.decided->ok() ? h.decided->error().message : "undecided"));
        case HandOverEnd::kWithdrawn:
          if (cancel && cancel->cancelled()) return cancelled();
          if (readable && reused) continue;  // the server closed the pooled connection: redial
          if (readable) return MakeError(ErrorCode::kUpstreamUnavailable, "connection to " + key + " closed before the request");
          return MakeError(ErrorCode::kUpstreamTimeout,
                           "request to " + key + " timed out before it could be sent (its audit record was not yet durable)");
      }
    } else if (gate != nullptr) {
      // Decided already (or no wake-up could be made): send here once it is open.
      if (core::Status decided = gate->Wait(); !decided.ok()) {
        return MakeError(ErrorCode::kInternal,
                         "request to " + key + " not sent: its forward gate closed: " + decided.error().message);
      }
    }
    if (!written && !wec) asio::write(stream, asio::buffer(wire), wec);
    if (wec) {
      if (reused && wec != beast::error::timeout) continue;  // stale pooled connection: nothing delivered
      if (wec == beast::error::timeout) return MakeError(ErrorCode::kUpstreamTimeout, "request to " + key + " timed out");
      // The server may have answered early (e.g. 413) and closed: read that answer below.
    }
    if (!wec && !answer_waiting) stream.WaitBeforeNextRead();
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.header_limit(static_cast<uint32_t>(core::kHttpHeaderBytesMax));
    parser.body_limit(request.response_body_max ? request.response_body_max : core::kHttpResponseBodyBytesMax);
    beast::error_code rec;
    size_t nr = http::read(stream, buffer, parser, rec);
    if (cancel && cancel->cancelled()) return cancelled();
    if (rec && wec) {
      return MakeError(ErrorCode::kUpstreamUnavailable, "write to " + key + " failed: " + wec.message());
    }
    if (rec) {
      // The server closed an idle keep-alive connection before reading our request: retry
      // once on a fresh connection, but only an idempotent request. A POST (an MCP
      // tools/call) may have been read and acted on before the connection died, and a replay
      // would repeat its side effect under one decision record; it is reported instead (the
      // idle check above already drops connections the server had closed). Any other failure
      // is reported, never retried, because the request may have taken effect.
      if (reused && nr == 0 && IsIdempotentMethod(request.method) &&
          (rec == http::error::end_of_stream || rec == asio::error::connection_reset || rec == asio::error::eof)) {
        continue;
      }
      if (rec == beast::error::timeout) return MakeError(ErrorCode::kUpstreamTimeout, "response from " + key + " timed out");
      if (rec == http::error::body_limit) return MakeError(ErrorCode::kUpstreamError, "response from " + key + " exceeds the size limit");
      return MakeError(ErrorCode::kUpstreamError, "bad response from " + key + ": " + rec.message());
    }
    auto res = parser.release();
    HttpResponse out;
    out.status = static_cast<int>(res.result_int());
    out.headers.reserve(8);
    for (const auto& f : res) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    out.body = std::move(res.body());
    // Reuse only a connection with nothing left over: bytes after the response would be read
    // as the answer to the next request.
    // Unregistered first: once pooled, another request may own the connection.
    abort_on_cancel.reset();
    if (res.keep_alive() && !wec && buffer.size() == 0 && !(cancel && cancel->cancelled())) {
      impl_->PutIdle(key, std::move(fd));
    }
    return out;
  }
  return MakeError(ErrorCode::kUpstreamUnavailable, "connection to " + key + " failed twice");
}

}  // namespace mandate::net
