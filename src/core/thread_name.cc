#include "mandate/core/thread_name.h"

#include <pthread.h>

#include <algorithm>
#include <string>

namespace mandate::core {
namespace {

// Linux's limit: 16 bytes with the terminating NUL.
constexpr size_t kThreadNameBytesMax = 15;

}  // namespace

void NameThisThread(std::string_view name) {
  const std::string cut(name.substr(0, std::min(name.size(), kThreadNameBytesMax)));
  (void)::pthread_setname_np(::pthread_self(), cut.c_str());
}

std::string ThisThreadName() {
  char buf[kThreadNameBytesMax + 1] = {};
  if (::pthread_getname_np(::pthread_self(), buf, sizeof buf) != 0) return "";
  return buf;
}

}  // namespace mandate::core
