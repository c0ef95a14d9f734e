// Sleeping on a 32-bit word until another thread bumps it: the one wake-up primitive of the
// Merkle log's group commit (merkle_log.cc). A bump wakes the threads sleeping on the word
// with one futex call and no mutex, so a woken appender returns at once instead of queueing
// for the log's mutex (which cost a second sleep and wake-up per record,
// docs/performance.md).
//
// Use: a waiter loads the word (acquire), then checks its condition, and only if it does not
// hold calls WaitWhileEquals(word, the value it loaded). The waker makes the condition true
// first (release stores), then calls BumpAndWake(word). Since the bump changes the word
// before waking, a waiter that loaded the word before the bump either finds it changed (the
// wait returns at once) or is asleep and is woken (or, when the waker wakes fewer than all,
// must be woken later by someone: WakeSleepers); one that loaded it after the bump also sees
// the condition. WaitWhileEquals may return spuriously; callers loop.
//
// Thread safety: both functions may be called from any thread.
#pragma once

#include <atomic>
#include <climits>
#include <cstdint>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace mandate::audit::internal {

// The futex syscall takes a plain 32-bit int; std::atomic<uint32_t> has that layout.
static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));

// Sleeps while `word` still holds `seen` (or returns spuriously).
inline void WaitWhileEquals(std::atomic<uint32_t>& word, uint32_t seen) {
#if defined(__linux__)
  // EAGAIN (the word changed) and EINTR both simply return: the caller re-checks.
  ::syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, seen, nullptr, nullptr, 0);
#else
  word.wait(seen, std::memory_order_acquire);
#endif
}

// Wakes up to `count` threads sleeping on `word` (without changing it).
inline void WakeSleepers(std::atomic<uint32_t>& word, int count) {
#if defined(__linux__)
  ::syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, count, nullptr, nullptr, 0);
#else
  if (count == 1) {
    word.notify_one();
  } else {
    word.notify_all();
  }
#endif
}

// Changes `word` and wakes up to `count` threads sleeping on it (INT_MAX: all of them).
inline void BumpAndWake(std::atomic<uint32_t>& word, int count = INT_MAX) {
  word.fetch_add(1, std::memory_order_release);
  WakeSleepers(word, count);
}

}  // namespace mandate::audit::internal
