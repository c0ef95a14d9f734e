#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "mandate/core/cancel.h"
#include "mandate/core/forward_gate.h"
#include "mandate/core/limits.h"
#include "mandate/net/http.h"

namespace mandate::net {
namespace {

std::unique_ptr<HttpServer> StartEcho() {
  HttpServerOptions opts;
  auto server = HttpServer::Start(opts, [](HttpRequest req, std::shared_ptr<ResponseSink> sink) {
    if (req.path == "/stream") {
      sink->StartStream(200, {{"Content-Type", "text/event-stream"}});
      sink->Write("data: one\n\n");
      sink->Write("data: two\n\n");
      sink->End();
      return;
    }
    if (req.path == "/silent") return;  // forgets to answer
    if (req.path == "/injected-stream") {
      EXPECT_FALSE(sink->StartStream(200, {{"Content-Type", "text/event-stream"}, {"X-Bad", "a\nb: c"}}));
      return;
    }
    if (req.path == "/injected") {
      // A header value a handler took from somewhere it should not have.
      auto r = HttpResponse::Text(200, "ok");
      r.headers.emplace_back("X-From-Upstream", "v\r\nSet-Cookie: stolen=1");
      sink->Send(std::move(r));
      return;
    }
    if (req.path == "/later") {
      // Answers from another thread after the handler returned.
      std::thread([sink] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        sink->Send(HttpResponse::Text(200, "later"));
      }).detach();
      return;
    }
    const std::string* h = req.Header("x-echo");
    sink->Send(HttpResponse::Text(200, req.method + " " + req.target + " " + (h ? *h : "") + " " + req.body));
  });
  EXPECT_TRUE(server.ok());
  return std::move(server).value();
}

// A listening TCP socket on 127.0.0.1 at a free port (set in *port), for the raw peers below.
int ListenOnLoopback(uint16_t* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  EXPECT_EQ(::listen(fd, 8), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = ntohs(addr.sin_port);
  return fd;
}

// Reads one HTTP/1.1 request (headers and a Content-Length body) from `fd`, one read at a
// time; false when the connection ended first.
bool ReadOneRequest(int fd) {
  std::string buf;
  char c[4096];
  while (true) {
    size_t end = buf.find("\r\n\r\n");
    if (end != std::string::npos) {
      size_t body = 0;
      size_t cl = buf.find("Content-Length: ");
      if (cl != std::string::npos) body = std::stoul(buf.substr(cl + 16));
      if (buf.size() >= end + 4 + body) return true;
    }
    ssize_t n = ::read(fd, c, sizeof c);
    if (n <= 0) return false;
    buf.append(c, static_cast<size_t>(n));
  }
}

constexpr char kKeepAliveOk[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok";

// What an answer filled in on another thread holds until its thread has run.
core::Result<HttpResponse> NotRun() { return core::MakeError(core::ErrorCode::kInternal, "not run"); }

// A raw HTTP/1.1 peer on 127.0.0.1 that answers the first request of each connection with a
// keep-alive 200, then either closes the idle connection at once (`close_idle`) or reads the
// next request and dies without answering. Counts the requests it read.
class DyingPeer {
 public:
  explicit DyingPeer(bool close_idle) : close_idle_(close_idle) {
    listen_fd_ = ListenOnLoopback(&port_);
    thread_ = std::thread([this] { Serve(); });
  }
  ~DyingPeer() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    thread_.join();
  }
  std::string Url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/x"; }
  int requests() const { return requests_.load(); }

 private:
  // Reads one request; false when the peer closed.
  bool ReadRequest(int fd) {
    if (!ReadOneRequest(fd)) return false;
    ++requests_;
    return true;
  }
  void Serve() {
    while (true) {
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      if (ReadRequest(fd)) {
        (void)!::write(fd, kKeepAliveOk, sizeof kKeepAliveOk - 1);
        if (!close_idle_) ReadRequest(fd);  // then die without answering
      }
      ::close(fd);
    }
  }
  bool close_idle_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<int> requests_{0};
  std::thread thread_;
};

TEST(Http, APostIsNotReplayedWhenAReusedConnectionDiesAfterReadingIt) {
  DyingPeer peer(/*close_idle=*/false);
  HttpClient client;
  HttpClientRequest req;
  req.method = "POST";
  req.url = peer.Url();
  req.body = "{}";
  ASSERT_TRUE(client.Do(req).ok());
  auto second = client.Do(req);  // reuses the connection; the peer reads it and dies
  EXPECT_FALSE(second.ok());
  // The peer may have acted on it: it must have seen it exactly once (no resend on a new
  // connection, which would repeat a side effect).
  EXPECT_EQ(peer.requests(), 2);
}

TEST(Http, AGetIsRetriedOnceOnAFreshConnection) {
  DyingPeer peer(/*close_idle=*/false);
  HttpClient client;
  HttpClientRequest req;
  req.method = "GET";
  req.url = peer.Url();
  ASSERT_TRUE(client.Do(req).ok());
  auto second = client.Do(req);
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ(second->body, "ok");
  EXPECT_EQ(peer.requests(), 3);  // the lost one, then the retry
}

TEST(Http, AnIdleConnectionTheServerClosedIsNotUsed) {
  DyingPeer peer(/*close_idle=*/true);
  HttpClient client;
  HttpClientRequest req;
  req.method = "POST";
  req.url = peer.Url();
  req.body = "{}";
  ASSERT_TRUE(client.Do(req).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the peer's close arrives
  auto second = client.Do(req);
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ(peer.requests(), 2);
}

std::string Url(const HttpServer& s, std::string_view path) {
  return "http://127.0.0.1:" + std::to_string(s.port()) + std::string(path);
}

TEST(Http, RoundTripsRequestAndReusesConnections) {
  auto server = StartEcho();
  HttpClient client;
  for (int i = 0; i < 20; ++i) {
    HttpClientRequest req;
    req.method = "POST";
    req.url = Url(*server, "/a?b=1");
    req.headers = {{"X-Echo", "hi"}};
    req.body = "body" + std::to_string(i);
    auto res = client.Do(req);
    ASSERT_TRUE(res.ok()) << res.error().message;
    EXPECT_EQ(res->status, 200);
    EXPECT_EQ(res->body, "POST /a?b=1 hi body" + std::to_string(i));
  }
  server->Stop();
}

TEST(Http, StreamsChunkedResponses) {
  auto server = StartEcho();
  HttpClient client;
  auto res = client.Do({.method = "GET", .url = Url(*server, "/stream")});
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->body, "data: one\n\ndata: two\n\n");
  EXPECT_EQ(*FindHeader(res->headers, "content-type"), "text/event-stream");
}

TEST(Http, AnAnswerFromAnotherThreadAfterTheHandlerReturnedIsDelivered) {
  auto server = StartEcho();
  HttpClient client;
  for (int i = 0; i < 3; ++i) {  // the keep-alive connection carries on after it
    auto res = client.Do({.method = "GET", .url = Url(*server, "/later")});
    ASSERT_TRUE(res.ok()) << res.error().message;
    EXPECT_EQ(res->body, "later");
  }
  server->Stop();
}

TEST(Http, ConnectionsBeyondTheLimitAreClosedAndStopEndsIdleOnes) {
  HttpServerOptions opts;
  opts.connections_max = 2;
  auto server = HttpServer::Start(opts, [](HttpRequest, std::shared_ptr<ResponseSink> sink) {
    sink->Send(HttpResponse::Text(200, "ok"));
  });
  ASSERT_TRUE(server.ok());
  // Two clients each keep one idle keep-alive connection open.
  HttpClient a, b, c;
  ASSERT_TRUE(a.Do({.url = Url(**server, "/")}).ok());
  ASSERT_TRUE(b.Do({.url = Url(**server, "/")}).ok());
  auto third = c.Do({.url = Url(**server, "/"), .timeout_millis = 2000});
  ASSERT_FALSE(third.ok());
  EXPECT_NE(third.error().code, core::ErrorCode::kUpstreamTimeout) << third.error().message;
  // Stop does not wait for the idle connections' 120 s timeout.
  auto start = std::chrono::steady_clock::now();
  (*server)->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(Http, ACancelledRequestEndsAtOnceInsteadOfWaitingForItsTimeout) {
  HttpServerOptions opts;
  auto server = HttpServer::Start(opts, [](HttpRequest, std::shared_ptr<ResponseSink> sink) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // a slow upstream
    sink->Send(HttpResponse::Text(200, "late"));
  });
  ASSERT_TRUE(server.ok());
  HttpClient client;
  core::CancelSignal signal;
  std::thread canceller([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    signal.Cancel();
  });
  auto start = std::chrono::steady_clock::now();
  core::Result<HttpResponse> res = NotRun();
  {
    core::CancelScope scope(&signal);
    res = client.Do({.url = Url(**server, "/"), .timeout_millis = 10000});
  }
  auto took = std::chrono::steady_clock::now() - start;
  canceller.join();
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.error().message.find("cancelled"), std::string::npos) << res.error().message;
  EXPECT_LT(took, std::chrono::milliseconds(1000));
  // Without a signal the same client still works (no poisoned pooled connection).
  auto ok = client.Do({.url = Url(**server, "/"), .timeout_millis = 10000});
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->body, "late");
  (*server)->Stop();
}

