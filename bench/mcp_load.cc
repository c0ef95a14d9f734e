// mcp_load: the load generator of the governed-vs-direct benchmark (docs/performance.md).
//
//   mcp_load run --url http://127.0.0.1:PORT/PATH [--token T] --mode open|closed
//                [--rate R] [--duration S] [--warmup S] [--connections C] [--max-calls N]
//                [--timeout-ms MS] [--accept both|json] [--label NAME] [--target NAME]
//                [--run N] [--out FILE]
//   mcp_load report [--p99-added-max LABEL:MICROS] [--ratio-min LABEL:X] FILE.json...
//   mcp_load fsync-probe --dir DIR [--count N] [--bytes B]
//   mcp_load switch-probe [--count N]
//
// `run` opens C keep-alive HTTP/1.1 connections to one MCP Streamable HTTP endpoint, one MCP
// session each (initialize, notifications/initialized), then sends tools/call `echo` with a
// unique message per call and checks that exactly that message comes back (JSON or SSE
// answer). Two modes:
//   open    a fixed rate of R calls/s for S seconds. Calls are scheduled by their intended
//           send time, handed to an idle connection (or queued until one is free), and their
//           latency is measured from the intended time, not the actual send, so a stall delays
//           the calls behind it and shows in the percentiles (no coordinated omission).
//   closed  saturation: every connection sends its next call as soon as the previous one is
//           answered, for S seconds; latency is send-to-answer.
// A warmup of --warmup seconds (same mode, same rate) runs first and is not recorded (its
// errors are). The run is bounded in time (warmup + duration + drain, each call by
// --timeout-ms) and in count (--max-calls). Output: one JSON object (count, errors, achieved
// rate, latency percentiles in microseconds). Any error (HTTP status, transport, timeout, a
// wrong or missing echo, a call never finished) is counted, reported loudly on stderr and makes
// the exit status 1. Loopback only: the URL host must be 127.0.0.1.
//
// `report` reads the JSON files of several runs, pairs governed and direct results of the same
// label and run, and prints one row per label: direct and governed p50/p99, the added latency
// (governed minus direct, per run) and the throughput ratio governed/direct, as medians over the
// runs; then, for a label with results of target "floor" (bench/null_proxy.cc: the same calls
// through Mandate's HTTP server and client, no governance), the floor's calls/s and its ratios
// to direct and governed; then a verdict against the targets given. Exit status 1 if any input
// had errors.
//
// `fsync-probe` measures write + fdatasync of a record-sized line in DIR: the floor under every
// durable audit append (a governed call waits for one before its upstream call).
//
// `switch-probe` measures what a thread's sleep and wake-up costs on this machine: two threads
// pass a byte back and forth over a socketpair with blocking reads, N round trips, first both
// pinned to one CPU (two context switches per round trip), then pinned to two different CPUs
// (each wake-up crosses to the other CPU, which may have to be woken from idle); and one
// trivial syscall.
// Every governed call sleeps and is woken several times (the agent's request, the audit
// group commit, the upstream's answer), so this is the floor under the kernel's share of it.
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "mandate/core/json.h"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using mandate::core::Json;
using Clock = std::chrono::steady_clock;
using asio::awaitable;
using asio::use_awaitable;

// Limits: every run is bounded in time and count, and so is what it keeps in memory.
constexpr int kConnectionsMax = 1024;
constexpr double kRateMax = 1e6;  // calls/s
constexpr double kDurationSecondsMax = 600;
constexpr int64_t kCallsMaxDefault = 5'000'000;  // also caps the latency samples kept
constexpr int kDrainMillis = 5000;  // open loop: time to finish calls after the schedule
constexpr size_t kResponseBodyBytesMax = 1 << 20;
// Open loop: answered calls/s below this fraction of the offered rate = not sustained.
constexpr double kSustainedFraction = 0.95;
constexpr const char* kProtocolVersion = "2025-11-25";

struct Options {
  std::string url;
  std::string host;
  std::string port;
  std::string path;
  std::string token;
  bool open_loop = true;
  double rate = 1000;
  double duration_seconds = 10;
  double warmup_seconds = 1;
  int connections = 32;
  int64_t max_calls = kCallsMaxDefault;
  int timeout_millis = 5000;
  std::string label = "run";
  std::string target = "target";
  int run = 1;
  std::string out;
  // Accept header of every request: both media types, as the MCP transport requires of
  // clients (Mandate then answers tools/call as SSE), or only JSON (--accept json).
  std::string accept = "application/json, text/event-stream";
};

[[noreturn]] void Usage(const std::string& why) {
  std::fprintf(stderr, "mcp_load: %s\n", why.c_str());
  std::fprintf(
      stderr,
      "usage: mcp_load run --url http://127.0.0.1:PORT/PATH [--token T] --mode open|closed\n"
      "                    [--rate R] [--duration S] [--warmup S] [--connections C]\n"
      "                    [--max-calls N] [--timeout-ms MS] [--accept both|json]\n"
      "                    [--label L] [--target T] [--run N] [--out FILE]\n"
      "       mcp_load report [--p99-added-max LABEL:MICROS] [--ratio-min LABEL:X] FILE...\n"
      "       mcp_load fsync-probe --dir DIR [--count N] [--bytes B]\n"
      "       mcp_load switch-probe [--count N]\n");
  std::exit(2);
}

double ParseNumber(const std::string& flag, const char* v, double lo, double hi) {
  if (v == nullptr) Usage(flag + " needs a value");
  char* end = nullptr;
  double d = std::strtod(v, &end);
  if (*end != '\0' || !(d >= lo && d <= hi)) {
    Usage(flag + " must be a number from " + std::to_string(lo) + " to " + std::to_string(hi));
  }
  return d;
}

// ---------------------------------------------------------------------------------------------
// Statistics and errors of one run.

