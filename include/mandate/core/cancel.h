// Cancelling blocking work from another thread (DESIGN.md invariant: "calls in flight are
// cancelled" when their session is revoked).
//
// A CancelSignal is fired once, by any thread. Blocking code registers what undoes its wait
// (shut down the socket it reads, complete the request it waits for) with OnCancel while it
// waits and removes it when done. Code deep in a call learns of the signal through the
// thread's ambient scope (CancelScope / CurrentCancelSignal) rather than through every
// signature in between: a governed call runs on one thread from the pipeline to the socket.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <mutex>

namespace mandate::core {

class CancelSignal {
 public:
  // Registers `fn` to run once when the signal fires, on the firing thread (at once, on this
  // thread, if it already fired; then 0 is returned). `fn` must be quick and must not call
  // this signal's methods. Returns a registration for Remove.
  uint64_t OnCancel(std::function<void()> fn);
  // Unregisters. When it returns, the function is not running and will not run.
  void Remove(uint64_t registration);
  // Fires: runs every registered function once. Idempotent.
  void Cancel();
  bool cancelled() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable done_;
  std::map<uint64_t, std::function<void()>> fns_;  // guarded by mu_
  uint64_t next_ = 1;                              // guarded by mu_
  bool cancelled_ = false;                         // guarded by mu_
  bool running_ = false;                           // guarded by mu_: Cancel is running fns
};

// The signal blocking calls on this thread observe; null when the work is not cancellable.
CancelSignal* CurrentCancelSignal();

// Makes `signal` the thread's current signal for the scope's lifetime (nestable).
class CancelScope {
 public:
  explicit CancelScope(CancelSignal* signal);
  ~CancelScope();
  CancelScope(const CancelScope&) = delete;
  CancelScope& operator=(const CancelScope&) = delete;

 private:
  CancelSignal* previous_;
};

// Registers `fn` with `signal` (if any) for a scope, and removes it at the end of the scope.
class CancelRegistration {
 public:
  CancelRegistration(CancelSignal* signal, std::function<void()> fn)
      : signal_(signal), id_(signal ? signal->OnCancel(std::move(fn)) : 0) {}
  ~CancelRegistration() {
    if (signal_ && id_) signal_->Remove(id_);
  }
  CancelRegistration(const CancelRegistration&) = delete;
  CancelRegistration& operator=(const CancelRegistration&) = delete;

 private:
  CancelSignal* signal_;
  uint64_t id_;
};

// Progress of a long wait (a call parked for approval), reported to whoever started the work
// on this thread and can tell its client (the MCP adapter sends notifications/progress). The
// same ambient mechanism as CancelScope: code deep in a call reports without every signature
// in between carrying a callback.
struct Progress {
  int64_t progress = 0;  // increases with every report of one wait
  int64_t total = 0;     // 0: unknown
  std::string message;
};
using ProgressSink = std::function<void(const Progress&)>;

// The sink reports on this thread go to; null when nobody listens.
const ProgressSink* CurrentProgressSink();

// Makes `sink` the thread's current progress sink for the scope's lifetime (nestable).
class ProgressScope {
 public:
  explicit ProgressScope(const ProgressSink* sink);
  ~ProgressScope();
  ProgressScope(const ProgressScope&) = delete;
  ProgressScope& operator=(const ProgressScope&) = delete;

 private:
  const ProgressSink* previous_;
};

}  // namespace mandate::core