TEST(Http, HandlerThatForgetsToAnswerYields500) {
  auto server = StartEcho();
  HttpClient client;
  auto res = client.Do({.method = "GET", .url = Url(*server, "/silent")});
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->status, 500);
  EXPECT_EQ(res->body, R"({"error":{"code":"internal","message":"no response"}})");
}

TEST(Http, AnAnswerWithAMalformedHeaderBecomesA500AndAddsNoHeader) {
  auto server = StartEcho();
  HttpClient client;
  auto res = client.Do({.method = "GET", .url = Url(*server, "/injected")});
  ASSERT_TRUE(res.ok()) << res.error().message;
  EXPECT_EQ(res->status, 500);
  EXPECT_EQ(FindHeader(res->headers, "Set-Cookie"), nullptr);
  EXPECT_EQ(FindHeader(res->headers, "X-From-Upstream"), nullptr);
  EXPECT_NE(res->body.find("\"code\":\"internal\""), std::string::npos) << res->body;
  auto stream = client.Do({.method = "GET", .url = Url(*server, "/injected-stream")});
  ASSERT_TRUE(stream.ok()) << stream.error().message;
  EXPECT_EQ(stream->status, 500);
  EXPECT_EQ(FindHeader(stream->headers, "b"), nullptr);
  // The connection stays usable.
  auto next = client.Do({.method = "GET", .url = Url(*server, "/")});
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next->status, 200);
}

