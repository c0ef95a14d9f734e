// The stdio MCP upstream: one supervised child process per upstream (upstream.h).
//
// Threads: one I/O thread per upstream owns the child's lifecycle. It spawns the child, runs
// the initialize handshake, reads stdout (dispatching answers to waiting callers by id) and
// stderr, notices the child's death through a pidfd, reaps it, and restarts it after the
// backoff. Callers write their requests to the child's stdin themselves (one writer at a time)
// and wait on their own Pending for the answer or their deadline.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "adapters/mcp/upstream_common.h"
#include "mandate/adapters/mcp/upstream.h"
#include "mandate/core/cancel.h"
#include "mandate/core/limits.h"
#include "mandate/core/thread_name.h"

extern char** environ;

namespace mandate::adapters::mcp {
namespace {

using core::Error;
using core::ErrorCode;
using core::Json;
using core::MakeError;
using internal::SteadyTime;
using Clock = std::chrono::steady_clock;

// How long the I/O thread may spend writing an answer to a server request or a
// notifications/cancelled: it must get back to reading stdout, or the child may block on it.
constexpr int kSideWriteMillis = 1000;
// Without a pidfd (kernels before 5.3), how often the I/O thread checks whether the child died.
constexpr int kExitPollMillis = 50;
// After stdout reached EOF, how long to wait for the child to become waitable.
constexpr int kExitAfterEofWaitMillis = 100;
// Bytes read from a pipe per read(2), and reads per pipe per wakeup (so one chatty pipe cannot
// starve the other).
constexpr size_t kReadChunkBytes = 64 * 1024;
constexpr int kReadsPerWakeupMax = 64;

int64_t MillisSince(SteadyTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

void CloseFd(int* fd) {
  if (*fd >= 0) ::close(*fd);
  *fd = -1;
}

// One spawned child and its pipes.
struct Child {
  pid_t pid = -1;
  int pid_fd = -1;     // I/O thread only; -1 when the kernel has no pidfd_open
  int stdout_fd = -1;  // I/O thread only
  int stderr_fd = -1;  // I/O thread only

  // Invariant: stdin carries whole messages, one per line, one writer at a time.
  internal::TimedMutex write_mu;
  int stdin_fd = -1;         // guarded by write_mu
  bool stdin_usable = true;  // guarded by write_mu; false once closed or a write stalled half-way

  std::mutex life_mu;
  bool reaped = false;      // guarded by life_mu. Invariant: no signal goes to a reaped group
  std::string kill_reason;  // guarded by life_mu; why Mandate killed it, if it did

  ~Child() {
    CloseFd(&pid_fd);
    CloseFd(&stdout_fd);
    CloseFd(&stderr_fd);
    CloseFd(&stdin_fd);
  }

  // Signals the child's whole process group, unless it was already reaped (its pid, and so
  // the group id, may then belong to someone else).
  void SignalGroup(int sig, const std::string& reason = {}) {
    std::lock_guard lock(life_mu);
    if (reaped) return;
    if (!reason.empty() && kill_reason.empty()) kill_reason = reason;
    ::kill(-pid, sig);
  }

  // True when the child has exited (still a zombie, not reaped).
  bool HasExited() {
    siginfo_t info{};
    return ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
           info.si_pid == pid;
  }

  // Kills what is left of the group and reaps the child. Returns its wait status (-1 if it
  // could not be reaped, e.g. someone else reaped it).
  int KillAndReap() {
    SignalGroup(SIGKILL);
    int status = -1;
    pid_t r;
    do {
      r = ::waitpid(pid, &status, 0);
    } while (r < 0 && errno == EINTR);
    std::lock_guard lock(life_mu);
    reaped = true;
    return r == pid ? status : -1;
  }
};

// Blocks SIGPIPE in this thread for its scope so that writing to a dead child's stdin fails
// with EPIPE instead of killing Mandate; a SIGPIPE raised meanwhile is consumed.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~SigpipeBlock() {
    if (!was_pending_) {
      struct timespec zero {};
      while (sigtimedwait(&pipe_, nullptr, &zero) == SIGPIPE) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
};

enum class WriteOutcome { kOk, kTimedOutUnwritten, kStalledHalfWay, kBroken };

// Writes all of `data` to the non-blocking `fd` before `deadline`.
WriteOutcome WriteAll(int fd, std::string_view data, SteadyTime deadline) {
  SigpipeBlock block;
  size_t written = 0;
  while (written < data.size()) {
    ssize_t n = ::write(fd, data.data() + written, data.size() - written);
    if (n > 0) {
      written += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      int64_t left = internal::MillisUntil(deadline);
      if (left == 0) break;
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1 << 30)));
      continue;
    }
    return WriteOutcome::kBroken;  // EPIPE: the child closed stdin or died
  }
  if (written == data.size()) return WriteOutcome::kOk;
  return written == 0 ? WriteOutcome::kTimedOutUnwritten : WriteOutcome::kStalledHalfWay;
}

