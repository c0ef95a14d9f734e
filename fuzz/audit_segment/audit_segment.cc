// Fuzz target: reading audit log segments made of untrusted bytes (docs/formats/audit.md,
// "Files", "Preallocated space", "Verification", "Reading"). A segment's data ends at its
// first NUL byte; in the newest segment only NUL bytes may follow it (preallocated space),
// anything else after it is damage or a torn write, and a NUL in a sealed segment is damage.
//
// Each input becomes one or two segment files in a fresh directory (mkdtemp under $TMPDIR or
// /tmp, removed after the input), with the real segment names (internal::SegmentName) and two
// decoys the readers must ignore (audit.spare, audit-0000001.jsonl). Layout of the input:
//   byte 0  bit 0     two segments (else one)
//           bit 1     pad segment 1's last generated record so that the fuzzed bytes start
//                     near offset 64 KiB, where the readers refill their buffers
//           bits 2-3  segment numbers: {1,2}, {1,3} (a gap), {2,3} (1 missing),
//                     {999999,1000000} (the name widens)
//           bits 4-5  records per ScanLog call when resuming: 1, 2, 3 or 7
//           bits 6-7  the small line_bytes_max given to LineReader: 1, 3, 16 or 200
//   byte 1  bits 0-1  valid records (canonical, chained from seq 0) the harness writes before
//                     segment 1's fuzzed bytes; bits 2-3 the same for segment 2, continuing
//                     the chain; bits 4-7 shift the padded end by -8..+7 bytes
//   bytes 2-3         with two segments: how many of the remaining bytes go to segment 1
//                     (little-endian; the rest go to segment 2)
// Missing header bytes read as 0; inputs over kInputBytesMax are skipped.
//
// Every check compares the code under test with a naive model over the whole bytes of a file
// (its data: the bytes before the first NUL; its lines: the data split at '\n', the last piece
// unterminated when not empty). Invariants (a violation traps, so libFuzzer saves the input):
//   - LineReader, in kEndsData mode and in kIsContent mode (where NUL is content and the data
//     is the whole file), with kAuditRecordBytesMax and with a small line_bytes_max, returns
//     exactly the model's lines: offset, terminated, overlong == (length > max) and bytes ==
//     the first max + 1 bytes of the line (so in kEndsData mode never a NUL or a newline, and
//     the lines with their newlines are the file's prefix up to the first NUL); then false,
//     and false again; nul_offset() is the first NUL's offset in kEndsData mode, else nullopt.
//   - EndOfNonZero(fd, from) is one past the last non-NUL byte at or after `from`, else
//     `from` (also for `from` past the end of the file).
//   - ZeroTailStart(fd, size): `size` when size is 0 or byte size-1 is not NUL (bytes past the
//     end of the file read as NUL); else the offset of a NUL byte whose predecessor, if any,
//     is not NUL; and exactly where the trailing NUL bytes start when no NUL precedes them.
//   - VerifyLog (the verifier key passed in the options; no checkpoints file, which the
//     segment rules do not involve) never fails on these readable files, and its report
//     equals the model's verdict (ok, records, first_bad_seq, file, line, the NUL offsets in
//     the problem), where the model checks the files in the documented order: segment
//     numbers from 1, each line terminated and accepted by ChainChecker, then NUL bytes in a
//     sealed segment, then non-NUL bytes after the first NUL of the newest one. An ok report
//     counts every line.
//   - ScanLog from seq 0, and from the seq after segment 1's generated records, without a
//     position: the records delivered (seq, line, position), the returned cursor, and
//     whether it fails (always kInternal, with a message) equal the model of reader.h (locate
//     the newest segment whose first complete line has seq <= next_seq, skip lower seqs, fail
//     on a higher one, on a torn line or NUL bytes in a segment that is not the newest, on a
//     missing segment number or a line that is not an object with a seq). A log VerifyLog
//     accepts scans without error to its `records` records.
//   - When the model delivers every line (seqs 0, 1, ... in order): resuming ScanLog with
//     the returned cursors, a few records per call, delivers the same records; and a cursor
//     holding a delivered record's position, or another record's position, or a position
//     past the end, or a position inside the record's line, delivers the rest of the log from
//     that seq.
//   - RecordReader::ReadAt at every line start, the first NUL, the end and past the end of a
//     segment, and in a missing segment, returns the bytes up to the next '\n' when one comes
//     before any NUL and the end of the file, kNotFound when the position is at the end of
//     the data (past the file, at a NUL, or a missing segment), else kInternal.
//   - TailLog never fails here and returns at most n lines without '\n'; when every file is
//     NUL-free data followed only by NUL bytes, exactly the last n complete lines.
// Not covered: MerkleLog::Open's repair of a torn tail (it locks, writes and syncs the log;
// merkle_log_test.cc tests it). A typical input takes about 2 ms (ASan, UBSan).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "audit/internal/segment.h"
#include "mandate/audit/audit_log.h"
#include "mandate/audit/checkpoint.h"
#include "mandate/audit/merkle.h"
#include "mandate/audit/reader.h"
#include "mandate/core/error_code.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"
#include "mandate/core/result.h"

