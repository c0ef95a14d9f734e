// The HTTP server of the benchmark's upstream peer: a Boost.Beast event loop (one or more I/O
// threads, coroutines per connection) handing requests to a small worker pool. It is the
// server Mandate itself used up to commit 4bf475b, kept here unchanged so that the peer's
// cost does not move when Mandate's own server (net::HttpServer, thread per connection since
// then) changes: the direct figures of docs/performance.md stay comparable across commits.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "mandate/core/result.h"
#include "mandate/net/http.h"

namespace mandate::bench {

struct EventLoopServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  int io_threads = 1;
  int worker_threads = 2;
  size_t worker_queue_max = 4096;  // requests waiting for a worker; beyond it: 503
  int idle_timeout_seconds = 120;
};

core::Result<std::unique_ptr<net::HttpServer>> StartEventLoopServer(EventLoopServerOptions options,
                                                                    net::Handler handler);

}  // namespace mandate::bench