std::string DescribeWaitStatus(int status) {
  if (status == -1) return "process ended (exit status unknown)";
  if (WIFEXITED(status)) return "process exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* abbrev = sigabbrev_np(WTERMSIG(status));
    return "process was killed by signal " + std::to_string(WTERMSIG(status)) +
           (abbrev != nullptr ? std::string(" (SIG") + abbrev + ")" : std::string());
  }
  return "process ended";
}

bool ValidEnvName(const std::string& name) {
  return !name.empty() && name.find('=') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

// The child's environment: Mandate's own, with `overrides` replacing or adding entries.
std::vector<std::string> BuildEnvironment(
    const std::vector<std::pair<std::string, std::string>>& overrides) {
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    std::string_view key = entry.substr(0, entry.find('='));
    bool replaced = std::any_of(overrides.begin(), overrides.end(),
                                [&](const auto& kv) { return kv.first == key; });
    if (!replaced) out.emplace_back(entry);
  }
  for (const auto& [k, v] : overrides) out.push_back(k + "=" + v);
  return out;
}

bool SetNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

// Spawns the child in its own process group with pipes on 0, 1 and 2 and no other fd.
core::Result<std::shared_ptr<Child>> SpawnChild(const StdioUpstreamOptions& o) {
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  auto close_all = [&] {
    for (int* fd : {&in[0], &in[1], &out[0], &out[1], &err[0], &err[1]}) CloseFd(fd);
  };
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    int e = errno;
    close_all();
    return MakeError(ErrorCode::kUpstreamUnavailable,
                     "upstream " + o.name + ": cannot create pipes: " + strerror(e));
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  // Our own pipes are O_CLOEXEC, but fds other threads opened without it must not leak into
  // an upstream either (they could be the audit log or a client socket).
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  if (!o.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, o.cwd.c_str());

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // A new process group, so Stop and restarts can kill everything the server started.
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setsigmask(&attr, &empty);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM}) {
    sigaddset(&defaults, sig);
  }
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> argv;
  for (const std::string& a : o.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env = BuildEnvironment(o.env);
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  CloseFd(&in[0]);
  CloseFd(&out[1]);
  CloseFd(&err[1]);
  if (rc != 0) {
    close_all();
    return MakeError(ErrorCode::kUpstreamUnavailable, "upstream " + o.name + ": cannot start \"" +
                                                          o.command[0] + "\": " + strerror(rc));
  }
  auto child = std::make_shared<Child>();
  child->pid = pid;
  child->stdin_fd = in[1];
  child->stdout_fd = out[0];
  child->stderr_fd = err[0];
  if (!SetNonBlocking(in[1]) || !SetNonBlocking(out[0]) || !SetNonBlocking(err[0])) {
    child->KillAndReap();
    return MakeError(ErrorCode::kUpstreamUnavailable,
                     "upstream " + o.name + ": cannot set up the child's pipes");
  }
#ifdef SYS_pidfd_open
  child->pid_fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#endif
  return child;
}

class StdioUpstream final : public internal::JsonRpcUpstream {
 public:
  explicit StdioUpstream(StdioUpstreamOptions options)
      : options_(std::move(options)), limiter_(options_.max_inflight, core::kUpstreamQueueMax) {}

  ~StdioUpstream() override {
    Stop();
    CloseFd(&wake_read_);
    CloseFd(&wake_write_);
  }