struct Stats {
  std::vector<uint64_t> latencies_nanos;  // recorded calls only (not the warmup)
  std::map<std::string, int64_t> errors;  // kind -> count
  std::string first_error;
  int64_t started = 0;  // calls sent, warmup included
  int64_t warmup_ok = 0;
  // Open loop: recorded calls not answered by the deadline (never sent, or cut off in
  // flight). Their latency is kept as a lower bound (deadline - intended time), so the
  // percentiles stay honest; the run then reports itself as overloaded.
  int64_t unfinished = 0;

  void Error(const std::string& kind, const std::string& detail) {
    if (errors.empty()) first_error = kind + ": " + detail;
    ++errors[kind];
  }
  int64_t ErrorCount() const {
    int64_t n = 0;
    for (const auto& [k, v] : errors) n += v;
    return n;
  }
};

double PercentileMicros(const std::vector<uint64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]) / 1000.0;
}

double Round1(double v) { return std::round(v * 10.0) / 10.0; }

// ---------------------------------------------------------------------------------------------
// The answer of one HTTP exchange, and the MCP message in it.

// Finds the JSON-RPC message with `id` in an application/json or text/event-stream body.
// Returns an empty string on success, else what is wrong.
std::string FindRpcAnswer(const http::response<http::string_body>& res, int64_t id, Json* out) {
  std::string_view type = res[http::field::content_type];
  auto matches = [&](Json msg) {
    const Json* mid = msg.Find("id");
    if (mid == nullptr || !mid->is_int() || mid->as_int() != id) return false;
    *out = std::move(msg);
    return true;
  };
  if (type.rfind("application/json", 0) == 0) {
    auto parsed = Json::Parse(res.body());
    if (!parsed.ok()) return "invalid JSON body: " + parsed.error().message;
    if (!matches(std::move(*parsed)))
      return "the JSON body does not answer id " + std::to_string(id);
    return {};
  }
  if (type.rfind("text/event-stream", 0) == 0) {
    // Events are separated by a blank line; the data: lines of one event join with "\n".
    std::string data;
    std::istringstream in(res.body());
    std::string line;
    auto dispatch = [&]() {
      if (data.empty()) return false;
      auto parsed = Json::Parse(data);
      data.clear();
      return parsed.ok() && matches(std::move(*parsed));
    };
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) {
        if (dispatch()) return {};
        continue;
      }
      if (line.rfind("data:", 0) == 0) {
        std::string_view v = std::string_view(line).substr(5);
        if (!v.empty() && v.front() == ' ') v.remove_prefix(1);
        if (!data.empty()) data.push_back('\n');
        data.append(v);
      }
    }
    if (dispatch()) return {};
    return "the event stream does not answer id " + std::to_string(id);
  }
  return "unexpected Content-Type \"" + std::string(type) + "\"";
}

// Checks a tools/call answer: a result (not an error, not isError) whose first content item is
// the text we sent. Returns an empty string when correct.
std::string CheckEcho(const Json& msg, const std::string& message) {
  if (const Json* err = msg.FindObject("error")) return "JSON-RPC error: " + err->Dump();
  const Json* result = msg.FindObject("result");
  if (result == nullptr) return "no result";
  if (const Json* is_error = result->Find("isError");
      is_error && is_error->is_bool() && is_error->as_bool()) {
    return "isError result: " + result->Dump().substr(0, 300);
  }
  const Json* content = result->FindArray("content");
  if (content == nullptr || content->as_array().empty()) return "no content";
  const Json& first = content->as_array().front();
  const std::string* text = first.is_object() ? first.FindString("text") : nullptr;
  if (text == nullptr) return "first content item has no text";
  if (*text != message)
    return "echo mismatch: sent \"" + message + "\", got \"" + text->substr(0, 100) + "\"";
  return {};
}

// ---------------------------------------------------------------------------------------------
// The load run.

class LoadRun {
 public:
  explicit LoadRun(Options options) : o_(std::move(options)), wake_all_(ioc_) {}

  Stats Run(double* elapsed_seconds) {
    asio::co_spawn(ioc_, Main(), [](std::exception_ptr e) {
      if (e) std::rethrow_exception(e);
    });
    ioc_.run();
    *elapsed_seconds = std::chrono::duration<double>(measure_end_ - measure_start_).count();
    return std::move(stats_);
  }

 private:
  struct Job {
    int64_t seq;
    Clock::time_point intended;
  };

  struct Conn {
    explicit Conn(asio::io_context& ioc, int index) : index(index), stream(ioc), wake(ioc) {}
    int index;
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    asio::steady_timer wake;  // an idle connection waits on it; cancel() hands it a job
    std::string session_id;
    std::string request_head;  // every header but Content-Length
    bool has_job = false;
    Job job{};
    bool alive = false;
  };

  struct Answer {
    std::string error_kind;  // empty: ok
    std::string detail;
    Json message;
  };

  // One HTTP exchange on `c`. Errors of the transport end the connection.
  awaitable<Answer> Exchange(Conn& c, const std::string& body, int64_t id, bool expect_answer,
                             http::response<http::string_body>* raw = nullptr) {
    Answer a;
    std::string request = c.request_head;
    request += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    request += body;
    c.stream.expires_after(std::chrono::milliseconds(o_.timeout_millis));
    auto [wec, nw] =
        co_await asio::async_write(c.stream, asio::buffer(request), asio::as_tuple(use_awaitable));
    if (wec) {
      c.alive = false;
      a.error_kind =
          wec == beast::error::timeout ? "timeout" : (stopping_ ? "unfinished" : "transport");
      a.detail = "write: " + wec.message();
      co_return a;
    }
    http::response_parser<http::string_body> parser;
    parser.body_limit(kResponseBodyBytesMax);
    auto [rec, nr] =
        co_await http::async_read(c.stream, c.buffer, parser, asio::as_tuple(use_awaitable));
    if (rec) {
      c.alive = false;
      a.error_kind =
          rec == beast::error::timeout ? "timeout" : (stopping_ ? "unfinished" : "transport");
      a.detail = "read: " + rec.message();
      co_return a;
    }
    auto res = parser.release();
    if (!res.keep_alive()) c.alive = false;
    int status = static_cast<int>(res.result_int());
    if (!expect_answer) {
      if (status != 202 && status != 200) {
        a.error_kind = "http_status";
        a.detail = "HTTP " + std::to_string(status) + ": " + res.body().substr(0, 300);
      }
      co_return a;
    }
    if (status != 200) {
      a.error_kind = "http_status";
      a.detail = "HTTP " + std::to_string(status) + ": " + res.body().substr(0, 300);
      co_return a;
    }
    std::string why = FindRpcAnswer(res, id, &a.message);
    if (!why.empty()) {
      a.error_kind = "bad_answer";
      a.detail = why;
    }
    if (raw != nullptr) *raw = std::move(res);
    co_return a;
  }

