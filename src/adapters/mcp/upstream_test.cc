// Tests of the MCP upstream clients against tests/fixtures/mcp_fixture_server.mjs (a tiny
// Node MCP server), over stdio and Streamable HTTP. Skipped when `node` is not in PATH. The
// repository root comes from MANDATE_SOURCE_DIR, else from this file's path.
#include "mandate/adapters/mcp/upstream.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "adapters/mcp/upstream_common.h"
#include "core/temp_dir_test_util.h"
#include "mandate/core/limits.h"
#include "mandate/net/http.h"

extern char** environ;

namespace mandate::adapters::mcp {
namespace {

using core::ActionClass;
using core::ErrorCode;
using core::Json;
using Clock = std::chrono::steady_clock;

// --- helpers -----------------------------------------------------------------------------------

std::string RepoRoot() {
  if (const char* env = std::getenv("MANDATE_SOURCE_DIR"); env != nullptr && *env != '\0') {
    return env;
  }
  std::string file = __FILE__;
  size_t pos = file.rfind("src/adapters/mcp/upstream_test.cc");
  std::string root = pos == std::string::npos ? "" : file.substr(0, pos);
  return root.empty() ? "." : root;
}

std::string FixturePath() { return RepoRoot() + "/tests/fixtures/mcp_fixture_server.mjs"; }

bool HaveNode() {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  std::stringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && ::access((dir + "/node").c_str(), X_OK) == 0) return true;
  }
  return false;
}

bool WaitFor(const std::function<bool()>& condition, int millis = 10000) {
  auto until = Clock::now() + std::chrono::milliseconds(millis);
  while (Clock::now() < until) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return condition();
}

// The fixture's --record file: one JSON value per line.
std::vector<Json> ReadRecord(const std::string& path) {
  std::vector<Json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto j = Json::Parse(line);
    if (j.ok()) out.push_back(std::move(*j));
  }
  return out;
}

// The messages of a record (stdio: "message"; HTTP: "message" of POSTs).
std::vector<Json> RecordedMessages(const std::string& path) {
  std::vector<Json> out;
  for (const Json& e : ReadRecord(path)) {
    if (const Json* m = e.FindObject("message")) out.push_back(*m);
  }
  return out;
}

size_t CountMethod(const std::vector<Json>& messages, const std::string& method) {
  size_t n = 0;
  for (const Json& m : messages) n += m.GetString("method") == method ? 1 : 0;
  return n;
}

// The id of the first recorded tools/call of `tool`, or -1.
int64_t RecordedCallId(const std::string& path, const std::string& tool) {
  for (const Json& m : RecordedMessages(path)) {
    const Json* params = m.FindObject("params");
    if (m.GetString("method") == "tools/call" && params != nullptr &&
        params->GetString("name") == tool) {
      return m.GetInt("id", -1);
    }
  }
  return -1;
}

bool RecordedCancelFor(const std::string& path, int64_t id) {
  for (const Json& m : RecordedMessages(path)) {
    const Json* params = m.FindObject("params");
    if (m.GetString("method") == "notifications/cancelled" && params != nullptr &&
        params->GetInt("requestId", -2) == id) {
      return true;
    }
  }
  return false;
}

std::string FirstText(const Json& result) {
  const Json* content = result.FindArray("content");
  if (content == nullptr || content->as_array().empty()) return "";
  return content->as_array()[0].GetString("text");
}

Json Args(std::initializer_list<std::pair<const char*, Json>> members) {
  Json o = Json::MakeObject();
  for (const auto& [k, v] : members) o.Set(k, v);
  return o;
}

size_t CountOpenFds() {
  size_t n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  while (::readdir(d) != nullptr) ++n;
  ::closedir(d);
  return n;
}

// Children of this process (from /proc/self/task/*/children), or -1 when unavailable.
int CountChildProcesses() {
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return -1;
  int n = 0;
  bool any = false;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/children");
    if (!in) continue;
    any = true;
    std::string pid;
    while (in >> pid) ++n;
  }
  ::closedir(d);
  return any ? n : -1;
}

using core::testing::TempDir;

