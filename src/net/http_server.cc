#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <unordered_set>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <string>
#include <thread>

#include "mandate/core/check.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"
#include "mandate/core/thread_name.h"
#include "mandate/net/http.h"
#include "net/socket_io.h"
#include "net/wire.h"

namespace mandate::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using core::ErrorCode;
using core::MakeError;

std::string ErrorBody(std::string_view code, std::string_view message) {
  std::string out = R"({"error":{"code":")";
  out.append(code);
  out.append(R"(","message":)");
  core::AppendJsonString(message, &out);
  out.append("}}");
  return out;
}

// Thread per connection: each accepted connection gets its own thread, which reads a request,
// runs the handler inline and writes the answer itself. A governed call then costs no thread
// hand-off in the server. Until 4bf475b this was a Beast event loop handing each request to a
// worker pool and the answer back (two context switches per call; the pipeline blocks, so a
// handler always needed a thread of its own anyway): docs/performance.md has the comparison.
// Idle keep-alive connections hold a sleeping thread each, bounded by kConnectionsMax per
// listener.

// The answer of one request, written straight to the socket by whichever thread answers.
// Shared between the connection thread (which waits for it to be complete) and the sink.
class DirectResponse {
 public:
  DirectResponse(int fd, bool keep_alive, int write_timeout_seconds)
      : fd_(fd), keep_alive_(keep_alive), write_timeout_(write_timeout_seconds) {}

  bool Send(HttpResponse r) {
    std::lock_guard<std::mutex> lock(mu_);
    if (started_) return false;
    started_ = true;
    return SendLocked(std::move(r));
  }
  bool StartStream(int status, const Headers& headers) {
    std::lock_guard<std::mutex> lock(mu_);
    if (started_) return false;
    started_ = true;
    auto head = internal::ResponseHead(status, headers, std::nullopt, keep_alive_);
    if (!head.ok()) {
      // Never sent as it is: the client gets the error instead of the stream.
      SendLocked(HttpResponse::Error(core::ErrorCode::kInternal, head.error().message));
      return false;
    }
    beast::error_code ec;
    internal::DeadlineStream stream(fd_, Deadline());
    asio::write(stream, asio::buffer(*head), ec);
    if (ec) return Finish(false);
    return true;
  }
  bool Write(std::string_view chunk) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!started_ || done_ || chunk.empty()) return false;
    beast::error_code ec;
    internal::DeadlineStream stream(fd_, Deadline());
    asio::write(stream, http::make_chunk(asio::buffer(chunk.data(), chunk.size())), ec);
    if (ec) return Finish(false);
    return true;
  }
  void End() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!started_ || done_) return;
    beast::error_code ec;
    internal::DeadlineStream stream(fd_, Deadline());
    asio::write(stream, http::make_chunk_last(), ec);
    Finish(!ec);
  }
  // Called when the handler's sink is released: a handler that forgot to answer must not
  // leave the client hanging.
  void Abandon() {
    bool started;
    {
      std::lock_guard<std::mutex> lock(mu_);
      started = started_;
    }
    if (!started) {
      Send(HttpResponse::Error(core::ErrorCode::kInternal, "no response"));
    } else {
      End();
    }
  }
  // Blocks until the answer is complete; returns whether the connection may carry another.
  bool Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return done_; });
    return ok_ && keep_alive_;
  }

 private:
  // Needs mu_ held.
  // Writes a complete answer, head and body in one sendmsg (DeadlineStream gathers the two
  // buffers), and finishes. A malformed head is never sent as it is: the client gets the
  // error instead.
  bool SendLocked(HttpResponse r) {
    auto head = internal::ResponseHead(r.status, r.headers, r.body.size(), keep_alive_);
    if (!head.ok()) {
      r = HttpResponse::Error(core::ErrorCode::kInternal, head.error().message);
      head = internal::ResponseHead(r.status, r.headers, r.body.size(), keep_alive_);
      MANDATE_CHECK(head.ok());
    }
    beast::error_code ec;
    internal::DeadlineStream stream(fd_, Deadline());
    const std::array<asio::const_buffer, 2> wire{asio::buffer(*head), asio::buffer(r.body)};
    asio::write(stream, wire, ec);
    return Finish(!ec);
  }
  bool Finish(bool ok) {
    done_ = true;
    ok_ = ok;
    cv_.notify_all();
    return ok;
  }
  internal::SteadyClock::time_point Deadline() const {
    return internal::SteadyClock::now() + std::chrono::seconds(write_timeout_);
  }

  const int fd_;
  const bool keep_alive_;
  const int write_timeout_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;  // guarded by mu_
  bool done_ = false;     // guarded by mu_
  bool ok_ = false;       // guarded by mu_
};

