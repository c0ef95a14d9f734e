// HTTP/1.1 server and client (Boost.Beast parsers over POSIX sockets). net knows nothing of
// policy or MCP: it moves bytes with limits (kHttpHeaderBytesMax, kHttpRequestBodyBytesMax,
// kConnectionsMax) and timeouts, and hands complete requests to a Handler.
//
// Threading: the server runs one thread per connection (at most kConnectionsMax per listener)
// and calls the handler on it; handlers may block (the gateway pipeline is synchronous by
// design: it is easier to audit). A handler answers through the ResponseSink, from any thread,
// exactly once (Send) or as a stream (StartStream, Write..., End); the connection reads its
// next request only once the answer is complete. The client runs each exchange on the calling
// thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mandate/core/limits.h"
#include "mandate/core/result.h"

namespace mandate::net {

using Headers = std::vector<std::pair<std::string, std::string>>;

// Case-insensitive header lookup; nullptr when absent.
const std::string* FindHeader(const Headers& headers, std::string_view name);

// Whether `s` is an RFC 9110 token: what a header field name or a method must be.
bool IsHttpToken(std::string_view s);

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as sent: path + query
  std::string path;    // target without the query
  Headers headers{};
  std::string body{};
  std::string remote;  // peer address "ip:port"

  const std::string* Header(std::string_view name) const { return FindHeader(headers, name); }
};

struct HttpResponse {
  int status = 200;
  Headers headers{};
  std::string body{};

  static HttpResponse Json(int status, std::string body);
  static HttpResponse Text(int status, std::string body);
  // An error answer as DESIGN.md section 8 writes it, with the code's HTTP status:
  // {"error":{"code":"<public code>","message":"..."}}.
  static HttpResponse Error(core::ErrorCode code, std::string_view message);
  static HttpResponse Error(const core::Error& e) { return Error(e.code, e.message); }
};

// Where a handler writes its answer. Thread-safe; methods after the connection closed are
// no-ops returning false.
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  // A complete response. Returns false if the client is gone.
  virtual bool Send(HttpResponse response) = 0;
  // A streamed (chunked) response, e.g. Server-Sent Events.
  virtual bool StartStream(int status, Headers headers) = 0;
  virtual bool Write(std::string chunk) = 0;
  virtual void End() = 0;
};

using Handler = std::function<void(HttpRequest request, std::shared_ptr<ResponseSink> sink)>;

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;             // 0: pick a free port (tests)
  // A connection waiting this long for a request is closed; also bounds writing an answer.
  int idle_timeout_seconds = 120;
  // Connections served at once; a connection beyond it is closed at accept. At most
  // kConnectionsMax.
  size_t connections_max = core::kConnectionsMax;
};

class HttpServer {
 public:
  // Binds and starts serving. Errors: kBadRequest for an unparsable host, kInternal when the
  // address cannot be bound (the message names it).
  static core::Result<std::unique_ptr<HttpServer>> Start(HttpServerOptions options,
                                                         Handler handler);
  virtual ~HttpServer() = default;
  virtual uint16_t port() const = 0;
  // Stops accepting, lets requests being handled finish (their answers reach the clients),
  // closes every connection and waits for their threads. Idempotent.
  virtual void Stop() = 0;
};

struct HttpClientRequest {
  std::string method = "GET";
  std::string url;  // http://host:port/path?query (https is not supported in this version)
  Headers headers{};
  std::string body{};
  int timeout_millis = 30000;
  size_t response_body_max = 0;  // 0: kHttpResponseBodyBytesMax
};

// A keep-alive HTTP/1.1 client with a per-host connection pool. Thread-safe: many threads
// may call Do() at once; each call blocks until the response, an error, or the timeout.
class HttpClient {
 public:
  HttpClient();
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Errors: kBadRequest (bad URL), kUpstreamUnavailable (connect failed),
  // kUpstreamTimeout, kUpstreamError (protocol error, body over the limit).
  core::Result<HttpResponse> Do(const HttpClientRequest& request);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct ParsedUrl {
  std::string scheme, host, port, target;
};
core::Result<ParsedUrl> ParseHttpUrl(std::string_view url);

}  // namespace mandate::net