namespace {

namespace audit = mandate::audit;
namespace internal = mandate::audit::internal;
namespace core = mandate::core;
using core::ErrorCode;
using core::Json;
using Nul = internal::LineReader::Nul;

constexpr size_t kInputBytesMax = 64 * 1024;
// Where LineReader and EndOfNonZero refill their buffers.
constexpr size_t kReaderChunkBytes = internal::kLineReadChunkBytes;
constexpr size_t kSmallLineBytesMax[] = {1, 3, 16, 200};
constexpr size_t kScanChunkRecords[] = {1, 2, 3, 7};
// Bounds the per-input work of the position checks (records resumed, positions read).
constexpr size_t kPositionChecksMax = 64;
constexpr size_t kTailLines = 3;
// No line can be overlong for the readers that use kAuditRecordBytesMax: the model need not
// know that rule.
static_assert(kInputBytesMax + 2 * kReaderChunkBytes < core::kAuditRecordBytesMax);

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

[[noreturn]] void Die(const char* what) {
  std::perror(what);
  std::abort();
}

// --- The files --------------------------------------------------------------------------

// A chain of valid records, as the writer makes them.
struct Chain {
  uint64_t next_seq = 0;
  std::string prev = std::string(internal::kGenesisPrev);
};

std::string RecordLine(const Chain& chain, size_t pad_bytes) {
  Json rec = Json::MakeObject();
  rec.Set("pad", std::string(pad_bytes, 'p'));
  rec.Set("prev", chain.prev);
  rec.Set("seq", static_cast<int64_t>(chain.next_seq));
  rec.Set("ts", int64_t{1767000000000000} + static_cast<int64_t>(chain.next_seq));
  rec.Set("type", "fuzz.record");
  return rec.Canonical();
}

void AppendRecord(Chain* chain, size_t pad_bytes, std::string* out) {
  const std::string line = RecordLine(*chain, pad_bytes);
  char hex[64];
  internal::HexInto(audit::LeafHash(line), hex);
  chain->prev.assign(hex, sizeof hex);
  ++chain->next_seq;
  out->append(line).push_back('\n');
}

struct ModelLine {
  uint64_t offset = 0;
  size_t size = 0;  // without the '\n'
  bool terminated = false;
};

// The lines LineReader must return without a length limit: the data split at '\n', where
// the data is the whole file, or in kEndsData mode the bytes before its first NUL.
std::vector<ModelLine> ModelLines(std::string_view bytes, Nul nul) {
  if (nul == Nul::kEndsData) bytes = bytes.substr(0, bytes.find('\0'));
  std::vector<ModelLine> lines;
  size_t pos = 0;
  while (pos < bytes.size()) {
    const size_t nl = bytes.find('\n', pos);
    if (nl == std::string_view::npos) {
      lines.push_back({pos, bytes.size() - pos, false});
      break;
    }
    lines.push_back({pos, nl - pos, true});
    pos = nl + 1;
  }
  return lines;
}

// One past the last non-NUL byte at or after `from`, else `from`.
uint64_t NaiveEndOfNonZero(std::string_view bytes, uint64_t from) {
  for (uint64_t i = bytes.size(); i > from; --i) {
    if (bytes[i - 1] != '\0') return i;
  }
  return from;
}

struct SegmentFile {
  uint64_t number = 0;
  std::string name;
  std::string path;
  std::string bytes;
  std::vector<ModelLine> lines;  // kEndsData
  std::optional<uint64_t> nul;   // the first NUL
  std::string_view Line(const ModelLine& m) const {
    return std::string_view(bytes).substr(m.offset, m.size);
  }
  // NUL-free data followed by nothing but NUL bytes (what the writer leaves).
  bool Clean() const { return !nul || NaiveEndOfNonZero(bytes, *nul) == *nul; }
};

void WriteFile(const std::string& path, std::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) Die("audit_segment: open for writing");
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n <= 0) Die("audit_segment: write");
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  ::close(fd);
}

