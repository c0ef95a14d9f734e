// Reading the audit log's records by position, for the audit index and the admin API's query,
// replay and export (docs/formats/audit.md, "Reading" and "Query, replay and export").
//
// A record is found by its seq (ScanLog walks the log from a seq) or by where its line
// starts (RecordReader reads one line at a known segment and byte offset, as the audit index
// stores them). Both only read, and may run while the log is being written: a last line
// without its newline (a write in progress, or a torn tail) is never returned.
//
// Nothing here checks integrity (VerifyLog does): a line is returned as stored.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "mandate/core/json.h"
#include "mandate/core/result.h"

namespace mandate::audit {

// Where a record's line starts: the segment's number (1-based, the NNNNNN of
// audit-NNNNNN.jsonl) and the byte offset of the line's first byte in that file.
struct RecordPosition {
  uint64_t segment = 0;
  uint64_t offset = 0;
  bool operator==(const RecordPosition&) const = default;
};

// A place in the log to read on from: the seq of the next record to read and, when known,
// where that record's line starts (or will start: the end of the newest segment).
struct ScanCursor {
  uint64_t next_seq = 0;
  // nullopt: the record is located by its seq, reading the first line of each segment from
  // the newest back, then skipping the lines before it in its segment (at most one segment's
  // worth of parsing). A position that does not hold next_seq is located the same way.
  std::optional<RecordPosition> at;
};

// One record delivered by ScanLog. `line` and `record` are valid only during the callback.
struct ScannedRecord {
  uint64_t seq = 0;
  std::string_view line;     // as stored, without its newline
  const core::Json* record;  // `line` parsed (an object with an integer "seq")
  RecordPosition position;
};

// Calls `on_record` for each complete record from cursor.next_seq on, in seq order, across
// segments, up to `max_records` of them, and returns the cursor after the last one delivered
// (pass it back to continue). Stops early, without an error, at the end of the log: at a
// last line without its newline, which is left for a later scan. Records before next_seq are
// skipped. An error returned by `on_record` stops the scan and is returned.
// Errors: kNotFound when `dir` does not exist; kInternal when a file cannot be read, or a
// complete line is not a JSON object with an integer "seq", is longer than
// kAuditRecordBytesMax, or does not carry the seq expected at its place (a gap or a reorder:
// the log is damaged, run VerifyLog).
// With `members` (JSON Pointers, as core::Json::ParseMembers takes them), `record` holds only
// those members and "seq": a reader that needs a few members of each record (the audit index)
// skips building the rest. Members not built are not checked for duplicate keys or depth
// (VerifyLog checks every record's canonical form).
core::Result<ScanCursor> ScanLog(
    const std::string& dir, const ScanCursor& cursor, size_t max_records,
    const std::function<core::Status(const ScannedRecord&)>& on_record,
    std::span<const std::string_view> members = {});

// Reads single records at known positions, keeping up to kAuditReaderOpenSegmentsMax segment
// files open between reads (closed by the destructor).
// Thread safety: none; use one reader per thread.
class RecordReader {
 public:
  explicit RecordReader(std::string dir) : dir_(std::move(dir)) {}
  ~RecordReader();
  RecordReader(const RecordReader&) = delete;
  RecordReader& operator=(const RecordReader&) = delete;

  // The line that starts at `position`, without its newline, as stored.
  // Errors: kNotFound when the segment does not exist or the position is at or past its end;
  // kInternal when the file cannot be read, or no newline follows within
  // kAuditRecordBytesMax bytes (not the start of a complete record).
  core::Result<std::string> ReadAt(const RecordPosition& position);

 private:
  core::Result<int> SegmentFd(uint64_t segment);

  std::string dir_;
  std::map<uint64_t, int> fds_;  // segment number -> open descriptor
};

// One record: RecordReader(dir).ReadAt(position).
core::Result<std::string> ReadRecordAt(const std::string& dir, const RecordPosition& position);

}  // namespace mandate::audit