  // Starts the I/O thread and waits for the first child to be initialized (or to fail).
  core::Status Init() {
    int wake[2];
    if (::pipe2(wake, O_CLOEXEC | O_NONBLOCK) != 0) {
      return MakeError(ErrorCode::kInternal, "upstream " + name() + ": cannot create a pipe");
    }
    wake_read_ = wake[0];
    wake_write_ = wake[1];
    io_thread_ = std::thread([this] {
      core::NameThisThread("mcp-stdio-io");
      Run();
    });
    std::unique_lock lock(mu_);
    state_cv_.wait(lock, [&] { return first_attempt_done_; });
    if (first_attempt_error_.has_value()) {
      Error error = *first_attempt_error_;
      lock.unlock();
      Stop();
      return error;
    }
    return core::OkStatus();
  }

  const std::string& name() const override { return options_.name; }

  void Stop() override {
    std::lock_guard stop_lock(stop_mu_);
    {
      std::lock_guard lock(mu_);
      stop_requested_ = true;
    }
    state_cv_.notify_all();
    limiter_.Stop();
    Wake();
    if (io_thread_.joinable()) io_thread_.join();
  }

 private:
  enum class State { kStarting, kReady, kBackoff, kStopped };

  struct Pending {
    bool done = false;                   // guarded by mu_
    core::Result<Json> answer = Json();  // guarded by mu_: the whole response message
    std::condition_variable cv;
  };

  // --- caller side ---------------------------------------------------------------------------

  // Sends one request and waits for its result. `what` names it in error messages.
  core::Result<Json> Request(std::string_view method, Json params, SteadyTime deadline,
                             int timeout_millis, const std::string& what, const std::string& txn_token) override {
    if (!txn_token.empty() && params.is_object()) {
      // No headers over stdio: the token rides in the request's _meta (MCP reserves
      // _meta for such out-of-band data; the prefix names who put it there).
      Json meta = params.Find("_meta") != nullptr && params.Find("_meta")->is_object() ? *params.Find("_meta")
                                                                                    : Json::MakeObject();
      meta.Set("io.mandate/txn-token", txn_token);
      params.Set("_meta", std::move(meta));
    }
    MANDATE_RETURN_IF_ERROR(limiter_.Acquire(name(), deadline));
    internal::InflightSlot slot(&limiter_);

    auto pending = std::make_shared<Pending>();
    // A revoked session's call (the thread's cancel signal) stops waiting at once; the server
    // is told with notifications/cancelled below. Declared before any lock of mu_ below, so it
    // is removed after them (its function takes mu_).
    core::CancelSignal* cancel = core::CurrentCancelSignal();
    core::CancelRegistration stop_waiting(cancel, [this, pending] {
      std::lock_guard guard(mu_);
      if (!pending->done) {
        pending->answer = MakeError(ErrorCode::kUpstreamUnavailable, "upstream " + name() + ": request cancelled");
        pending->done = true;
        pending->cv.notify_all();
      }
    });
    if (cancel && cancel->cancelled()) {
      return MakeError(ErrorCode::kUpstreamUnavailable, "upstream " + name() + ": request cancelled");
    }
    std::shared_ptr<Child> child;
    int64_t id = 0;
    {
      std::unique_lock lock(mu_);
      for (;;) {
        if (stop_requested_ || state_ == State::kStopped) return StoppedError();
        if (state_ == State::kReady) break;
        if (state_ == State::kBackoff) {
          return MakeError(
              ErrorCode::kUpstreamUnavailable,
              last_failure_ + "; restarting in " +
                  std::to_string(std::max<int64_t>(internal::MillisUntil(restart_at_), 1)) + " ms");
        }
        // kStarting: a restart's handshake is under way; wait for it within our own deadline.
        if (!state_cv_.wait_until(lock, deadline,
                                  [&] { return state_ != State::kStarting || stop_requested_; })) {
          return MakeError(ErrorCode::kUpstreamTimeout,
                           "upstream " + name() + ": " + what + " timed out after " +
                               std::to_string(timeout_millis) +
                               " ms waiting for the restarted server to initialize");
        }
      }
      id = next_id_++;
      pending_[id] = pending;
      child = child_;
    }

    core::Status written =
        WriteMessage(*child, internal::MakeRequest(id, method, std::move(params)), deadline);
    std::unique_lock lock(mu_);
    if (!written.ok()) {
      if (pending->done && !pending->answer.ok()) return pending->answer.error();  // it died
      pending_.erase(id);
      if (written.error().code == ErrorCode::kUpstreamTimeout) {
        return MakeError(ErrorCode::kUpstreamTimeout,
                         "upstream " + name() + ": " + what + " timed out after " +
                             std::to_string(timeout_millis) + " ms writing to the server's stdin");
      }
      return written.error();
    }
    if (!pending->cv.wait_until(lock, deadline, [&] { return pending->done; })) {
      pending_.erase(id);
      bool same_child = child_ == child && state_ == State::kReady;
      lock.unlock();
      if (same_child) {
        // Best effort: the server may stop working on it. A late answer finds no Pending and
        // is dropped.
        (void)WriteMessage(*child,
                           internal::MakeCancelled(
                               id, "timed out after " + std::to_string(timeout_millis) + " ms"),
                           internal::DeadlineAfterMillis(kSideWriteMillis));
      }
      return MakeError(ErrorCode::kUpstreamTimeout, "upstream " + name() + ": " + what +
                                                        " timed out after " +
                                                        std::to_string(timeout_millis) + " ms");
    }
    core::Result<Json> answer = std::move(pending->answer);
    if (cancel && cancel->cancelled()) {
      pending_.erase(id);
      const bool same_child = child_ == child && state_ == State::kReady;
      lock.unlock();
      if (same_child) {
        (void)WriteMessage(*child, internal::MakeCancelled(id, "the session was revoked"),
                           internal::DeadlineAfterMillis(kSideWriteMillis));
      }
      return MakeError(ErrorCode::kUpstreamUnavailable, "upstream " + name() + ": request cancelled");
    }
    lock.unlock();
    if (!answer.ok()) return std::move(answer).error();
    return internal::ResultOfResponse(name(), method, std::move(*answer));
  }

