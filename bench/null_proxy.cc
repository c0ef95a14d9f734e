// mandate_null_proxy: Mandate's own HTTP plumbing with no governance in it. It serves on
// net::HttpServer (a thread per connection, as `mandate serve` does) and forwards every
// request with net::HttpClient (blocking, pooled keep-alive connections, as the MCP adapter
// does) to one upstream, answering with the upstream's status, headers and body.
//
// What it is for: run-bench.sh's "floor" scenario drives it like Mandate, so the report can say
// how much of a governed call's cost is the I/O model itself (sleeping in a thread per
// connection for the agent, the upstream and nothing else) and how much is the governance
// (token, policy, durable audit, Txn-Token). No token, no policy, no audit, no MCP parsing.
//
// Usage: mandate_null_proxy --upstream http://127.0.0.1:PORT/mcp [--port N]
// Prints `ready on http://127.0.0.1:<port>` once listening; serves until SIGTERM or SIGINT.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "mandate/net/http.h"
#include "stop_signals.h"

// The allocator settings of the mandate binary (src/cli/main.cc), whose plumbing this measures;
// jemalloc reads them when it is linked in (bench/CMakeLists.txt), glibc's malloc ignores them.
extern "C" {
// NOLINTNEXTLINE(cppcoreguidelines-avoid-non-const-global-variables): jemalloc's interface
const char* malloc_conf = "background_thread:true";
}

namespace {

namespace net = mandate::net;

// The request headers an MCP exchange needs end to end (the rest are hop-by-hop or the
// client's own, which a forwarding proxy does not copy either).
constexpr std::string_view kForwardedRequestHeaders[] = {"Content-Type", "Accept", "Mcp-Session-Id",
                                                         "MCP-Protocol-Version", "Last-Event-ID"};
constexpr std::string_view kForwardedResponseHeaders[] = {"Content-Type", "Mcp-Session-Id"};

}  // namespace

int main(int argc, char** argv) {
  std::string upstream;
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string_view a = argv[i];
    if (a == "--upstream") {
      upstream = argv[i + 1];
    } else if (a == "--port") {
      port = std::atoi(argv[i + 1]);
    } else {
      upstream.clear();
      break;
    }
  }
  if (upstream.empty() || argc % 2 == 0 || port < 0 || port > 65535) {
    std::fprintf(stderr, "usage: mandate_null_proxy --upstream http://HOST:PORT/PATH [--port N]\n");
    return 2;
  }

  const sigset_t stop_signals = mandate::bench::BlockStopSignals();

  net::HttpClient client;
  net::HttpServerOptions options;
  options.port = static_cast<uint16_t>(port);
  auto server = net::HttpServer::Start(options, [&](net::HttpRequest req, std::shared_ptr<net::ResponseSink> sink) {
    net::HttpClientRequest out;
    out.method = req.method;
    out.url = upstream;
    for (std::string_view name : kForwardedRequestHeaders) {
      if (const std::string* v = req.Header(name)) out.headers.emplace_back(std::string(name), *v);
    }
    out.body = std::move(req.body);
    out.timeout_millis = 5000;
    auto answer = client.Do(out);
    if (!answer.ok()) {
      sink->Send(net::HttpResponse::Json(502, R"({"error":{"code":"upstream_unavailable","message":"null proxy"}})"));
      return;
    }
    net::HttpResponse res;
    res.status = answer->status;
    for (std::string_view name : kForwardedResponseHeaders) {
      if (const std::string* v = net::FindHeader(answer->headers, name)) res.headers.emplace_back(std::string(name), *v);
    }
    res.body = std::move(answer->body);
    sink->Send(std::move(res));
  });
  if (!server.ok()) {
    std::fprintf(stderr, "mandate_null_proxy: %s\n", server.error().message.c_str());
    return 1;
  }
  return mandate::bench::ServeUntilStopSignal(**server, stop_signals);
}