int OpenForReading(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) Die("audit_segment: open for reading");
  return fd;
}

// Decoys next to the segments: not segment names, so every reader must ignore them.
constexpr std::string_view kDecoyNames[] = {"audit.spare", "audit-0000001.jsonl"};
constexpr std::string_view kDecoyBytes = "{\"seq\":0}\n\0\0garbage";

// A fresh directory with the segments (setting their paths) and the decoys; removed by the
// destructor.
class LogDir {
 public:
  explicit LogDir(std::vector<SegmentFile>* segments) {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/audit_segment.XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) Die("audit_segment: mkdtemp");
    path_ = pattern;
    for (SegmentFile& s : *segments) {
      s.path = path_ + "/" + s.name;
      WriteFile(s.path, s.bytes);
      files_.push_back(s.path);
    }
    for (std::string_view decoy : kDecoyNames) {
      files_.push_back(path_ + "/" + std::string(decoy));
      WriteFile(files_.back(), kDecoyBytes);
    }
  }
  ~LogDir() {
    for (const std::string& f : files_) ::unlink(f.c_str());
    if (::rmdir(path_.c_str()) != 0) Die("audit_segment: rmdir");
  }
  LogDir(const LogDir&) = delete;
  LogDir& operator=(const LogDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<std::string> files_;
};

// --- LineReader, EndOfNonZero, ZeroTailStart --------------------------------------------

void CheckLineReader(const SegmentFile& s, Nul nul, size_t max) {
  const int fd = OpenForReading(s.path);
  internal::LineReader reader(fd, max, nul);
  internal::LineReader::Line line;
  const std::string_view bytes = s.bytes;
  for (const ModelLine& m : ModelLines(bytes, nul)) {
    auto more = reader.Next(&line);
    Check(more.ok() && *more);
    Check(line.offset == m.offset && line.terminated == m.terminated &&
          line.overlong == (m.size > max));
    Check(line.bytes == bytes.substr(m.offset, std::min(m.size, max + 1)));
    Check(line.bytes.find('\n') == std::string::npos);
    if (nul == Nul::kEndsData) Check(line.bytes.find('\0') == std::string::npos);
  }
  for (int i = 0; i < 2; ++i) {
    auto more = reader.Next(&line);
    Check(more.ok() && !*more);
  }
  if (nul == Nul::kEndsData && s.nul) {
    Check(reader.nul_offset() == s.nul);
  } else {
    Check(!reader.nul_offset());
  }
  ::close(fd);
}

void CheckZeroTailStart(int fd, std::string_view bytes, uint64_t size) {
  auto got = internal::ZeroTailStart(fd, size);
  Check(got.ok());
  const uint64_t z = *got;
  // Bytes past the end of the file read as NUL (a file cut shorter meanwhile).
  auto byte = [&](uint64_t i) { return i < bytes.size() ? bytes[i] : '\0'; };
  Check(z <= size);
  if (size == 0 || byte(size - 1) != '\0') {
    Check(z == size);
    return;
  }
  Check(z < size && byte(z) == '\0' && (z == 0 || byte(z - 1) != '\0'));
  const std::string_view head = bytes.substr(0, std::min<uint64_t>(size, bytes.size()));
  const uint64_t end = NaiveEndOfNonZero(head, 0);
  if (head.substr(0, end).find('\0') == std::string_view::npos) Check(z == end);
}

