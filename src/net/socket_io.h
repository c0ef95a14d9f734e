// Blocking socket I/O with deadlines, shared by the HTTP client and server: a non-blocking
// socket wrapped as a Beast SyncReadStream / SyncWriteStream whose every wait is a poll()
// bounded by one deadline (and `Fd`, the owned descriptor, as net names core::UniqueFd).
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/error.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <utility>

#include "mandate/core/unique_fd.h"

namespace mandate::net::internal {

namespace asio = boost::asio;
namespace beast = boost::beast;
using SteadyClock = std::chrono::steady_clock;

using Fd = core::UniqueFd;

// poll() waits at most this long per call, so a far deadline never overflows its int timeout.
inline constexpr int64_t kPollSliceMillis = 60'000;

// Waits until `fd` is ready for `events` or the deadline passes. Returns 0 when ready,
// ETIMEDOUT, or an errno.
inline int WaitReady(int fd, short events, SteadyClock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
    if (left <= 0) return ETIMEDOUT;
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, kPollSliceMillis)));
    if (n > 0) return 0;  // readable/writable, or an error/hang-up the next syscall reports
    if (n < 0 && errno != EINTR) return errno;
  }
}

// A non-blocking socket as a Beast SyncReadStream / SyncWriteStream whose every wait is bounded
// by one deadline (beast::error::timeout when it passes).
class DeadlineStream {
 public:
  DeadlineStream(int fd, SteadyClock::time_point deadline) : fd_(fd), deadline_(deadline) {}
  void set_deadline(SteadyClock::time_point deadline) { deadline_ = deadline; }
  // The next read waits for data before trying to read: for a reply that cannot have arrived
  // yet (just after sending a request), which saves a read that would fail with EAGAIN.
  void WaitBeforeNextRead() { wait_first_ = true; }

  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers, beast::error_code& ec) {
    std::array<iovec, 8> iov{};
    const size_t n = Gather(buffers, &iov);
    ec = {};
    if (n == 0) return 0;
    if (std::exchange(wait_first_, false) && !Wait(POLLIN, ec)) return 0;
    for (;;) {
      ssize_t r = ::readv(fd_, iov.data(), static_cast<int>(n));
      if (r > 0) return static_cast<size_t>(r);
      if (r == 0) {
        ec = asio::error::eof;
        return 0;
      }
      if (!Retry(POLLIN, ec)) return 0;
    }
  }
  template <class MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers) {
    beast::error_code ec;
    size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

  // One sendmsg for the whole buffer sequence (headers and body in one segment when they fit).
  template <class ConstBufferSequence>
  size_t write_some(const ConstBufferSequence& buffers, beast::error_code& ec) {
    std::array<iovec, 16> iov{};
    const size_t n = Gather(buffers, &iov);
    ec = {};
    if (n == 0) return 0;
    msghdr msg{};
    msg.msg_iov = iov.data();
    msg.msg_iovlen = n;
    for (;;) {
      ssize_t r = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
      if (r >= 0) return static_cast<size_t>(r);
      if (!Retry(POLLOUT, ec)) return 0;
    }
  }
  template <class ConstBufferSequence>
  size_t write_some(const ConstBufferSequence& buffers) {
    beast::error_code ec;
    size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

 private:
  // The non-empty buffers of `buffers` as iovecs (at most N: a partial read or write is fine).
  template <class BufferSequence, size_t N>
  static size_t Gather(const BufferSequence& buffers, std::array<iovec, N>* iov) {
    size_t n = 0;
    for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers) && n < N; ++it) {
      const auto& b = *it;
      if (b.size() == 0) continue;
      (*iov)[n++] = iovec{const_cast<void*>(static_cast<const void*>(b.data())), b.size()};
    }
    return n;
  }
  // Waits for `events` within the deadline; false with `ec` set (timeout or error) otherwise.
  bool Wait(short events, beast::error_code& ec) const {
    int w = WaitReady(fd_, events, deadline_);
    if (w == 0) return true;
    ec = w == ETIMEDOUT ? beast::error_code(beast::error::timeout) : beast::error_code(w, boost::system::system_category());
    return false;
  }
  // After a failed readv/sendmsg (errno set): whether to try again (EINTR, or ready after
  // EAGAIN); false with `ec` set otherwise.
  bool Retry(short events, beast::error_code& ec) const {
    if (errno == EINTR) return true;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      ec = beast::error_code(errno, boost::system::system_category());
      return false;
    }
    return Wait(events, ec);
  }

  int fd_;
  SteadyClock::time_point deadline_;
  bool wait_first_ = false;
};

}  // namespace mandate::net::internal
