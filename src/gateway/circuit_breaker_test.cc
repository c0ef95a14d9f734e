// Tests of the upstream circuit breaker (DESIGN.md section 6) on a FakeClock: when it opens,
// what it refuses and for how long, the single half-open probe under concurrency, Abandon,
// results that arrive late, and that every transition is reported exactly once, in order and
// never concurrently.
#include "mandate/gateway/circuit_breaker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <latch>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "mandate/core/clock.h"
#include "mandate/core/json.h"

namespace mandate::gateway {
namespace {

using State = CircuitBreaker::State;
using Transition = CircuitBreaker::Transition;

constexpr int64_t kSecond = 1000000;
constexpr int64_t kStartMicros = 1767000000LL * kSecond;  // FakeClock's default

// Collects the transitions a breaker reports.
class TransitionLog {
 public:
  CircuitBreaker::TransitionCallback Callback() {
    return [this](const Transition& t) {
      std::lock_guard lock(mu_);
      log_.push_back(t);
    };
  }
  std::vector<Transition> Take() {
    std::lock_guard lock(mu_);
    std::vector<Transition> out;
    out.swap(log_);
    return out;
  }

 private:
  std::mutex mu_;
  std::vector<Transition> log_;
};

class CircuitBreakerTest : public ::testing::Test {
 protected:
  // A breaker with `threshold` and a 30 s cool-down, reporting to log_.
  std::unique_ptr<CircuitBreaker> Make(uint32_t threshold = 3,
                                       int64_t cool_down_micros = 30 * kSecond) {
    return std::make_unique<CircuitBreaker>(
        "jira", CircuitBreakerOptions{threshold, cool_down_micros}, clock_, log_.Callback());
  }

  // Admits and fails `n` calls; each must have been admitted.
  static void Fail(CircuitBreaker& cb, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) {
      Admission a = cb.Admit();
      ASSERT_TRUE(a.admitted());
      cb.Record(a, /*success=*/false);
    }
  }

  static void Succeed(CircuitBreaker& cb) {
    Admission a = cb.Admit();
    ASSERT_TRUE(a.admitted());
    cb.Record(a, /*success=*/true);
  }

