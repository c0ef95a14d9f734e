#include "audit/internal/segment.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "audit/internal/canonical.h"
#include "mandate/core/crypto.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"

namespace mandate::audit::internal {
namespace {

constexpr std::string_view kSegmentPrefix = "audit-";
constexpr std::string_view kSegmentSuffix = ".jsonl";

bool IsLowerHex64(std::string_view s) {
  if (s.size() != 64) return false;
  // Branch-free: hex digits are random, so a per-character branch mispredicted about every
  // third byte and this check cost 12% of verification (docs/performance.md).
  bool ok = true;
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    ok &= (static_cast<unsigned char>(c - '0') < 10) | (static_cast<unsigned char>(c - 'a') < 6);
  }
  return ok;
}

// The number of a segment file name, or nullopt when `name` is not one. Digits only, no
// sign, at least 6 of them, and no leading zeros beyond the padding (one name per number).
std::optional<uint64_t> ParseSegmentName(std::string_view name) {
  if (name.size() <= kSegmentPrefix.size() + kSegmentSuffix.size()) return std::nullopt;
  if (name.substr(0, kSegmentPrefix.size()) != kSegmentPrefix) return std::nullopt;
  if (name.substr(name.size() - kSegmentSuffix.size()) != kSegmentSuffix) return std::nullopt;
  std::string_view digits = name.substr(
      kSegmentPrefix.size(), name.size() - kSegmentPrefix.size() - kSegmentSuffix.size());
  if (digits.size() < 6 || digits.size() > 19) return std::nullopt;
  uint64_t n = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  if (n == 0 || SegmentName(n) != name) return std::nullopt;
  return n;
}

}  // namespace

std::string SegmentName(uint64_t number) {
  std::string digits = std::to_string(number);
  if (digits.size() < 6) digits.insert(0, 6 - digits.size(), '0');
  return std::string(kSegmentPrefix) + digits + std::string(kSegmentSuffix);
}

core::Result<std::vector<Segment>> ListSegments(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    int e = errno;
    if (e == ENOENT) {
      return core::MakeError(core::ErrorCode::kNotFound,
                             "audit directory " + dir + " does not exist");
    }
    return core::MakeError(core::ErrorCode::kInternal,
                           "cannot list audit directory " + dir + ": " + std::strerror(e));
  }
  std::vector<Segment> out;
  errno = 0;
  while (struct dirent* ent = readdir(d)) {
    std::optional<uint64_t> n = ParseSegmentName(ent->d_name);
    if (n) out.push_back(Segment{*n, ent->d_name, dir + "/" + ent->d_name});
    errno = 0;
  }
  int e = errno;
  closedir(d);
  if (e != 0) {
    return core::MakeError(core::ErrorCode::kInternal,
                           "cannot list audit directory " + dir + ": " + std::strerror(e));
  }
  std::sort(out.begin(), out.end(),
            [](const Segment& a, const Segment& b) { return a.number < b.number; });
  return out;
}

void HexInto(const Hash& h, char* out) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < h.size(); ++i) {
    out[2 * i] = kHex[h[i] >> 4];
    out[2 * i + 1] = kHex[h[i] & 15];
  }
}

// Why a line that is not a canonical record fails, in the words of the format's rules.
static std::string SlowProblem(std::string_view line) {
  auto parsed = core::Json::Parse(line, core::kAuditRecordBytesMax);
  if (!parsed.ok()) return "unparsable line (garbage): " + parsed.error().message;
  const core::Json& record = parsed.value();
  if (!record.is_object()) return "line is not a JSON object (garbage)";
  const core::Json* seq = record.Find("seq");
  const core::Json* ts = record.Find("ts");
  const std::string* prev = record.FindString("prev");
  if (seq == nullptr || !seq->is_int() || seq->as_int() < 0 || ts == nullptr || !ts->is_int() ||
      prev == nullptr || !IsLowerHex64(*prev)) {
    return "record lacks a valid seq, ts or prev member (garbage or an edited record)";
  }
  return "line is not in canonical form (record edited)";
}

core::Result<NoteVerifier> LoadVerifier(const std::string& dir, std::string_view key_text) {
  std::string text(key_text);
  if (text.empty()) {
    const std::string path = dir + "/" + std::string(kPublicKeyFileName);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return core::MakeError(core::ErrorCode::kBadRequest,
                             "no verifier key: cannot read " + path + " (" +
                                 std::strerror(errno) + "); pass the log's key with --key");
    }
    char buf[1024];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0 && text.size() < 4096) {
      text.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  auto v = NoteVerifier::Parse(text);
  if (!v.ok()) {
    return core::MakeError(core::ErrorCode::kBadRequest,
                           "invalid verifier key: " + v.error().message);
  }
  return v;
}

