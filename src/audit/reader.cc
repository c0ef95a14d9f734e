// ScanLog and RecordReader: reading records by seq and by position (reader.h).
#include "mandate/audit/reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "audit/internal/segment.h"
#include "mandate/core/limits.h"
#include "mandate/core/unique_fd.h"

namespace mandate::audit {
namespace {

using core::ErrorCode;
using core::MakeError;


core::Error FileError(const std::string& what, const std::string& path) {
  return MakeError(ErrorCode::kInternal, what + " " + path + ": " + std::strerror(errno));
}

// A complete line parsed (only "seq" and `members` when `members` is not empty); it must be a
// JSON object with an integer "seq" >= 0.
core::Result<core::Json> ParseRecord(std::string_view line, const internal::Segment& seg,
                                     uint64_t offset,
                                     std::span<const std::string_view> members = {}) {
  auto parsed = members.empty()
                    ? core::Json::Parse(line, core::kAuditRecordBytesMax)
                    : core::Json::ParseMembers(line, members, core::kAuditRecordBytesMax);
  if (!parsed.ok() || !parsed->is_object()) {
    return MakeError(ErrorCode::kInternal,
                     "audit record at " + seg.name + " offset " + std::to_string(offset) +
                         " is not a JSON object (run `mandate audit verify`)");
  }
  const core::Json* seq = parsed->Find("seq");
  if (seq == nullptr || !seq->is_int() || seq->as_int() < 0) {
    return MakeError(ErrorCode::kInternal, "audit record at " + seg.name + " offset " +
                                               std::to_string(offset) +
                                               " has no valid seq (run `mandate audit verify`)");
  }
  return parsed;
}

// The seq of a segment's first complete line, or nullopt when it has none yet.
core::Result<std::optional<uint64_t>> FirstSeq(const internal::Segment& seg) {
  core::UniqueFd fd(::open(seg.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return FileError("cannot open", seg.path);
  internal::LineReader reader(fd.get(), core::kAuditRecordBytesMax,
                                    internal::LineReader::Nul::kEndsData);
  internal::LineReader::Line line;
  MANDATE_ASSIGN_OR_RETURN(bool more, reader.Next(&line));
  if (!more || !line.terminated) return std::optional<uint64_t>();
  if (line.overlong) {
    return MakeError(ErrorCode::kInternal,
                     "audit segment " + seg.name + " starts with a line longer than a record");
  }
  MANDATE_ASSIGN_OR_RETURN(core::Json rec, ParseRecord(line.bytes, seg, 0));
  return std::optional<uint64_t>(static_cast<uint64_t>(rec.Find("seq")->as_int()));
}

// Where to start reading for `next_seq` without a usable position: the newest segment whose
// first record is at or before it (records before next_seq in it are skipped).
core::Result<size_t> LocateSegment(const std::vector<internal::Segment>& segments,
                                   uint64_t next_seq) {
  for (size_t i = segments.size(); i-- > 0;) {
    MANDATE_ASSIGN_OR_RETURN(std::optional<uint64_t> first, FirstSeq(segments[i]));
    if (first && *first <= next_seq) return i;
  }
  return size_t{0};
}

enum class ScanEnd { kDone, kWrongPosition };

// Reads segments[i..] from `offset` in segments[i]. With `exact`, `offset` must start a line
// and that line must be a record carrying cur->next_seq (else kWrongPosition, nothing
// delivered); without it, lines before next_seq are skipped.
core::Result<ScanEnd> ScanFrom(const std::vector<internal::Segment>& segments, size_t i,
                               uint64_t offset, bool exact, size_t max_records,
                               const std::function<core::Status(const ScannedRecord&)>& on_record,
                               std::span<const std::string_view> members, ScanCursor* cur) {
  size_t delivered = 0;
  bool first_line = true;
  for (; i < segments.size(); ++i, offset = 0) {
    const internal::Segment& seg = segments[i];
    if (i > 0 && seg.number != segments[i - 1].number + 1) {
      return MakeError(ErrorCode::kInternal, "audit segment " +
                                                 internal::SegmentName(segments[i - 1].number + 1) +
                                                 " is missing (run `mandate audit verify`)");
    }
    core::UniqueFd fd(::open(seg.path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return FileError("cannot open", seg.path);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return FileError("cannot stat", seg.path);
    if (offset > static_cast<uint64_t>(st.st_size)) {
      if (exact) return ScanEnd::kWrongPosition;
      return MakeError(ErrorCode::kInternal, "audit scan offset past the end of " + seg.name);
    }
    if (exact && first_line && offset > 0) {
      // A record's line starts after a newline: a position inside a line (a stale cursor
      // over a replaced log) is not one.
      char before = 0;
      const ssize_t n = ::pread(fd.get(), &before, 1, static_cast<off_t>(offset - 1));
      if (n < 0) return FileError("cannot read", seg.path);
      if (n != 1 || before != '\n') return ScanEnd::kWrongPosition;
    }
    if (::lseek(fd.get(), static_cast<off_t>(offset), SEEK_SET) < 0) {
      return FileError("cannot seek in", seg.path);
    }
    internal::LineReader reader(fd.get(), core::kAuditRecordBytesMax,
                                    internal::LineReader::Nul::kEndsData);
    internal::LineReader::Line line;
    while (delivered < max_records) {
      MANDATE_ASSIGN_OR_RETURN(bool more, reader.Next(&line));
      if (!more) break;
      const uint64_t at = offset + line.offset;
      if (!line.terminated) {
        // A write in progress (or a torn tail the writer repairs when it reopens): read it
        // later. Only the newest segment may end this way.
        if (i + 1 < segments.size()) {
          return MakeError(ErrorCode::kInternal, "audit segment " + seg.name +
                                                     " ends in a torn line (run `mandate audit "
                                                     "verify`)");
        }
        return ScanEnd::kDone;
      }
      if (line.overlong) {
        if (exact && first_line) return ScanEnd::kWrongPosition;
        return MakeError(ErrorCode::kInternal, "audit record at " + seg.name + " offset " +
                                                   std::to_string(at) +
                                                   " is longer than kAuditRecordBytesMax");
      }
      auto parsed = ParseRecord(line.bytes, seg, at, members);
      if (!parsed.ok() && exact && first_line) return ScanEnd::kWrongPosition;
      MANDATE_ASSIGN_OR_RETURN(core::Json rec, std::move(parsed));
      const uint64_t seq = static_cast<uint64_t>(rec.Find("seq")->as_int());
      const RecordPosition end{seg.number, at + line.bytes.size() + 1};
      if (exact && first_line && seq != cur->next_seq) return ScanEnd::kWrongPosition;
      first_line = false;
      if (seq < cur->next_seq) {
        // Skipping to next_seq; remember where the record after this one starts.
        if (seq + 1 == cur->next_seq) cur->at = end;
        continue;
      }
      if (seq > cur->next_seq) {
        return MakeError(ErrorCode::kInternal,
                         "audit log expected seq " + std::to_string(cur->next_seq) + " at " +
                             seg.name + " offset " + std::to_string(at) + ", found " +
                             std::to_string(seq) + " (run `mandate audit verify`)");
      }
      ScannedRecord r;
      r.seq = seq;
      r.line = line.bytes;
      r.record = &rec;
      r.position = RecordPosition{seg.number, at};
      MANDATE_RETURN_IF_ERROR(on_record(r));
      cur->next_seq = seq + 1;
      cur->at = end;
      ++delivered;
    }
    if (delivered >= max_records) return ScanEnd::kDone;
    if (reader.nul_offset() && i + 1 < segments.size()) {
      return MakeError(ErrorCode::kInternal, "audit segment " + seg.name +
                                                 " has NUL bytes after its records but is not "
                                                 "the newest (run `mandate audit verify`)");
    }
    // The end of this segment. A later segment exists only once this one is complete, so
    // the next record starts there.
    if (i + 1 < segments.size() && cur->at && cur->at->segment == seg.number) {
      cur->at = RecordPosition{segments[i + 1].number, 0};
    }
  }
  return ScanEnd::kDone;
}

}  // namespace

core::Result<ScanCursor> ScanLog(
    const std::string& dir, const ScanCursor& cursor, size_t max_records,
    const std::function<core::Status(const ScannedRecord&)>& on_record,
    std::span<const std::string_view> members) {
  MANDATE_ASSIGN_OR_RETURN(std::vector<internal::Segment> segments, internal::ListSegments(dir));
  // The scan itself needs "seq" of every record.
  std::vector<std::string_view> wanted(members.begin(), members.end());
  if (!wanted.empty()) wanted.push_back("/seq");
  ScanCursor cur = cursor;
  if (segments.empty() || max_records == 0) return cur;
  if (cur.at) {
    auto it = std::find_if(segments.begin(), segments.end(),
                           [&](const internal::Segment& s) { return s.number == cur.at->segment; });
    if (it != segments.end()) {
      MANDATE_ASSIGN_OR_RETURN(
          ScanEnd end, ScanFrom(segments, static_cast<size_t>(it - segments.begin()),
                                cur.at->offset, /*exact=*/true, max_records, on_record, wanted,
                                &cur));
      if (end == ScanEnd::kDone) return cur;
    }
    cur.at.reset();  // not where next_seq is: locate it
  }
  MANDATE_ASSIGN_OR_RETURN(size_t start, LocateSegment(segments, cur.next_seq));
  MANDATE_ASSIGN_OR_RETURN(
      ScanEnd end, ScanFrom(segments, start, 0, /*exact=*/false, max_records, on_record, wanted, &cur));
  (void)end;
  return cur;
}

RecordReader::~RecordReader() {
  for (auto& [segment, fd] : fds_) ::close(fd);
}

core::Result<int> RecordReader::SegmentFd(uint64_t segment) {
  auto it = fds_.find(segment);
  if (it != fds_.end()) return it->second;
  const std::string path = dir_ + "/" + internal::SegmentName(segment);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) {
      return MakeError(ErrorCode::kNotFound, "audit segment " + path + " does not exist");
    }
    return FileError("cannot open", path);
  }
  if (fds_.size() >= core::kAuditReaderOpenSegmentsMax) {
    // Evict the lowest-numbered segment: readers move forward through the log.
    ::close(fds_.begin()->second);
    fds_.erase(fds_.begin());
  }
  fds_.emplace(segment, fd);
  return fd;
}

core::Result<std::string> RecordReader::ReadAt(const RecordPosition& position) {
  MANDATE_ASSIGN_OR_RETURN(int fd, SegmentFd(position.segment));
  const std::string name = internal::SegmentName(position.segment);
  std::string out;
  size_t want = 4096;
  uint64_t at = position.offset;
  while (true) {
    const size_t old = out.size();
    out.resize(old + want);
    ssize_t got;
    do {
      got = ::pread(fd, out.data() + old, want, static_cast<off_t>(at));
    } while (got < 0 && errno == EINTR);
    if (got < 0) return FileError("cannot read", dir_ + "/" + name);
    out.resize(old + static_cast<size_t>(got));
    const size_t nl = out.find('\n', old);
    // A NUL ends the data (the newest segment's preallocated space).
    if (const size_t nul = out.find('\0', old); nul < nl) {
      out.resize(nul);
      got = 0;
    } else if (nl != std::string::npos) {
      out.resize(nl);
      return out;
    }
    if (got == 0) {
      if (out.empty()) {
        return MakeError(ErrorCode::kNotFound, "no audit record at " + name + " offset " +
                                                   std::to_string(position.offset) +
                                                   " (past the end of the segment)");
      }
      return MakeError(ErrorCode::kInternal, "no complete audit record at " + name + " offset " +
                                                 std::to_string(position.offset));
    }
    at += static_cast<uint64_t>(got);
    if (out.size() > core::kAuditRecordBytesMax) {
      return MakeError(ErrorCode::kInternal, "no audit record starts at " + name + " offset " +
                                                 std::to_string(position.offset) +
                                                 " (no newline within kAuditRecordBytesMax)");
    }
    want = std::min(want * 2, core::kAuditRecordBytesMax + 1 - out.size() + 1);
  }
}

core::Result<std::string> ReadRecordAt(const std::string& dir, const RecordPosition& position) {
  RecordReader reader(dir);
  return reader.ReadAt(position);
}

}  // namespace mandate::audit