TEST(Http, ARequestHeaderThatWouldAddAHeaderIsRefusedBeforeAnyByteIsSent) {
  auto server = StartEcho();
  HttpClient client;
  HttpClientRequest req{.method = "POST", .url = Url(*server, "/")};
  req.headers.emplace_back("Authorization", "Bearer s\r\nX-Echo: injected");
  auto res = client.Do(req);
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().code, core::ErrorCode::kBadRequest);
  EXPECT_NE(res.error().message.find("Authorization"), std::string::npos);
}

TEST(Http, AnErrorAnswerHasTheCodesStatusAndTheDocumentedBody) {
  HttpResponse r = HttpResponse::Error(core::ErrorCode::kNotFound, "no tool \"a\"\nb");
  EXPECT_EQ(r.status, 404);
  ASSERT_NE(FindHeader(r.headers, "content-type"), nullptr);
  EXPECT_EQ(*FindHeader(r.headers, "content-type"), "application/json");
  // The message is escaped as JSON; the code is the public name (DESIGN.md section 8).
  EXPECT_EQ(r.body, R"({"error":{"code":"not_found","message":"no tool \"a\"\nb"}})");

  HttpResponse from_error =
      HttpResponse::Error(core::MakeError(core::ErrorCode::kTokenRevoked, "revoked"));
  EXPECT_EQ(from_error.status, core::HttpStatus(core::ErrorCode::kTokenRevoked));
  EXPECT_EQ(from_error.body, R"({"error":{"code":"token_revoked","message":"revoked"}})");
}