  Error StoppedError() const {
    return MakeError(ErrorCode::kUpstreamUnavailable, "upstream " + name() + " is stopped");
  }

  // Writes one message as one line. A write that stalls half-way leaves a torn line on the
  // pipe, so the child is killed (and restarted): nothing else could be parsed after it.
  core::Status WriteMessage(Child& child, const Json& message, SteadyTime deadline) {
    // Dump() escapes control characters inside strings, so the text has no raw newline.
    std::string line = message.Dump();
    line.push_back('\n');
    if (!child.write_mu.try_lock_until(deadline)) {
      return MakeError(ErrorCode::kUpstreamTimeout,
                       "upstream " + name() + ": timed out waiting to write to the server");
    }
    std::unique_lock lock(child.write_mu, std::adopt_lock);
    if (!child.stdin_usable) {
      return MakeError(ErrorCode::kUpstreamUnavailable,
                       "upstream " + name() + ": the server's stdin is closed");
    }
    switch (WriteAll(child.stdin_fd, line, deadline)) {
      case WriteOutcome::kOk:
        return core::OkStatus();
      case WriteOutcome::kTimedOutUnwritten:
        return MakeError(ErrorCode::kUpstreamTimeout,
                         "upstream " + name() + ": the server does not read its stdin");
      case WriteOutcome::kStalledHalfWay:
        child.stdin_usable = false;
        child.SignalGroup(SIGKILL, "killed: its stdin stalled in the middle of a message");
        return MakeError(ErrorCode::kUpstreamTimeout,
                         "upstream " + name() + ": the server stopped reading its stdin");
      case WriteOutcome::kBroken:
        break;
    }
    child.stdin_usable = false;
    return MakeError(ErrorCode::kUpstreamUnavailable,
                     "upstream " + name() + ": the server closed its stdin (process exiting)");
  }

  void Wake() {
    if (wake_write_ >= 0) {
      char b = 1;
      (void)!::write(wake_write_, &b, 1);
    }
  }

  // --- I/O thread ----------------------------------------------------------------------------

  void Run() {
    for (;;) {
      std::shared_ptr<Child> child;
      SteadyTime wake_at = SteadyTime::max();
      bool spawn = false;
      {
        std::lock_guard lock(mu_);
        if (stop_requested_) break;
        child = child_;
        if (child == nullptr) {
          if (Clock::now() >= restart_at_) {
            spawn = true;
          } else {
            wake_at = restart_at_;
          }
        } else if (state_ == State::kStarting) {
          wake_at = init_deadline_;
        }
      }
      if (spawn) {
        SpawnAndInitialize();
      } else if (child == nullptr) {
        WaitForWake(wake_at);  // backing off
      } else {
        PollOnce(child, wake_at);
      }
    }
    Shutdown();
  }

