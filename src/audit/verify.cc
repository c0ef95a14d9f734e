// VerifyLog and TailLog: read-only access to a hash-chain log's files
// (docs/formats/audit.md).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "audit/internal/segment.h"
#include "mandate/audit/audit_log.h"
#include "mandate/core/limits.h"

namespace mandate::audit {
namespace {

using core::ErrorCode;
using core::MakeError;

constexpr size_t kTailChunkBytes = 64 * 1024;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

core::Error OpenError(const std::string& path) {
  return MakeError(ErrorCode::kInternal, "cannot open " + path + ": " + std::strerror(errno));
}

core::Status PreadAll(int fd, char* out, size_t n, uint64_t offset) {
  while (n > 0) {
    ssize_t got = ::pread(fd, out, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      return MakeError(ErrorCode::kInternal, std::string("cannot read audit segment: ") +
                                                 (got < 0 ? std::strerror(errno) : "short read"));
    }
    out += got;
    n -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return core::OkStatus();
}

// Appends to `out` (newest first) up to `need` complete lines of one segment.
core::Status TailSegment(const internal::Segment& seg, size_t need, std::vector<std::string>* out) {
  Fd fd(::open(seg.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return OpenError(seg.path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return OpenError(seg.path);
  // Positions of '\n', newest first: need + 1 of them bound `need` lines.
  std::vector<uint64_t> newlines;
  std::string chunk;
  uint64_t off = static_cast<uint64_t>(st.st_size);
  while (off > 0 && newlines.size() < need + 1) {
    size_t len = static_cast<size_t>(std::min<uint64_t>(kTailChunkBytes, off));
    off -= len;
    chunk.resize(len);
    MANDATE_RETURN_IF_ERROR(PreadAll(fd.get(), chunk.data(), len, off));
    for (size_t j = len; j-- > 0;) {
      if (chunk[j] == '\n') {
        newlines.push_back(off + j);
        if (newlines.size() == need + 1) break;
      }
    }
  }
  size_t lines = std::min(need, newlines.size());
  for (size_t k = 0; k < lines; ++k) {
    uint64_t end = newlines[k];
    uint64_t start = k + 1 < newlines.size() ? newlines[k + 1] + 1 : 0;
    // Never more than one record's worth per line, whatever the file holds.
    size_t len = static_cast<size_t>(std::min<uint64_t>(end - start, core::kAuditRecordBytesMax));
    std::string line(len, '\0');
    MANDATE_RETURN_IF_ERROR(PreadAll(fd.get(), line.data(), len, start));
    out->push_back(std::move(line));
  }
  return core::OkStatus();
}

}  // namespace

core::Result<VerifyReport> VerifyLog(const std::string& dir) {
  MANDATE_ASSIGN_OR_RETURN(std::vector<internal::Segment> segments, internal::ListSegments(dir));
  VerifyReport report;
  internal::ChainChecker checker(0, std::string(internal::kGenesisPrev));
  auto bad = [&](std::string file, size_t line, std::string problem) {
    report.ok = false;
    report.records = checker.accepted();
    // Invariant: the checker is anchored, so it always knows the seq it expects next.
    report.first_bad_seq = checker.expected_seq().value_or(0);
    report.file = std::move(file);
    report.line = line;
    report.problem = std::move(problem);
    return report;
  };

  uint64_t expected_number = 1;
  for (const internal::Segment& seg : segments) {
    if (seg.number != expected_number) {
      return bad(
          internal::SegmentName(expected_number), 0,
          "missing segment " + internal::SegmentName(expected_number) + " (records removed)");
    }
    ++expected_number;
    Fd fd(::open(seg.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return OpenError(seg.path);
    internal::LineReader reader(fd.get(), core::kAuditRecordBytesMax);
    internal::LineReader::Line line;
    size_t line_no = 0;
    while (true) {
      MANDATE_ASSIGN_OR_RETURN(bool more, reader.Next(&line));
      if (!more) break;
      ++line_no;
      if (line.overlong) {
        return bad(seg.name, line_no, "line is longer than kAuditRecordBytesMax (garbage)");
      }
      if (!line.terminated) {
        return bad(seg.name, line_no,
                   "truncated: the last line has no newline (file truncated, or a torn write "
                   "that reopening the log would repair)");
      }
      if (std::optional<std::string> problem = checker.Check(line.bytes)) {
        return bad(seg.name, line_no, std::move(*problem));
      }
    }
  }
  report.records = checker.accepted();
  return report;
}

core::Result<std::vector<std::string>> TailLog(const std::string& dir, size_t n) {
  if (n > core::kAuditTailLinesMax) {
    return MakeError(
        ErrorCode::kBadRequest,
        "cannot tail more than " + std::to_string(core::kAuditTailLinesMax) + " lines at once");
  }
  MANDATE_ASSIGN_OR_RETURN(std::vector<internal::Segment> segments, internal::ListSegments(dir));
  std::vector<std::string> newest_first;
  for (size_t i = segments.size(); i-- > 0 && newest_first.size() < n;) {
    MANDATE_RETURN_IF_ERROR(TailSegment(segments[i], n - newest_first.size(), &newest_first));
  }
  std::reverse(newest_first.begin(), newest_first.end());
  return newest_first;
}

}  // namespace mandate::audit
