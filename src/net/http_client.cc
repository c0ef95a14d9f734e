#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <future>
#include <map>
#include <thread>

#include "mandate/core/limits.h"
#include "mandate/net/http.h"

namespace mandate::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using core::ErrorCode;
using core::MakeError;

using core::kIdleConnectionsPerHostMax;  // idle keep-alive connections per host:port

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
  asio::io_context ioc;
  asio::executor_work_guard<asio::io_context::executor_type> work{ioc.get_executor()};
  std::thread thread;
  // Touched only on the I/O thread: no lock needed.
  std::map<std::string, std::vector<std::unique_ptr<beast::tcp_stream>>> idle;

  Impl() : thread([this] { ioc.run(); }) {}
  ~Impl() {
    work.reset();
    asio::post(ioc, [this] { idle.clear(); });
    ioc.stop();
    thread.join();
  }

  asio::awaitable<core::Result<HttpResponse>> DoAsync(HttpClientRequest request, ParsedUrl url) {
    const std::string key = url.host + ":" + url.port;
    auto timeout = std::chrono::milliseconds(request.timeout_millis);
    http::request<http::string_body> req{http::string_to_verb(request.method), url.target, 11};
    if (req.method() == http::verb::unknown) co_return MakeError(ErrorCode::kBadRequest, "bad HTTP method");
    req.set(http::field::host, key);
    for (const auto& [k, v] : request.headers) req.set(k, v);
    req.body() = request.body;
    req.keep_alive(true);
    req.prepare_payload();

    for (int attempt = 0; attempt < 2; ++attempt) {
      std::unique_ptr<beast::tcp_stream> stream;
      bool reused = false;
      auto& pool = idle[key];
      // The retry always dials: after one stale pooled connection the others idled as long.
      if (attempt > 0) pool.clear();
      if (!pool.empty()) {
        stream = std::move(pool.back());
        pool.pop_back();
        reused = true;
      } else {
        stream = std::make_unique<beast::tcp_stream>(ioc);
        tcp::resolver resolver(ioc);
        auto [rec, results] = co_await resolver.async_resolve(url.host, url.port, asio::as_tuple(asio::use_awaitable));
        if (rec) co_return MakeError(ErrorCode::kUpstreamUnavailable, "cannot resolve " + url.host + ": " + rec.message());
        stream->expires_after(timeout);
        auto [cec, ep] = co_await stream->async_connect(results, asio::as_tuple(asio::use_awaitable));
        if (cec == beast::error::timeout) co_return MakeError(ErrorCode::kUpstreamTimeout, "connect to " + key + " timed out");
        if (cec) co_return MakeError(ErrorCode::kUpstreamUnavailable, "cannot connect to " + key + ": " + cec.message());
        stream->socket().set_option(tcp::no_delay(true));
      }
      stream->expires_after(timeout);
      auto [wec, nw] = co_await http::async_write(*stream, req, asio::as_tuple(asio::use_awaitable));
      if (wec) {
        if (reused) continue;  // a stale pooled connection: nothing was delivered, try a fresh one
        if (wec == beast::error::timeout) co_return MakeError(ErrorCode::kUpstreamTimeout, "request to " + key + " timed out");
        // The server may have answered early (e.g. 413) and closed: read that answer below.
      }
      beast::flat_buffer buffer;
      http::response_parser<http::string_body> parser;
      parser.header_limit(static_cast<uint32_t>(core::kHttpHeaderBytesMax));
      parser.body_limit(request.response_body_max ? request.response_body_max : core::kHttpResponseBodyBytesMax);
      auto [rec, nr] = co_await http::async_read(*stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
      if (rec && wec) {
        co_return MakeError(ErrorCode::kUpstreamUnavailable, "write to " + key + " failed: " + wec.message());
      }
      if (rec) {
        // The server closed an idle keep-alive connection before reading our request: retry
        // once on a fresh connection. Any other failure is reported, never retried, because
        // the request may have taken effect.
        if (reused && nr == 0 && (rec == http::error::end_of_stream || rec == asio::error::connection_reset ||
                                  rec == asio::error::eof)) {
          continue;
        }
        if (rec == beast::error::timeout) co_return MakeError(ErrorCode::kUpstreamTimeout, "response from " + key + " timed out");
        if (rec == http::error::body_limit) co_return MakeError(ErrorCode::kUpstreamError, "response from " + key + " exceeds the size limit");
        co_return MakeError(ErrorCode::kUpstreamError, "bad response from " + key + ": " + rec.message());
      }
      auto res = parser.release();
      HttpResponse out;
      out.status = static_cast<int>(res.result_int());
      for (const auto& f : res) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
      out.body = std::move(res.body());
      if (res.keep_alive() && !wec) {
        stream->expires_never();
        auto& p = idle[key];
        if (p.size() < kIdleConnectionsPerHostMax) p.push_back(std::move(stream));
      }
      co_return out;
    }
    co_return MakeError(ErrorCode::kUpstreamUnavailable, "connection to " + key + " failed twice");
  }
};

HttpClient::HttpClient() : impl_(std::make_unique<Impl>()) {}
HttpClient::~HttpClient() = default;

core::Result<HttpResponse> HttpClient::Do(const HttpClientRequest& request) {
  MANDATE_ASSIGN_OR_RETURN(ParsedUrl url, ParseHttpUrl(request.url));
  std::promise<core::Result<HttpResponse>> promise;
  auto future = promise.get_future();
  asio::co_spawn(
      impl_->ioc,
      [](Impl* impl, HttpClientRequest req, ParsedUrl u,
         std::promise<core::Result<HttpResponse>> p) -> asio::awaitable<void> {
        p.set_value(co_await impl->DoAsync(std::move(req), std::move(u)));
      }(impl_.get(), request, std::move(url), std::move(promise)),
      [](std::exception_ptr) {});
  return future.get();
}

}  // namespace mandate::net
