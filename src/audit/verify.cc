// VerifyLog and TailLog: read-only access to a Merkle log's files (docs/formats/audit.md).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <future>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "audit/internal/segment.h"
#include "mandate/audit/audit_log.h"
#include "mandate/core/limits.h"
#include "mandate/core/unique_fd.h"

namespace mandate::audit {
namespace {

using core::ErrorCode;
using core::MakeError;

constexpr size_t kTailChunkBytes = 64 * 1024;


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
  core::UniqueFd fd(::open(seg.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return OpenError(seg.path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return OpenError(seg.path);
  // Positions of '\n', newest first: need + 1 of them bound `need` lines.
  std::vector<uint64_t> newlines;
  std::string chunk;
  // The newest segment of an open log ends in preallocated NUL bytes: skip them.
  MANDATE_ASSIGN_OR_RETURN(uint64_t off,
                           internal::ZeroTailStart(fd.get(), static_cast<uint64_t>(st.st_size)));
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

// One line of a segment, examined ahead of the sequential check.
struct PreparedLine {
  bool overlong = false;
  bool terminated = true;
  internal::ChainChecker::LineFacts facts;
};

struct PreparedSegment {
  core::Status status;  // reading failed
  std::vector<PreparedLine> lines;
  // Where a NUL byte ended the data (the preallocated space of the newest segment), and
  // whether any byte after it is not NUL.
  std::optional<uint64_t> nul_offset;
  bool bytes_after_nul = false;
};

// Segments examined ahead of the one being checked (each holds ~150 bytes per record).
constexpr size_t kVerifySegmentsAhead = 2;

// Reads every line of `seg` and examines it; stops after an overlong or unterminated line.
PreparedSegment PrepareSegment(const internal::Segment& seg) {
  PreparedSegment out;
  core::UniqueFd fd(::open(seg.path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    out.status = OpenError(seg.path);
    return out;
  }
  internal::LineReader reader(fd.get(), core::kAuditRecordBytesMax,
                                    internal::LineReader::Nul::kEndsData);
  internal::LineReader::Line line;
  while (true) {
    auto more = reader.Next(&line);
    if (!more.ok()) {
      out.status = std::move(more).error();
      return out;
    }
    if (!*more) break;
    PreparedLine& p = out.lines.emplace_back();
    p.overlong = line.overlong;
    p.terminated = line.terminated;
    if (p.overlong || !p.terminated) break;
    p.facts = internal::ChainChecker::Examine(line.bytes);
  }
  out.nul_offset = reader.nul_offset();
  if (out.nul_offset) {
    auto end = internal::EndOfNonZero(fd.get(), *out.nul_offset);
    if (!end.ok()) {
      out.status = std::move(end).error();
      return out;
    }
    out.bytes_after_nul = *end > *out.nul_offset;
  }
  return out;
}

}  // namespace

core::Result<VerifyReport> VerifyLog(const std::string& dir, const VerifyOptions& options) {
  MANDATE_ASSIGN_OR_RETURN(std::vector<internal::Segment> segments, internal::ListSegments(dir));
  MANDATE_ASSIGN_OR_RETURN(NoteVerifier verifier,
                           internal::LoadVerifier(dir, options.verifier_key));
  VerifyReport report;
  report.origin = verifier.name();
  auto fail = [&](std::string file, size_t line, std::string problem) {
    report.ok = false;
    report.file = std::move(file);
    report.line = line;
    report.problem = std::move(problem);
    return report;
  };

  // Every checkpoint: well-formed, signed by the log's key, for this log, sizes never
  // decreasing.
  struct Cp {
    Checkpoint cp;
    size_t line = 0;
  };
  std::vector<Cp> cps;
  const std::string cps_name(internal::kCheckpointsFileName);
  {
    core::UniqueFd fd(::open((dir + "/" + cps_name).c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0 && errno != ENOENT) return OpenError(dir + "/" + cps_name);
    if (fd.get() >= 0) {
      internal::NoteReader reader(fd.get());
      internal::NoteReader::Note note;
      std::optional<internal::NoteReader::Malformed> malformed;
      while (true) {
        MANDATE_ASSIGN_OR_RETURN(bool more, reader.Next(&note, &malformed));
        if (!more) break;
        if (malformed) {
          return fail(cps_name, malformed->line,
                      "malformed checkpoint: " + malformed->problem +
                          (malformed->at_end ? " (truncated: a torn write that reopening the "
                                               "log would repair, or the file was cut)"
                                             : " (garbage)"));
        }
        auto text = verifier.Open(note.text);
        if (!text.ok()) {
          return fail(cps_name, note.line,
                      "checkpoint does not verify with the log's key (replaced or forged): " +
                          text.error().message);
        }
        auto cp = ParseCheckpointText(*text);
        if (!cp.ok()) return fail(cps_name, note.line, "malformed checkpoint: " + cp.error().message);
        if (cp->origin != verifier.name()) {
          return fail(cps_name, note.line,
                      "checkpoint origin \"" + cp->origin + "\" is not this log's (\"" +
                          verifier.name() + "\"): a checkpoint of another log");
        }
        if (!cps.empty() && cp->size < cps.back().cp.size) {
          return fail(cps_name, note.line,
                      "checkpoint tree size " + std::to_string(cp->size) + " is smaller than "
                      "the previous checkpoint's " + std::to_string(cps.back().cp.size) +
                      " (checkpoints reordered or spliced)");
        }
        cps.push_back(Cp{*std::move(cp), note.line});
      }
    }
  }

  // Every record, and the tree they form against each checkpoint at its size.
  internal::ChainChecker checker(0, std::string(internal::kGenesisPrev));
  MerkleAccumulator acc;
  size_t next_cp = 0;
  auto bad = [&](std::string file, size_t line, std::string problem) {
    report.records = checker.accepted();
    // Invariant: the checker is anchored, so it always knows the seq it expects next.
    report.first_bad_seq = checker.expected_seq().value_or(0);
    return fail(std::move(file), line, std::move(problem));
  };
  // Checks the checkpoints whose size the tree has reached; false after reporting a mismatch.
  auto check_checkpoints = [&]() {
    while (next_cp < cps.size() && cps[next_cp].cp.size == acc.size()) {
      if (acc.Root() != cps[next_cp].cp.root) {
        report.records = report.checkpointed_records;
        report.first_bad_seq = report.checkpointed_records;
        fail(cps_name, cps[next_cp].line,
             "records " + std::to_string(report.checkpointed_records) + ".." +
                 std::to_string(acc.size() - 1) + " do not match the checkpoint of tree size " +
                 std::to_string(acc.size()) +
                 ": a record in that range was changed and the records after it rewritten "
                 "(or the log was replaced)");
        return false;
      }
      ++report.checkpoints;
      report.checkpointed_records = acc.size();
      ++next_cp;
    }
    return true;
  };
  if (!check_checkpoints()) return report;

  std::string prev_file;  // where the last accepted line is
  size_t prev_line = 0;
  // Each segment is read and examined (canonical form, seq, prev, leaf hash) ahead, on
  // another thread, while this one checks the previous segment's lines in order: the
  // examination is most of the work and needs no state, so verification uses two cores.
  // At most kVerifySegmentsAhead prepared segments are held (bounded memory).
  std::deque<std::future<PreparedSegment>> ahead;
  size_t next_to_prepare = 0;
  auto refill = [&] {
    while (ahead.size() < kVerifySegmentsAhead && next_to_prepare < segments.size()) {
      const internal::Segment* seg = &segments[next_to_prepare++];
      ahead.push_back(std::async(std::launch::async, [seg] { return PrepareSegment(*seg); }));
    }
  };
  refill();
  uint64_t expected_number = 1;
  for (const internal::Segment& seg : segments) {
    PreparedSegment prepared = ahead.front().get();
    ahead.pop_front();
    refill();
    if (seg.number != expected_number) {
      return bad(
          internal::SegmentName(expected_number), 0,
          "missing segment " + internal::SegmentName(expected_number) + " (records removed)");
    }
    ++expected_number;
    MANDATE_RETURN_IF_ERROR(prepared.status);
    size_t line_no = 0;
    for (const PreparedLine& line : prepared.lines) {
      ++line_no;
      if (line.overlong) {
        return bad(seg.name, line_no, "line is longer than kAuditRecordBytesMax (garbage)");
      }
      if (!line.terminated) {
        return bad(seg.name, line_no,
                   "truncated: the last line has no newline (file truncated, or a torn write "
                   "that reopening the log would repair)");
      }
      if (std::optional<std::string> problem = checker.CheckFacts(line.facts)) {
        if (checker.prev_mismatch() && checker.accepted() > report.checkpointed_records) {
          // This line is sound and in sequence, so the bytes before it are not those its
          // writer hashed: the previous record is the edited one. Unless a verified
          // checkpoint covers the previous record: then it is intact and this line's own
          // "prev" was changed, which the else branch reports at this line.
          report.records = checker.accepted() - 1;
          report.first_bad_seq = checker.accepted() - 1;
          return fail(prev_file, prev_line,
                      "record " + std::to_string(checker.accepted() - 1) +
                          " was edited: its leaf hash no longer matches the \"prev\" of the "
                          "record after it (" + seg.name + ":" + std::to_string(line_no) + ")");
        }
        return bad(seg.name, line_no, std::move(*problem));
      }
      prev_file = seg.name;
      prev_line = line_no;
      acc.Push(checker.last_leaf());
      if (!check_checkpoints()) return report;
    }
    if (prepared.nul_offset) {
      if (&seg != &segments.back()) {
        return bad(seg.name, line_no + 1,
                   "NUL bytes at offset " + std::to_string(*prepared.nul_offset) +
                       " of a segment that is not the newest (only the newest segment ends "
                       "in preallocated space): records overwritten, or the file was damaged");
      }
      if (prepared.bytes_after_nul) {
        return bad(seg.name, line_no + 1,
                   "bytes after the preallocated space that starts at offset " +
                       std::to_string(*prepared.nul_offset) +
                       " (garbage, or a crash's unsynced writes that reopening the log would "
                       "cut off)");
      }
    }
  }
  report.records = checker.accepted();
  if (next_cp < cps.size()) {
    report.first_bad_seq = acc.size();
    return fail(cps_name, cps[next_cp].line,
                "the checkpoint of tree size " + std::to_string(cps[next_cp].cp.size) +
                    " covers more records than the log holds (" + std::to_string(acc.size()) +
                    "): records were removed from the end");
  }
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