TEST(Http, OversizeBodyIs413) {
  auto server = StartEcho();
  HttpClient client;
  HttpClientRequest req{.method = "POST", .url = Url(*server, "/")};
  req.body.assign(core::kHttpRequestBodyBytesMax + 1, 'x');
  auto res = client.Do(req);
  ASSERT_TRUE(res.ok()) << res.error().message;
  EXPECT_EQ(res->status, 413);
  EXPECT_NE(res->body.find("payload_too_large"), std::string::npos);
}

TEST(Http, ConcurrentClientsAllGetTheirOwnAnswer) {
  auto server = StartEcho();
  HttpClient client;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        std::string body = std::to_string(t) + "-" + std::to_string(i);
        auto res = client.Do({.method = "POST", .url = Url(*server, "/"), .body = body});
        if (res.ok() && res->body == "POST /  " + body) ok++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(ok.load(), 200);
}

TEST(Http, ClientRecoversWhenEveryPooledConnectionWentStale) {
  HttpServerOptions opts;
  opts.idle_timeout_seconds = 1;
  auto server = HttpServer::Start(opts, [](HttpRequest, std::shared_ptr<ResponseSink> sink) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    sink->Send(HttpResponse::Text(200, "ok"));
  });
  ASSERT_TRUE(server.ok());
  HttpClient client;
  // Several concurrent requests leave several connections in the pool.
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] { EXPECT_TRUE(client.Do({.url = Url(**server, "/")}).ok()); });
  }
  for (auto& t : threads) t.join();
  // The server closes them all as idle; the next request must still succeed.
  std::this_thread::sleep_for(std::chrono::milliseconds(1600));
  auto res = client.Do({.url = Url(**server, "/")});
  ASSERT_TRUE(res.ok()) << res.error().message;
  EXPECT_EQ(res->body, "ok");
}

TEST(Http, ClientReportsRefusedConnectionAndBadUrl) {
  HttpClient client;
  auto res = client.Do({.method = "GET", .url = "http://127.0.0.1:1/", .timeout_millis = 2000});
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().code, core::ErrorCode::kUpstreamUnavailable);
  EXPECT_EQ(client.Do({.url = "https://x/"}).error().code, core::ErrorCode::kBadRequest);
  EXPECT_EQ(client.Do({.url = "nope"}).error().code, core::ErrorCode::kBadRequest);
  EXPECT_EQ(client.Do({.url = "http://h:99999/"}).error().code, core::ErrorCode::kBadRequest);
}

TEST(Http, ClientTimesOut) {
  HttpServerOptions opts;
  auto server = HttpServer::Start(opts, [](HttpRequest, std::shared_ptr<ResponseSink> sink) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    sink->Send(HttpResponse::Text(200, "late"));
  });
  ASSERT_TRUE(server.ok());
  HttpClient client;
  auto res = client.Do({.url = Url(**server, "/"), .timeout_millis = 100});
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().code, core::ErrorCode::kUpstreamTimeout);
}

TEST(Http, ServerRejectsBindToBadHost) {
  HttpServerOptions opts;
  opts.host = "not an address";
  auto server = HttpServer::Start(opts, [](HttpRequest, std::shared_ptr<ResponseSink>) {});
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.error().code, core::ErrorCode::kBadRequest);
}

