// The servers of the benchmarks (mcp_upstream_fast, mandate_null_proxy) serve until SIGTERM or
// SIGINT: the signals are blocked before any thread starts, so only the main thread's sigwait
// receives them, and the main thread then stops the server cleanly.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <cstdio>

namespace mandate::bench {

// Blocks SIGTERM and SIGINT in this thread and every thread it starts later; returns the set.
inline sigset_t BlockStopSignals() {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  return stop_signals;
}

// Waits for one of `stop_signals` (from BlockStopSignals).
inline void WaitForStopSignal(const sigset_t& stop_signals) {
  int sig = 0;
  sigwait(&stop_signals, &sig);
}

// Prints `ready on http://127.0.0.1:<port>` (what scripts/run-bench.sh waits for), serves until
// one of `stop_signals` arrives, then stops `server`. Returns the process's exit status.
template <class Server>
int ServeUntilStopSignal(Server& server, const sigset_t& stop_signals) {
  std::printf("ready on http://127.0.0.1:%u\n", static_cast<unsigned>(server.port()));
  std::fflush(stdout);
  WaitForStopSignal(stop_signals);
  server.Stop();
  return 0;
}

}  // namespace mandate::bench
