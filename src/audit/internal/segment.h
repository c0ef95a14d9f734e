// Pieces of the hash-chain log format shared by the writer (hash_chain_log.cc) and the
// readers (verify.cc): segment naming, a bounded line reader and the per-line chain check.
// Format: docs/formats/audit.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mandate/core/result.h"

namespace mandate::audit::internal {

// "prev" of the first record: 64 zeros.
inline constexpr std::string_view kGenesisPrev =
    "0000000000000000000000000000000000000000000000000000000000000000";
inline constexpr std::string_view kLockFileName = "audit.lock";

struct Segment {
  uint64_t number = 0;  // 1-based
  std::string name;     // e.g. audit-000001.jsonl
  std::string path;     // dir + "/" + name
};

// "audit-" + the number in at least 6 decimal digits + ".jsonl".
std::string SegmentName(uint64_t number);

// The segment files of `dir`, in increasing number order. Other files are ignored.
// Errors: kNotFound when `dir` does not exist; kInternal when it cannot be listed.
core::Result<std::vector<Segment>> ListSegments(const std::string& dir);

// Reads lines from a file descriptor (not owned) without ever holding more than
// line_bytes_max + 1 bytes of one line.
class LineReader {
 public:
  struct Line {
    std::string bytes;        // without the '\n'; a prefix when overlong
    bool terminated = false;  // a '\n' ended it (false only for the file's last line)
    bool overlong = false;    // longer than line_bytes_max
    uint64_t offset = 0;      // byte offset of its first byte in the file
  };

  LineReader(int fd, size_t line_bytes_max);
  // Returns false at the end of the file. Errors: kInternal when read() fails.
  core::Result<bool> Next(Line* line);

 private:
  int fd_;
  size_t line_bytes_max_;
  std::string buf_;
  size_t pos_ = 0;
  uint64_t buf_offset_ = 0;  // file offset of buf_[0]
  bool eof_ = false;
};

// Checks lines one after another against the rules of docs/formats/audit.md.
class ChainChecker {
 public:
  // Expect the first line to have seq `first_seq` and prev `first_prev`. Without them (Open
  // reading only the last segment) the first line's own seq and prev are accepted.
  ChainChecker() = default;
  ChainChecker(uint64_t first_seq, std::string first_prev)
      : expected_seq_(first_seq), expected_prev_(std::move(first_prev)) {}

  // Checks one complete line (without '\n'). On success advances and returns nullopt; on
  // failure returns the problem and does not advance.
  std::optional<std::string> Check(std::string_view line);

  // The seq the next line must have (nullopt before the first line when unanchored).
  std::optional<uint64_t> expected_seq() const { return expected_seq_; }
  // Hex SHA-256 of the last accepted line (the chain tip), or the anchor.
  const std::optional<std::string>& tip() const { return expected_prev_; }
  uint64_t accepted() const { return accepted_; }

 private:
  std::optional<uint64_t> expected_seq_;
  std::optional<std::string> expected_prev_;
  uint64_t accepted_ = 0;
};

}  // namespace mandate::audit::internal