// The fixture in HTTP mode, as a child process of the test.
class HttpFixture {
 public:
  // Returns false (with a message in *error) if it did not come up.
  bool Start(std::vector<std::string> extra, std::string* error) {
    std::vector<std::string> args = {"node", FixturePath(), "--http"};
    args.insert(args.end(), extra.begin(), extra.end());
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return false;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int rc = ::posix_spawnp(&pid_, "node", &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    ::close(out[1]);
    if (rc != 0) {
      ::close(out[0]);
      *error = "spawn failed";
      return false;
    }
    std::string line;
    auto until = Clock::now() + std::chrono::seconds(10);
    while (line.find('\n') == std::string::npos && Clock::now() < until) {
      pollfd p{out[0], POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[256];
      ssize_t r = ::read(out[0], buf, sizeof buf);
      if (r <= 0) break;
      line.append(buf, static_cast<size_t>(r));
    }
    ::close(out[0]);
    if (line.rfind("LISTENING ", 0) != 0) {
      *error = "fixture did not start: " + line;
      return false;
    }
    port_ = std::stoi(line.substr(10));
    return true;
  }
  ~HttpFixture() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status;
      ::waitpid(pid_, &status, 0);
    }
  }
  std::string Url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/mcp"; }
  std::string ControlUrl() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/control";
  }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

// --- pure pieces (no node needed) ----------------------------------------------------------------

TEST(SseParserTest, JoinsDataLinesAndSkipsPrimingEventsAndComments) {
  internal::SseStream s = internal::ParseSse(
      "id: a/0\r\nretry: 25\r\ndata:\r\n\r\n: comment\n\nevent: message\ndata: {\"x\":\ndata: "
      "1}\n\n"
      "id: a/1\ndata:{\"y\":2}\rdata: z\r\r");
  ASSERT_EQ(s.events.size(), 2u);
  EXPECT_EQ(s.events[0].data, "{\"x\":\n1}");
  EXPECT_EQ(s.events[0].type, "message");
  EXPECT_EQ(s.events[0].id, "a/0");
  EXPECT_EQ(s.events[1].data, "{\"y\":2}\nz");
  EXPECT_EQ(s.events[1].id, "a/1");
  EXPECT_EQ(s.last_event_id, "a/1");
  ASSERT_TRUE(s.retry_millis.has_value());
  EXPECT_EQ(*s.retry_millis, 25);
}

TEST(SseParserTest, DeliversAnEventCutOffByTheEndOfTheBody) {
  internal::SseStream s = internal::ParseSse("data: {\"a\":1}");
  ASSERT_EQ(s.events.size(), 1u);
  EXPECT_EQ(s.events[0].data, "{\"a\":1}");
}

TEST(AnnotationsTest, MapHintsToClasses) {
  auto cls = [](const char* json) { return internal::ClassFromAnnotations(*Json::Parse(json)); };
  EXPECT_EQ(cls(R"({"name":"a","annotations":{"readOnlyHint":true}})"), ActionClass::kRead);
  EXPECT_EQ(cls(R"({"name":"a","annotations":{"readOnlyHint":true,"destructiveHint":true}})"),
            ActionClass::kRead);
  EXPECT_EQ(cls(R"({"name":"a","annotations":{"destructiveHint":false}})"), ActionClass::kWrite);
  EXPECT_EQ(cls(R"({"name":"a","annotations":{"destructiveHint":true}})"), std::nullopt);
  EXPECT_EQ(cls(R"({"name":"a","annotations":{"readOnlyHint":"yes"}})"), std::nullopt);
  EXPECT_EQ(cls(R"({"name":"a"})"), std::nullopt);
}

TEST(ListAllToolsTest, RejectsRepeatedCursorsAndDuplicateNames) {
  auto repeat = internal::ListAllTools("u", [](const Json&) {
    return core::Result<Json>(*Json::Parse(R"({"tools":[],"nextCursor":"same"})"));
  });
  ASSERT_FALSE(repeat.ok());
  EXPECT_EQ(repeat.error().code, ErrorCode::kUpstreamError);
  int page = 0;
  auto dup = internal::ListAllTools("u", [&](const Json&) {
    return core::Result<Json>(*Json::Parse(page++ == 0
                                               ? R"({"tools":[{"name":"a"}],"nextCursor":"2"})"
                                               : R"({"tools":[{"name":"a"}]})"));
  });
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.error().message.find("twice"), std::string::npos);
  auto nameless = internal::ListAllTools("u", [](const Json&) {
    return core::Result<Json>(*Json::Parse(R"({"tools":[{"description":"x"}]})"));
  });
  EXPECT_FALSE(nameless.ok());
}