// --- the forward gate: no byte of a gated request leaves before the gate opens ----------------

// A server that notes when each request arrived (steady clock) and echoes its body's size.
class ArrivalServer {
 public:
  ArrivalServer() {
    HttpServerOptions opts;
    auto server = HttpServer::Start(opts, [this](HttpRequest req, std::shared_ptr<ResponseSink> sink) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        arrivals_.push_back(std::chrono::steady_clock::now());
      }
      sink->Send(HttpResponse::Text(200, "got " + std::to_string(req.body.size())));
    });
    EXPECT_TRUE(server.ok());
    server_ = std::move(server).value();
  }
  std::string Url() const { return "http://127.0.0.1:" + std::to_string(server_->port()) + "/x"; }
  std::vector<std::chrono::steady_clock::time_point> arrivals() const {
    std::lock_guard<std::mutex> lock(mu_);
    return arrivals_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::chrono::steady_clock::time_point> arrivals_;
  std::unique_ptr<HttpServer> server_;
};

// Runs `fn` on a thread whose forward gate is `gate`; returns the thread.
template <class Fn>
std::thread Gated(core::ForwardGate* gate, Fn fn) {
  return std::thread([gate, fn]() mutable {
    core::ForwardGateScope scope(gate);
    fn();
  });
}

// Starts client.Do(req) on a thread whose forward gate is `gate`; *res holds the answer once
// the returned thread is joined.
std::thread GatedDo(core::ForwardGate* gate, HttpClient& client, HttpClientRequest req,
                    core::Result<HttpResponse>* res) {
  return Gated(gate, [&client, req = std::move(req), res] { *res = client.Do(req); });
}

TEST(HttpGate, AGatedRequestLeavesOnlyOnceTheGateOpens) {
  ArrivalServer server;
  HttpClient client;
  ASSERT_TRUE(client.Do({.method = "POST", .url = server.Url(), .body = "warm"}).ok());  // a pooled connection
  core::ForwardGate gate;
  core::Result<HttpResponse> res = NotRun();
  std::thread t = GatedDo(&gate, client,
                          {.method = "POST", .url = server.Url(), .body = "payload"}, &res);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(server.arrivals().size(), 1u);  // only the warm-up: the request waits at the gate
  const auto opened = std::chrono::steady_clock::now();
  gate.Decide(core::OkStatus());
  t.join();
  ASSERT_TRUE(res.ok()) << res.error().message;
  EXPECT_EQ(res->body, "got 7");
  ASSERT_EQ(server.arrivals().size(), 2u);
  EXPECT_GE(server.arrivals()[1], opened);
  // An open gate sends at once, on the caller's thread.
  t = GatedDo(&gate, client, {.method = "POST", .url = server.Url(), .body = "again"}, &res);
  t.join();
  ASSERT_TRUE(res.ok()) << res.error().message;
  EXPECT_EQ(res->body, "got 5");
}

TEST(HttpGate, AClosedGateSendsNothingAndTheClientStaysUsable) {
  ArrivalServer server;
  HttpClient client;
  core::ForwardGate gate;
  core::Result<HttpResponse> res = NotRun();
  std::thread t = GatedDo(&gate, client,
                          {.method = "POST", .url = server.Url(), .body = "payload"}, &res);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  gate.Decide(core::MakeError(core::ErrorCode::kInternal, "audit append failed: disk full"));
  t.join();
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().code, core::ErrorCode::kInternal);
  EXPECT_NE(res.error().message.find("disk full"), std::string::npos) << res.error().message;
  // A gate already closed refuses at once too.
  t = GatedDo(&gate, client, {.method = "POST", .url = server.Url(), .body = "payload"}, &res);
  t.join();
  EXPECT_EQ(res.error().code, core::ErrorCode::kInternal);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(server.arrivals().empty());
  auto ok = client.Do({.method = "POST", .url = server.Url(), .body = "ungated"});
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->body, "got 7");
}

