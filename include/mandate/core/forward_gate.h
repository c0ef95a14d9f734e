// The gate a governed call's bytes pass before they may leave for the upstream: it opens once
// the call's decision record is durable and closes for good when the record cannot be made so
// (DESIGN.md invariant 2: no side effect without its durable decision record).
//
// Why a gate rather than a blocking append: the pipeline appends the decision record without
// waiting (AuditLog::AppendThen), and the code that sends to the upstream either waits here
// (Wait) or hands the send itself over (WhenDecided). A handed-over send runs on the thread
// that made the record durable, right after its fdatasync, so the calling thread sleeps once,
// for the upstream's answer, instead of once for the disk and once more for the answer
// (docs/performance.md, "Forwarding from the group commit").
//
// Like CancelSignal, the gate reaches the code deep in a call through the thread's ambient
// scope (ForwardGateScope / CurrentForwardGate), set by the pipeline only around an invoker
// that honours it (gateway::UpstreamInvoker::HonoursForwardGate); for any other the pipeline
// waits for the record itself before invoking.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>

#include "mandate/core/result.h"

namespace mandate::core {

class ForwardGate {
 public:
  // How the gate was decided: ok (open: the record is durable) or the error that keeps it
  // closed.
  using Continuation = std::function<void(const Status& decided)>;

  // Decides the gate: `decided` ok opens it, an error closes it for good. Only the first call
  // counts. Runs the continuation waiting in WhenDecided, if any, on this thread, and wakes
  // Wait.
  void Decide(Status decided);

  // Runs `fn(decided)` once the gate is decided: at once on this thread if it already is,
  // otherwise later on the thread that decides it. `fn` must be quick, must not block and must
  // not call this gate. One continuation at a time: registering a second one while the first
  // waits is a programming error (checked).
  void WhenDecided(Continuation fn);

  // Takes back the continuation registered with WhenDecided. Returns true when it was taken
  // back before it started (it will never run); false when it has run (this returns only
  // after it finished) or none was registered.
  bool Withdraw();

  // Blocks until the gate is decided; returns how.
  Status Wait();

  // How the gate was decided; nullopt while it is not.
  std::optional<Status> decided() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Status> decided_;  // guarded by mu_
  Continuation next_;              // guarded by mu_: registered, not yet started
  bool running_ = false;           // guarded by mu_: Decide is running the continuation
};

// The gate the upstream sends of this thread must pass; null outside a governed call whose
// invoker honours one.
ForwardGate* CurrentForwardGate();

// Makes `gate` the thread's current forward gate for the scope's lifetime (nestable).
class ForwardGateScope {
 public:
  explicit ForwardGateScope(ForwardGate* gate);
  ~ForwardGateScope();
  ForwardGateScope(const ForwardGateScope&) = delete;
  ForwardGateScope& operator=(const ForwardGateScope&) = delete;

 private:
  ForwardGate* previous_;
};

}  // namespace mandate::core