void CheckFileHelpers(const SegmentFile& s) {
  const int fd = OpenForReading(s.path);
  const uint64_t size = s.bytes.size();
  std::vector<uint64_t> points = {0, size / 2, size, size + 7};
  if (s.nul) points.push_back(*s.nul);
  for (uint64_t from : points) {
    auto end = internal::EndOfNonZero(fd, from);
    Check(end.ok() && *end == NaiveEndOfNonZero(s.bytes, from));
  }
  std::vector<uint64_t> sizes = {size, size + 3, size / 2};
  if (s.nul) sizes.push_back(*s.nul + 1);
  for (uint64_t n : sizes) CheckZeroTailStart(fd, s.bytes, n);
  ::close(fd);
}

// --- VerifyLog --------------------------------------------------------------------------

const std::string& VerifierKey() {
  static const std::string key = [] {
    auto signer = audit::NoteSigner::Generate("example.com/audit");
    Check(signer.ok());
    return signer->VerifierKeyText();
  }();
  return key;
}

struct Verdict {
  bool ok = true;
  uint64_t records = 0;
  uint64_t first_bad_seq = 0;
  std::string file;
  size_t line = 0;
  std::string problem_part;  // a part of the problem's text
};

Verdict ModelVerify(const std::vector<SegmentFile>& segments) {
  internal::ChainChecker checker(0, std::string(internal::kGenesisPrev));
  Verdict v;
  auto bad = [&](std::string file, size_t line, std::string part) {
    v.ok = false;
    v.records = checker.accepted();
    v.first_bad_seq = checker.accepted();  // anchored at 0: the seq expected next
    v.file = std::move(file);
    v.line = line;
    v.problem_part = std::move(part);
    return v;
  };
  std::string prev_file;
  size_t prev_line = 0;
  uint64_t expected_number = 1;
  for (size_t i = 0; i < segments.size(); ++i) {
    const SegmentFile& s = segments[i];
    if (s.number != expected_number) {
      return bad(internal::SegmentName(expected_number), 0, "missing segment");
    }
    ++expected_number;
    size_t line_no = 0;
    for (const ModelLine& m : s.lines) {
      ++line_no;
      if (!m.terminated) return bad(s.name, line_no, "truncated");
      if (checker.Check(s.Line(m))) {
        if (checker.prev_mismatch() && checker.accepted() > 0) {
          // No checkpoint verified: the previous record is the edited one.
          v.ok = false;
          v.records = v.first_bad_seq = checker.accepted() - 1;
          v.file = prev_file;
          v.line = prev_line;
          v.problem_part = "was edited";
          return v;
        }
        return bad(s.name, line_no, "");
      }
      prev_file = s.name;
      prev_line = line_no;
    }
    if (s.nul) {
      if (i + 1 < segments.size()) {
        return bad(s.name, line_no + 1,
                   "NUL bytes at offset " + std::to_string(*s.nul) +
                       " of a segment that is not the newest");
      }
      if (!s.Clean()) {
        return bad(
            s.name, line_no + 1,
            "bytes after the preallocated space that starts at offset " + std::to_string(*s.nul));
      }
    }
  }
  v.records = checker.accepted();
  return v;
}

size_t CountLines(const std::vector<SegmentFile>& segments) {
  size_t n = 0;
  for (const SegmentFile& s : segments) n += s.lines.size();
  return n;
}

Verdict CheckVerify(const std::string& dir, const std::vector<SegmentFile>& segments) {
  const Verdict want = ModelVerify(segments);
  auto got = audit::VerifyLog(dir, audit::VerifyOptions{VerifierKey()});
  Check(got.ok());
  const audit::VerifyReport& r = *got;
  Check(r.ok == want.ok && r.records == want.records);
  Check(r.checkpoints == 0 && r.checkpointed_records == 0 && r.origin == "example.com/audit");
  if (r.ok) {
    Check(!r.first_bad_seq && r.file.empty() && r.line == 0 && r.problem.empty());
    Check(r.records == CountLines(segments));
  } else {
    Check(r.first_bad_seq == want.first_bad_seq && r.file == want.file && r.line == want.line);
    Check(!r.problem.empty() && r.problem.find(want.problem_part) != std::string::npos);
  }
  return want;
}