  core::FakeClock clock_;
  TransitionLog log_;
};

TEST_F(CircuitBreakerTest, ClosedAdmitsEveryCallAndNoneIsAProbe) {
  auto cb = Make();
  EXPECT_EQ(cb->state(), State::kClosed);
  for (int i = 0; i < 10; ++i) {
    Admission a = cb->Admit();
    EXPECT_TRUE(a.admitted());
    EXPECT_FALSE(a.probe());
    EXPECT_EQ(a.retry_after_micros(), 0);
    cb->Record(a, true);
  }
  EXPECT_TRUE(log_.Take().empty());
}

TEST_F(CircuitBreakerTest, OpensAfterThresholdConsecutiveFailures) {
  auto cb = Make(3);
  Fail(*cb, 2);
  EXPECT_EQ(cb->state(), State::kClosed);
  Fail(*cb, 1);
  EXPECT_EQ(cb->state(), State::kOpen);
  EXPECT_FALSE(cb->Admit().admitted());
}

TEST_F(CircuitBreakerTest, SuccessInBetweenResetsTheCountSoTotalFailuresDoNotOpen) {
  auto cb = Make(3);
  for (int round = 0; round < 5; ++round) {  // 10 failures in all, never 3 in a row
    Fail(*cb, 2);
    Succeed(*cb);
  }
  EXPECT_EQ(cb->state(), State::kClosed);
  EXPECT_EQ(cb->Snapshot().GetInt("consecutive_failures", -1), 0);
  Fail(*cb, 3);
  EXPECT_EQ(cb->state(), State::kOpen);
}

TEST_F(CircuitBreakerTest, RefusesWhileOpenWithTheTimeLeftInTheCoolDown) {
  auto cb = Make(1, 30 * kSecond);
  Fail(*cb, 1);
  Admission a = cb->Admit();
  EXPECT_FALSE(a.admitted());
  EXPECT_FALSE(a.probe());
  EXPECT_EQ(a.retry_after_micros(), 30 * kSecond);
  clock_.AdvanceSeconds(10);
  a = cb->Admit();
  EXPECT_FALSE(a.admitted());
  EXPECT_EQ(a.retry_after_micros(), 20 * kSecond);
  clock_.AdvanceSeconds(19);
  a = cb->Admit();
  EXPECT_FALSE(a.admitted());
  EXPECT_EQ(a.retry_after_micros(), 1 * kSecond);
  EXPECT_EQ(cb->state(), State::kOpen);
  clock_.AdvanceSeconds(1);  // exactly at the end of the cool-down
  a = cb->Admit();
  EXPECT_TRUE(a.admitted());
  EXPECT_TRUE(a.probe());
  EXPECT_EQ(cb->state(), State::kHalfOpen);
}

TEST_F(CircuitBreakerTest, StaysOpenPastTheCoolDownUntilTheNextAdmit) {
  auto cb = Make(1, 30 * kSecond);
  Fail(*cb, 1);
  clock_.AdvanceSeconds(60);
  EXPECT_EQ(cb->state(), State::kOpen);
  core::Json snap = cb->Snapshot();
  EXPECT_EQ(snap.GetString("state"), "open");
  EXPECT_EQ(snap.GetInt("retry_after_micros", -1), 0);
  EXPECT_TRUE(cb->Admit().probe());
}

TEST_F(CircuitBreakerTest, HalfOpenAdmitsExactlyOneProbeUnderConcurrency) {
  constexpr int kThreads = 16;
  constexpr int kRounds = 50;
  for (int round = 0; round < kRounds; ++round) {
    auto cb = Make(1, 30 * kSecond);
    Fail(*cb, 1);
    clock_.AdvanceSeconds(30);
    std::latch start(kThreads);
    std::atomic<int> admitted{0};
    std::atomic<int> probes{0};
    std::atomic<int> refused_with_zero_retry{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&] {
        start.arrive_and_wait();
        Admission a = cb->Admit();
        if (a.admitted()) ++admitted;
        if (a.probe()) ++probes;
        if (!a.admitted() && a.retry_after_micros() == 0) ++refused_with_zero_retry;
      });
    }
    for (auto& t : threads) t.join();
    ASSERT_EQ(admitted.load(), 1) << "round " << round;
    ASSERT_EQ(probes.load(), 1) << "round " << round;
    ASSERT_EQ(refused_with_zero_retry.load(), kThreads - 1) << "round " << round;
    EXPECT_EQ(cb->state(), State::kHalfOpen);
    // closed->open and open->half_open, each once.
    auto transitions = log_.Take();
    ASSERT_EQ(transitions.size(), 2u);
    EXPECT_EQ(transitions[1].to, State::kHalfOpen);
  }
}

TEST_F(CircuitBreakerTest, CallersWhileTheProbeIsInFlightAreRefusedWithoutRetryHint) {
  auto cb = Make(1, 30 * kSecond);
  Fail(*cb, 1);
  clock_.AdvanceSeconds(30);
  Admission probe = cb->Admit();
  ASSERT_TRUE(probe.probe());
  for (int i = 0; i < 5; ++i) {
    clock_.AdvanceSeconds(100);  // however long the probe takes
    Admission a = cb->Admit();
    EXPECT_FALSE(a.admitted());
    EXPECT_EQ(a.retry_after_micros(), 0);
  }
  EXPECT_TRUE(cb->Snapshot().Find("probe_in_flight")->as_bool());
}

TEST_F(CircuitBreakerTest, ProbeSuccessClosesAndResetsTheFailureCount) {
  auto cb = Make(3, 30 * kSecond);
  Fail(*cb, 3);
  clock_.AdvanceSeconds(30);
  Admission probe = cb->Admit();
  ASSERT_TRUE(probe.probe());
  cb->Record(probe, true);
  EXPECT_EQ(cb->state(), State::kClosed);
  EXPECT_EQ(cb->Snapshot().GetInt("consecutive_failures", -1), 0);
  // A full threshold of new failures is needed to open again.
  Fail(*cb, 2);
  EXPECT_EQ(cb->state(), State::kClosed);
  Fail(*cb, 1);
  EXPECT_EQ(cb->state(), State::kOpen);
}

