// Time source. Everything that reads the time takes a Clock so tests can inject one.
// Thread safety: implementations are safe to call from any thread.
#pragma once

#include <atomic>
#include <cstdint>

namespace mandate::core {

// Days from 1970-01-01 to year-month-day in the proleptic Gregorian calendar (H. Hinnant's
// days_from_civil): exact for every date whose day count fits in int64; month 1-12, day 1-31
// (not checked: callers validate the date).
int64_t DaysFromCivil(int64_t year, int64_t month, int64_t day);

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time, microseconds since the Unix epoch.
  virtual int64_t NowUnixMicros() const = 0;
  int64_t NowUnixSeconds() const { return NowUnixMicros() / 1000000; }
  int64_t NowUnixMillis() const { return NowUnixMicros() / 1000; }
};

// The real clock (CLOCK_REALTIME).
class SystemClock final : public Clock {
 public:
  int64_t NowUnixMicros() const override;
  // A process-wide instance; never destroyed.
  static const SystemClock& Instance();
};

// A clock tests move by hand.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t unix_micros = 1767000000LL * 1000000) : now_(unix_micros) {}
  int64_t NowUnixMicros() const override { return now_.load(); }
  void SetUnixSeconds(int64_t s) { now_.store(s * 1000000); }
  void AdvanceSeconds(int64_t s) { now_.fetch_add(s * 1000000); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace mandate::core
