#include "mandate/core/cancel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace mandate::core {
namespace {

TEST(CancelSignal, RunsRegisteredFunctionsOnceAndLateOnesAtOnce) {
  CancelSignal s;
  int a = 0, b = 0;
  uint64_t ra = s.OnCancel([&] { ++a; });
  uint64_t rb = s.OnCancel([&] { ++b; });
  s.Remove(rb);
  EXPECT_FALSE(s.cancelled());
  s.Cancel();
  s.Cancel();
  EXPECT_TRUE(s.cancelled());
  EXPECT_EQ(a, 1);
  EXPECT_EQ(b, 0);
  s.Remove(ra);  // after firing: a no-op
  int late = 0;
  EXPECT_EQ(s.OnCancel([&] { ++late; }), 0u);
  EXPECT_EQ(late, 1);
}

TEST(CancelSignal, RemoveWaitsForARunningFunction) {
  CancelSignal s;
  std::atomic<bool> started{false}, finished{false};
  uint64_t r = s.OnCancel([&] {
    started = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    finished = true;
  });
  std::thread t([&] { s.Cancel(); });
  while (!started) std::this_thread::yield();
  s.Remove(r);
  EXPECT_TRUE(finished.load());
  t.join();
}

TEST(CancelScope, SetsAndRestoresTheThreadsSignal) {
  EXPECT_EQ(CurrentCancelSignal(), nullptr);
  CancelSignal outer, inner;
  {
    CancelScope a(&outer);
    EXPECT_EQ(CurrentCancelSignal(), &outer);
    {
      CancelScope b(&inner);
      EXPECT_EQ(CurrentCancelSignal(), &inner);
      std::thread([] { EXPECT_EQ(CurrentCancelSignal(), nullptr); }).join();  // per thread
    }
    EXPECT_EQ(CurrentCancelSignal(), &outer);
  }
  EXPECT_EQ(CurrentCancelSignal(), nullptr);
}

}  // namespace
}  // namespace mandate::core