  // Connects and runs the MCP handshake. Returns false (error counted) on failure.
  awaitable<bool> Setup(Conn& c) {
    boost::system::error_code ec;
    auto addr = asio::ip::make_address(o_.host, ec);
    if (ec) {
      stats_.Error("connect", "bad host " + o_.host);
      co_return false;
    }
    tcp::endpoint ep(addr, static_cast<uint16_t>(std::stoi(o_.port)));
    c.stream.expires_after(std::chrono::milliseconds(o_.timeout_millis));
    auto [cec] = co_await c.stream.async_connect(ep, asio::as_tuple(use_awaitable));
    if (cec) {
      stats_.Error("connect", o_.host + ":" + o_.port + ": " + cec.message());
      co_return false;
    }
    c.stream.socket().set_option(tcp::no_delay(true));
    c.alive = true;
    auto head = [&](bool with_session) {
      std::string h = "POST " + o_.path + " HTTP/1.1\r\nHost: " + o_.host + ":" + o_.port +
                      "\r\nContent-Type: application/json\r\n"
                      "Accept: " +
                      o_.accept + "\r\n";
      if (!o_.token.empty()) h += "Authorization: Bearer " + o_.token + "\r\n";
      if (with_session) {
        h += std::string("MCP-Protocol-Version: ") + kProtocolVersion + "\r\n";
        if (!c.session_id.empty()) h += "Mcp-Session-Id: " + c.session_id + "\r\n";
      }
      return h;
    };
    c.request_head = head(false);
    std::string init =
        std::string(
            R"({"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":")") +
        kProtocolVersion +
        R"(","capabilities":{},"clientInfo":{"name":"mcp_load","version":"1.0.0"}}})";
    http::response<http::string_body> raw;
    Answer a = co_await Exchange(c, init, 0, true, &raw);
    if (a.error_kind.empty() && a.message.FindObject("result") == nullptr) {
      a.error_kind = "handshake";
      a.detail = "initialize failed: " + a.message.Dump().substr(0, 300);
    }
    if (!a.error_kind.empty()) {
      stats_.Error(a.error_kind == "handshake" ? a.error_kind : "handshake_" + a.error_kind,
                   a.detail);
      co_return false;
    }
    c.session_id = std::string(raw["Mcp-Session-Id"]);
    c.request_head = head(true);
    a = co_await Exchange(c, R"({"jsonrpc":"2.0","method":"notifications/initialized"})", 0, false);
    if (!a.error_kind.empty()) {
      stats_.Error("handshake_" + a.error_kind, "notifications/initialized: " + a.detail);
      co_return false;
    }
    co_return c.alive;
  }

  // One tools/call echo; records the latency from `from` when `record`.
  awaitable<void> Call(Conn& c, int64_t seq, Clock::time_point from, bool record) {
    ++stats_.started;
    const int64_t id = seq + 1;  // 0 was initialize
    std::string message = "bench c" + std::to_string(c.index) + " n" + std::to_string(seq);
    std::string body =
        R"({"jsonrpc":"2.0","id":)" + std::to_string(id) +
        R"(,"method":"tools/call","params":{"name":"echo","arguments":{"message":")" + message +
        R"("}}})";
    Answer a = co_await Exchange(c, body, id, true);
    Clock::time_point done = Clock::now();
    if (a.error_kind.empty()) {
      std::string why = CheckEcho(a.message, message);
      if (!why.empty()) {
        a.error_kind = "wrong_answer";
        a.detail = why;
      }
    }
    if (a.error_kind == "unfinished") {
      if (record) RecordUnfinished(done, from);
      co_return;
    }
    if (!a.error_kind.empty()) {
      stats_.Error(a.error_kind, a.detail);
      co_return;
    }
    if (!record) {
      ++stats_.warmup_ok;
      co_return;
    }
    // Closed loop: a call answered after the end is outside the measured window.
    if (!o_.open_loop && done > closed_end_) co_return;
    if (done > measure_end_) measure_end_ = done;
    if (stats_.latencies_nanos.size() < static_cast<size_t>(o_.max_calls)) {
      stats_.latencies_nanos.push_back(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(done - from).count()));
    }
  }

  void RecordUnfinished(Clock::time_point now, Clock::time_point from) {
    ++stats_.unfinished;
    if (stats_.latencies_nanos.size() < static_cast<size_t>(o_.max_calls)) {
      stats_.latencies_nanos.push_back(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(now - from).count()));
    }
  }

  // Open loop, one connection: take the oldest queued job, or wait to be handed one.
  awaitable<void> OpenWorker(Conn& c) {
    while (c.alive && !stopping_) {
      Job job;
      if (!backlog_.empty()) {
        job = backlog_.front();
        backlog_.pop_front();
      } else if (schedule_done_) {
        break;
      } else {
        c.has_job = false;
        idle_.push_back(&c);
        c.wake.expires_at(Clock::time_point::max());
        co_await c.wake.async_wait(asio::as_tuple(use_awaitable));
        if (!c.has_job) continue;  // woken to stop
        job = c.job;
      }
      co_await Call(c, job.seq, job.intended, job.intended >= measure_start_);
    }
  }

  // Open loop: hands out jobs at their intended times.
  awaitable<void> Schedule(int64_t total) {
    asio::steady_timer timer(ioc_);
    const double period_nanos = 1e9 / o_.rate;
    auto intended = [&](int64_t i) {
      return schedule_start_ +
             std::chrono::nanoseconds(static_cast<int64_t>(static_cast<double>(i) * period_nanos));
    };
    int64_t next = 0;
    while (next < total && !stopping_) {
      Clock::time_point now = Clock::now();
      while (next < total && intended(next) <= now) {
        Job job{next, intended(next)};
        ++next;
        // Idle connections are taken oldest first, so the load spreads over all sessions.
        while (!idle_.empty() && !idle_.front()->alive) idle_.pop_front();
        if (!idle_.empty()) {
          Conn* c = idle_.front();
          idle_.pop_front();
          c->job = job;
          c->has_job = true;
          c->wake.cancel();
        } else {
          backlog_.push_back(job);
        }
      }
      if (next < total) {
        timer.expires_at(intended(next));
        co_await timer.async_wait(asio::as_tuple(use_awaitable));
      }
    }
    schedule_done_ = true;
    for (Conn* c : idle_) c->wake.cancel();
    idle_.clear();
  }

  // Closed loop, one connection: back-to-back calls until the end or the call budget.
  awaitable<void> ClosedWorker(Conn& c) {
    while (c.alive && !stopping_) {
      Clock::time_point start = Clock::now();
      if (start >= closed_end_ || next_seq_ >= o_.max_calls) break;
      int64_t seq = next_seq_++;
      bool record = start >= measure_start_;
      co_await Call(c, seq, start, record);
    }
  }

  awaitable<void> Main() {
    conns_.reserve(static_cast<size_t>(o_.connections));
    for (int i = 0; i < o_.connections; ++i) conns_.push_back(std::make_unique<Conn>(ioc_, i));

    // Handshakes first, all of them, before any clock starts.
    int pending = o_.connections;
    int ready = 0;
    for (auto& c : conns_) {
      asio::co_spawn(ioc_, Setup(*c), [&](std::exception_ptr, bool ok) {
        ready += ok ? 1 : 0;
        if (--pending == 0) wake_all_.cancel();
      });
    }
    co_await WaitFor([&] { return pending == 0; });
    if (ready != o_.connections) {
      std::fprintf(stderr, "mcp_load: only %d of %d connections completed the MCP handshake\n",
                   ready, o_.connections);
      co_return;
    }

    const auto warmup = std::chrono::nanoseconds(static_cast<int64_t>(o_.warmup_seconds * 1e9));
    const auto duration = std::chrono::nanoseconds(static_cast<int64_t>(o_.duration_seconds * 1e9));
    schedule_start_ = Clock::now();
    measure_start_ = schedule_start_ + warmup;
    measure_end_ = measure_start_;
    int running = o_.connections;
    auto finished = [&](std::exception_ptr) {
      if (--running == 0) wake_all_.cancel();
    };

    Clock::time_point hard_deadline;
    if (o_.open_loop) {
      double total_d = std::floor(o_.rate * (o_.warmup_seconds + o_.duration_seconds));
      int64_t total = std::min<int64_t>(static_cast<int64_t>(total_d), o_.max_calls);
      scheduled_ = total;
      asio::co_spawn(ioc_, Schedule(total), asio::detached);
      for (auto& c : conns_) asio::co_spawn(ioc_, OpenWorker(*c), finished);
      hard_deadline = measure_start_ + duration + std::chrono::milliseconds(kDrainMillis);
    } else {
      closed_end_ = measure_start_ + duration;
      for (auto& c : conns_) asio::co_spawn(ioc_, ClosedWorker(*c), finished);
      hard_deadline = closed_end_ + std::chrono::milliseconds(o_.timeout_millis + 1000);
    }
    co_await WaitFor([&] { return running == 0; }, hard_deadline);
    if (running > 0) {
      // Past the deadline: stop, and count what never finished.
      stopping_ = true;
      for (auto& c : conns_) {
        c->wake.cancel();
        beast::get_lowest_layer(c->stream).cancel();
      }
      co_await WaitFor([&] { return running == 0; });
    }
    if (o_.open_loop) {
      // Calls still queued were never sent: the endpoint did not keep up with the rate.
      Clock::time_point now = Clock::now();
      for (const Job& job : backlog_) {
        if (job.intended >= measure_start_) RecordUnfinished(now, job.intended);
      }
      backlog_.clear();
      measure_end_ = std::max(measure_end_, measure_start_ + duration);
    } else {
      measure_end_ = closed_end_;
    }
    for (auto& c : conns_) {
      boost::system::error_code ec;
      c->stream.socket().shutdown(tcp::socket::shutdown_both, ec);
      c->stream.socket().close(ec);
    }
  }

  // Waits (off the hot path: a 1 ms poll, or an early wake by wake_all_.cancel()) until
  // `done` holds or `deadline` passes.
  template <typename Pred>
  awaitable<void> WaitFor(Pred done, Clock::time_point deadline = Clock::time_point::max()) {
    while (!done() && Clock::now() < deadline) {
      wake_all_.expires_after(std::chrono::milliseconds(1));
      co_await wake_all_.async_wait(asio::as_tuple(use_awaitable));
    }
  }

  Options o_;
  asio::io_context ioc_{1};
  asio::steady_timer wake_all_;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::deque<Conn*> idle_;
  std::deque<Job> backlog_;
  Stats stats_;
  Clock::time_point schedule_start_{};
  Clock::time_point measure_start_{};
  Clock::time_point measure_end_{};
  Clock::time_point closed_end_{};
  int64_t scheduled_ = 0;
  int64_t next_seq_ = 0;
  bool schedule_done_ = false;
  bool stopping_ = false;
};

