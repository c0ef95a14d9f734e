#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "mandate/core/cancel.h"
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
  core::Result<HttpResponse> res = core::MakeError(core::ErrorCode::kInternal, "not run");
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

}  // namespace
}  // namespace mandate::net