TEST_F(CircuitBreakerTest, ProbeFailureReopensWithAFreshCoolDown) {
  auto cb = Make(2, 30 * kSecond);
  Fail(*cb, 2);
  clock_.AdvanceSeconds(45);  // well past the first cool-down
  Admission probe = cb->Admit();
  ASSERT_TRUE(probe.probe());
  clock_.AdvanceSeconds(5);  // the probe takes 5 s to fail
  cb->Record(probe, false);
  EXPECT_EQ(cb->state(), State::kOpen);
  Admission a = cb->Admit();
  EXPECT_FALSE(a.admitted());
  EXPECT_EQ(a.retry_after_micros(), 30 * kSecond);  // from the probe's failure
  core::Json snap = cb->Snapshot();
  EXPECT_EQ(snap.GetInt("consecutive_failures", -1), 3);
  EXPECT_EQ(snap.GetInt("opened_at", -1), kStartMicros / kSecond + 50);
  EXPECT_EQ(snap.GetInt("retry_at", -1), kStartMicros / kSecond + 80);
  clock_.AdvanceSeconds(29);
  EXPECT_FALSE(cb->Admit().admitted());
  clock_.AdvanceSeconds(1);
  EXPECT_TRUE(cb->Admit().probe());
}

TEST_F(CircuitBreakerTest, AbandonedProbeFreesTheSlotForTheNextCaller) {
  auto cb = Make(1, 30 * kSecond);
  Fail(*cb, 1);
  clock_.AdvanceSeconds(30);
  Admission probe = cb->Admit();
  ASSERT_TRUE(probe.probe());
  EXPECT_FALSE(cb->Admit().admitted());
  cb->Abandon(probe);
  EXPECT_EQ(cb->state(), State::kHalfOpen);  // neither success nor failure
  Admission next = cb->Admit();
  EXPECT_TRUE(next.admitted());
  EXPECT_TRUE(next.probe());
  EXPECT_FALSE(cb->Admit().admitted());
  // The abandoned probe's late reports are stale: they neither close nor free the new slot.
  cb->Record(probe, true);
  cb->Abandon(probe);
  EXPECT_EQ(cb->state(), State::kHalfOpen);
  EXPECT_FALSE(cb->Admit().admitted());
  cb->Record(next, true);
  EXPECT_EQ(cb->state(), State::kClosed);
  auto transitions = log_.Take();
  ASSERT_EQ(transitions.size(), 3u);  // opened, half_open, closed: Abandon reports nothing
}

TEST_F(CircuitBreakerTest, AbandonInClosedCountsNeitherSuccessNorFailure) {
  auto cb = Make(3);
  Fail(*cb, 2);
  Admission a = cb->Admit();
  cb->Abandon(a);  // does not reset the count
  EXPECT_EQ(cb->Snapshot().GetInt("consecutive_failures", -1), 2);
  Fail(*cb, 1);
  EXPECT_EQ(cb->state(), State::kOpen);
}

TEST_F(CircuitBreakerTest, DisabledBreakerNeverOpens) {
  auto cb = Make(/*threshold=*/0);
  Fail(*cb, 10000);
  EXPECT_EQ(cb->state(), State::kClosed);
  Admission a = cb->Admit();
  EXPECT_TRUE(a.admitted());
  EXPECT_FALSE(a.probe());
  EXPECT_EQ(cb->Snapshot().GetInt("consecutive_failures", -1), 0);
  EXPECT_TRUE(log_.Take().empty());
}

TEST_F(CircuitBreakerTest, EveryTransitionIsReportedExactlyOnceInOrder) {
  auto cb = Make(2, 30 * kSecond);
  Fail(*cb, 2);                          // closed -> open
  EXPECT_FALSE(cb->Admit().admitted());  // no transition
  clock_.AdvanceSeconds(30);
  Admission p1 = cb->Admit();            // open -> half_open
  EXPECT_FALSE(cb->Admit().admitted());  // no transition
  clock_.AdvanceSeconds(1);
  cb->Record(p1, false);  // half_open -> open
  cb->Record(p1, false);  // duplicate: ignored
  clock_.AdvanceSeconds(30);
  Admission p2 = cb->Admit();  // open -> half_open
  cb->Record(p2, true);        // half_open -> closed
  cb->Record(p2, true);        // duplicate: ignored
  Succeed(*cb);                // no transition

  auto t = log_.Take();
  ASSERT_EQ(t.size(), 5u);
  const State from[] = {State::kClosed, State::kOpen, State::kHalfOpen, State::kOpen,
                        State::kHalfOpen};
  const State to[] = {State::kOpen, State::kHalfOpen, State::kOpen, State::kHalfOpen,
                      State::kClosed};
  const uint32_t failures[] = {2, 2, 3, 3, 0};
  const int64_t at[] = {0, 30, 31, 61, 61};
  for (size_t i = 0; i < t.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(t[i].seq, i + 1);
    EXPECT_EQ(t[i].upstream, "jira");
    EXPECT_EQ(t[i].from, from[i]);
    EXPECT_EQ(t[i].to, to[i]);
    EXPECT_EQ(t[i].consecutive_failures, failures[i]);
    EXPECT_EQ(t[i].at_unix_micros, kStartMicros + at[i] * kSecond);
    EXPECT_EQ(t[i].retry_at_unix_micros,
              to[i] == State::kOpen ? kStartMicros + (at[i] + 30) * kSecond : 0);
  }
  EXPECT_EQ(TransitionRecordType(t[0].to), "circuit.opened");
  EXPECT_EQ(TransitionRecordType(t[1].to), "circuit.half_open");
  EXPECT_EQ(TransitionRecordType(t[4].to), "circuit.closed");
}

