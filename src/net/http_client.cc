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
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

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
#include "mandate/core/limits.h"
#include "mandate/net/http.h"
#include "net/socket_io.h"

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

// True when an idle pooled connection is still usable: the server has neither closed it nor
// sent anything unsolicited.
bool StillOpen(int fd) {
  char byte;
  ssize_t r = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

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

  // A pooled connection to `key` that is still open, or an invalid Fd.
  Fd TakeIdle(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = idle.find(key);
    while (it != idle.end() && !it->second.empty()) {
      Fd fd = std::move(it->second.back());
      it->second.pop_back();
      if (StillOpen(fd.get())) return fd;
    }
    return Fd();
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
  http::request<http::string_body> req{http::string_to_verb(request.method), url.target, 11};
  if (req.method() == http::verb::unknown) return MakeError(ErrorCode::kBadRequest, "bad HTTP method");
  req.set(http::field::host, key);
  for (const auto& [k, v] : request.headers) req.set(k, v);
  req.body() = request.body;
  req.keep_alive(true);
  req.prepare_payload();

  // The thread's cancel signal (a revoked session's call): it aborts the connection, so the
  // wait below ends at once; the connection is never reused.
  core::CancelSignal* cancel = core::CurrentCancelSignal();
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
    if (fd.get() >= 0 && !IdleConnectionUsable(fd.get())) fd = Fd();  // closed by the server
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
    http::write(stream, req, wec);
    if (wec) {
      if (reused && wec != beast::error::timeout) continue;  // stale pooled connection: nothing delivered
      if (wec == beast::error::timeout) return MakeError(ErrorCode::kUpstreamTimeout, "request to " + key + " timed out");
      // The server may have answered early (e.g. 413) and closed: read that answer below.
    }
    if (!wec) stream.WaitBeforeNextRead();
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