TEST(ResultOfResponseTest, JsonRpcErrorNamesCodeAndMessage) {
  auto r = internal::ResultOfResponse(
      "u", "tools/call",
      *Json::Parse(R"({"jsonrpc":"2.0","id":1,"error":{"code":-32042,"message":"boom"}})"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUpstreamError);
  EXPECT_NE(r.error().message.find("-32042: boom"), std::string::npos);
  auto not_object =
      internal::ResultOfResponse("u", "tools/call", *Json::Parse(R"({"id":1,"result":3})"));
  EXPECT_FALSE(not_object.ok());
}

TEST(InflightLimiterTest, FullQueueFailsFastAndStopReleasesWaiters) {
  internal::InflightLimiter limiter(1, 1);
  auto far = internal::DeadlineAfterMillis(10000);
  ASSERT_TRUE(limiter.Acquire("u", far).ok());
  std::atomic<int> waiter_code{-1};
  std::thread waiter([&] {
    auto s = limiter.Acquire("u", far);
    waiter_code = s.ok() ? 100 : static_cast<int>(s.error().code);
  });
  // Once the waiter occupies the single queue place, a third caller is refused at once.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto t0 = Clock::now();
  core::Status third = limiter.Acquire("u", internal::DeadlineAfterMillis(5000));
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(1000));
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().code, ErrorCode::kUpstreamUnavailable);
  limiter.Stop();
  waiter.join();
  EXPECT_EQ(waiter_code.load(), static_cast<int>(ErrorCode::kUpstreamUnavailable));
}

TEST(InflightLimiterTest, TimesOutWaitingForASlot) {
  internal::InflightLimiter limiter(1, 4);
  ASSERT_TRUE(limiter.Acquire("u", internal::DeadlineAfterMillis(1000)).ok());
  auto s = limiter.Acquire("u", internal::DeadlineAfterMillis(30));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::kUpstreamTimeout);
  limiter.Release();
  EXPECT_TRUE(limiter.Acquire("u", internal::DeadlineAfterMillis(30)).ok());
}

TEST(UpstreamOptionsTest, RejectsInvalidOptions) {
  StdioUpstreamOptions no_command;
  no_command.name = "x";
  auto a = StartStdioUpstream(no_command);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.error().code, ErrorCode::kBadRequest);
  StdioUpstreamOptions zero;
  zero.name = "x";
  zero.command = {"true"};
  zero.max_inflight = 0;
  EXPECT_EQ(StartStdioUpstream(zero).error().code, ErrorCode::kBadRequest);
  StdioUpstreamOptions bad_env;
  bad_env.name = "x";
  bad_env.command = {"true"};
  bad_env.env = {{"A=B", "c"}};
  EXPECT_EQ(StartStdioUpstream(bad_env).error().code, ErrorCode::kBadRequest);
  net::HttpClient client;
  HttpUpstreamOptions http;
  http.name = "x";
  http.url = "ftp://nope";
  http.client = &client;
  EXPECT_EQ(StartHttpUpstream(http).error().code, ErrorCode::kBadRequest);
  http.url = "http://127.0.0.1:1/mcp";
  http.credential_value = "Bearer a\r\nX-Evil: 1";
  EXPECT_EQ(StartHttpUpstream(http).error().code, ErrorCode::kBadRequest);
  http.credential_value = "";
  http.client = nullptr;
  EXPECT_EQ(StartHttpUpstream(http).error().code, ErrorCode::kBadRequest);
}

// --- stdio ---------------------------------------------------------------------------------------

class StdioUpstreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveNode()) GTEST_SKIP() << "node is not in PATH";
    ASSERT_EQ(::access(FixturePath().c_str(), R_OK), 0)
        << "fixture not found: " << FixturePath() << " (set MANDATE_SOURCE_DIR)";
    record_ = dir_.path() + "/record.jsonl";
  }

  StdioUpstreamOptions Options(std::vector<std::string> extra = {}) {
    StdioUpstreamOptions o;
    o.name = "fixture";
    o.command = {"node", FixturePath(), "--record", record_};
    o.command.insert(o.command.end(), extra.begin(), extra.end());
    o.init_timeout_millis = 10000;
    return o;
  }

  std::unique_ptr<McpUpstream> Start(StdioUpstreamOptions o) {
    auto up = StartStdioUpstream(std::move(o));
    EXPECT_TRUE(up.ok()) << up.error().message;
    return up.ok() ? std::move(*up) : nullptr;
  }

  TempDir dir_;
  std::string record_;
};