TEST(HttpGate, ADeadlineOrACancelBeforeTheGateOpensSendsNothingEver) {
  ArrivalServer server;
  HttpClient client;
  core::ForwardGate timed_out;
  core::Result<HttpResponse> res = NotRun();
  std::thread t = GatedDo(&timed_out, client,
      {.method = "POST", .url = server.Url(), .body = "late", .timeout_millis = 100}, &res);
  t.join();
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().code, core::ErrorCode::kUpstreamTimeout);
  EXPECT_NE(res.error().message.find("before it could be sent"), std::string::npos) << res.error().message;
  timed_out.Decide(core::OkStatus());  // too late: the send was taken back

  core::ForwardGate cancelled_gate;
  core::CancelSignal signal;
  const auto start = std::chrono::steady_clock::now();
  t = Gated(&cancelled_gate, [&] {
    core::CancelScope scope(&signal);
    res = client.Do({.method = "POST", .url = server.Url(), .body = "revoked", .timeout_millis = 10000});
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  signal.Cancel();
  t.join();
  ASSERT_FALSE(res.ok());
  EXPECT_NE(res.error().message.find("cancelled"), std::string::npos) << res.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  cancelled_gate.Decide(core::OkStatus());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(server.arrivals().empty());
}

// A raw peer that reads nothing for `stall` after accepting, then reads one request with a
// Content-Length body and answers with the body's size; so a large request fills the socket
// and whoever sends it must finish the send once the peer reads.
class SlowReader {
 public:
  explicit SlowReader(std::chrono::milliseconds stall) : stall_(stall) {
    listen_fd_ = ListenOnLoopback(&port_);
    thread_ = std::thread([this] { Serve(); });
  }
  ~SlowReader() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    ::close(listen_fd_);
    thread_.join();
  }
  std::string Url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/x"; }

 private:
  void Serve() {
    int fd = ::accept(listen_fd_, nullptr, nullptr);
    if (fd < 0) return;
    std::this_thread::sleep_for(stall_);
    std::string buf;
    char c[65536];
    size_t want = std::string::npos;
    while (want == std::string::npos || buf.size() < want) {
      ssize_t n = ::read(fd, c, sizeof c);
      if (n <= 0) break;
      buf.append(c, static_cast<size_t>(n));
      size_t end = buf.find("\r\n\r\n");
      size_t cl = buf.find("Content-Length: ");
      if (want == std::string::npos && end != std::string::npos && cl != std::string::npos && cl < end) {
        want = end + 4 + std::stoul(buf.substr(cl + 16));
      }
    }
    const std::string body = std::to_string(buf.size() - (buf.find("\r\n\r\n") + 4));
    const std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                               "\r\nConnection: close\r\n\r\n" + body;
    (void)!::write(fd, answer.data(), answer.size());
    ::close(fd);
  }
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::chrono::milliseconds stall_;
  std::thread thread_;
};

TEST(HttpGate, ARequestLargerThanTheOpenerSendsIsFinishedByTheCaller) {
  ArrivalServer server;
  HttpClient client;
  core::ForwardGate gate;
  const std::string body(core::kGateSendBytesMax * 3, 'm');  // the opener sends only the first part
  core::Result<HttpResponse> res = NotRun();
  std::thread t = GatedDo(&gate, client,
                          {.method = "POST", .url = server.Url(), .body = body}, &res);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  gate.Decide(core::OkStatus());
  t.join();
  ASSERT_TRUE(res.ok()) << res.error().message;
  EXPECT_EQ(res->body, "got " + std::to_string(body.size()));
}

