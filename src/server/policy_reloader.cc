#include "server/policy_reloader.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "mandate/core/limits.h"
#include "mandate/core/thread_name.h"
#include "mandate/policy/policy_set.h"

namespace mandate::server {

core::Json PolicyReloader::Outcome::ToJson() const {
  core::Json j = core::Json::MakeObject();
  j.Set("status", kind == Kind::kLoaded ? "loaded" : kind == Kind::kUnchanged ? "unchanged" : "rejected");
  j.Set("sha256", sha256);
  if (kind == Kind::kRejected) j.Set("error", error);
  return j;
}

PolicyReloader::PolicyReloader(std::string dir, gateway::PolicyHolder* holder, const gateway::Pipeline* pipeline,
                               std::function<void(const std::string&)> log)
    : dir_(std::move(dir)), holder_(holder), pipeline_(pipeline), log_(std::move(log)) {}

PolicyReloader::~PolicyReloader() { Stop(); }

core::Status PolicyReloader::Start() {
  inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0) return core::MakeError(core::ErrorCode::kInternal, std::string("inotify: ") + std::strerror(errno));
  constexpr uint32_t kEvents = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE | IN_ATTRIB |
                               IN_DELETE_SELF | IN_MOVE_SELF;
  if (::inotify_add_watch(inotify_fd_, dir_.c_str(), kEvents) < 0) {
    return core::MakeError(core::ErrorCode::kInternal, "cannot watch policy directory " + dir_ + ": " + std::strerror(errno));
  }
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return core::MakeError(core::ErrorCode::kInternal, std::string("pipe: ") + std::strerror(errno));
  }
  watcher_ = std::thread([this] {
    core::NameThisThread("policy-reload");
    WatchLoop();
  });
  return core::OkStatus();
}

void PolicyReloader::Stop() {
  if (stopped_.exchange(true)) return;
  if (wake_[1] >= 0) (void)!::write(wake_[1], "x", 1);
  if (watcher_.joinable()) watcher_.join();
  for (int* fd : {&inotify_fd_, &wake_[0], &wake_[1]}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
}

void PolicyReloader::WatchLoop() {
  bool pending = false;  // events seen, waiting for them to settle
  alignas(inotify_event) char buf[4096];
  while (!stopped_.load()) {
    pollfd p[2] = {{inotify_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    int n = ::poll(p, 2, pending ? core::kPolicyReloadSettleMillis : -1);
    if (n < 0 && errno != EINTR) return;
    if (p[1].revents != 0 || stopped_.load()) return;
    if (p[0].revents & POLLIN) {
      while (::read(inotify_fd_, buf, sizeof(buf)) > 0) {
      }  // drain: what changed does not matter, the whole directory is reloaded
      pending = true;
      continue;
    }
    if (n == 0 && pending) {
      pending = false;
      Reload();
    }
  }
}

PolicyReloader::Outcome PolicyReloader::Reload() {
  std::lock_guard<std::mutex> lock(reload_mu_);
  Outcome out;
  std::shared_ptr<const policy::PolicySet> active = holder_->Get();
  auto loaded = policy::PolicySet::LoadDir(dir_);
  if (!loaded.ok()) {
    out.kind = Outcome::Kind::kRejected;
    out.sha256 = active->source_sha256();
    out.error = loaded.error().message;
    log_("policies: reload rejected, the active set (sha256 " + out.sha256.substr(0, 12) + ") stays: " + out.error);
    core::Json rec = core::Json::MakeObject();
    rec.Set("type", "policy.rejected");
    rec.Set("dir", dir_);
    rec.Set("error", out.error);
    rec.Set("active_sha256", out.sha256);
    if (auto st = pipeline_->Record(std::move(rec)); !st.ok()) log_("policies: cannot audit policy.rejected: " + st.error().message);
    return out;
  }
  if (loaded->source_sha256() == active->source_sha256()) {
    out.sha256 = active->source_sha256();
    return out;  // touched but unchanged: nothing to swap or audit
  }
  auto set = std::make_shared<const policy::PolicySet>(std::move(loaded).value());
  out.kind = Outcome::Kind::kLoaded;
  out.sha256 = set->source_sha256();
  core::Json rec = core::Json::MakeObject();
  rec.Set("type", "policy.loaded");
  rec.Set("dir", dir_);
  rec.Set("sha256", out.sha256);
  rec.Set("policies", static_cast<int64_t>(set->size()));
  rec.Set("previous_sha256", active->source_sha256());
  // Recorded before the swap: no call is decided by a set the log has not seen.
  if (auto st = pipeline_->Record(std::move(rec)); !st.ok()) {
    out.kind = Outcome::Kind::kRejected;
    out.sha256 = active->source_sha256();
    out.error = "cannot audit policy.loaded: " + st.error().message;
    log_("policies: reload rejected, " + out.error);
    return out;
  }
  holder_->Set(std::move(set));
  log_("policies: loaded " + dir_ + " (sha256 " + out.sha256.substr(0, 12) + ")");
  return out;
}

}  // namespace mandate::server
