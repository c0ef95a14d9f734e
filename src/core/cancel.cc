#include "mandate/core/cancel.h"

#include <vector>

namespace mandate::core {
namespace {
thread_local CancelSignal* g_current = nullptr;
}  // namespace

uint64_t CancelSignal::OnCancel(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!cancelled_) {
      uint64_t id = next_++;
      fns_.emplace(id, std::move(fn));
      return id;
    }
  }
  fn();
  return 0;
}

void CancelSignal::Remove(uint64_t registration) {
  std::unique_lock<std::mutex> lock(mu_);
  fns_.erase(registration);
  done_.wait(lock, [&] { return !running_; });
}

void CancelSignal::Cancel() {
  std::vector<std::function<void()>> fns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return;
    cancelled_ = true;
    running_ = true;
    for (auto& [id, fn] : fns_) fns.push_back(std::move(fn));
    fns_.clear();
  }
  for (auto& fn : fns) fn();
  std::lock_guard<std::mutex> lock(mu_);
  running_ = false;
  done_.notify_all();
}

bool CancelSignal::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

CancelSignal* CurrentCancelSignal() { return g_current; }

CancelScope::CancelScope(CancelSignal* signal) : previous_(g_current) { g_current = signal; }
CancelScope::~CancelScope() { g_current = previous_; }

namespace {
thread_local const ProgressSink* g_progress = nullptr;
}  // namespace

const ProgressSink* CurrentProgressSink() { return g_progress; }

ProgressScope::ProgressScope(const ProgressSink* sink) : previous_(g_progress) { g_progress = sink; }
ProgressScope::~ProgressScope() { g_progress = previous_; }

}  // namespace mandate::core