  void SpawnAndInitialize() {
    stdout_buf_.clear();
    stdout_scanned_ = 0;
    stderr_tail_ =
        internal::LineTail(core::kUpstreamStderrTailLines, core::kUpstreamStderrLineBytesMax);
    io_failure_.reset();
    auto spawned = SpawnChild(options_);
    if (!spawned.ok()) {
      EnterBackoff(spawned.error());
      return;
    }
    std::shared_ptr<Child> child = *spawned;
    Json request;
    {
      std::lock_guard lock(mu_);
      init_id_ = next_id_++;
      init_deadline_ = internal::DeadlineAfterMillis(options_.init_timeout_millis);
      child_ = child;
      state_ = State::kStarting;
      request = internal::MakeRequest(init_id_, "initialize", internal::InitializeParams());
    }
    // A failed write means the child is exiting or stuck: its exit or the init deadline will
    // tell PollOnce, which then reports why (with the exit status and stderr).
    (void)WriteMessage(*child, request, init_deadline_);
  }

  // Sleeps until `wake_at` or a Wake().
  void WaitForWake(SteadyTime wake_at) {
    pollfd p{wake_read_, POLLIN, 0};
    if (::poll(&p, 1, PollTimeout(wake_at)) > 0) DrainWakePipe();
  }

  void DrainWakePipe() {
    char buf[64];
    while (::read(wake_read_, buf, sizeof buf) > 0) {
    }
  }

  static int PollTimeout(SteadyTime wake_at) {
    if (wake_at == SteadyTime::max()) return -1;
    // +1: poll rounds down, and waking just before the deadline would spin.
    return static_cast<int>(std::min<int64_t>(internal::MillisUntil(wake_at) + 1, 1 << 30));
  }