TEST_F(CircuitBreakerTest, ConcurrentFailuresOpenItOnceAndReportOnce) {
  constexpr int kThreads = 16;
  auto cb = Make(5, 30 * kSecond);
  // Every call is admitted while closed, then all fail at once.
  std::vector<Admission> admissions;
  for (int i = 0; i < kThreads; ++i) admissions.push_back(cb->Admit());
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      cb->Record(admissions[i], false);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(cb->state(), State::kOpen);
  auto t = log_.Take();
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].to, State::kOpen);
  EXPECT_EQ(t[0].consecutive_failures, 5u);  // the failures after opening were late
}

TEST_F(CircuitBreakerTest, LateResultsOfCallsAdmittedBeforeAStateChangeAreIgnored) {
  auto cb = Make(2, 30 * kSecond);
  // Four slow calls admitted while closed; each is reported once, late.
  Admission late_failure_while_open = cb->Admit();
  Admission late_success_while_open = cb->Admit();
  Admission late_success_while_half_open = cb->Admit();
  Admission late_failure_after_closing = cb->Admit();
  Fail(*cb, 2);  // opens
  clock_.AdvanceSeconds(10);
  cb->Record(late_failure_while_open, false);  // must not restart the cool-down
  cb->Record(late_success_while_open, true);   // must not close the breaker
  EXPECT_EQ(cb->state(), State::kOpen);
  Admission a = cb->Admit();
  EXPECT_FALSE(a.admitted());
  EXPECT_EQ(a.retry_after_micros(), 20 * kSecond);

  clock_.AdvanceSeconds(20);
  Admission probe = cb->Admit();
  cb->Record(late_success_while_half_open, true);  // in half-open only the probe counts
  EXPECT_EQ(cb->state(), State::kHalfOpen);
  cb->Record(probe, true);
  ASSERT_EQ(cb->state(), State::kClosed);

  // Admitted before the opening, failing after the breaker closed again: not counted.
  cb->Record(late_failure_after_closing, false);
  EXPECT_EQ(cb->Snapshot().GetInt("consecutive_failures", -1), 0);
  EXPECT_EQ(log_.Take().size(), 3u);  // opened, half_open, closed
}

TEST_F(CircuitBreakerTest, RefusedAdmissionsCannotBeReported) {
  auto cb = Make(1, 30 * kSecond);
  Fail(*cb, 1);
  clock_.AdvanceSeconds(30);
  Admission probe = cb->Admit();
  Admission refused = cb->Admit();
  ASSERT_FALSE(refused.admitted());
  cb->Record(refused, true);
  cb->Record(refused, false);
  cb->Abandon(refused);
  EXPECT_EQ(cb->state(), State::kHalfOpen);
  EXPECT_FALSE(cb->Admit().admitted());  // the probe is still in flight
  cb->Record(probe, true);
  EXPECT_EQ(cb->state(), State::kClosed);
}

