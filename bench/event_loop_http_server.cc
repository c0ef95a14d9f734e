#include "event_loop_http_server.h"

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/experimental/concurrent_channel.hpp>
#include <boost/beast.hpp>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "mandate/core/json.h"
#include "mandate/core/limits.h"

namespace mandate::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using core::ErrorCode;
using core::MakeError;
using net::Headers;
using net::HttpRequest;
using net::HttpResponse;
using net::ResponseSink;
using net::Handler;
using HttpServerOptions = EventLoopServerOptions;

// A fixed pool of threads draining a bounded queue of tasks. Submit() refuses (returns false)
// when the queue is full.
class WorkerPool {
 public:
  WorkerPool(int threads, size_t queue_max);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  bool Submit(std::function<void()> task);
  // Runs the queued tasks to completion, then joins. Idempotent.
  void Stop();

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  size_t queue_max_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};


WorkerPool::WorkerPool(int threads, size_t queue_max) : queue_max_(queue_max) {
  threads_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

WorkerPool::~WorkerPool() { Stop(); }

bool WorkerPool::Submit(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || queue_.size() >= queue_max_) return false;
    queue_.push_back(std::move(task));
  }
  cv_.notify_one();
  return true;
}

void WorkerPool::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void WorkerPool::Run() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}


// What a handler thread sends to the connection's coroutine.
struct SinkMessage {
  enum class Kind : uint8_t { kFull, kStart, kChunk, kEnd };
  Kind kind = Kind::kFull;
  HttpResponse response;  // kFull and kStart (status + headers)
  std::string chunk;      // kChunk
};

// Bounded (core::kStreamMessagesQueuedMax): a streaming handler that outruns a slow client is
// cut off rather than buffering without limit.
using core::kStreamMessagesQueuedMax;

using Channel = asio::experimental::concurrent_channel<void(boost::system::error_code, SinkMessage)>;

class ChannelSink final : public ResponseSink {
 public:
  explicit ChannelSink(std::shared_ptr<Channel> ch) : ch_(std::move(ch)) {}
  ~ChannelSink() override {
    // A handler that forgot to answer must not leave the client hanging.
    if (!started_.load()) Send(HttpResponse::Json(500, R"({"error":{"code":"internal","message":"no response"}})"));
    else if (!ended_.load()) End();
  }

  bool Send(HttpResponse response) override {
    if (started_.exchange(true)) return false;
    ended_ = true;
    return ch_->try_send(boost::system::error_code{},
                         SinkMessage{SinkMessage::Kind::kFull, std::move(response), {}});
  }
  bool StartStream(int status, Headers headers) override {
    if (started_.exchange(true)) return false;
    HttpResponse r;
    r.status = status;
    r.headers = std::move(headers);
    return ch_->try_send(boost::system::error_code{},
                         SinkMessage{SinkMessage::Kind::kStart, std::move(r), {}});
  }
  bool Write(std::string chunk) override {
    if (!started_.load() || ended_.load() || chunk.empty()) return false;
    return ch_->try_send(boost::system::error_code{},
                         SinkMessage{SinkMessage::Kind::kChunk, {}, std::move(chunk)});
  }
  void End() override {
    if (!started_.load() || ended_.exchange(true)) return;
    (void)ch_->try_send(boost::system::error_code{}, SinkMessage{SinkMessage::Kind::kEnd, {}, {}});
  }

 private:
  std::shared_ptr<Channel> ch_;
  std::atomic<bool> started_{false};
  std::atomic<bool> ended_{false};
};

http::response<http::string_body> ToBeast(const HttpResponse& r, bool keep_alive) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), 11};
  for (const auto& [k, v] : r.headers) res.set(k, v);
  if (res.find(http::field::content_type) == res.end()) res.set(http::field::content_type, "application/json");
  res.body() = r.body;
  res.keep_alive(keep_alive);
  res.prepare_payload();
  return res;
}

std::string ErrorBody(std::string_view code, std::string_view message) {
  std::string out = R"({"error":{"code":")";
  out.append(code);
  out.append(R"(","message":)");
  core::AppendJsonString(message, &out);
  out.append("}}");
  return out;
}

class ServerImpl final : public net::HttpServer {
 public:
  ServerImpl(HttpServerOptions options, Handler handler)
      : options_(std::move(options)),
        handler_(std::move(handler)),
        ioc_(options_.io_threads),
        acceptor_(ioc_),
        pool_(options_.worker_threads, options_.worker_queue_max) {}

  ~ServerImpl() override { Stop(); }

  core::Status Listen() {
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(options_.host, ec);
    if (ec) return MakeError(ErrorCode::kBadRequest, "invalid listen host \"" + options_.host + "\"");
    tcp::endpoint ep(addr, options_.port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return MakeError(ErrorCode::kInternal, "cannot listen on " + options_.host + ":" +
                                                 std::to_string(options_.port) + ": " + ec.message());
    }
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(ioc_, Accept(), asio::detached);
    for (int i = 0; i < options_.io_threads; ++i) threads_.emplace_back([this] { ioc_.run(); });
    return core::OkStatus();
  }

  uint16_t port() const override { return port_; }

