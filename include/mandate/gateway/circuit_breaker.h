// The circuit breaker of one upstream (DESIGN.md section 6: "consecutive failures open it for
// a cool-down"). A standard three-state breaker:
//
//   closed    --(failure_threshold consecutive failures)-->  open
//   open      --(first Admit() once the cool-down is over)--> half_open (that call is the probe)
//   half_open --(probe succeeds)--> closed     (consecutive-failure count reset)
//   half_open --(probe fails)-----> open       (a fresh cool-down from the probe's failure)
//
// Use: every upstream call asks Admit() first. A refused Admission is not forwarded (the
// caller answers upstream_unavailable and may pass retry_after_micros on). An admitted one is
// reported exactly once when the call ends: Record(admission, success), or Abandon(admission)
// when the call ended for a reason that is not the upstream's fault (revocation, the agent went
// away, the call was refused before it reached the upstream). Abandon counts as neither
// success nor failure; if the admission was the half-open probe, it frees the probe slot so the
// next Admit() becomes the probe. Until the probe is reported, every other caller is refused:
// an admitted probe that is never reported keeps the breaker half-open and refusing.
//
// Which results count: in closed, results of calls admitted since the breaker last closed (a
// success resets the count, a failure adds one); in half_open, only the probe's. Results of
// calls admitted before the latest state change (e.g. a slow call admitted before the breaker
// opened) are ignored, so a late failure never extends a cool-down and a late success never
// closes the breaker. Reporting an Admission twice, or reporting a refused one, is a
// programming error; a refused one is ignored, a probe's second report is ignored.
//
// Time: the cool-down runs on the injected core::Clock (wall clock, Unix microseconds). The
// breaker does not change state on its own: an open breaker whose cool-down is over still
// reports "open" (state(), Snapshot()) until the next Admit() makes it half-open, as
// resilience4j does by default. If the clock steps back before the time the breaker opened,
// the cool-down restarts at the current time, so a breaker never stays open for longer than
// one cool-down of observed time.
//
// Transitions: every state change is reported to the optional `on_transition` callback given at
// construction, with a per-breaker sequence number (1, 2, 3, ...), so the integrator can audit
// them (records circuit.opened, circuit.half_open, circuit.closed; see TransitionRecordType).
// Guarantees:
//   - the callback is invoked outside the breaker's state lock, so it may block (e.g. append a
//     durable audit record) without stalling Admit()/Record() of other callers, and it may
//     call state(), Snapshot(), upstream() and options();
//   - each transition is reported exactly once, on the thread whose Admit()/Record() caused it,
//     before that Admit()/Record() returns;
//   - callbacks of one breaker never run concurrently and run in sequence order: a thread whose
//     call caused transition n+1 waits until the callback of transition n has returned. The
//     callback should therefore be short, and must return (and must not throw).
//   - by the time the callback runs the breaker may already be in a later state (the state
//     lock is released before the callback); the Transition says what happened, in order.
// The callback must not call Admit(), Record() or Abandon() on the same breaker: a transition
// caused from inside the callback would wait for the callback itself; this is detected and
// aborts (MANDATE_CHECK) rather than deadlocking.
//
// Cost: in the closed state the hot path takes no lock. Admit() is one atomic load; Record() of
// a success when there are no failures to reset is one atomic load. Everything else (failures,
// open and half-open states, Abandon of a probe, Snapshot) takes one short critical section.
//
// Thread safety: every method may be called concurrently from any thread. The clock is not
// owned and must outlive the breaker; the breaker must outlive every call of its methods and
// every running callback. Not copyable or movable.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "mandate/core/clock.h"
#include "mandate/core/json.h"

namespace mandate::gateway {

struct CircuitBreakerOptions {
  // Consecutive failures that open the breaker. 0 disables it: it stays closed, admits every
  // call and keeps no count.
  uint32_t failure_threshold = 5;
  // How long an open breaker refuses calls before it admits a probe. Negative is taken as 0
  // (the next Admit() after opening is the probe).
  int64_t cool_down_micros = 30LL * 1000 * 1000;
};

// The answer of CircuitBreaker::Admit(). A value; a default-constructed one is refused with no
// retry hint (and must not be reported).
class Admission {
 public:
  Admission() = default;

  // Whether the call may be forwarded to the upstream.
  bool admitted() const { return admitted_; }
  // Whether this call is the half-open probe whose result decides between closed and open.
  bool probe() const { return probe_; }
  // Refused only: microseconds left in the cool-down (at least 1 while open), or 0 while a
  // half-open probe is in flight (the breaker cannot tell when it will finish). 0 if admitted.
  int64_t retry_after_micros() const { return retry_after_micros_; }

 private:
  friend class CircuitBreaker;
  bool admitted_ = false;
  bool probe_ = false;
  int64_t retry_after_micros_ = 0;
  // The breaker's epoch when admitted: results of calls from an earlier epoch are ignored.
  uint32_t epoch_ = 0;
};

class CircuitBreaker {
 public:
  enum class State : uint8_t { kClosed = 0, kOpen = 1, kHalfOpen = 2 };

