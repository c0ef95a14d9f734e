// Hot reload of the policies directory (policy issue, item 6). The directory is watched with
// inotify; after changes settle (kPolicyReloadSettleMillis without a new event) the whole
// directory is loaded again:
//   - a set that fails to load (a parse error, a duplicate id, no *.cedar file...) is rejected
//     whole: the active set stays, the error is logged and audited as `policy.rejected`;
//   - a set that loads and differs from the active one (by PolicySet::source_sha256) replaces
//     it atomically (PolicyHolder: a call sees the old set or the new one, never half) and is
//     audited as `policy.loaded` with its digest, file and policy counts.
// Reload() does the same on demand (admin API, tests). Editors that save by rename, and
// directories whose files are symlinks swapped underneath (Kubernetes ConfigMaps), are seen
// through IN_MOVED_TO / IN_CREATE on the directory.
//
// Thread safety: Reload may be called from any thread; reloads are serialized.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "mandate/core/json.h"
#include "mandate/core/result.h"
#include "mandate/gateway/pipeline.h"

namespace mandate::server {

class PolicyReloader {
 public:
  struct Outcome {
    enum class Kind { kLoaded, kUnchanged, kRejected } kind = Kind::kUnchanged;
    std::string sha256;  // the active set's digest afterwards
    std::string error;   // kRejected: why
    core::Json ToJson() const;
  };

  // `holder` holds the set loaded at start (whose digest is the baseline); `pipeline` records
  // the audit records; `log` gets one line per reload. None is owned; all must outlive this.
  PolicyReloader(std::string dir, gateway::PolicyHolder* holder, const gateway::Pipeline* pipeline,
                 std::function<void(const std::string&)> log);
  ~PolicyReloader();
  PolicyReloader(const PolicyReloader&) = delete;
  PolicyReloader& operator=(const PolicyReloader&) = delete;

  // Starts watching. Errors: kInternal when the directory cannot be watched.
  core::Status Start();
  // Stops the watcher thread. Idempotent.
  void Stop();

  // Loads the directory now and swaps or rejects as described above.
  Outcome Reload();

 private:
  void WatchLoop();

  const std::string dir_;
  gateway::PolicyHolder* holder_;
  const gateway::Pipeline* pipeline_;
  std::function<void(const std::string&)> log_;
  std::mutex reload_mu_;  // one reload at a time
  int inotify_fd_ = -1;
  int wake_[2] = {-1, -1};
  std::thread watcher_;
  std::atomic<bool> stopped_{false};
};

}  // namespace mandate::server