class DirectSink final : public ResponseSink {
 public:
  explicit DirectSink(std::shared_ptr<DirectResponse> r) : r_(std::move(r)) {}
  ~DirectSink() override { r_->Abandon(); }
  bool Send(HttpResponse response) override { return r_->Send(std::move(response)); }
  bool StartStream(int status, Headers headers) override { return r_->StartStream(status, headers); }
  bool Write(std::string chunk) override { return r_->Write(chunk); }
  void End() override { r_->End(); }

 private:
  std::shared_ptr<DirectResponse> r_;
};

class ThreadedServer final : public HttpServer {
 public:
  ThreadedServer(HttpServerOptions options, Handler handler)
      : options_(std::move(options)), handler_(std::move(handler)) {}
  ~ThreadedServer() override { Stop(); }

  core::Status Listen() {
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(options_.host, ec);
    if (ec) return MakeError(ErrorCode::kBadRequest, "invalid listen host \"" + options_.host + "\"");
    tcp::endpoint ep(addr, options_.port);
    internal::Fd fd(::socket(ep.protocol().family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
    int one = 1;
    auto fail = [&](const char* what) {
      return MakeError(ErrorCode::kInternal, "cannot listen on " + options_.host + ":" +
                                                 std::to_string(options_.port) + ": " + what + ": " +
                                                 std::strerror(errno));
    };
    if (fd.get() < 0) return fail("socket");
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) return fail("setsockopt");
    if (::bind(fd.get(), ep.data(), static_cast<socklen_t>(ep.size())) != 0) return fail("bind");
    if (::listen(fd.get(), SOMAXCONN) != 0) return fail("listen");
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len) != 0) return fail("getsockname");
    port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                              : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) return fail("pipe");
    listen_fd_ = std::move(fd);
    acceptor_ = std::thread([this] {
      core::NameThisThread("http-accept");
      AcceptLoop();
    });
    return core::OkStatus();
  }

  uint16_t port() const override { return port_; }

  void Stop() override {
    if (stopped_.exchange(true)) return;
    if (wake_[1] >= 0) (void)!::write(wake_[1], "x", 1);
    if (acceptor_.joinable()) acceptor_.join();
    std::unique_lock<std::mutex> lock(mu_);
    // Idle connections wake from their read and exit; busy ones finish the request in hand
    // (its answer reaches the client), then exit.
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RD);
    all_closed_.wait(lock, [&] { return connections_ == 0; });
    lock.unlock();
    listen_fd_.Reset();
    for (int& p : wake_) {
      if (p >= 0) ::close(p);
      p = -1;
    }
  }

 private:
  void AcceptLoop() {
    for (;;) {
      pollfd p[2] = {{listen_fd_.get(), POLLIN, 0}, {wake_[0], POLLIN, 0}};
      int n = ::poll(p, 2, -1);
      if (n < 0 && errno != EINTR) return;
      if (stopped_.load() || (p[1].revents & POLLIN)) return;
      if (!(p[0].revents & POLLIN)) continue;
      sockaddr_storage peer{};
      socklen_t len = sizeof(peer);
      int fd = ::accept4(listen_fd_.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) continue;  // EMFILE, ECONNABORTED...: keep serving the others
      std::lock_guard<std::mutex> lock(mu_);
      if (connections_ >= std::min(options_.connections_max, core::kConnectionsMax)) {
        ::close(fd);
        continue;
      }
      ++connections_;
      open_fds_.insert(fd);
      std::thread([this, fd, remote = PeerString(peer)]() mutable {
        core::NameThisThread("http-conn");
        Serve(fd, std::move(remote));
      }).detach();
    }
  }

  static std::string PeerString(const sockaddr_storage& peer) {
    char host[INET6_ADDRSTRLEN] = {0};
    uint16_t port = 0;
    if (peer.ss_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(&peer);
      ::inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
      port = ntohs(in->sin_port);
    } else if (peer.ss_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&peer);
      ::inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
      port = ntohs(in6->sin6_port);
    }
    return std::string(host) + ":" + std::to_string(port);
  }

  void Serve(int fd, std::string remote) {
    int one = 1;
    // Small answers must not wait for the client's delayed ACK (docs/performance.md).
    (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    beast::flat_buffer buffer;
    buffer.reserve(core::kHttpConnectionReadBufferBytes);
    internal::DeadlineStream stream(fd, internal::SteadyClock::now());
    while (!stopped_.load()) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<uint32_t>(core::kHttpHeaderBytesMax));
      parser.body_limit(core::kHttpRequestBodyBytesMax);
      stream.set_deadline(internal::SteadyClock::now() + std::chrono::seconds(options_.idle_timeout_seconds));
      beast::error_code rec;
      http::read(stream, buffer, parser, rec);
      if (rec) {
        int status = 0;
        std::string_view code;
        if (rec == http::error::body_limit) {
          status = 413;
          code = "payload_too_large";
        } else if (rec == http::error::header_limit) {
          status = 431;
          code = "bad_request";
        } else if (rec.category() == http::make_error_code(http::error::bad_target).category() &&
                   rec != http::error::end_of_stream && rec != http::error::partial_message) {
          status = 400;
          code = "bad_request";
        }
        if (status != 0) {
          DirectResponse answer(fd, false, 5);
          answer.Send(HttpResponse::Json(status, ErrorBody(code, "malformed or oversize HTTP request: " + rec.message())));
        }
        break;
      }
      auto req = parser.release();
      const bool keep_alive = req.keep_alive();
      HttpRequest hr;
      hr.method = std::string(req.method_string());
      hr.target = std::string(req.target());
      hr.path = hr.target.substr(0, hr.target.find('?'));
      hr.headers.reserve(8);
      for (const auto& f : req) hr.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
      hr.body = std::move(req.body());
      hr.remote = remote;
      auto answer = std::make_shared<DirectResponse>(fd, keep_alive, options_.idle_timeout_seconds);
      handler_(std::move(hr), std::make_shared<DirectSink>(answer));
      // The handler may answer later from another thread (a stream): the next request on
      // this connection waits for this answer to be complete.
      if (!answer->Wait()) break;
    }
    ::shutdown(fd, SHUT_WR);
    std::lock_guard<std::mutex> lock(mu_);
    open_fds_.erase(fd);
    ::close(fd);
    if (--connections_ == 0) all_closed_.notify_all();
  }

  HttpServerOptions options_;
  Handler handler_;
  internal::Fd listen_fd_;
  int wake_[2] = {-1, -1};
  std::thread acceptor_;
  std::mutex mu_;
  std::condition_variable all_closed_;
  size_t connections_ = 0;             // guarded by mu_
  std::unordered_set<int> open_fds_;  // guarded by mu_
  std::atomic<bool> stopped_{false};
  uint16_t port_ = 0;
};

}  // namespace

const std::string* FindHeader(const Headers& headers, std::string_view name) {
  for (const auto& [k, v] : headers) {
    if (beast::iequals(k, name)) return &v;
  }
  return nullptr;
}

HttpResponse HttpResponse::Json(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = std::move(body);
  return r;
}

HttpResponse HttpResponse::Error(core::ErrorCode code, std::string_view message) {
  return Json(core::HttpStatus(code), ErrorBody(core::PublicCode(code), message));
}

HttpResponse HttpResponse::Text(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "text/plain; charset=utf-8");
  r.body = std::move(body);
  return r;
}

core::Result<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options, Handler handler) {
  auto server = std::make_unique<ThreadedServer>(std::move(options), std::move(handler));
  MANDATE_RETURN_IF_ERROR(server->Listen());
  return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace mandate::net
