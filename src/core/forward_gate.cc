#include "mandate/core/forward_gate.h"

#include <utility>

#include "mandate/core/check.h"

namespace mandate::core {

void ForwardGate::Decide(Status decided) {
  Continuation fn;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (decided_.has_value()) return;
    decided_ = std::move(decided);
    fn = std::exchange(next_, nullptr);
    running_ = static_cast<bool>(fn);
    cv_.notify_all();
    if (!fn) return;
  }
  // decided_ is never written again, so it is read without the lock.
  fn(*decided_);
  std::lock_guard<std::mutex> lock(mu_);
  running_ = false;
  cv_.notify_all();
}

void ForwardGate::WhenDecided(Continuation fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!decided_.has_value()) {
      MANDATE_CHECK(!next_ && !running_);
      next_ = std::move(fn);
      return;
    }
  }
  fn(*decided_);
}

bool ForwardGate::Withdraw() {
  std::unique_lock<std::mutex> lock(mu_);
  if (next_) {
    next_ = nullptr;
    return true;
  }
  cv_.wait(lock, [&] { return !running_; });
  return false;
}

Status ForwardGate::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return decided_.has_value(); });
  return *decided_;
}

std::optional<Status> ForwardGate::decided() const {
  std::lock_guard<std::mutex> lock(mu_);
  return decided_;
}

namespace {
thread_local ForwardGate* g_gate = nullptr;
}  // namespace

ForwardGate* CurrentForwardGate() { return g_gate; }

ForwardGateScope::ForwardGateScope(ForwardGate* gate) : previous_(g_gate) { g_gate = gate; }
ForwardGateScope::~ForwardGateScope() { g_gate = previous_; }

}  // namespace mandate::core