// --- ScanLog ----------------------------------------------------------------------------

struct Delivered {
  uint64_t seq = 0;
  std::string line;
  audit::RecordPosition position;
  bool operator==(const Delivered&) const = default;
};

struct ScanOutcome {
  bool ok = true;
  std::vector<Delivered> delivered;
  audit::ScanCursor cursor;
};

// The seq of a line ScanLog accepts (an object with an integer seq >= 0), else nullopt.
std::optional<uint64_t> SeqOf(std::string_view line) {
  auto parsed = Json::Parse(line, core::kAuditRecordBytesMax);
  if (!parsed.ok() || !parsed->is_object()) return std::nullopt;
  const Json* seq = parsed->Find("seq");
  if (seq == nullptr || !seq->is_int() || seq->as_int() < 0) return std::nullopt;
  return static_cast<uint64_t>(seq->as_int());
}

// ScanLog(dir, {next_seq, nullopt}, unlimited) as reader.h specifies it.
ScanOutcome ModelScan(const std::vector<SegmentFile>& segments, uint64_t next_seq) {
  ScanOutcome out;
  out.cursor.next_seq = next_seq;
  auto fail = [&] {
    out.ok = false;
    return out;
  };
  if (segments.empty()) return out;
  // Locate: the newest segment whose first complete line has a seq <= next_seq.
  size_t start = 0;
  for (size_t i = segments.size(); i-- > 0;) {
    const SegmentFile& s = segments[i];
    if (s.lines.empty() || !s.lines[0].terminated) continue;
    std::optional<uint64_t> first = SeqOf(s.Line(s.lines[0]));
    if (!first) return fail();
    if (*first <= next_seq) {
      start = i;
      break;
    }
  }
  audit::ScanCursor& cur = out.cursor;
  for (size_t i = start; i < segments.size(); ++i) {
    const SegmentFile& s = segments[i];
    const bool newest = i + 1 == segments.size();
    if (i > 0 && s.number != segments[i - 1].number + 1) return fail();
    for (const ModelLine& m : s.lines) {
      if (!m.terminated) {
        if (!newest) return fail();
        return out;
      }
      std::optional<uint64_t> seq = SeqOf(s.Line(m));
      if (!seq) return fail();
      const audit::RecordPosition end{s.number, m.offset + m.size + 1};
      if (*seq < cur.next_seq) {
        if (*seq + 1 == cur.next_seq) cur.at = end;
        continue;
      }
      if (*seq > cur.next_seq) return fail();
      out.delivered.push_back({*seq, std::string(s.Line(m)), {s.number, m.offset}});
      cur.next_seq = *seq + 1;
      cur.at = end;
    }
    if (s.nul && !newest) return fail();
    if (!newest && cur.at && cur.at->segment == s.number) {
      cur.at = audit::RecordPosition{segments[i + 1].number, 0};
    }
  }
  return out;
}

ScanOutcome RunScan(const std::string& dir, const audit::ScanCursor& from, size_t max) {
  ScanOutcome out;
  auto got = audit::ScanLog(dir, from, max, [&](const audit::ScannedRecord& r) {
    Check(r.record != nullptr && r.record->is_object() &&
          r.record->GetInt("seq", -1) == static_cast<int64_t>(r.seq));
    out.delivered.push_back({r.seq, std::string(r.line), r.position});
    return core::OkStatus();
  });
  Check(out.delivered.size() <= max);
  out.ok = got.ok();
  if (got.ok()) {
    out.cursor = *got;
  } else {
    Check(got.error().code == ErrorCode::kInternal && !got.error().message.empty());
  }
  return out;
}

void CheckScanMatches(const ScanOutcome& got, const ScanOutcome& want) {
  Check(got.ok == want.ok && got.delivered == want.delivered);
  if (want.ok) {
    Check(got.cursor.next_seq == want.cursor.next_seq && got.cursor.at == want.cursor.at);
  }
}