LineReader::LineReader(int fd, size_t line_bytes_max, Nul nul)
    : fd_(fd), line_bytes_max_(line_bytes_max), nul_(nul) {}

core::Result<bool> LineReader::Next(Line* line) {
  line->bytes.clear();
  line->terminated = false;
  line->overlong = false;
  line->offset = buf_offset_ + pos_;
  if (nul_offset_) return false;
  bool any = false;
  while (true) {
    if (pos_ < buf_.size()) {
      const char* start = buf_.data() + pos_;
      const void* nl = std::memchr(start, '\n', buf_.size() - pos_);
      size_t take =
          nl ? static_cast<size_t>(static_cast<const char*>(nl) - start) : buf_.size() - pos_;
      const void* nul = nul_ == Nul::kEndsData ? std::memchr(start, '\0', take) : nullptr;
      if (nul != nullptr) {
        // The end of the data: what precedes the NUL is a line without its '\n'.
        take = static_cast<size_t>(static_cast<const char*>(nul) - start);
        nl = nullptr;
        nul_offset_ = buf_offset_ + pos_ + take;
      }
      if (take > 0 || nl) any = true;
      // Keep at most line_bytes_max + 1 bytes: enough to know the line is overlong.
      size_t room = line_bytes_max_ + 1 - std::min(line->bytes.size(), line_bytes_max_ + 1);
      line->bytes.append(start, std::min(take, room));
      if (line->bytes.size() > line_bytes_max_) line->overlong = true;
      pos_ += take;
      if (nul_offset_) return any;
      if (nl) {
        ++pos_;  // the '\n'
        line->terminated = true;
        return true;
      }
    }
    if (eof_) return any;
    // Refill.
    buf_offset_ += buf_.size();
    buf_.resize(kLineReadChunkBytes);
    pos_ = 0;
    ssize_t got;
    do {
      got = ::read(fd_, buf_.data(), buf_.size());
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
      buf_.clear();
      return core::MakeError(core::ErrorCode::kInternal,
                             std::string("cannot read audit segment: ") + std::strerror(errno));
    }
    buf_.resize(static_cast<size_t>(got));
    if (got == 0) eof_ = true;
  }
}

core::Result<uint64_t> EndOfNonZero(int fd, uint64_t from) {
  std::string buf(kLineReadChunkBytes, '\0');
  uint64_t end = from;
  uint64_t at = from;
  while (true) {
    ssize_t got;
    do {
      got = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(at));
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
      return core::MakeError(core::ErrorCode::kInternal,
                             std::string("cannot read audit segment: ") + std::strerror(errno));
    }
    if (got == 0) return end;
    for (size_t i = static_cast<size_t>(got); i-- > 0;) {
      if (buf[i] != '\0') {
        end = at + i + 1;
        break;
      }
    }
    at += static_cast<uint64_t>(got);
  }
}

