#include "mandate/gateway/circuit_breaker.h"

#include <limits>
#include <optional>
#include <utility>

#include "mandate/core/check.h"

namespace mandate::gateway {
namespace {

using State = CircuitBreaker::State;

// Packed word layout: bits 0-1 state, bits 2-33 consecutive failures, bits 34-63 epoch.
constexpr int kFailuresShift = 2;
constexpr int kEpochShift = 34;

State StateOf(uint64_t word) { return static_cast<State>(word & 3); }
uint32_t FailuresOf(uint64_t word) { return static_cast<uint32_t>(word >> kFailuresShift); }
uint32_t EpochOf(uint64_t word) { return static_cast<uint32_t>(word >> kEpochShift); }

int64_t SaturatingAdd(int64_t a, int64_t b) {
  // b >= 0 here (a clamped cool-down).
  if (a > std::numeric_limits<int64_t>::max() - b) return std::numeric_limits<int64_t>::max();
  return a + b;
}

// Unix seconds, rounded up so that a client waiting until then never comes back early.
int64_t CeilSeconds(int64_t unix_micros) {
  int64_t s = unix_micros / 1000000;
  if (unix_micros % 1000000 > 0) ++s;
  return s;
}

}  // namespace

std::string_view StateName(State state) {
  switch (state) {
    case State::kClosed:
      return "closed";
    case State::kOpen:
      return "open";
    case State::kHalfOpen:
      return "half_open";
  }
  return "closed";
}

std::string_view TransitionRecordType(State to) {
  switch (to) {
    case State::kClosed:
      return "circuit.closed";
    case State::kOpen:
      return "circuit.opened";
    case State::kHalfOpen:
      return "circuit.half_open";
  }
  return "circuit.closed";
}

CircuitBreaker::CircuitBreaker(std::string upstream, CircuitBreakerOptions options,
                               const core::Clock& clock, TransitionCallback on_transition)
    : upstream_(std::move(upstream)),
      options_{options.failure_threshold,
               options.cool_down_micros < 0 ? 0 : options.cool_down_micros},
      clock_(clock),
      on_transition_(std::move(on_transition)),
      word_(Pack(State::kClosed, 0, 0)) {}

uint64_t CircuitBreaker::Pack(State state, uint32_t failures, uint32_t epoch) {
  return static_cast<uint64_t>(state) | (static_cast<uint64_t>(failures) << kFailuresShift) |
         ((static_cast<uint64_t>(epoch) & kEpochMask) << kEpochShift);
}

void CircuitBreaker::PublishLocked() {
  word_.store(Pack(state_, consecutive_failures_, epoch_), std::memory_order_release);
}

CircuitBreaker::Transition CircuitBreaker::MakeTransitionLocked(State from, State to, int64_t now) {
  Transition t;
  t.upstream = upstream_;
  t.from = from;
  t.to = to;
  t.consecutive_failures = consecutive_failures_;
  t.at_unix_micros = now;
  t.retry_at_unix_micros = to == State::kOpen ? retry_at_unix_micros_ : 0;
  t.seq = ++transitions_;
  return t;
}

CircuitBreaker::Transition CircuitBreaker::OpenLocked(int64_t now) {
  const State from = state_;
  state_ = State::kOpen;
  probe_in_flight_ = false;
  epoch_ = (epoch_ + 1) & kEpochMask;
  opened_at_unix_micros_ = now;
  retry_at_unix_micros_ = SaturatingAdd(now, options_.cool_down_micros);
  PublishLocked();
  return MakeTransitionLocked(from, State::kOpen, now);
}

Admission CircuitBreaker::Admit() {
  Admission a;
  // Fast path: closed (always, when disabled) admits without the lock. A breaker opening
  // concurrently is a race the call simply won: it was admitted just before the opening.
  const uint64_t word = word_.load(std::memory_order_acquire);
  if (StateOf(word) == State::kClosed) {
    a.admitted_ = true;
    a.epoch_ = EpochOf(word);
    return a;
  }

  std::optional<Transition> transition;
  {
    std::lock_guard lock(mu_);
    switch (state_) {
      case State::kClosed:  // closed since the fast path looked
        a.admitted_ = true;
        a.epoch_ = epoch_;
        return a;
      case State::kOpen: {
        const int64_t now = clock_.NowUnixMicros();
        if (now < opened_at_unix_micros_) {
          // The wall clock stepped back: restart the cool-down from now rather than stay open
          // for however far it stepped.
          opened_at_unix_micros_ = now;
          retry_at_unix_micros_ = SaturatingAdd(now, options_.cool_down_micros);
        }
        if (now < retry_at_unix_micros_) {
          a.retry_after_micros_ = retry_at_unix_micros_ - now;
          return a;
        }
        state_ = State::kHalfOpen;
        epoch_ = (epoch_ + 1) & kEpochMask;
        transition = MakeTransitionLocked(State::kOpen, State::kHalfOpen, now);
        break;  // admit the probe below
      }
      case State::kHalfOpen:
        if (probe_in_flight_) return a;  // refused, no way to tell when the probe ends
        break;
    }
    // Half-open with a free probe slot: this call is the probe.
    probe_in_flight_ = true;
    epoch_ = (epoch_ + 1) & kEpochMask;
    PublishLocked();
    a.admitted_ = true;
    a.probe_ = true;
    a.epoch_ = epoch_;
  }
  if (transition) Deliver(*transition);
  return a;
}

void CircuitBreaker::Record(const Admission& admission, bool success) {
  if (!admission.admitted_ || options_.failure_threshold == 0) return;
  if (!admission.probe_ && success) {
    // Fast path: a success with nothing to reset changes nothing, whatever the epoch.
    const uint64_t word = word_.load(std::memory_order_acquire);
    if (StateOf(word) == State::kClosed && FailuresOf(word) == 0) return;
  }

  std::optional<Transition> transition;
  {
    std::lock_guard lock(mu_);
    if (admission.epoch_ != epoch_) return;  // admitted before the latest state change
    if (admission.probe_) {
      if (state_ != State::kHalfOpen || !probe_in_flight_) return;  // already reported
      const int64_t now = clock_.NowUnixMicros();
      if (success) {
        state_ = State::kClosed;
        probe_in_flight_ = false;
        consecutive_failures_ = 0;
        epoch_ = (epoch_ + 1) & kEpochMask;
        PublishLocked();
        transition = MakeTransitionLocked(State::kHalfOpen, State::kClosed, now);
      } else {
        if (consecutive_failures_ < std::numeric_limits<uint32_t>::max()) ++consecutive_failures_;
        transition = OpenLocked(now);
      }
    } else {
      // Invariant: non-probe admissions come only from the closed state, and the epoch changes
      // on leaving it, so a matching epoch means the breaker is still closed.
      MANDATE_DCHECK(state_ == State::kClosed);
      if (state_ != State::kClosed) return;
      if (success) {
        consecutive_failures_ = 0;
        PublishLocked();
        return;
      }
      ++consecutive_failures_;  // < failure_threshold <= UINT32_MAX before this
      if (consecutive_failures_ < options_.failure_threshold) {
        PublishLocked();
        return;
      }
      transition = OpenLocked(clock_.NowUnixMicros());
    }
  }
  Deliver(*transition);
}

void CircuitBreaker::Abandon(const Admission& admission) {
  // A non-probe call ending without a result changes nothing; no lock needed.
  if (!admission.admitted_ || !admission.probe_) return;
  std::lock_guard lock(mu_);
  if (admission.epoch_ != epoch_ || state_ != State::kHalfOpen || !probe_in_flight_) return;
  // The epoch stays: the next probe admission changes it, which makes this one stale.
  probe_in_flight_ = false;
}

CircuitBreaker::State CircuitBreaker::state() const {
  return StateOf(word_.load(std::memory_order_acquire));
}

core::Json CircuitBreaker::Snapshot() const {
  State state;
  uint32_t failures;
  bool probe_in_flight;
  int64_t opened_at;
  int64_t retry_at;
  {
    std::lock_guard lock(mu_);
    state = state_;
    failures = consecutive_failures_;
    probe_in_flight = probe_in_flight_;
    opened_at = opened_at_unix_micros_;
    retry_at = retry_at_unix_micros_;
  }
  core::Json j = core::Json::MakeObject();
  j.Set("upstream", upstream_);
  j.Set("state", StateName(state));
  j.Set("consecutive_failures", failures);
  j.Set("failure_threshold", options_.failure_threshold);
  j.Set("cool_down_micros", options_.cool_down_micros);
  j.Set("opened_at", state == State::kClosed ? core::Json() : core::Json(opened_at / 1000000));
  if (state == State::kOpen) {
    const int64_t now = clock_.NowUnixMicros();
    j.Set("retry_at", CeilSeconds(retry_at));
    j.Set("retry_after_micros", now < retry_at ? retry_at - now : int64_t{0});
  } else {
    j.Set("retry_at", core::Json());
    j.Set("retry_after_micros", core::Json());
  }
  j.Set("probe_in_flight", probe_in_flight);
  return j;
}

void CircuitBreaker::Deliver(const Transition& t) {
  if (!on_transition_) return;
  std::unique_lock lock(deliver_mu_);
  // A transition caused from inside the callback would wait for the callback itself.
  MANDATE_CHECK(delivering_thread_ != std::this_thread::get_id());
  deliver_cv_.wait(lock, [&] { return delivered_seq_ + 1 == t.seq; });
  delivering_thread_ = std::this_thread::get_id();
  lock.unlock();
  on_transition_(t);
  lock.lock();
  delivering_thread_ = std::thread::id();
  delivered_seq_ = t.seq;
  lock.unlock();
  deliver_cv_.notify_all();
}

}  // namespace mandate::gateway