TEST_F(StdioUpstreamTest, ListsToolsAcrossPagesWithAnnotatedClasses) {
  auto up = Start(Options({"--page-size", "3"}));
  ASSERT_NE(up, nullptr);
  auto tools = up->ListTools();
  ASSERT_TRUE(tools.ok()) << tools.error().message;
  ASSERT_EQ(tools->size(), 14u);
  std::map<std::string, std::optional<ActionClass>> classes;
  for (const ToolInfo& t : *tools) classes[t.name] = t.annotated_class;
  EXPECT_EQ(classes["echo"], ActionClass::kRead);
  EXPECT_EQ(classes["write_note"], ActionClass::kWrite);
  EXPECT_EQ(classes["drop_table"], std::nullopt);
  EXPECT_EQ(classes["plain"], std::nullopt);
  EXPECT_EQ((*tools)[0].name, "echo");
  EXPECT_EQ((*tools)[0].definition.GetString("description"), "Echoes text");
  EXPECT_NE((*tools)[0].definition.FindObject("inputSchema"), nullptr);
  auto messages = RecordedMessages(record_);
  EXPECT_EQ(CountMethod(messages, "tools/list"), 5u);  // 14 tools, 3 per page
  // The handshake came first, in order.
  ASSERT_GE(messages.size(), 2u);
  EXPECT_EQ(messages[0].GetString("method"), "initialize");
  EXPECT_EQ(messages[0].FindObject("params")->GetString("protocolVersion"), "2025-11-25");
  EXPECT_EQ(messages[0].FindObject("params")->FindObject("clientInfo")->GetString("name"),
            "mandate");
  EXPECT_EQ(messages[1].GetString("method"), "notifications/initialized");
}

TEST_F(StdioUpstreamTest, CachesToolsUntilTheServerSaysTheListChanged) {
  auto up = Start(Options({"--page-size", "100"}));
  ASSERT_NE(up, nullptr);
  ASSERT_TRUE(up->ListTools().ok());
  ASSERT_TRUE(up->ListTools().ok());
  EXPECT_EQ(CountMethod(RecordedMessages(record_), "tools/list"), 1u);
  ASSERT_TRUE(up->CallTool("change_tools", Json::MakeObject(), 5000).ok());
  auto tools = up->ListTools();
  ASSERT_TRUE(tools.ok());
  EXPECT_EQ(tools->back().name, "added_later");
  EXPECT_EQ(CountMethod(RecordedMessages(record_), "tools/list"), 2u);
}

TEST_F(StdioUpstreamTest, CallsAToolAndReturnsItsResult) {
  auto up = Start(Options());
  ASSERT_NE(up, nullptr);
  auto r = up->CallTool("echo", Args({{"text", "hello\nworld"}}), 5000);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(FirstText(*r), "hello\nworld");
  EXPECT_EQ(r->FindObject("structuredContent")->GetString("text"), "hello\nworld");
  // Null arguments are sent as {}.
  EXPECT_TRUE(up->CallTool("plain", Json(), 5000).ok());
  EXPECT_EQ(up->CallTool("plain", Json("x"), 5000).error().code, ErrorCode::kBadRequest);
}

TEST_F(StdioUpstreamTest, ToolErrorIsAResultNotAnError) {
  auto up = Start(Options());
  ASSERT_NE(up, nullptr);
  auto r = up->CallTool("fail", Json::MakeObject(), 5000);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->Find("isError")->as_bool());
}

TEST_F(StdioUpstreamTest, JsonRpcErrorIsUpstreamError) {
  auto up = Start(Options());
  ASSERT_NE(up, nullptr);
  auto r = up->CallTool("rpc_error", Json::MakeObject(), 5000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUpstreamError);
  EXPECT_NE(r.error().message.find("-32042"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("boom happened"), std::string::npos) << r.error().message;
}

TEST_F(StdioUpstreamTest, SlowCallTimesOutAndTheServerReceivesCancelled) {
  auto up = Start(Options());
  ASSERT_NE(up, nullptr);
  auto t0 = Clock::now();
  auto r = up->CallTool("slow", Args({{"ms", 5000}}), 300);
  auto elapsed = Clock::now() - t0;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUpstreamTimeout);
  EXPECT_GE(elapsed, std::chrono::milliseconds(290));
  EXPECT_LT(elapsed, std::chrono::milliseconds(2000));
  int64_t id = RecordedCallId(record_, "slow");
  ASSERT_GT(id, 0);
  EXPECT_TRUE(WaitFor([&] { return RecordedCancelFor(record_, id); }));
  // The upstream keeps serving.
  EXPECT_TRUE(up->CallTool("echo", Args({{"text", "still here"}}), 5000).ok());
}

