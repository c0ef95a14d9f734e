#include "mandate/core/forward_gate.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace mandate::core {
namespace {

TEST(ForwardGate, AContinuationRunsOnceOnTheDecidingThread) {
  ForwardGate gate;
  EXPECT_FALSE(gate.decided().has_value());
  int runs = 0;
  bool open = false;
  std::thread::id ran_on;
  gate.WhenDecided([&](const Status& s) {
    ++runs;
    open = s.ok();
    ran_on = std::this_thread::get_id();
  });
  std::thread::id decider;
  std::thread t([&] {
    decider = std::this_thread::get_id();
    gate.Decide(OkStatus());
    gate.Decide(MakeError(ErrorCode::kInternal, "too late"));  // only the first counts
  });
  t.join();
  EXPECT_EQ(runs, 1);
  EXPECT_TRUE(open);
  EXPECT_EQ(ran_on, decider);
  ASSERT_TRUE(gate.decided().has_value());
  EXPECT_TRUE(gate.decided()->ok());
  EXPECT_FALSE(gate.Withdraw());  // it has run
}

TEST(ForwardGate, ADecidedGateRunsAContinuationAtOnceWithItsError) {
  ForwardGate gate;
  gate.Decide(MakeError(ErrorCode::kInternal, "disk full"));
  Status seen;
  gate.WhenDecided([&](const Status& s) { seen = s; });
  ASSERT_FALSE(seen.ok());
  EXPECT_EQ(seen.error().message, "disk full");
  EXPECT_EQ(gate.Wait().error().message, "disk full");
  EXPECT_FALSE(gate.Withdraw());
}

TEST(ForwardGate, AWithdrawnContinuationNeverRuns) {
  ForwardGate gate;
  int runs = 0;
  gate.WhenDecided([&](const Status&) { ++runs; });
  EXPECT_TRUE(gate.Withdraw());
  EXPECT_FALSE(gate.Withdraw());  // nothing registered any more
  gate.Decide(OkStatus());
  EXPECT_EQ(runs, 0);
  // A new continuation may be registered once the first is taken back.
  gate.WhenDecided([&](const Status&) { ++runs; });
  EXPECT_EQ(runs, 1);
}

TEST(ForwardGate, WithdrawWaitsForARunningContinuation) {
  ForwardGate gate;
  std::atomic<bool> started{false}, finished{false};
  gate.WhenDecided([&](const Status&) {
    started = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    finished = true;
  });
  std::thread t([&] { gate.Decide(OkStatus()); });
  while (!started) std::this_thread::yield();
  EXPECT_FALSE(gate.Withdraw());
  EXPECT_TRUE(finished);  // Withdraw returned only after it finished
  t.join();
}

TEST(ForwardGate, WaitBlocksUntilDecided) {
  ForwardGate gate;
  std::atomic<bool> returned{false};
  std::thread t([&] {
    EXPECT_TRUE(gate.Wait().ok());
    returned = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(returned);
  gate.Decide(OkStatus());
  t.join();
  EXPECT_TRUE(returned);
}

TEST(ForwardGate, RacingWithdrawAndDecideRunTheContinuationAtMostOnceAndAgree) {
  for (int i = 0; i < 2000; ++i) {
    ForwardGate gate;
    std::atomic<int> runs{0};
    gate.WhenDecided([&](const Status&) { runs.fetch_add(1); });
    std::thread t([&] { gate.Decide(OkStatus()); });
    const bool withdrawn = gate.Withdraw();
    t.join();
    EXPECT_EQ(runs.load(), withdrawn ? 0 : 1) << "iteration " << i;
  }
}

TEST(ForwardGateDeathTest, ASecondWaitingContinuationIsAProgrammingError) {
  EXPECT_DEATH(
      {
        ForwardGate gate;
        gate.WhenDecided([](const Status&) {});
        gate.WhenDecided([](const Status&) {});
      },
      "MANDATE_CHECK");
}

TEST(ForwardGateScope, NestsAndRestores) {
  EXPECT_EQ(CurrentForwardGate(), nullptr);
  ForwardGate a, b;
  {
    ForwardGateScope sa(&a);
    EXPECT_EQ(CurrentForwardGate(), &a);
    {
      ForwardGateScope sb(&b);
      EXPECT_EQ(CurrentForwardGate(), &b);
      std::thread([] { EXPECT_EQ(CurrentForwardGate(), nullptr); }).join();  // per thread
    }
    EXPECT_EQ(CurrentForwardGate(), &a);
  }
  EXPECT_EQ(CurrentForwardGate(), nullptr);
}

}  // namespace
}  // namespace mandate::core