// The records from seq `from` on, read from a cursor, `chunk` records per call.
std::vector<Delivered> ScanInChunks(const std::string& dir, audit::ScanCursor cur, size_t chunk,
                                    size_t calls_max) {
  std::vector<Delivered> all;
  for (size_t call = 0; call < calls_max; ++call) {
    ScanOutcome part = RunScan(dir, cur, chunk);
    Check(part.ok);
    if (part.delivered.empty()) {
      Check(part.cursor.next_seq == cur.next_seq);
      return all;
    }
    all.insert(all.end(), part.delivered.begin(), part.delivered.end());
    cur = part.cursor;
  }
  Check(false);  // more calls than records
  return all;
}

void CheckScan(const std::string& dir, const std::vector<SegmentFile>& segments,
               uint64_t second_seq, size_t chunk, const Verdict& verdict) {
  const ScanOutcome want = ModelScan(segments, 0);
  const ScanOutcome got = RunScan(dir, audit::ScanCursor{}, SIZE_MAX);
  CheckScanMatches(got, want);
  if (verdict.ok) Check(got.ok && got.delivered.size() == verdict.records);
  if (second_seq != 0) {
    CheckScanMatches(RunScan(dir, audit::ScanCursor{second_seq, std::nullopt}, SIZE_MAX),
                     ModelScan(segments, second_seq));
  }

  // Resuming: only defined for a log whose lines are the records 0, 1, ... in order (on a
  // damaged one, where a resumed scan starts decides which duplicate it skips).
  const std::vector<Delivered>& all = want.delivered;
  if (!want.ok || all.size() != CountLines(segments) || all.size() > kPositionChecksMax) return;
  Check(ScanInChunks(dir, audit::ScanCursor{}, chunk, all.size() + 2) == all);
  const uint64_t past_end = segments.back().bytes.size() + 1;
  for (size_t j = 0; j < all.size(); ++j) {
    const std::vector<Delivered> rest(all.begin() + static_cast<ptrdiff_t>(j), all.end());
    // Inside record j's line (never at its first byte; at most at its newline).
    const audit::RecordPosition inside{
        all[j].position.segment, all[j].position.offset + 1 + j % all[j].line.size()};
    const audit::RecordPosition positions[] = {
        all[j].position, all[(j + 1) % all.size()].position,
        audit::RecordPosition{segments.back().number, past_end}, inside};
    for (const audit::RecordPosition& at : positions) {
      const ScanOutcome from = RunScan(dir, audit::ScanCursor{j, at}, SIZE_MAX);
      Check(from.ok && from.delivered == rest && from.cursor.next_seq == want.cursor.next_seq);
    }
  }
}

// --- RecordReader, TailLog --------------------------------------------------------------

void CheckReadAt(audit::RecordReader* reader, const SegmentFile* s, uint64_t number,
                 uint64_t offset) {
  auto got = reader->ReadAt(audit::RecordPosition{number, offset});
  if (s == nullptr) {
    Check(!got.ok() && got.error().code == ErrorCode::kNotFound);
    return;
  }
  const std::string_view bytes = s->bytes;
  uint64_t p = offset;
  while (p < bytes.size() && bytes[p] != '\n' && bytes[p] != '\0') ++p;
  if (p < bytes.size() && bytes[p] == '\n') {
    Check(got.ok() && *got == bytes.substr(offset, p - offset));
  } else if (p == offset) {  // at the end of the data: past the file or at a NUL
    Check(!got.ok() && got.error().code == ErrorCode::kNotFound);
  } else {
    Check(!got.ok() && got.error().code == ErrorCode::kInternal);
  }
  if (!got.ok()) Check(!got.error().message.empty());
}

void CheckReadAt(const std::string& dir, const std::vector<SegmentFile>& segments) {
  audit::RecordReader reader(dir);
  size_t checks = 0;
  for (const SegmentFile& s : segments) {
    for (const ModelLine& m : s.lines) {
      if (checks++ < kPositionChecksMax) CheckReadAt(&reader, &s, s.number, m.offset);
    }
    if (s.nul) CheckReadAt(&reader, &s, s.number, *s.nul);
    CheckReadAt(&reader, &s, s.number, s.bytes.size());
    CheckReadAt(&reader, &s, s.number, s.bytes.size() + 1);
  }
  CheckReadAt(&reader, nullptr, segments.back().number + 1, 0);
}