  // Waits for output, the child's exit, a wake-up, or `wake_at`, and handles what happened.
  void PollOnce(const std::shared_ptr<Child>& child, SteadyTime wake_at) {
    if (child->pid_fd < 0) {
      wake_at = std::min(wake_at, internal::DeadlineAfterMillis(kExitPollMillis));
    }
    pollfd fds[4];
    nfds_t n = 0;
    fds[n++] = {wake_read_, POLLIN, 0};
    int stdout_slot = -1, stderr_slot = -1, pid_slot = -1;
    if (child->stdout_fd >= 0) {
      stdout_slot = static_cast<int>(n);
      fds[n++] = {child->stdout_fd, POLLIN, 0};
    }
    if (child->stderr_fd >= 0) {
      stderr_slot = static_cast<int>(n);
      fds[n++] = {child->stderr_fd, POLLIN, 0};
    }
    if (child->pid_fd >= 0) {
      pid_slot = static_cast<int>(n);
      fds[n++] = {child->pid_fd, POLLIN, 0};
    }
    int ready = ::poll(fds, n, PollTimeout(wake_at));
    if (ready < 0) ready = 0;
    if (ready > 0 && (fds[0].revents & POLLIN) != 0) DrainWakePipe();

    auto readable = [&](int slot) {
      return ready > 0 && slot >= 0 && (fds[slot].revents & (POLLIN | POLLHUP | POLLERR)) != 0;
    };
    if (readable(stderr_slot)) DrainStderr(*child);
    bool stdout_closed = false;
    if (readable(stdout_slot)) stdout_closed = !DrainStdout(child);
    bool exited = readable(pid_slot) || (child->pid_fd < 0 && child->HasExited());
    if (stdout_closed && !exited) {
      // A dying process closes stdout a moment before it becomes waitable: give it that
      // moment, so the error names its exit status rather than "closed its stdout".
      SteadyTime until = internal::DeadlineAfterMillis(kExitAfterEofWaitMillis);
      while (!(exited = child->HasExited()) && Clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
    if (exited) {
      // Deliver whatever the child wrote before it died.
      DrainStderr(*child);
      if (!stdout_closed && child->stdout_fd >= 0) stdout_closed = !DrainStdout(child);
    }

    if (!io_failure_.has_value()) {
      std::lock_guard lock(mu_);
      if (state_ == State::kStarting && Clock::now() >= init_deadline_) {
        io_failure_ = MakeError(ErrorCode::kUpstreamTimeout,
                                "upstream " + name() + ": no answer to initialize within " +
                                    std::to_string(options_.init_timeout_millis) + " ms");
      }
    }
    if (exited || stdout_closed || io_failure_.has_value()) {
      std::string closed_reason = !exited && stdout_closed ? "killed: it closed its stdout" : "";
      HandleDeath(child, closed_reason);
    }
  }

  void DrainStderr(Child& child) {
    char buf[kReadChunkBytes];
    for (int i = 0; i < kReadsPerWakeupMax && child.stderr_fd >= 0; ++i) {
      ssize_t r = ::read(child.stderr_fd, buf, sizeof buf);
      if (r > 0) {
        stderr_tail_.Append(std::string_view(buf, static_cast<size_t>(r)));
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno == EAGAIN) return;
      CloseFd(&child.stderr_fd);  // EOF (or error): the child closed stderr; keep going
    }
  }

  // Reads stdout and handles complete lines. Returns false when stdout is closed or broken
  // (then the child is dead to us).
  bool DrainStdout(const std::shared_ptr<Child>& child) {
    char buf[kReadChunkBytes];
    for (int i = 0; i < kReadsPerWakeupMax; ++i) {
      ssize_t r = ::read(child->stdout_fd, buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno == EAGAIN) return true;
      if (r <= 0) {
        CloseFd(&child->stdout_fd);
        return false;
      }
      stdout_buf_.append(buf, static_cast<size_t>(r));
      size_t start = 0;
      for (;;) {
        size_t nl = stdout_buf_.find('\n', stdout_scanned_);
        if (nl == std::string::npos) break;
        std::string_view line(stdout_buf_.data() + start, nl - start);
        if (line.size() > core::kStdioLineBytesMax) return OversizeLine(*child);
        HandleLine(*child, line);
        start = nl + 1;
        stdout_scanned_ = start;
      }
      stdout_buf_.erase(0, start);
      stdout_scanned_ = stdout_buf_.size();
      if (stdout_buf_.size() > core::kStdioLineBytesMax) return OversizeLine(*child);
      if (io_failure_.has_value()) return true;  // PollOnce takes it down
    }
    return true;
  }

  bool OversizeLine(Child& child) {
    io_failure_ = MakeError(ErrorCode::kUpstreamError,
                            "upstream " + name() + ": protocol error: a stdout line exceeds " +
                                std::to_string(core::kStdioLineBytesMax) + " bytes");
    child.SignalGroup(SIGKILL);
    stdout_buf_.clear();
    stdout_scanned_ = 0;
    return true;
  }

  void HandleLine(Child& child, std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) return;
    auto parsed = Json::Parse(line, core::kStdioLineBytesMax);
    if (!parsed.ok()) {
      // Not an MCP message (a stray log line on stdout): skip it, but keep it for diagnosis.
      stderr_tail_.Append("[stdout, not JSON-RPC] ");
      stderr_tail_.Append(line.substr(0, core::kUpstreamStderrLineBytesMax));
      stderr_tail_.Append("\n");
      return;
    }
    if (parsed->is_array()) {  // a JSON-RPC batch (older protocol revisions)
      for (Json& m : parsed->as_array()) HandleMessage(child, std::move(m));
    } else {
      HandleMessage(child, std::move(*parsed));
    }
  }

  void HandleMessage(Child& child, Json message) {
    switch (internal::Classify(message)) {
      case internal::MessageKind::kResponse: {
        std::optional<int64_t> id = internal::ResponseId(message);
        if (!id.has_value()) return;
        std::unique_lock lock(mu_);
        if (state_ == State::kStarting && *id == init_id_) {
          lock.unlock();
          HandleInitializeAnswer(child, std::move(message));
          return;
        }
        auto it = pending_.find(*id);
        if (it == pending_.end()) return;  // late answer to a call that timed out
        it->second->answer = std::move(message);
        it->second->done = true;
        it->second->cv.notify_one();
        pending_.erase(it);
        return;
      }
      case internal::MessageKind::kRequest:
        (void)WriteMessage(child, internal::AnswerServerRequest(message),
                           internal::DeadlineAfterMillis(kSideWriteMillis));
        return;
      case internal::MessageKind::kNotification:
        if (message.GetString("method") == "notifications/tools/list_changed") cache_.Invalidate();
        return;  // progress, logging, cancellations of server requests: nothing to do
      case internal::MessageKind::kInvalid:
        return;
    }
  }

  void HandleInitializeAnswer(Child& child, Json message) {
    auto result = internal::ResultOfResponse(name(), "initialize", std::move(message));
    core::Status status = core::OkStatus();
    if (!result.ok()) {
      status = std::move(result).error();
    } else if (auto version = internal::CheckInitializeResult(name(), *result); !version.ok()) {
      status = std::move(version).error();
    } else {
      status = WriteMessage(child, internal::MakeNotification("notifications/initialized", Json()),
                            init_deadline_);
    }
    if (!status.ok()) {
      io_failure_ = std::move(status).error();
      child.SignalGroup(SIGKILL);
      return;
    }
    cache_.Invalidate();
    {
      std::lock_guard lock(mu_);
      state_ = State::kReady;
      ready_since_ = Clock::now();
      first_attempt_done_ = true;
    }
    state_cv_.notify_all();
  }

  // The child died or must die: kill what is left of its group, reap it, fail its calls, and
  // schedule the restart.
  void HandleDeath(const std::shared_ptr<Child>& child, const std::string& closed_reason) {
    if (!closed_reason.empty()) child->SignalGroup(SIGKILL, closed_reason);
    int status = child->KillAndReap();
    DrainStderr(*child);
    CloseFd(&child->stdout_fd);
    CloseFd(&child->stderr_fd);
    CloseFd(&child->pid_fd);
    Error cause;
    if (io_failure_.has_value()) {
      cause = *io_failure_;
    } else {
      std::string kill_reason;
      {
        std::lock_guard lock(child->life_mu);
        kill_reason = child->kill_reason;
      }
      cause = MakeError(ErrorCode::kUpstreamUnavailable,
                        "upstream " + name() + ": " +
                            (kill_reason.empty() ? DescribeWaitStatus(status) : kill_reason));
    }
    std::string last = stderr_tail_.LastLine();
    if (!last.empty()) cause.message += " (stderr: " + last + ")";
    io_failure_.reset();
    EnterBackoff(std::move(cause));
  }

  // Marks the upstream down until the next restart and fails everything waiting on the child.
  void EnterBackoff(Error cause) {
    cache_.Invalidate();
    {
      std::lock_guard lock(mu_);
      if (state_ == State::kReady &&
          MillisSince(ready_since_) >= core::kUpstreamRestartHealthyMillis) {
        backoff_millis_ = core::kUpstreamRestartBackoffMillisMin;
      }
      int delay = backoff_millis_;
      backoff_millis_ = std::min(backoff_millis_ * 2, core::kUpstreamRestartBackoffMillisMax);
      restart_at_ = internal::DeadlineAfterMillis(delay);
      state_ = State::kBackoff;
      child_.reset();
      last_failure_ = cause.message;
      Error failed = MakeError(ErrorCode::kUpstreamUnavailable,
                               cause.message + "; restarting in " + std::to_string(delay) + " ms");
      FailAllPendingLocked(failed);
      if (!first_attempt_done_) {
        first_attempt_done_ = true;
        first_attempt_error_ = std::move(cause);
      }
    }
    state_cv_.notify_all();
  }

  void FailAllPendingLocked(const Error& error) {
    for (auto& [id, pending] : pending_) {
      pending->answer = error;
      pending->done = true;
      pending->cv.notify_one();
    }
    pending_.clear();
  }

  // Runs on the I/O thread after Stop: ends the child as upstream.h describes.
  void Shutdown() {
    std::shared_ptr<Child> child;
    {
      std::lock_guard lock(mu_);
      child = child_;
      child_.reset();
      state_ = State::kStopped;
      FailAllPendingLocked(StoppedError());
      if (!first_attempt_done_) {
        first_attempt_done_ = true;
        first_attempt_error_ = StoppedError();
      }
    }
    state_cv_.notify_all();
    if (child == nullptr) return;
    // EOF on stdin asks an MCP server to exit (the stdio transport's shutdown).
    if (child->write_mu.try_lock_until(internal::DeadlineAfterMillis(100))) {
      CloseFd(&child->stdin_fd);
      child->stdin_usable = false;
      child->write_mu.unlock();
    }
    if (!WaitForExit(*child, core::kUpstreamStopEofGraceMillis)) {
      child->SignalGroup(SIGTERM);
      WaitForExit(*child, core::kUpstreamStopTermGraceMillis);
    }
    child->KillAndReap();
  }

  // Waits up to `millis` for the child to exit, discarding its output meanwhile so it cannot
  // block on a full pipe. True when it exited.
  bool WaitForExit(Child& child, int millis) {
    SteadyTime deadline = internal::DeadlineAfterMillis(millis);
    char buf[kReadChunkBytes];
    for (;;) {
      if (child.HasExited()) return true;
      int64_t left = internal::MillisUntil(deadline);
      if (left == 0) return false;
      pollfd fds[3];
      nfds_t n = 0;
      if (child.pid_fd >= 0) fds[n++] = {child.pid_fd, POLLIN, 0};
      if (child.stdout_fd >= 0) fds[n++] = {child.stdout_fd, POLLIN, 0};
      if (child.stderr_fd >= 0) fds[n++] = {child.stderr_fd, POLLIN, 0};
      int wait =
          static_cast<int>(std::min<int64_t>(left, child.pid_fd >= 0 ? left : kExitPollMillis));
      ::poll(fds, n, wait);
      for (int* fd : {&child.stdout_fd, &child.stderr_fd}) {
        if (*fd < 0) continue;
        ssize_t r = ::read(*fd, buf, sizeof buf);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) CloseFd(fd);
      }
    }
  }