TEST_F(StdioUpstreamTest, ChildExitFailsInFlightCallsAndTheUpstreamRestarts) {
  auto up = Start(Options());
  ASSERT_NE(up, nullptr);
  core::Result<Json> slow = Json();
  std::thread slow_caller([&] { slow = up->CallTool("slow", Args({{"ms", 20000}}), 20000); });
  ASSERT_TRUE(WaitFor([&] { return RecordedCallId(record_, "slow") > 0; }));

  auto crash = up->CallTool("crash", Json::MakeObject(), 5000);
  slow_caller.join();
  ASSERT_FALSE(crash.ok());
  EXPECT_EQ(crash.error().code, ErrorCode::kUpstreamUnavailable);
  EXPECT_NE(crash.error().message.find("exited with status 3"), std::string::npos)
      << crash.error().message;
  EXPECT_NE(crash.error().message.find("crashing on purpose"), std::string::npos)
      << crash.error().message;
  EXPECT_NE(crash.error().message.find("restarting in"), std::string::npos);
  ASSERT_FALSE(slow.ok());
  EXPECT_EQ(slow.error().code, ErrorCode::kUpstreamUnavailable);

  // Right after the death the upstream is backing off: calls fail fast, or (if the restart
  // already happened) succeed.
  auto t0 = Clock::now();
  auto during = up->CallTool("echo", Args({{"text", "x"}}), 5000);
  if (!during.ok()) {
    EXPECT_EQ(during.error().code, ErrorCode::kUpstreamUnavailable);
    EXPECT_NE(during.error().message.find("restarting in"), std::string::npos);
    EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(50));
  }
  core::Result<Json> after = Json();
  EXPECT_TRUE(WaitFor([&] {
    after = up->CallTool("echo", Args({{"text", "back"}}), 5000);
    return after.ok();
  }));
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ(FirstText(*after), "back");
  EXPECT_EQ(CountMethod(RecordedMessages(record_), "initialize"), 2u);
}

TEST_F(StdioUpstreamTest, PassesTheEnvironmentAndDirectoryToTheChild) {
  auto o = Options();
  o.env = {{"MANDATE_FIXTURE_SECRET", "s3cret"}};
  o.cwd = dir_.path();
  auto up = Start(o);
  ASSERT_NE(up, nullptr);
  auto r = up->CallTool("env", Args({{"name", "MANDATE_FIXTURE_SECRET"}}), 5000);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(FirstText(*r), "s3cret");
  auto cwd = up->CallTool("cwd", Json::MakeObject(), 5000);
  ASSERT_TRUE(cwd.ok());
  char real[4096];
  ASSERT_NE(::realpath(dir_.path().c_str(), real), nullptr);
  EXPECT_EQ(FirstText(*cwd), real);
}

