// Assertions (STYLE.md). MANDATE_CHECK is always on and aborts: it guards invariants whose
// breach would corrupt the audit log or flip a decision. MANDATE_DCHECK is debug-only.
// Never assert on input from the network, files or the database: return an Error instead.
#pragma once

#include <cstdio>
#include <cstdlib>

#define MANDATE_CHECK(cond)                                                              \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: MANDATE_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

#ifndef NDEBUG
#define MANDATE_DCHECK(cond) MANDATE_CHECK(cond)
#else
#define MANDATE_DCHECK(cond) \
  do {                       \
  } while (0)
#endif
