#include "mandate/core/unique_fd.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <utility>

namespace mandate::core {
namespace {

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

// A pipe's two ends, each owned by a UniqueFd.
struct Pipe {
  UniqueFd read, write;
  Pipe() {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    read = UniqueFd(fds[0]);
    write = UniqueFd(fds[1]);
  }
};

TEST(UniqueFd, ClosesWhenItGoes) {
  int raw = -1;
  {
    Pipe p;
    raw = p.read.get();
    ASSERT_TRUE(IsOpen(raw));
  }
  EXPECT_FALSE(IsOpen(raw));
}

TEST(UniqueFd, AMoveHandsOverOwnership) {
  Pipe p;
  const int raw = p.read.get();
  UniqueFd moved(std::move(p.read));
  EXPECT_EQ(moved.get(), raw);
  EXPECT_EQ(p.read.get(), -1);  // NOLINT(bugprone-use-after-move): the moved-from state is the point
  p.read.Reset();               // owns nothing: closes nothing
  EXPECT_TRUE(IsOpen(raw));

  UniqueFd assigned;
  assigned = std::move(moved);
  EXPECT_EQ(assigned.get(), raw);
  EXPECT_TRUE(IsOpen(raw));
}

TEST(UniqueFd, AssigningClosesWhatItHeld) {
  Pipe a, b;
  const int old_raw = a.read.get();
  a.read = std::move(b.read);
  EXPECT_FALSE(IsOpen(old_raw));
  EXPECT_TRUE(IsOpen(a.read.get()));
}

TEST(UniqueFd, ResetClosesAndAFailedOpenOwnsNothing) {
  Pipe p;
  const int raw = p.write.get();
  p.write.Reset();
  EXPECT_EQ(p.write.get(), -1);
  EXPECT_FALSE(IsOpen(raw));

  UniqueFd failed(::open("/nonexistent/mandate-unique-fd-test", O_RDONLY | O_CLOEXEC));
  EXPECT_EQ(failed.get(), -1);
}

}  // namespace
}  // namespace mandate::core