TEST_F(StdioUpstreamTest, ConcurrentCallsAllGetTheirOwnAnswers) {
  auto up = Start(Options());
  ASSERT_NE(up, nullptr);
  std::atomic<int> wrong{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 32; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10; ++i) {
        std::string text = "t" + std::to_string(t) + "-" + std::to_string(i);
        auto r = up->CallTool("echo", Args({{"text", text}}), 10000);
        if (!r.ok()) {
          ++failed;
        } else if (FirstText(*r) != text) {
          ++wrong;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(StdioUpstreamTest, AnswersServerRequestsItCannotServeWithMethodNotFound) {
  auto up = Start(Options());
  ASSERT_NE(up, nullptr);
  auto r = up->CallTool("ask_client", Json::MakeObject(), 5000);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(FirstText(*r), "roots/list -> -32601");
}

TEST_F(StdioUpstreamTest, SkipsStdoutLinesThatAreNotJsonRpc) {
  auto up = Start(Options());
  ASSERT_NE(up, nullptr);
  auto r = up->CallTool("noise", Json::MakeObject(), 5000);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(FirstText(*r), "after noise");
}

TEST_F(StdioUpstreamTest, OversizeStdoutLineIsAProtocolErrorThatRestartsTheChild) {
  auto up = Start(Options());
  ASSERT_NE(up, nullptr);
  auto r = up->CallTool(
      "big_line", Args({{"bytes", static_cast<int64_t>(core::kStdioLineBytesMax + 10)}}), 20000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUpstreamUnavailable);
  EXPECT_NE(r.error().message.find("exceeds"), std::string::npos) << r.error().message;
  EXPECT_TRUE(WaitFor([&] { return up->CallTool("echo", Args({{"text", "ok"}}), 5000).ok(); }));
}

TEST_F(StdioUpstreamTest, StartFailsForAMissingCommand) {
  StdioUpstreamOptions o;
  o.name = "missing";
  o.command = {"mandate-no-such-command-anywhere"};
  auto up = StartStdioUpstream(o);
  ASSERT_FALSE(up.ok());
  EXPECT_EQ(up.error().code, ErrorCode::kUpstreamUnavailable);
  EXPECT_NE(up.error().message.find("cannot start"), std::string::npos) << up.error().message;
}

TEST_F(StdioUpstreamTest, StartFailsWithStderrWhenTheChildExitsDuringTheHandshake) {
  StdioUpstreamOptions o;
  o.name = "broken";
  o.command = {"node", "-e", "process.stderr.write('bad config: no token\\n'); process.exit(2)"};
  auto up = StartStdioUpstream(o);
  ASSERT_FALSE(up.ok());
  EXPECT_EQ(up.error().code, ErrorCode::kUpstreamUnavailable);
  EXPECT_NE(up.error().message.find("exited with status 2"), std::string::npos)
      << up.error().message;
  EXPECT_NE(up.error().message.find("bad config: no token"), std::string::npos)
      << up.error().message;
}

TEST_F(StdioUpstreamTest, StartTimesOutWhenTheServerNeverAnswersInitializeAndLeavesNoChild) {
  int children_before = CountChildProcesses();
  size_t fds_before = CountOpenFds();
  StdioUpstreamOptions o;
  o.name = "mute";
  o.command = {"sleep", "30"};
  o.init_timeout_millis = 200;
  auto t0 = Clock::now();
  auto up = StartStdioUpstream(o);
  ASSERT_FALSE(up.ok());
  EXPECT_EQ(up.error().code, ErrorCode::kUpstreamTimeout);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(3));
  EXPECT_EQ(CountOpenFds(), fds_before);
  if (children_before >= 0) {
    EXPECT_EQ(CountChildProcesses(), children_before);
  }
}

TEST_F(StdioUpstreamTest, StopFailsWaitingCallsAndLeavesNoProcessOrFd) {
  int children_before = CountChildProcesses();
  size_t fds_before = CountOpenFds();
  {
    auto up = Start(Options());
    ASSERT_NE(up, nullptr);
    core::Result<Json> slow = Json();
    std::thread caller([&] { slow = up->CallTool("slow", Args({{"ms", 20000}}), 20000); });
    ASSERT_TRUE(WaitFor([&] { return RecordedCallId(record_, "slow") > 0; }));
    auto t0 = Clock::now();
    up->Stop();
    caller.join();
    EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(1500));
    ASSERT_FALSE(slow.ok());
    EXPECT_EQ(slow.error().code, ErrorCode::kUpstreamUnavailable);
    auto after = up->CallTool("echo", Args({{"text", "x"}}), 1000);
    ASSERT_FALSE(after.ok());
    EXPECT_EQ(after.error().code, ErrorCode::kUpstreamUnavailable);
    up->Stop();  // idempotent
  }
  EXPECT_EQ(CountOpenFds(), fds_before);
  if (children_before >= 0) {
    EXPECT_EQ(CountChildProcesses(), children_before);
  }
}

TEST_F(StdioUpstreamTest, StopKillsAServerThatIgnoresEofAndSigterm) {
  int children_before = CountChildProcesses();
  auto up = Start(Options({"--stubborn"}));
  ASSERT_NE(up, nullptr);
  ASSERT_TRUE(up->CallTool("echo", Args({{"text", "x"}}), 5000).ok());
  auto t0 = Clock::now();
  up->Stop();
  auto took = Clock::now() - t0;
  EXPECT_GE(took, std::chrono::milliseconds(core::kUpstreamStopTermGraceMillis));
  EXPECT_LT(took, std::chrono::milliseconds(core::kUpstreamStopTermGraceMillis + 2000));
  if (children_before >= 0) {
    EXPECT_EQ(CountChildProcesses(), children_before);
  }
}

// --- Streamable HTTP
// -------------------------------------------------------------------------------

class HttpUpstreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveNode()) GTEST_SKIP() << "node is not in PATH";
    ASSERT_EQ(::access(FixturePath().c_str(), R_OK), 0) << "fixture not found: " << FixturePath();
    record_ = dir_.path() + "/record.jsonl";
  }

  void StartFixture(std::vector<std::string> extra = {}) {
    extra.insert(extra.end(), {"--record", record_});
    std::string error;
    ASSERT_TRUE(fixture_.Start(extra, &error)) << error;
  }

  HttpUpstreamOptions Options() {
    HttpUpstreamOptions o;
    o.name = "web";
    o.url = fixture_.Url();
    o.client = &client_;
    o.credential_value = "Bearer tok-123";
    o.init_timeout_millis = 5000;
    return o;
  }

  void Control(const std::string& body) {
    net::HttpClientRequest req;
    req.method = "POST";
    req.url = fixture_.ControlUrl();
    req.body = body;
    auto r = client_.Do(req);
    ASSERT_TRUE(r.ok() && r->status == 200);
  }

  std::vector<Json> HttpEntries() {
    std::vector<Json> out;
    for (const Json& e : ReadRecord(record_)) {
      if (e.GetString("t") == "http") out.push_back(e);
    }
    return out;
  }

  std::vector<std::string> IssuedSessions() {
    std::vector<std::string> out;
    for (const Json& e : ReadRecord(record_)) {
      if (e.GetString("t") == "session") out.push_back(e.GetString("id"));
    }
    return out;
  }

  TempDir dir_;
  std::string record_;
  HttpFixture fixture_;
  net::HttpClient client_;
};