  void Stop() override {
    if (stopped_.exchange(true)) return;
    asio::post(ioc_, [this] {
      boost::system::error_code ec;
      acceptor_.close(ec);
    });
    // Let running handlers finish and their answers reach the clients, then stop I/O.
    pool_.Stop();
    ioc_.stop();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  asio::awaitable<void> Accept() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) {
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
        continue;
      }
      if (connections_.load() >= core::kConnectionsMax) {
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      asio::co_spawn(acceptor_.get_executor(), Serve(std::move(socket)), asio::detached);
    }
  }

  asio::awaitable<void> Serve(tcp::socket socket) {
    connections_.fetch_add(1);
    struct Count {
      std::atomic<size_t>& c;
      ~Count() { c.fetch_sub(1); }
    } count{connections_};
    boost::system::error_code ec;
    auto remote_ep = socket.remote_endpoint(ec);
    std::string remote = ec ? "" : remote_ep.address().to_string() + ":" + std::to_string(remote_ep.port());
    // Small answers (an SSE event, a JSON-RPC result) must not wait for the client's delayed
    // ACK: measured at ~40 ms per call without this (docs/performance.md).
    socket.set_option(tcp::no_delay(true), ec);
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.header_limit(static_cast<uint32_t>(core::kHttpHeaderBytesMax));
      parser.body_limit(core::kHttpRequestBodyBytesMax);
      stream.expires_after(std::chrono::seconds(options_.idle_timeout_seconds));
      auto [rec, nread] = co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
      if (rec) {
        int status = 0;
        std::string_view code;
        if (rec == http::error::body_limit) {
          status = 413;
          code = "payload_too_large";
        } else if (rec == http::error::header_limit) {
          status = 431;
          code = "bad_request";
        } else if (rec.category() == http::make_error_code(http::error::bad_target).category() && rec != http::error::end_of_stream &&
                   rec != http::error::partial_message) {
          status = 400;
          code = "bad_request";
        }
        if (status != 0) {
          auto res = ToBeast(HttpResponse::Json(status, ErrorBody(code, "malformed or oversize HTTP request: " + rec.message())), false);
          stream.expires_after(std::chrono::seconds(5));
          co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
        }
        break;
      }
      auto req = parser.release();
      bool keep_alive = req.keep_alive();
      HttpRequest hr;
      hr.method = std::string(req.method_string());
      hr.target = std::string(req.target());
      hr.path = hr.target.substr(0, hr.target.find('?'));
      hr.headers.reserve(8);
      for (const auto& f : req) hr.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
      hr.body = std::move(req.body());
      hr.remote = remote;

      auto ch = std::make_shared<Channel>(stream.get_executor(), kStreamMessagesQueuedMax);
      bool submitted;
      {
        auto sink = std::make_shared<ChannelSink>(ch);
        submitted = pool_.Submit([h = &handler_, r = std::move(hr), sink]() mutable { (*h)(std::move(r), std::move(sink)); });
      }
      if (!submitted) {
        auto res = ToBeast(HttpResponse::Json(503, ErrorBody("upstream_unavailable", "server overloaded")), false);
        co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
        break;
      }
      // The handler bounds its own time (upstream timeouts), so no idle timer while it runs.
      stream.expires_never();
      auto [cec, msg] = co_await ch->async_receive(asio::as_tuple(asio::use_awaitable));
      if (cec) break;
      if (msg.kind == SinkMessage::Kind::kFull) {
        auto res = ToBeast(msg.response, keep_alive);
        stream.expires_after(std::chrono::seconds(options_.idle_timeout_seconds));
        auto [wec, nw] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
        if (wec || !keep_alive) break;
        continue;
      }
      if (msg.kind != SinkMessage::Kind::kStart) break;
      http::response<http::empty_body> head{static_cast<http::status>(msg.response.status), 11};
      for (const auto& [k, v] : msg.response.headers) head.set(k, v);
      head.chunked(true);
      head.keep_alive(keep_alive);
      http::response_serializer<http::empty_body> sr{head};
      auto [hec, nh] = co_await http::async_write_header(stream, sr, asio::as_tuple(asio::use_awaitable));
      if (hec) break;
      bool ok = true;
      for (;;) {
        auto [rec2, m] = co_await ch->async_receive(asio::as_tuple(asio::use_awaitable));
        if (rec2) {
          ok = false;
          break;
        }
        if (m.kind == SinkMessage::Kind::kChunk) {
          auto [cwec, ncw] = co_await asio::async_write(stream, http::make_chunk(asio::buffer(m.chunk)),
                                                        asio::as_tuple(asio::use_awaitable));
          if (cwec) {
            ok = false;
            break;
          }
        } else {
          auto [lec, nl] = co_await asio::async_write(stream, http::make_chunk_last(), asio::as_tuple(asio::use_awaitable));
          ok = !lec;
          break;
        }
      }
      if (!ok || !keep_alive) break;
    }
    beast::error_code sec;
    stream.socket().shutdown(tcp::socket::shutdown_send, sec);
  }

  HttpServerOptions options_;
  Handler handler_;
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  WorkerPool pool_;
  std::vector<std::thread> threads_;
  std::atomic<size_t> connections_{0};
  std::atomic<bool> stopped_{false};
  uint16_t port_ = 0;
};

}  // namespace

core::Result<std::unique_ptr<net::HttpServer>> StartEventLoopServer(EventLoopServerOptions options,
                                                                    net::Handler handler) {
  auto server = std::make_unique<ServerImpl>(std::move(options), std::move(handler));
  MANDATE_RETURN_IF_ERROR(server->Listen());
  return std::unique_ptr<net::HttpServer>(std::move(server));
}

}  // namespace mandate::bench