  // One state change, as reported to the callback.
  struct Transition {
    std::string_view upstream;  // the breaker's name; valid while the breaker lives
    State from = State::kClosed;
    State to = State::kClosed;
    // Consecutive failures counted since the last success: failure_threshold (or more, after
    // failed probes) when opening and half-opening, 0 when closing.
    uint32_t consecutive_failures = 0;
    int64_t at_unix_micros = 0;  // the clock when the transition happened
    // When to == kOpen: when the cool-down ends (a probe will be admitted); 0 otherwise.
    int64_t retry_at_unix_micros = 0;
    uint64_t seq = 0;  // 1 for the breaker's first transition, then +1 for each
  };
  using TransitionCallback = std::function<void(const Transition&)>;

  // `upstream` names the breaker in transitions and snapshots. `on_transition` may be empty.
  CircuitBreaker(std::string upstream, CircuitBreakerOptions options, const core::Clock& clock,
                 TransitionCallback on_transition = {});
  CircuitBreaker(const CircuitBreaker&) = delete;
  CircuitBreaker& operator=(const CircuitBreaker&) = delete;

  // Whether a call may go to the upstream now. Closed: admitted. Open with time left in the
  // cool-down: refused with that time. Open with the cool-down over: turns half-open (reported)
  // and admits this call as the probe. Half-open with no probe in flight (the last one was
  // abandoned): admits this call as the probe. Half-open with a probe in flight: refused,
  // retry_after_micros 0. Never fails.
  [[nodiscard]] Admission Admit();

  // Reports the result of an admitted call (see the header comment for which results count).
  // A failure is the upstream's fault: it could not be reached, timed out, or answered with a
  // transport or server error. May change the state (reported to the callback before this
  // returns).
  void Record(const Admission& admission, bool success);

  // Reports that an admitted call ended without a result that says anything about the
  // upstream. Never changes the state; frees the probe slot if `admission` is the probe.
  void Abandon(const Admission& admission);

  // The current state (one atomic load). An open breaker stays "open" past its cool-down until
  // the next Admit().
  State state() const;

  // For the admin API:
  //   {"upstream", "state": "closed"|"open"|"half_open", "consecutive_failures",
  //    "failure_threshold", "cool_down_micros",
  //    "opened_at": Unix seconds of the latest opening, null while closed,
  //    "retry_at": Unix seconds (rounded up) when the cool-down ends, null unless open,
  //    "retry_after_micros": cool-down left now (0 once over), null unless open,
  //    "probe_in_flight": bool}
  core::Json Snapshot() const;

  const std::string& upstream() const { return upstream_; }
  const CircuitBreakerOptions& options() const { return options_; }

 private:
  // The state, consecutive failures and epoch packed into one word so that the lock-free
  // closed-state fast paths read a consistent triple. Written only under mu_.
  static constexpr uint64_t kEpochMask = (uint64_t{1} << 30) - 1;
  static uint64_t Pack(State state, uint32_t failures, uint32_t epoch);
  void PublishLocked();  // stores the packed word from the fields below
  // Opens the breaker at `now` (from closed or half_open) and returns the transition.
  Transition OpenLocked(int64_t now);
  Transition MakeTransitionLocked(State from, State to, int64_t now);
  void Deliver(const Transition& t);

  const std::string upstream_;
  const CircuitBreakerOptions options_;
  const core::Clock& clock_;
  const TransitionCallback on_transition_;

  std::atomic<uint64_t> word_;

  mutable std::mutex mu_;
  State state_ = State::kClosed;       // guarded by mu_
  uint32_t consecutive_failures_ = 0;  // guarded by mu_
  // Invariant: changes (mod 2^30) on every transition and every probe admission, so an
  // Admission whose epoch_ equals it was admitted in the current state (for a probe: is the
  // current probe).
  uint32_t epoch_ = 0;                 // guarded by mu_
  bool probe_in_flight_ = false;       // guarded by mu_; only in half_open
  int64_t opened_at_unix_micros_ = 0;  // guarded by mu_; valid unless closed
  int64_t retry_at_unix_micros_ = 0;   // guarded by mu_; valid while open
  uint64_t transitions_ = 0;           // guarded by mu_; seq of the latest transition

  // Callback delivery in sequence order, one at a time (see the header comment).
  std::mutex deliver_mu_;
  std::condition_variable deliver_cv_;
  uint64_t delivered_seq_ = 0;         // guarded by deliver_mu_
  std::thread::id delivering_thread_;  // guarded by deliver_mu_; none when idle
};

// "closed", "open", "half_open".
std::string_view StateName(CircuitBreaker::State state);

// The audit record type of a transition to `to`: "circuit.closed", "circuit.opened",
// "circuit.half_open".
std::string_view TransitionRecordType(CircuitBreaker::State to);

}  // namespace mandate::gateway