TEST_F(HttpUpstreamTest, ListsAndCallsWithJsonAnswersEchoingSessionVersionAndCredential) {
  StartFixture({"--require-auth", "Bearer tok-123", "--page-size", "5"});
  auto up = StartHttpUpstream(Options());
  ASSERT_TRUE(up.ok()) << up.error().message;
  auto tools = (*up)->ListTools();
  ASSERT_TRUE(tools.ok()) << tools.error().message;
  ASSERT_EQ(tools->size(), 14u);
  EXPECT_EQ((*tools)[0].annotated_class, ActionClass::kRead);
  EXPECT_EQ((*tools)[1].annotated_class, ActionClass::kWrite);
  auto r = (*up)->CallTool("echo", Args({{"text", "over http"}}), 5000);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(FirstText(*r), "over http");

  auto sessions = IssuedSessions();
  ASSERT_EQ(sessions.size(), 1u);
  auto entries = HttpEntries();
  ASSERT_GE(entries.size(), 6u);  // initialize, initialized, 3 tools/list pages, tools/call
  for (const Json& e : entries) {
    const Json* h = e.FindObject("headers");
    EXPECT_EQ(h->GetString("authorization"), "Bearer tok-123");
    EXPECT_EQ(h->GetString("accept"), "application/json, text/event-stream");
    EXPECT_EQ(h->GetString("content-type"), "application/json");
    if (e.FindObject("message")->GetString("method") == "initialize") {
      EXPECT_EQ(h->Find("mcp-session-id"), nullptr);
    } else {
      EXPECT_EQ(h->GetString("mcp-session-id"), sessions[0]);
      EXPECT_EQ(h->GetString("mcp-protocol-version"), "2025-11-25");
    }
  }
  EXPECT_EQ(entries[1].FindObject("message")->GetString("method"), "notifications/initialized");

  (*up)->Stop();
  entries = HttpEntries();
  ASSERT_FALSE(entries.empty());
  EXPECT_EQ(entries.back().GetString("method"), "DELETE");
  EXPECT_EQ(entries.back().FindObject("headers")->GetString("mcp-session-id"), sessions[0]);
}

TEST_F(HttpUpstreamTest, ReadsSseAnswersAndAnswersServerPings) {
  StartFixture();
  auto up = StartHttpUpstream(Options());
  ASSERT_TRUE(up.ok()) << up.error().message;
  Control(R"({"mode":"sse"})");
  auto r = (*up)->CallTool("echo", Args({{"text", "streamed"}}), 5000);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(FirstText(*r), "streamed");
  auto tools = (*up)->ListTools();
  ASSERT_TRUE(tools.ok()) << tools.error().message;
  EXPECT_EQ(tools->size(), 14u);
  // The server's ping inside the stream got its answer (posted in the background).
  EXPECT_TRUE(WaitFor([&] {
    for (const Json& e : HttpEntries()) {
      const Json* m = e.FindObject("message");
      if (m != nullptr && m->GetString("id") == "srv-ping-1" &&
          m->FindObject("result") != nullptr) {
        return true;
      }
    }
    return false;
  }));
  // A list_changed notification inside a stream drops the cache.
  ASSERT_TRUE((*up)->CallTool("change_tools", Json::MakeObject(), 5000).ok());
  tools = (*up)->ListTools();
  ASSERT_TRUE(tools.ok());
  EXPECT_EQ(tools->back().name, "added_later");
}