TEST(HttpGate, AWakeUpForOneRequestDoesNotEndTheNextRequestsWait) {
  // One thread makes every request. The continuations of the first two must wake it (the rest
  // of a large request is its own to send; a closed gate), and that wake-up must be gone by
  // its next gated request, which would otherwise stop waiting for its own gate.
  ArrivalServer server;
  HttpClient client;
  core::ForwardGate large, closed, later;
  const std::string body(core::kGateSendBytesMax * 2, 'm');
  std::vector<core::Result<HttpResponse>> results;
  std::thread t([&] {
    for (core::ForwardGate* gate : {&large, &closed, &later}) {
      core::ForwardGateScope scope(gate);
      results.push_back(client.Do({.method = "POST", .url = server.Url(), .body = gate == &large ? body : "small"}));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  large.Decide(core::OkStatus());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  closed.Decide(core::MakeError(core::ErrorCode::kInternal, "audit append failed"));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(server.arrivals().size(), 1u);  // the large one; the last waits at its gate
  const auto opened = std::chrono::steady_clock::now();
  later.Decide(core::OkStatus());
  t.join();
  ASSERT_EQ(results.size(), 3u);
  ASSERT_TRUE(results[0].ok()) << results[0].error().message;
  EXPECT_EQ(results[0]->body, "got " + std::to_string(body.size()));
  ASSERT_FALSE(results[1].ok());
  ASSERT_TRUE(results[2].ok()) << results[2].error().message;
  EXPECT_EQ(results[2]->body, "got 5");
  ASSERT_EQ(server.arrivals().size(), 2u);
  EXPECT_GE(server.arrivals()[1], opened);
}

// A raw HTTP/1.1 peer that answers every request with a keep-alive 200 and never closes a
// connection itself, not even once the client has shut down its side: the client's socket
// then stays quiet (never readable) whatever the client does to it. Counts connections and
// the requests it read.
class PatientPeer {
 public:
  PatientPeer() {
    listen_fd_ = ListenOnLoopback(&port_);
    acceptor_ = std::thread([this] { Accept(); });
  }
  ~PatientPeer() {
    ::shutdown(listen_fd_, SHUT_RDWR);
    acceptor_.join();
    ::close(listen_fd_);
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);  // ends the reads below
    for (std::thread& t : serving_) t.join();
    for (int fd : fds_) ::close(fd);
  }
  uint16_t port() const { return port_; }
  std::string Url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/x"; }
  int requests() const { return requests_.load(); }
  int connections() const {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(fds_.size());
  }

 private:
  void Accept() {
    while (true) {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      std::lock_guard<std::mutex> lock(mu_);
      fds_.push_back(fd);
      serving_.emplace_back([this, fd] {
        while (ReadOneRequest(fd)) {
          ++requests_;
          (void)!::write(fd, kKeepAliveOk, sizeof kKeepAliveOk - 1);
        }
      });
    }
  }
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<int> requests_{0};
  mutable std::mutex mu_;
  std::vector<int> fds_;  // held open until the destructor
  std::vector<std::thread> serving_;
  std::thread acceptor_;
};

// This process's TCP sockets connected to 127.0.0.1:`port`: the client side of connections
// to a test peer.
std::vector<int> SocketsConnectedTo(uint16_t port) {
  std::vector<int> out;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    const int fd = std::stoi(entry.path().filename().string());
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) == 0 &&
        peer.sin_family == AF_INET && ntohs(peer.sin_port) == port) {
      out.push_back(fd);
    }
  }
  return out;
}

// The handed-over send fails (not for want of room) when the client's socket can no longer
// send: shut down for writing, which leaves it quiet, so the caller waits at the gate as on a
// healthy connection and the gate's opener meets the error (EPIPE).