  const StdioUpstreamOptions options_;
  internal::InflightLimiter limiter_;
  int wake_read_ = -1;
  int wake_write_ = -1;
  std::thread io_thread_;
  std::mutex stop_mu_;  // serializes Stop (and so the join)

  std::mutex mu_;  // guards the members below, and every Pending
  std::condition_variable state_cv_;
  State state_ = State::kBackoff;  // with restart_at_ in the past: the I/O thread spawns at once
  bool stop_requested_ = false;
  std::shared_ptr<Child> child_;
  std::map<int64_t, std::shared_ptr<Pending>> pending_;
  int64_t next_id_ = 1;
  SteadyTime restart_at_ = SteadyTime::min();
  SteadyTime ready_since_{};
  int backoff_millis_ = core::kUpstreamRestartBackoffMillisMin;
  std::string last_failure_;
  bool first_attempt_done_ = false;
  std::optional<Error> first_attempt_error_;
  int64_t init_id_ = 0;
  SteadyTime init_deadline_{};

  // I/O thread only.
  std::string stdout_buf_;
  size_t stdout_scanned_ = 0;  // bytes of stdout_buf_ known to hold no '\n'
  internal::LineTail stderr_tail_{core::kUpstreamStderrTailLines,
                                  core::kUpstreamStderrLineBytesMax};
  std::optional<Error> io_failure_;  // why the current child must go, when Mandate decided it
};

}  // namespace