int RunCommand(int argc, char** argv) {
  Options o;
  bool mode_set = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (v == nullptr) Usage(a + " needs a value");
    if (a == "--url")
      o.url = v;
    else if (a == "--token")
      o.token = v;
    else if (a == "--mode") {
      std::string m = v;
      if (m != "open" && m != "closed") Usage("--mode is open or closed");
      o.open_loop = m == "open";
      mode_set = true;
    } else if (a == "--rate")
      o.rate = ParseNumber(a, v, 1, kRateMax);
    else if (a == "--duration")
      o.duration_seconds = ParseNumber(a, v, 0.1, kDurationSecondsMax);
    else if (a == "--warmup")
      o.warmup_seconds = ParseNumber(a, v, 0, kDurationSecondsMax);
    else if (a == "--connections")
      o.connections = static_cast<int>(ParseNumber(a, v, 1, kConnectionsMax));
    else if (a == "--max-calls")
      o.max_calls = static_cast<int64_t>(ParseNumber(a, v, 1, kCallsMaxDefault));
    else if (a == "--timeout-ms")
      o.timeout_millis = static_cast<int>(ParseNumber(a, v, 1, 60000));
    else if (a == "--label")
      o.label = v;
    else if (a == "--target")
      o.target = v;
    else if (a == "--run")
      o.run = static_cast<int>(ParseNumber(a, v, 1, 1000));
    else if (a == "--out")
      o.out = v;
    else if (a == "--accept") {
      std::string m = v;
      if (m != "both" && m != "json") Usage("--accept is both or json");
      o.accept = m == "json" ? "application/json" : "application/json, text/event-stream";
    } else
      Usage("unknown flag " + a);
    ++i;
  }
  if (!mode_set) Usage("--mode is required");
  // Loopback only: http://127.0.0.1:PORT/PATH.
  constexpr std::string_view kPrefix = "http://127.0.0.1:";
  if (o.url.rfind(kPrefix, 0) != 0)
    Usage("--url must start with http://127.0.0.1: (loopback only)");
  std::string rest = o.url.substr(kPrefix.size());
  size_t slash = rest.find('/');
  o.host = "127.0.0.1";
  o.port = rest.substr(0, slash);
  o.path = slash == std::string::npos ? "/" : rest.substr(slash);
  if (o.port.empty() || o.port.find_first_not_of("0123456789") != std::string::npos ||
      o.port.size() > 5) {
    Usage("bad port in --url");
  }

  double elapsed = 0;
  Stats stats = LoadRun(o).Run(&elapsed);
  std::sort(stats.latencies_nanos.begin(), stats.latencies_nanos.end());
  const auto& lat = stats.latencies_nanos;
  double mean = 0;
  for (uint64_t n : lat) mean += static_cast<double>(n);
  mean = lat.empty() ? 0 : mean / static_cast<double>(lat.size()) / 1000.0;
  int64_t errors = stats.ErrorCount();

  Json out = Json::MakeObject();
  out.Set("label", o.label);
  out.Set("target", o.target);
  out.Set("run", o.run);
  out.Set("mode", o.open_loop ? "open" : "closed");
  out.Set("connections", o.connections);
  if (o.open_loop) out.Set("rate_target", o.rate);
  out.Set("duration_s", o.duration_seconds);
  out.Set("warmup_s", o.warmup_seconds);
  out.Set("accept", o.accept);
  const int64_t completed = static_cast<int64_t>(lat.size()) - stats.unfinished;
  out.Set("count", completed);
  out.Set("errors", errors);
  // Calls not answered by the deadline (open loop, overloaded endpoint). When > 0 the
  // percentiles include them at their lower bound, so they are lower bounds too.
  out.Set("unfinished", stats.unfinished);
  out.Set("calls_sent", stats.started);  // warmup included
  Json kinds = Json::MakeObject();
  for (const auto& [k, v] : stats.errors) kinds.Set(k, v);
  const std::string kinds_text = kinds.Dump();
  out.Set("error_kinds", std::move(kinds));
  if (!stats.first_error.empty()) out.Set("first_error", stats.first_error);
  const double achieved = elapsed > 0 ? static_cast<double>(completed) / elapsed : 0;
  out.Set("achieved_rate", Round1(achieved));
  // Open loop: the endpoint kept up when every call was answered and the answers came at
  // (nearly) the offered rate; otherwise the calls queued up behind it.
  const bool sustained =
      !o.open_loop || (stats.unfinished == 0 && achieved >= kSustainedFraction * o.rate);
  if (o.open_loop) out.Set("rate_sustained", sustained);
  Json l = Json::MakeObject();
  l.Set("p50", Round1(PercentileMicros(lat, 0.50)));
  l.Set("p90", Round1(PercentileMicros(lat, 0.90)));
  l.Set("p99", Round1(PercentileMicros(lat, 0.99)));
  l.Set("max", Round1(lat.empty() ? 0 : static_cast<double>(lat.back()) / 1000.0));
  l.Set("mean", Round1(mean));
  out.Set("latency_us", std::move(l));
  std::string text = out.Dump();
  std::printf("%s\n", text.c_str());
  if (!o.out.empty()) {
    std::ofstream f(o.out, std::ios::trunc);
    f << text << "\n";
    if (!f) {
      std::fprintf(stderr, "mcp_load: cannot write %s\n", o.out.c_str());
      return 1;
    }
  }
  if (!sustained && stats.unfinished == 0) {
    std::fprintf(stderr,
                 "\n!!!!! mcp_load: %s %s run %d DID NOT SUSTAIN %.0f calls/s (answered %.1f "
                 "calls/s): calls "
                 "queued behind the endpoint, and their wait is in the latencies\n\n",
                 o.label.c_str(), o.target.c_str(), o.run, o.rate, achieved);
  }
  if (stats.unfinished > 0) {
    std::fprintf(
        stderr,
        "\n!!!!! mcp_load: %s %s run %d OVERLOADED: %lld calls were not answered within %d ms "
        "after the schedule ended; the latency percentiles are lower bounds\n\n",
        o.label.c_str(), o.target.c_str(), o.run, static_cast<long long>(stats.unfinished),
        kDrainMillis);
  }
  if (errors > 0 || completed == 0) {
    std::fprintf(stderr,
                 "\n!!!!! mcp_load: %s %s run %d HAD %lld ERRORS (%s); first: %s\n"
                 "!!!!! its numbers are not a valid measurement\n\n",
                 o.label.c_str(), o.target.c_str(), o.run, static_cast<long long>(errors),
                 kinds_text.c_str(),
                 stats.first_error.empty() ? "no call completed" : stats.first_error.c_str());
    return 1;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// report

double Median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

struct RunResult {
  double p50 = 0, p99 = 0, rate = 0;
  int64_t unfinished = 0;
  bool sustained = true;
};

std::pair<std::string, double> ParseTargetFlag(const std::string& flag, const char* v) {
  if (v == nullptr) Usage(flag + " needs LABEL:VALUE");
  std::string s = v;
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) Usage(flag + " needs LABEL:VALUE");
  return {s.substr(0, colon), ParseNumber(flag, s.c_str() + colon + 1, 0, 1e12)};
}