void CheckTail(const std::string& dir, const std::vector<SegmentFile>& segments) {
  auto got = audit::TailLog(dir, kTailLines);
  Check(got.ok() && got->size() <= kTailLines);
  for (const std::string& line : *got) Check(line.find('\n') == std::string::npos);
  if (!std::all_of(segments.begin(), segments.end(),
                   [](const SegmentFile& s) { return s.Clean(); })) {
    return;  // the bisection for the tail's start is exact only on clean files
  }
  std::vector<std::string> want;
  for (const SegmentFile& s : segments) {
    for (const ModelLine& m : s.lines) {
      if (m.terminated) want.emplace_back(s.Line(m));
    }
  }
  if (want.size() > kTailLines) want.erase(want.begin(), want.end() - kTailLines);
  Check(*got == want);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kInputBytesMax) return 0;
  uint8_t header[4] = {0, 0, 0, 0};
  const size_t header_bytes = std::min<size_t>(size, sizeof header);
  std::copy(data, data + header_bytes, header);
  std::string_view rest(reinterpret_cast<const char*>(data) + header_bytes, size - header_bytes);

  const bool two_segments = (header[0] & 1) != 0;
  const bool long_pad = (header[0] & 2) != 0;
  static constexpr uint64_t kNumbers[4][2] = {{1, 2}, {1, 3}, {2, 3}, {999999, 1000000}};
  const uint64_t* numbers = kNumbers[(header[0] >> 2) & 3];
  const size_t scan_chunk = kScanChunkRecords[(header[0] >> 4) & 3];
  const size_t small_max = kSmallLineBytesMax[(header[0] >> 6) & 3];
  const int records1 = header[1] & 3;
  const int records2 = (header[1] >> 2) & 3;
  const int shift = static_cast<int>(header[1] >> 4) - 8;
  const size_t split =
      two_segments ? std::min<size_t>(rest.size(), header[2] | header[3] << 8) : rest.size();

  std::vector<SegmentFile> segments(two_segments ? 2 : 1);
  Chain chain;
  for (int i = 0; i < records1; ++i) {
    size_t pad = 0;
    if (long_pad && i + 1 == records1) {
      // End this record's line (its '\n' included) at kReaderChunkBytes + shift.
      const size_t target = static_cast<size_t>(static_cast<int>(kReaderChunkBytes) + shift);
      const size_t fixed = segments[0].bytes.size() + RecordLine(chain, 0).size() + 1;
      pad = target > fixed ? target - fixed : 0;
    }
    AppendRecord(&chain, pad, &segments[0].bytes);
  }
  const uint64_t second_seq = chain.next_seq;
  segments[0].bytes.append(rest.substr(0, split));
  if (two_segments) {
    for (int i = 0; i < records2; ++i) AppendRecord(&chain, 0, &segments[1].bytes);
    segments[1].bytes.append(rest.substr(split));
  }
  for (size_t i = 0; i < segments.size(); ++i) {
    SegmentFile& s = segments[i];
    s.number = numbers[i];
    s.name = internal::SegmentName(s.number);
    s.lines = ModelLines(s.bytes, Nul::kEndsData);
    if (const size_t nul = s.bytes.find('\0'); nul != std::string::npos) s.nul = nul;
  }

  const LogDir dir(&segments);
  for (const SegmentFile& s : segments) {
    for (Nul nul : {Nul::kEndsData, Nul::kIsContent}) {
      CheckLineReader(s, nul, core::kAuditRecordBytesMax);
      CheckLineReader(s, nul, small_max);
    }
    CheckFileHelpers(s);
  }
  const Verdict verdict = CheckVerify(dir.path(), segments);
  CheckScan(dir.path(), segments, second_seq, scan_chunk, verdict);
  CheckReadAt(dir.path(), segments);
  CheckTail(dir.path(), segments);
  return 0;
}