TEST_F(HttpUpstreamTest, ResumesAnSseStreamThatClosedBeforeTheAnswer) {
  StartFixture();
  auto up = StartHttpUpstream(Options());
  ASSERT_TRUE(up.ok()) << up.error().message;
  Control(R"({"mode":"sse_close_early"})");
  auto r = (*up)->CallTool("echo", Args({{"text", "resumed"}}), 5000);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(FirstText(*r), "resumed");
  bool resumed = false;
  for (const Json& e : HttpEntries()) {
    if (e.GetString("method") == "GET" &&
        e.FindObject("headers")->GetString("last-event-id") == "s1/0") {
      resumed = true;
    }
  }
  EXPECT_TRUE(resumed);
}

TEST_F(HttpUpstreamTest, ReinitializesOnceWhenTheSessionIsGone) {
  StartFixture();
  auto up = StartHttpUpstream(Options());
  ASSERT_TRUE(up.ok()) << up.error().message;
  ASSERT_TRUE((*up)->CallTool("echo", Args({{"text", "1"}}), 5000).ok());
  Control(R"({"drop_sessions":true})");
  auto r = (*up)->CallTool("echo", Args({{"text", "2"}}), 5000);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(FirstText(*r), "2");
  auto sessions = IssuedSessions();
  ASSERT_EQ(sessions.size(), 2u);
  auto entries = HttpEntries();
  EXPECT_EQ(entries.back().FindObject("headers")->GetString("mcp-session-id"), sessions[1]);
}

TEST_F(HttpUpstreamTest, SlowCallTimesOutAndTheServerReceivesCancelled) {
  StartFixture();
  auto up = StartHttpUpstream(Options());
  ASSERT_TRUE(up.ok()) << up.error().message;
  auto t0 = Clock::now();
  auto r = (*up)->CallTool("slow", Args({{"ms", 5000}}), 300);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUpstreamTimeout);
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(2000));
  int64_t id = RecordedCallId(record_, "slow");
  ASSERT_GT(id, 0);
  EXPECT_TRUE(WaitFor([&] { return RecordedCancelFor(record_, id); }));
  EXPECT_TRUE((*up)->CallTool("echo", Args({{"text", "x"}}), 5000).ok());
}

TEST_F(HttpUpstreamTest, JsonRpcErrorIsUpstreamErrorAndToolErrorIsAResult) {
  StartFixture();
  auto up = StartHttpUpstream(Options());
  ASSERT_TRUE(up.ok()) << up.error().message;
  auto e = (*up)->CallTool("rpc_error", Json::MakeObject(), 5000);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code, ErrorCode::kUpstreamError);
  EXPECT_NE(e.error().message.find("-32042: boom happened"), std::string::npos)
      << e.error().message;
  auto f = (*up)->CallTool("fail", Json::MakeObject(), 5000);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_TRUE(f->Find("isError")->as_bool());
}

TEST_F(HttpUpstreamTest, StartFailsWhenTheCredentialIsRefused) {
  StartFixture({"--require-auth", "Bearer right"});
  auto o = Options();
  o.credential_value = "Bearer wrong";
  auto up = StartHttpUpstream(o);
  ASSERT_FALSE(up.ok());
  EXPECT_EQ(up.error().code, ErrorCode::kUpstreamError);
  EXPECT_NE(up.error().message.find("401"), std::string::npos) << up.error().message;
  EXPECT_EQ(up.error().message.find("wrong"), std::string::npos) << "credential leaked";
}

TEST_F(HttpUpstreamTest, StartSucceedsWhileTheUpstreamIsDownAndCallsFailUnavailable) {
  // A port nobody listens on: bind one, then close it.
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(s);
  auto o = Options();
  o.url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/mcp";
  auto up = StartHttpUpstream(o);
  ASSERT_TRUE(up.ok()) << up.error().message;
  auto r = (*up)->CallTool("echo", Args({{"text", "x"}}), 2000);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::kUpstreamUnavailable) << r.error().message;
}

TEST_F(HttpUpstreamTest, ConcurrentCallsAllGetTheirOwnAnswers) {
  StartFixture();
  auto up = StartHttpUpstream(Options());
  ASSERT_TRUE(up.ok()) << up.error().message;
  std::atomic<int> wrong{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 32; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 5; ++i) {
        std::string text = "h" + std::to_string(t) + "-" + std::to_string(i);
        auto r = (*up)->CallTool("echo", Args({{"text", text}}), 10000);
        if (!r.ok()) {
          ++failed;
        } else if (FirstText(*r) != text) {
          ++wrong;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
}

}  // namespace
}  // namespace mandate::adapters::mcp