int ReportCommand(int argc, char** argv) {
  std::vector<std::pair<std::string, double>> p99_targets;
  std::vector<std::pair<std::string, double>> ratio_targets;
  std::vector<std::string> files;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--p99-added-max") {
      p99_targets.push_back(ParseTargetFlag(a, v));
      ++i;
    } else if (a == "--ratio-min") {
      ratio_targets.push_back(ParseTargetFlag(a, v));
      ++i;
    } else if (a.rfind("--", 0) == 0) {
      Usage("unknown flag " + a);
    } else {
      files.push_back(a);
    }
  }
  if (files.empty()) Usage("report needs result files");

  std::vector<std::string> labels;  // first-seen order
  std::map<std::string, std::string> loads;
  // label -> run -> target -> result
  std::map<std::string, std::map<int64_t, std::map<std::string, RunResult>>> results;
  int64_t total_errors = 0;
  for (const std::string& f : files) {
    std::ifstream in(f);
    std::stringstream ss;
    ss << in.rdbuf();
    auto j = Json::Parse(ss.str());
    if (!in || !j.ok() || !j->is_object()) {
      std::fprintf(stderr, "mcp_load report: cannot read %s\n", f.c_str());
      return 1;
    }
    std::string label = j->GetString("label");
    if (std::find(labels.begin(), labels.end(), label) == labels.end()) labels.push_back(label);
    std::string conns = std::to_string(j->GetInt("connections", 0)) + "c";
    if (j->GetString("mode") == "open") {
      const Json* rate = j->Find("rate_target");
      loads[label] =
          std::to_string(static_cast<int64_t>(rate && rate->is_number() ? rate->as_double() : 0)) +
          "/s " + conns;
    } else {
      loads[label] = "max " + conns;
    }
    int64_t errors = j->GetInt("errors", 0);
    if (errors > 0) {
      std::fprintf(stderr, "!!!!! %s: %lld errors (%s)\n", f.c_str(),
                   static_cast<long long>(errors), j->GetString("first_error").c_str());
    }
    total_errors += errors;
    const Json* l = j->FindObject("latency_us");
    const Json* rate = j->Find("achieved_rate");
    RunResult r;
    if (l != nullptr) {
      r.p50 = l->Find("p50") ? l->Find("p50")->as_double() : 0;
      r.p99 = l->Find("p99") ? l->Find("p99")->as_double() : 0;
    }
    r.rate = rate && rate->is_number() ? rate->as_double() : 0;
    r.unfinished = j->GetInt("unfinished", 0);
    if (const Json* sus = j->Find("rate_sustained"); sus && sus->is_bool())
      r.sustained = sus->as_bool();
    results[label][j->GetInt("run", 1)][j->GetString("target")] = r;
  }

  std::printf("%-11s %-10s %4s | %9s %9s | %9s %9s | %9s %9s | %8s %8s %7s\n", "scenario", "load",
              "runs", "direct", "direct", "governed", "governed", "added", "added", "direct",
              "governed", "gov/dir");
  std::printf("%-11s %-10s %4s | %9s %9s | %9s %9s | %9s %9s | %8s %8s %7s\n", "", "", "", "p50 us",
              "p99 us", "p50 us", "p99 us", "p50 us", "p99 us", "calls/s", "calls/s", "thruput");
  std::map<std::string, double> added_p99_of, ratio_of;
  std::vector<std::string> notes;
  for (const std::string& label : labels) {
    std::vector<double> dp50, dp99, gp50, gp99, ap50, ap99, drate, grate, ratio;
    int64_t d_unfinished = 0, g_unfinished = 0;
    bool d_sustained = true, g_sustained = true;
    for (const auto& [run, by_target] : results[label]) {
      auto d = by_target.find("direct");
      auto g = by_target.find("governed");
      if (d == by_target.end() || g == by_target.end()) continue;  // unpaired: no ratio
      dp50.push_back(d->second.p50);
      dp99.push_back(d->second.p99);
      gp50.push_back(g->second.p50);
      gp99.push_back(g->second.p99);
      ap50.push_back(g->second.p50 - d->second.p50);
      ap99.push_back(g->second.p99 - d->second.p99);
      drate.push_back(d->second.rate);
      grate.push_back(g->second.rate);
      ratio.push_back(d->second.rate > 0 ? g->second.rate / d->second.rate : 0);
      d_unfinished += d->second.unfinished;
      g_unfinished += g->second.unfinished;
      d_sustained = d_sustained && d->second.sustained;
      g_sustained = g_sustained && g->second.sustained;
    }
    if (ratio.empty()) {
      std::printf("%-11s (no paired direct/governed runs)\n", label.c_str());
      continue;
    }
    added_p99_of[label] = Median(ap99);
    ratio_of[label] = Median(ratio);
    // '>' marks a lower bound: some calls of that side were never answered (overloaded).
    auto cell = [](double v, bool lower_bound) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%s%.1f", lower_bound ? ">" : "", v);
      return std::string(buf);
    };
    bool d_lb = d_unfinished > 0, g_lb = g_unfinished > 0;
    std::printf("%-11s %-10s %4zu | %9s %9s | %9s %9s | %9s %9s | %8.0f %8.0f %6.2fx\n",
                label.c_str(), loads[label].c_str(), ratio.size(), cell(Median(dp50), d_lb).c_str(),
                cell(Median(dp99), d_lb).c_str(), cell(Median(gp50), g_lb).c_str(),
                cell(Median(gp99), g_lb).c_str(), cell(Median(ap50), g_lb).c_str(),
                cell(Median(ap99), g_lb).c_str(), Median(drate), Median(grate), Median(ratio));
    if (d_lb || g_lb) {
      notes.push_back(label + ": OVERLOADED, " + std::to_string(g_unfinished) + " governed and " +
                      std::to_string(d_unfinished) +
                      " direct calls not answered in time (lower bounds marked >)");
    } else if (!d_sustained || !g_sustained) {
      notes.push_back(label + ": the " +
                      (g_sustained   ? "direct"
                       : d_sustained ? "governed"
                                     : "direct and governed") +
                      " side did not sustain the offered rate; queueing is in its latencies");
    }
  }
  std::printf(
      "(medians over runs; added = governed - direct of the same run; gov/dir = governed / direct "
      "calls/s)\n");
  for (const std::string& n : notes) std::printf("!! %s\n", n.c_str());
  // The floor: the same calls through Mandate's HTTP server and client with no governance
  // (bench/null_proxy.cc), so the governed figure splits into the I/O model's cost and the rest.
  for (const std::string& label : labels) {
    std::vector<double> frate, fp50, floor_ratio, gov_over_floor;
    int64_t f_unfinished = 0;
    for (const auto& [run, by_target] : results[label]) {
      auto f = by_target.find("floor");
      auto d = by_target.find("direct");
      if (f == by_target.end() || d == by_target.end()) continue;
      frate.push_back(f->second.rate);
      fp50.push_back(f->second.p50);
      f_unfinished += f->second.unfinished;
      floor_ratio.push_back(d->second.rate > 0 ? f->second.rate / d->second.rate : 0);
      if (auto g = by_target.find("governed"); g != by_target.end() && f->second.rate > 0)
        gov_over_floor.push_back(g->second.rate / f->second.rate);
    }
    if (frate.empty()) continue;
    std::printf("floor %s: %zu run(s), no governance (Mandate's HTTP server and client only): %s%.0f "
                "calls/s, p50 %.1f us, floor/direct %.2fx",
                label.c_str(), frate.size(), f_unfinished > 0 ? ">" : "", Median(frate), Median(fp50),
                Median(floor_ratio));
    if (!gov_over_floor.empty()) std::printf(", governed/floor %.2fx", Median(gov_over_floor));
    std::printf("\n");
  }

  std::string verdict;
  bool all_met = true;
  for (const auto& [label, max_us] : p99_targets) {
    auto it = added_p99_of.find(label);
    bool met = it != added_p99_of.end() && it->second < max_us;
    all_met = all_met && met;
    char buf[256];
    std::snprintf(buf, sizeof buf, "p99 added at %s = %.0f us (target < %.0f us): %s; ",
                  label.c_str(), it == added_p99_of.end() ? NAN : it->second, max_us,
                  met ? "MET" : "MISSED");
    verdict += buf;
  }
  for (const auto& [label, min_ratio] : ratio_targets) {
    auto it = ratio_of.find(label);
    bool met = it != ratio_of.end() && it->second >= min_ratio;
    all_met = all_met && met;
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "throughput governed/direct at %s = %.2fx (target >= %.2fx): %s; ", label.c_str(),
                  it == ratio_of.end() ? NAN : it->second, min_ratio, met ? "MET" : "MISSED");
    verdict += buf;
  }
  if (!verdict.empty()) {
    verdict.resize(verdict.size() - 2);
    std::printf("verdict: %s => %s\n", verdict.c_str(),
                all_met ? "all targets met" : "TARGETS MISSED");
  }
  if (total_errors > 0) {
    std::printf("!!!!! %lld ERRORS in these runs: the numbers above are not valid measurements\n",
                static_cast<long long>(total_errors));
    return 1;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------------
// fsync-probe: what one durable append costs on the disk of a directory, the floor under the
// audit log's group commit. Appends a record-sized line and fdatasyncs it, --count times.

int FsyncProbeCommand(int argc, char** argv) {
  std::string dir;
  int count = 500;
  int bytes = 600;  // about the size of one call.decided audit record
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--dir" && v != nullptr)
      dir = v;
    else if (a == "--count")
      count = static_cast<int>(ParseNumber(a, v, 1, 100000));
    else if (a == "--bytes")
      bytes = static_cast<int>(ParseNumber(a, v, 1, 1 << 20));
    else
      Usage("fsync-probe: unknown flag " + a);
    ++i;
  }
  if (dir.empty()) Usage("fsync-probe needs --dir");
  std::string path = dir + "/fsync-probe.tmp";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::fprintf(stderr, "mcp_load fsync-probe: cannot create %s: %s\n", path.c_str(),
                 std::strerror(errno));
    return 1;
  }
  std::string line(static_cast<size_t>(bytes) - 1, 'x');
  line.push_back('\n');
  std::vector<uint64_t> nanos;
  nanos.reserve(static_cast<size_t>(count));
  bool ok = true;
  for (int i = 0; i < count && ok; ++i) {
    Clock::time_point t0 = Clock::now();
    ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
         ::fdatasync(fd) == 0;
    nanos.push_back(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
  }
  ::close(fd);
  ::unlink(path.c_str());
  if (!ok) {
    std::fprintf(stderr, "mcp_load fsync-probe: write or fdatasync failed: %s\n",
                 std::strerror(errno));
    return 1;
  }
  std::sort(nanos.begin(), nanos.end());
  Json out = Json::MakeObject();
  out.Set("count", count);
  out.Set("bytes", bytes);
  Json l = Json::MakeObject();
  l.Set("p50", Round1(PercentileMicros(nanos, 0.50)));
  l.Set("p99", Round1(PercentileMicros(nanos, 0.99)));
  l.Set("max", Round1(static_cast<double>(nanos.back()) / 1000.0));
  out.Set("write_fdatasync_us", std::move(l));
  std::printf("%s\n", out.Dump().c_str());
  return 0;
}

