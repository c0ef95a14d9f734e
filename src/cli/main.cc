#include "mandate/cli/cli.h"

// The mandate binary allocates with jemalloc (CMakeLists.txt, docs/dependencies.md), which
// reads this at startup: freed memory goes back to the system from jemalloc's own background
// thread instead of from inside whichever request thread happens to allocate when a purge is
// due (in the request threads it is an madvise() in a governed call's path). MALLOC_CONF in
// the environment adds to it. Builds without jemalloc (the sanitizers') ignore the symbol.
extern "C" {
// NOLINTNEXTLINE(cppcoreguidelines-avoid-non-const-global-variables): jemalloc's interface
const char* malloc_conf = "background_thread:true";
}

int main(int argc, char** argv) { return mandate::cli::Run(argc, argv); }