TEST_F(CircuitBreakerTest, SnapshotReportsStateFailuresAndTimes) {
  auto cb = Make(2, 30 * kSecond);
  core::Json s = cb->Snapshot();
  EXPECT_EQ(s.GetString("upstream"), "jira");
  EXPECT_EQ(s.GetString("state"), "closed");
  EXPECT_EQ(s.GetInt("consecutive_failures", -1), 0);
  EXPECT_EQ(s.GetInt("failure_threshold", -1), 2);
  EXPECT_EQ(s.GetInt("cool_down_micros", -1), 30 * kSecond);
  EXPECT_TRUE(s.Find("opened_at")->is_null());
  EXPECT_TRUE(s.Find("retry_at")->is_null());
  EXPECT_TRUE(s.Find("retry_after_micros")->is_null());
  EXPECT_FALSE(s.Find("probe_in_flight")->as_bool());

  Fail(*cb, 1);
  EXPECT_EQ(cb->Snapshot().GetInt("consecutive_failures", -1), 1);
  Fail(*cb, 1);
  clock_.AdvanceSeconds(12);
  s = cb->Snapshot();
  EXPECT_EQ(s.GetString("state"), "open");
  EXPECT_EQ(s.GetInt("consecutive_failures", -1), 2);
  EXPECT_EQ(s.GetInt("opened_at", -1), kStartMicros / kSecond);
  EXPECT_EQ(s.GetInt("retry_at", -1), kStartMicros / kSecond + 30);
  EXPECT_EQ(s.GetInt("retry_after_micros", -1), 18 * kSecond);

  clock_.AdvanceSeconds(18);
  Admission probe = cb->Admit();
  s = cb->Snapshot();
  EXPECT_EQ(s.GetString("state"), "half_open");
  EXPECT_EQ(s.GetInt("opened_at", -1), kStartMicros / kSecond);
  EXPECT_TRUE(s.Find("retry_at")->is_null());
  EXPECT_TRUE(s.Find("probe_in_flight")->as_bool());
  cb->Record(probe, true);
  EXPECT_EQ(cb->Snapshot().GetString("state"), "closed");
  EXPECT_EQ(StateName(State::kHalfOpen), "half_open");
}

TEST_F(CircuitBreakerTest, SnapshotRoundsRetryAtUpToWholeSeconds) {
  core::FakeClock clock(kStartMicros + 1);  // just past a whole second
  CircuitBreaker cb("jira", {1, 30 * kSecond}, clock);
  Admission a = cb.Admit();
  cb.Record(a, false);
  core::Json s = cb.Snapshot();
  EXPECT_EQ(s.GetInt("opened_at", -1), kStartMicros / kSecond);
  EXPECT_EQ(s.GetInt("retry_at", -1), kStartMicros / kSecond + 31);  // never early
}

TEST_F(CircuitBreakerTest, ClockSteppingBackRestartsTheCoolDownInsteadOfExtendingIt) {
  auto cb = Make(1, 30 * kSecond);
  Fail(*cb, 1);
  clock_.SetUnixSeconds(kStartMicros / kSecond - 3600);  // an hour back
  Admission a = cb->Admit();
  EXPECT_FALSE(a.admitted());
  EXPECT_EQ(a.retry_after_micros(), 30 * kSecond);  // not an hour and 30 s
  clock_.AdvanceSeconds(30);
  EXPECT_TRUE(cb->Admit().probe());
}

TEST_F(CircuitBreakerTest, HugeCoolDownDoesNotOverflow) {
  auto cb = Make(1, std::numeric_limits<int64_t>::max());
  Fail(*cb, 1);
  clock_.AdvanceSeconds(365LL * 24 * 3600);
  Admission a = cb->Admit();
  EXPECT_FALSE(a.admitted());
  EXPECT_GT(a.retry_after_micros(), 0);
  EXPECT_EQ(cb->state(), State::kOpen);
}

TEST_F(CircuitBreakerTest, NegativeCoolDownIsZero) {
  auto cb = Make(1, -5 * kSecond);
  EXPECT_EQ(cb->options().cool_down_micros, 0);
  Fail(*cb, 1);
  EXPECT_EQ(cb->state(), State::kOpen);
  EXPECT_TRUE(cb->Admit().probe());  // no cool-down at all
}

TEST_F(CircuitBreakerTest, CallbackRunsOutsideTheStateLock) {
  CircuitBreaker* self = nullptr;
  std::vector<std::string> seen;
  CircuitBreaker cb("jira", {1, 30 * kSecond}, clock_, [&](const Transition& t) {
    // Would deadlock if the state lock were held.
    seen.push_back(std::string(StateName(self->state())) + "/" +
                   self->Snapshot().GetString("state") + "/" + std::string(StateName(t.to)));
  });
  self = &cb;
  Admission a = cb.Admit();
  cb.Record(a, false);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0], "open/open/open");
}