// ---------------------------------------------------------------------------------------------
// switch-probe: the cost of a thread's sleep and wake-up, the unit the kernel's share of a
// governed call is made of (docs/performance.md).

// Pins the calling thread to `cpu`; false if the kernel refuses.
bool PinToCpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

// `count` round trips of one byte between this thread, pinned to `cpu_here`, and a second
// thread pinned to `cpu_echo`, over a socketpair, each side sleeping in a blocking read.
// Sorted nanoseconds per round trip, or empty if a read, a write or the pinning failed.
std::vector<uint64_t> PingPong(int count, int cpu_here, int cpu_echo) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return {};
  std::atomic<bool> echo_pinned{false};
  std::thread echo([&] {
    echo_pinned = PinToCpu(cpu_echo);
    char c;
    while (::read(sv[1], &c, 1) == 1 && ::write(sv[1], &c, 1) == 1) {
    }
  });
  // The caller's own affinity is restored afterwards: the probe must not change the process.
  cpu_set_t before;
  const bool have_before = pthread_getaffinity_np(pthread_self(), sizeof before, &before) == 0;
  const bool pinned = PinToCpu(cpu_here);
  std::vector<uint64_t> nanos;
  nanos.reserve(static_cast<size_t>(count));
  char c = 'x';
  bool ok = true;
  for (int i = 0; i < count && ok; ++i) {
    Clock::time_point t0 = Clock::now();
    ok = ::write(sv[0], &c, 1) == 1 && ::read(sv[0], &c, 1) == 1;
    nanos.push_back(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count()));
  }
  ::shutdown(sv[0], SHUT_RDWR);  // the echo thread's read returns 0
  echo.join();
  ::close(sv[0]);
  ::close(sv[1]);
  if (have_before) pthread_setaffinity_np(pthread_self(), sizeof before, &before);
  if (!ok || !pinned || !echo_pinned) return {};
  std::sort(nanos.begin(), nanos.end());
  return nanos;
}

