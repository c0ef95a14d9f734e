// Pieces of the Merkle log format shared by the writer (merkle_log.cc) and the readers
// (verify.cc, proof.cc): segment and key file naming, a bounded line reader, the per-line
// check, and a reader of the checkpoints file.
// Format: docs/formats/audit.md.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mandate/audit/checkpoint.h"
#include "mandate/audit/merkle.h"
#include "mandate/core/result.h"

namespace mandate::audit::internal {

// "prev" of the first record: 64 zeros.
inline constexpr std::string_view kGenesisPrev =
    "0000000000000000000000000000000000000000000000000000000000000000";
inline constexpr std::string_view kLockFileName = "audit.lock";
inline constexpr std::string_view kKeyFileName = "log.key";         // NoteSigner text, 0600
inline constexpr std::string_view kPublicKeyFileName = "log.pub";   // NoteVerifier text
inline constexpr std::string_view kCheckpointsFileName = "checkpoints";
// The next segment, preallocated (NUL bytes) by the writer and renamed when the log rolls.
inline constexpr std::string_view kSpareFileName = "audit.spare";

// Writes the lowercase hex of `h` (64 chars, no terminator) to out[0..63]: no allocation, for
// the per-record paths (the writer's chain tip, the verifier's expected "prev").
void HexInto(const Hash& h, char* out);

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

// The verifier key: `key_text` when non-empty, else the text of <dir>/log.pub.
// Errors: kBadRequest when the key is malformed, or missing (naming the file).
core::Result<NoteVerifier> LoadVerifier(const std::string& dir, std::string_view key_text);

// What LineReader and EndOfNonZero read from a file at a time (where their buffers refill).
inline constexpr size_t kLineReadChunkBytes = 64 * 1024;

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

  // Segments pass kNulEndsData: no record holds a NUL (canonical JSON escapes control
  // characters) and the newest segment's preallocated space is NUL bytes
  // (docs/formats/audit.md), so a NUL ends the line being read (which is then not
  // terminated) and the data. The checkpoints file has no such space: a NUL is its content.
  enum class Nul { kIsContent, kEndsData };
  LineReader(int fd, size_t line_bytes_max, Nul nul);
  // Returns false at the end of the data: the end of the file, or the NUL that ends it.
  // Errors: kInternal when read() fails.
  core::Result<bool> Next(Line* line);
  // The offset of the NUL byte that ended the data, or nullopt when none was met (yet).
  std::optional<uint64_t> nul_offset() const { return nul_offset_; }

 private:
  int fd_;
  size_t line_bytes_max_;
  Nul nul_;
  std::string buf_;
  size_t pos_ = 0;
  uint64_t buf_offset_ = 0;  // file offset of buf_[0]
  bool eof_ = false;
  std::optional<uint64_t> nul_offset_;
};

// The offset just past the last non-NUL byte of `fd` at or after `from` (`from` when every
// byte from there to the end of the file is NUL): where the data of a segment read up to
// `from` really ends, past a torn line or a zero-filled tail. Reads to the end of the file.
// Errors: kInternal when pread() fails.
core::Result<uint64_t> EndOfNonZero(int fd, uint64_t from);

// Where the zero-filled tail of `fd`'s first `size` bytes starts: `size` when the last byte
// is not NUL, else an offset found by bisection, exact when the file is data without NUL
// followed by NUL bytes (a segment with preallocated space). A few 1-byte reads: for readers
// that look only at a segment's end (tail). Errors: kInternal when pread() fails.
core::Result<uint64_t> ZeroTailStart(int fd, uint64_t size);

// Checks lines one after another against the rules of docs/formats/audit.md ("Records").
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

  // What Check needs to know of one line, computable on any thread ahead of the sequential
  // check (verification prepares whole segments in parallel).
  struct LineFacts {
    std::optional<std::string> problem;  // the line alone is not a well-formed record
    uint64_t seq = 0;
    std::array<char, 64> prev{};         // its "prev" member (64 lowercase hex)
    Hash leaf{};
  };
  static LineFacts Examine(std::string_view line);
  // Check(line) == CheckFacts(Examine(line)).
  std::optional<std::string> CheckFacts(const LineFacts& facts);

  // The seq the next line must have (nullopt before the first line when unanchored).
  std::optional<uint64_t> expected_seq() const { return expected_seq_; }
  // Hex leaf hash of the last accepted line (the chain tip), or the anchor.
  const std::optional<std::string>& tip() const { return expected_prev_; }
  // Leaf hash of the last accepted line (valid after a successful Check).
  const Hash& last_leaf() const { return last_leaf_; }
  // Whether the last failed Check failed only on "prev": the line itself is well-formed and in
  // sequence, but the previous line's bytes are not those its writer hashed, i.e. the
  // previous record was edited.
  bool prev_mismatch() const { return prev_mismatch_; }
  uint64_t accepted() const { return accepted_; }

 private:
  std::optional<uint64_t> expected_seq_;
  std::optional<std::string> expected_prev_;  // hex
  uint64_t accepted_ = 0;
  Hash last_leaf_{};
  bool prev_mismatch_ = false;
};

// Reads the checkpoints file note by note (each note ends with its signature lines), never
// holding more than kNoteBytesMax of one.
class NoteReader {
 public:
  struct Note {
    std::string text;   // the whole signed note
    uint64_t offset = 0;
    size_t line = 0;    // 1-based line of its first line
  };
  explicit NoteReader(int fd) : lines_(fd, kNoteBytesMax, LineReader::Nul::kIsContent) {}
  // Returns false at the end of the file. A note that is malformed (including cut short at
  // the end of the file) is reported in `malformed` with the offset where it starts, and
  // reading stops. Errors: kInternal when read() fails.
  struct Malformed {
    uint64_t offset = 0;
    size_t line = 0;
    bool at_end = false;  // nothing but this note's bytes follows: a torn write
    std::string problem;
  };
  core::Result<bool> Next(Note* note, std::optional<Malformed>* malformed);

 private:
  core::Result<bool> NextLine();
  LineReader lines_;
  LineReader::Line line_;
  bool have_line_ = false;  // line_ is read and not yet consumed
  size_t line_no_ = 0;
};

}  // namespace mandate::audit::internal