TEST_F(CircuitBreakerTest, CallbackCausingATransitionOnItsOwnBreakerAborts) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        core::FakeClock clock;
        CircuitBreaker* self = nullptr;
        CircuitBreaker cb("jira", {1, 0}, clock, [&](const Transition& t) {
          if (t.to == State::kOpen) (void)self->Admit();  // open -> half_open from inside
        });
        self = &cb;
        Admission a = cb.Admit();
        cb.Record(a, false);
      },
      "MANDATE_CHECK failed");
}

// Transitions caused while an earlier callback is still running wait for it and are delivered
// in sequence order, whichever thread reaches the delivery first. Each round parks the callback
// of a closing, lets two more transitions (opened, half_open) happen on two threads, and only
// then releases it.
TEST_F(CircuitBreakerTest, WaitingTransitionsAreDeliveredInSequenceOrder) {
  constexpr int kRounds = 20;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(round);
    std::mutex mu;
    std::condition_variable cv;
    bool release = false;
    std::vector<uint64_t> delivered;  // guarded by mu
    CircuitBreaker cb("jira", {1, 0}, clock_, [&](const Transition& t) {
      std::unique_lock lock(mu);
      delivered.push_back(t.seq);
      if (t.seq == 3) cv.wait(lock, [&] { return release; });  // park the closing
    });
    auto wait_for_state = [&](State s) {
      while (cb.state() != s) std::this_thread::yield();
    };
    Fail(cb, 1);                   // 1: closed -> open
    Admission probe = cb.Admit();  // 2: open -> half_open
    ASSERT_TRUE(probe.probe());
    std::thread closer([&] { cb.Record(probe, true); });  // 3: half_open -> closed, parked
    wait_for_state(State::kClosed);
    std::thread opener([&] {  // 4: closed -> open, waits for 3
      Admission a = cb.Admit();
      cb.Record(a, false);
    });
    wait_for_state(State::kOpen);
    Admission second_probe;
    std::thread half_opener([&] { second_probe = cb.Admit(); });  // 5: waits for 4
    wait_for_state(State::kHalfOpen);
    // Give both waiting threads time to reach the delivery; the outcome does not depend on it.
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    {
      std::lock_guard lock(mu);
      release = true;
    }
    cv.notify_all();
    closer.join();
    opener.join();
    half_opener.join();
    EXPECT_TRUE(second_probe.probe());
    std::lock_guard lock(mu);
    EXPECT_EQ(delivered, (std::vector<uint64_t>{1, 2, 3, 4, 5}));
  }
}

// Many threads hammer a breaker that changes state on almost every call (threshold 1, no
// cool-down). The callback checks that it never runs concurrently, that sequence numbers
// arrive 1, 2, 3, ... and that each transition starts where the previous one ended.
TEST_F(CircuitBreakerTest, CallbacksNeverOverlapAndArriveInSequenceUnderContention) {
  constexpr int kThreads = 8;
  constexpr int kCallsPerThread = 20000;
  std::atomic<bool> in_callback{false};
  std::atomic<int> overlaps{0};
  std::atomic<int> out_of_order{0};
  uint64_t last_seq = 0;           // only touched inside the callback
  State last_to = State::kClosed;  // likewise
  CircuitBreaker cb("jira", {1, 0}, clock_, [&](const Transition& t) {
    if (in_callback.exchange(true)) ++overlaps;
    if (t.seq != last_seq + 1 || t.from != last_to) ++out_of_order;
    last_seq = t.seq;
    last_to = t.to;
    std::this_thread::yield();  // widen the window for an overlap
    in_callback.store(false);
  });
  std::latch start(kThreads);
  std::vector<std::thread> threads;
  std::atomic<int> probes{0};
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      std::mt19937 rng(static_cast<uint32_t>(i));
      start.arrive_and_wait();
      for (int n = 0; n < kCallsPerThread; ++n) {
        Admission a = cb.Admit();
        if (!a.admitted()) continue;
        if (a.probe()) ++probes;
        switch (rng() % 3) {
          case 0:
            cb.Record(a, true);
            break;
          case 1:
            cb.Record(a, false);
            break;
          default:
            cb.Abandon(a);
            break;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(out_of_order.load(), 0);
  EXPECT_GT(last_seq, 10u);
  EXPECT_GT(probes.load(), 0);
  EXPECT_EQ(cb.state(), last_to);  // every transition was delivered
}

}  // namespace
}  // namespace mandate::gateway
