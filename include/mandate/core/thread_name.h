// Names for Mandate's own threads, as `top -H`, `ps -L`, `perf` and /proc/<pid>/task/*/comm
// show them: an operator looking at a busy server sees which part is busy (the audit
// committer, the indexer, the connection threads) instead of 40 threads called `mandate`.
#pragma once

#include <string>
#include <string_view>

namespace mandate::core {

// Names the calling thread. Linux keeps at most 15 bytes of a name: a longer one is cut.
// Best effort: a name the system refuses changes nothing.
void NameThisThread(std::string_view name);

// The calling thread's name ("" when it cannot be read).
std::string ThisThreadName();

}  // namespace mandate::core