TEST(HttpGate, AHandedOverSendThatFailsOnAPooledConnectionIsRetriedOnAFreshOne) {
  PatientPeer peer;
  HttpClient client;
  ASSERT_TRUE(client.Do({.method = "POST", .url = peer.Url(), .body = "warm"}).ok());  // pooled
  const std::vector<int> pooled = SocketsConnectedTo(peer.port());
  ASSERT_EQ(pooled.size(), 1u);
  ASSERT_EQ(::shutdown(pooled[0], SHUT_WR), 0);
  core::ForwardGate gate;
  core::Result<HttpResponse> res = NotRun();
  std::thread t = GatedDo(&gate, client,
      {.method = "POST", .url = peer.Url(), .body = "payload", .timeout_millis = 2000}, &res);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(peer.requests(), 1);  // the warm-up: the request waits at the gate
  gate.Decide(core::OkStatus());
  t.join();
  // Nothing of it left on the pooled connection, so it went once, on a new one.
  ASSERT_TRUE(res.ok()) << res.error().message;
  EXPECT_EQ(res->body, "ok");
  EXPECT_EQ(peer.requests(), 2);
  EXPECT_EQ(peer.connections(), 2);
}

TEST(HttpGate, AHandedOverSendThatFailsOnAFreshConnectionFailsTheRequest) {
  PatientPeer peer;
  HttpClient client;
  core::ForwardGate gate;
  core::Result<HttpResponse> res = NotRun();
  std::thread t = GatedDo(&gate, client,
      {.method = "POST", .url = peer.Url(), .body = "payload", .timeout_millis = 1000}, &res);
  std::vector<int> fresh;
  for (int i = 0; i < 200 && fresh.empty(); ++i) {  // the client connects, then waits at the gate
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    fresh = SocketsConnectedTo(peer.port());
  }
  ASSERT_EQ(fresh.size(), 1u);
  ASSERT_EQ(::shutdown(fresh[0], SHUT_WR), 0);
  gate.Decide(core::OkStatus());
  t.join();
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().code, core::ErrorCode::kUpstreamUnavailable);
  EXPECT_NE(res.error().message.find("write to"), std::string::npos) << res.error().message;
  EXPECT_EQ(peer.requests(), 0);
  EXPECT_EQ(peer.connections(), 1);  // not retried: it was no stale pooled connection
}

TEST(HttpGate, ARequestTooLargeForTheSocketIsFinishedByTheCaller) {
  SlowReader peer(std::chrono::milliseconds(200));
  HttpClient client;
  core::ForwardGate gate;
  const std::string big(8 * 1024 * 1024, 'b');  // more than the socket buffers hold
  core::Result<HttpResponse> res = NotRun();
  std::thread t = GatedDo(&gate, client,
      {.method = "POST", .url = peer.Url(), .body = big, .timeout_millis = 10000}, &res);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  gate.Decide(core::OkStatus());  // the opening thread sends what fits and returns at once
  t.join();
  ASSERT_TRUE(res.ok()) << res.error().message;
  EXPECT_EQ(res->body, std::to_string(big.size()));
}

TEST(HttpGate, AConnectionClosedWhileTheRequestWaitsFailsWithoutSending) {
  // A peer that accepts and closes at once: the waiting request sees the close, not a timeout.
  uint16_t port = 0;
  const int listen_fd = ListenOnLoopback(&port);
  std::thread closer([&] {
    int fd = ::accept(listen_fd, nullptr, nullptr);
    if (fd >= 0) ::close(fd);
  });
  HttpClient client;
  core::ForwardGate gate;
  core::Result<HttpResponse> res = NotRun();
  const auto start = std::chrono::steady_clock::now();
  std::thread t = GatedDo(&gate, client, {.method = "POST",
                     .url = "http://127.0.0.1:" + std::to_string(port) + "/x",
                     .body = "x",
                     .timeout_millis = 10000}, &res);
  t.join();
  closer.join();
  ::close(listen_fd);
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.error().code, core::ErrorCode::kUpstreamUnavailable) << res.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  gate.Decide(core::OkStatus());  // nothing left to send
}

}  // namespace
}  // namespace mandate::net
