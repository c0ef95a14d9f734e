#include "audit/internal/segment.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "mandate/core/crypto.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"

namespace mandate::audit::internal {
namespace {

constexpr std::string_view kSegmentPrefix = "audit-";
constexpr std::string_view kSegmentSuffix = ".jsonl";
constexpr size_t kReadChunkBytes = 64 * 1024;

bool IsLowerHex64(const std::string& s) {
  if (s.size() != 64) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
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

LineReader::LineReader(int fd, size_t line_bytes_max) : fd_(fd), line_bytes_max_(line_bytes_max) {}

core::Result<bool> LineReader::Next(Line* line) {
  line->bytes.clear();
  line->terminated = false;
  line->overlong = false;
  line->offset = buf_offset_ + pos_;
  bool any = false;
  while (true) {
    if (pos_ < buf_.size()) {
      any = true;
      const char* start = buf_.data() + pos_;
      const void* nl = std::memchr(start, '\n', buf_.size() - pos_);
      size_t take =
          nl ? static_cast<size_t>(static_cast<const char*>(nl) - start) : buf_.size() - pos_;
      // Keep at most line_bytes_max + 1 bytes: enough to know the line is overlong.
      size_t room = line_bytes_max_ + 1 - std::min(line->bytes.size(), line_bytes_max_ + 1);
      line->bytes.append(start, std::min(take, room));
      if (line->bytes.size() > line_bytes_max_) line->overlong = true;
      pos_ += take;
      if (nl) {
        ++pos_;  // the '\n'
        line->terminated = true;
        return true;
      }
    }
    if (eof_) return any;
    // Refill.
    buf_offset_ += buf_.size();
    buf_.resize(kReadChunkBytes);
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

std::optional<std::string> ChainChecker::Check(std::string_view line) {
  auto parsed = core::Json::Parse(line, core::kAuditRecordBytesMax);
  if (!parsed.ok()) return "unparsable line (garbage): " + parsed.error().message;
  core::Json record = std::move(parsed).value();
  if (!record.is_object()) return std::string("line is not a JSON object (garbage)");
  const core::Json* seq = record.Find("seq");
  const core::Json* ts = record.Find("ts");
  const std::string* prev = record.FindString("prev");
  const std::string* hash = record.FindString("hash");
  if (seq == nullptr || !seq->is_int() || seq->as_int() < 0 || ts == nullptr || !ts->is_int() ||
      prev == nullptr || !IsLowerHex64(*prev) || hash == nullptr || !IsLowerHex64(*hash)) {
    return std::string(
        "record lacks a valid seq, ts, prev or hash member (garbage or an edited record)");
  }
  // Canonical form is part of the format: any byte that differs from it was changed after
  // the record was written (even where the hash alone would not notice, e.g. whitespace).
  if (record.Canonical() != line) {
    return std::string("line is not in canonical form (record edited)");
  }
  const std::string claimed_hash = *hash;
  const uint64_t claimed_seq = static_cast<uint64_t>(seq->as_int());
  const std::string claimed_prev = *prev;
  record.Erase("hash");
  if (core::Sha256Hex(record.Canonical()) != claimed_hash) {
    return std::string(
        "hash mismatch: the record's content does not match its hash (record edited)");
  }
  if (expected_seq_ && claimed_seq != *expected_seq_) {
    if (claimed_seq > *expected_seq_) {
      return "seq gap: expected " + std::to_string(*expected_seq_) + ", found " +
             std::to_string(claimed_seq) + " (records removed)";
    }
    return "seq out of order: expected " + std::to_string(*expected_seq_) + ", found " +
           std::to_string(claimed_seq) + " (records reordered, duplicated or inserted)";
  }
  if (expected_prev_ && claimed_prev != *expected_prev_) {
    return std::string(
        "prev does not match the hash of the previous line (a record was removed, inserted, "
        "reordered or edited before this one)");
  }
  expected_seq_ = claimed_seq + 1;
  expected_prev_ = core::Sha256Hex(line);
  ++accepted_;
  return std::nullopt;
}

}  // namespace mandate::audit::internal