core::Result<std::unique_ptr<McpUpstream>> StartStdioUpstream(StdioUpstreamOptions options) {
  auto bad = [&](const std::string& why) {
    return MakeError(ErrorCode::kBadRequest, "stdio upstream \"" + options.name + "\": " + why);
  };
  if (options.name.empty()) return bad("the name is empty");
  if (options.command.empty() || options.command[0].empty()) return bad("the command is empty");
  for (const std::string& arg : options.command) {
    if (arg.find('\0') != std::string::npos) return bad("a command argument contains NUL");
  }
  if (options.max_inflight < 1 || options.max_inflight > core::kUpstreamInflightMax) {
    return bad("max_inflight must be between 1 and " + std::to_string(core::kUpstreamInflightMax));
  }
  if (options.init_timeout_millis <= 0) return bad("init_timeout_millis must be positive");
  for (const auto& [k, v] : options.env) {
    if (!ValidEnvName(k) || v.find('\0') != std::string::npos) {
      return bad("an environment variable has an empty name, or '=' or NUL in it");
    }
  }
  auto upstream = std::make_unique<StdioUpstream>(std::move(options));
  MANDATE_RETURN_IF_ERROR(upstream->Init());
  return std::unique_ptr<McpUpstream>(std::move(upstream));
}

}  // namespace mandate::adapters::mcp
