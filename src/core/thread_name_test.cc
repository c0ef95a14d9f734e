#include "mandate/core/thread_name.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>

namespace mandate::core {
namespace {

TEST(ThreadName, NamesTheCallingThreadOnly) {
  const std::string before = ThisThreadName();
  std::string seen;
  std::thread([&] {
    NameThisThread("audit-commit");
    seen = ThisThreadName();
  }).join();
  EXPECT_EQ(seen, "audit-commit");
  EXPECT_EQ(ThisThreadName(), before);
}

TEST(ThreadName, ALongNameIsCutToWhatLinuxKeeps) {
  std::string seen;
  std::thread([&] {
    NameThisThread("a-name-longer-than-fifteen-bytes");
    seen = ThisThreadName();
  }).join();
  EXPECT_EQ(seen, "a-name-longer-t");
}

}  // namespace
}  // namespace mandate::core