int SwitchProbeCommand(int argc, char** argv) {
  int count = 2000;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--count")
      count = static_cast<int>(ParseNumber(a, v, 1, 1000000));
    else
      Usage("switch-probe: unknown flag " + a);
    ++i;
  }
  // The first two CPUs the process may run on (pinned, so the figures do not depend on where
  // the scheduler happens to place the two threads).
  std::vector<int> cpus;
  cpu_set_t mine;
  if (pthread_getaffinity_np(pthread_self(), sizeof mine, &mine) == 0) {
    for (int c = 0; c < CPU_SETSIZE && cpus.size() < 2; ++c) {
      if (CPU_ISSET(c, &mine)) cpus.push_back(c);
    }
  }
  if (cpus.empty()) {
    std::fprintf(stderr, "mcp_load switch-probe: cannot read the CPU affinity: %s\n",
                 std::strerror(errno));
    return 1;
  }
  const auto percentiles = [](const std::vector<uint64_t>& nanos) {
    Json l = Json::MakeObject();
    l.Set("p50", Round1(PercentileMicros(nanos, 0.50)));
    l.Set("p99", Round1(PercentileMicros(nanos, 0.99)));
    return l;
  };
  Json out = Json::MakeObject();
  out.Set("count", count);
  const std::vector<uint64_t> one = PingPong(count, cpus[0], cpus[0]);
  if (one.empty()) {
    std::fprintf(stderr, "mcp_load switch-probe: round trips on CPU %d failed: %s\n", cpus[0],
                 std::strerror(errno));
    return 1;
  }
  out.Set("one_cpu_round_trip_us", percentiles(one));
  // Across two CPUs: null on a machine with one.
  const std::vector<uint64_t> two =
      cpus.size() == 2 ? PingPong(count, cpus[0], cpus[1]) : std::vector<uint64_t>{};
  out.Set("two_cpu_round_trip_us", two.empty() ? Json() : percentiles(two));
  constexpr int kSyscalls = 200000;
  Clock::time_point t0 = Clock::now();
  for (int i = 0; i < kSyscalls; ++i) ::syscall(SYS_getppid);
  const double ns = static_cast<double>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
  out.Set("syscall_ns", Round1(ns / kSyscalls));
  std::printf("%s\n", out.Dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) Usage("a command is required (run or report)");
  std::string cmd = argv[1];
  if (cmd == "run") return RunCommand(argc, argv);
  if (cmd == "report") return ReportCommand(argc, argv);
  if (cmd == "fsync-probe") return FsyncProbeCommand(argc, argv);
  if (cmd == "switch-probe") return SwitchProbeCommand(argc, argv);
  Usage("unknown command " + cmd);
}