core::Result<uint64_t> ZeroTailStart(int fd, uint64_t size) {
  auto is_nul = [fd](uint64_t offset) -> core::Result<bool> {
    char c = 0;
    ssize_t got;
    do {
      got = ::pread(fd, &c, 1, static_cast<off_t>(offset));
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
      return core::MakeError(core::ErrorCode::kInternal,
                             std::string("cannot read audit segment: ") + std::strerror(errno));
    }
    return got == 0 || c == '\0';  // a file cut shorter meanwhile reads as its end
  };
  // Invariant: the answer is in [lo, hi]; the byte at hi is NUL (or hi == size).
  uint64_t lo = 0;
  uint64_t hi = size;
  if (size == 0) return size;
  MANDATE_ASSIGN_OR_RETURN(bool last_nul, is_nul(size - 1));
  if (!last_nul) return size;
  hi = size - 1;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    MANDATE_ASSIGN_OR_RETURN(bool nul, is_nul(mid));
    if (nul) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

ChainChecker::LineFacts ChainChecker::Examine(std::string_view line) {
  LineFacts f;
  // The fast path: one pass that proves the line is exactly a canonical record and extracts
  // its seq, ts and prev (ScanCanonicalRecord agrees with Parse + Canonical on every input,
  // differentially tested and fuzzed). Only a failing line takes the slow path, which names
  // what is wrong with it.
  const CanonicalScan scan = ScanCanonicalRecord(line, core::kAuditRecordBytesMax);
  if (!scan.ok) {
    f.problem = SlowProblem(line);
    return f;
  }
  if (!scan.has_seq || scan.seq < 0 || !scan.has_ts || !scan.has_prev || !IsLowerHex64(scan.prev)) {
    f.problem = "record lacks a valid seq, ts or prev member (garbage or an edited record)";
    return f;
  }
  f.seq = static_cast<uint64_t>(scan.seq);
  std::copy(scan.prev.begin(), scan.prev.end(), f.prev.begin());
  f.leaf = LeafHash(line);
  return f;
}

std::optional<std::string> ChainChecker::Check(std::string_view line) {
  return CheckFacts(Examine(line));
}

std::optional<std::string> ChainChecker::CheckFacts(const LineFacts& f) {
  prev_mismatch_ = false;
  if (f.problem) return f.problem;
  const uint64_t claimed_seq = f.seq;
  const std::string_view claimed_prev(f.prev.data(), f.prev.size());
  if (expected_seq_ && claimed_seq != *expected_seq_) {
    if (claimed_seq > *expected_seq_) {
      return "seq gap: expected " + std::to_string(*expected_seq_) + ", found " +
             std::to_string(claimed_seq) + " (records removed)";
    }
    return "seq out of order: expected " + std::to_string(*expected_seq_) + ", found " +
           std::to_string(claimed_seq) + " (records reordered, duplicated or inserted)";
  }
  if (expected_prev_ && claimed_prev != *expected_prev_) {
    prev_mismatch_ = true;
    return std::string(
        "prev does not match the leaf hash of the previous line (the previous record was "
        "edited, or a record was removed, inserted or reordered before this one)");
  }
  last_leaf_ = f.leaf;
  expected_seq_ = claimed_seq + 1;
  if (!expected_prev_) expected_prev_.emplace(64, '0');
  HexInto(last_leaf_, expected_prev_->data());
  ++accepted_;
  return std::nullopt;
}

core::Result<bool> NoteReader::NextLine() {
  if (have_line_) return true;
  MANDATE_ASSIGN_OR_RETURN(bool more, lines_.Next(&line_));
  if (more) {
    have_line_ = true;
    ++line_no_;
  }
  return more;
}

core::Result<bool> NoteReader::Next(Note* note, std::optional<Malformed>* malformed) {
  malformed->reset();
  note->text.clear();
  MANDATE_ASSIGN_OR_RETURN(bool more, NextLine());
  if (!more) return false;
  note->offset = line_.offset;
  note->line = line_no_;
  auto bad = [&](std::string problem) -> core::Result<bool> {
    Malformed m;
    m.offset = note->offset;
    m.line = note->line;
    m.problem = std::move(problem);
    // A torn write leaves a prefix of one note: no complete line after this note's start
    // begins another note. Drain to see whether anything but this note follows.
    bool later_note = false;
    size_t lines_after = 0;
    while (true) {
      auto r = NextLine();
      if (!r.ok()) return std::move(r).error();
      if (!*r) break;
      have_line_ = false;
      ++lines_after;
      if (lines_after > 5 || line_.overlong) later_note = true;
    }
    m.at_end = !later_note;
    *malformed = std::move(m);
    return true;
  };
  size_t text_lines = 0;
  // Text lines up to the blank line.
  for (;;) {
    MANDATE_ASSIGN_OR_RETURN(bool got, NextLine());
    if (!got) return bad("note cut short before its signature");
    if (line_.overlong) return bad("line longer than a note");
    if (!line_.terminated) return bad("note cut short (no final newline)");
    have_line_ = false;
    note->text.append(line_.bytes).push_back('\n');
    if (line_.bytes.empty()) break;
    ++text_lines;
  }
  if (text_lines == 0) return bad("note without text");
  size_t sig_lines = 0;
  static constexpr std::string_view kDash = "\xE2\x80\x94 ";
  for (;;) {
    MANDATE_ASSIGN_OR_RETURN(bool got, NextLine());
    if (!got) break;
    if (std::string_view(line_.bytes).substr(0, kDash.size()) != kDash) break;
    if (!line_.terminated) return bad("signature line cut short");
    have_line_ = false;
    note->text.append(line_.bytes).push_back('\n');
    ++sig_lines;
  }
  if (sig_lines == 0) return bad("note without a signature line");
  if (note->text.size() > kNoteBytesMax) return bad("note larger than kNoteBytesMax");
  return true;
}

}  // namespace mandate::audit::internal
