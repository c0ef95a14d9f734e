// The audit log: one append-only, tamper-evident sequence of records per node (DESIGN.md
// sections 1.2, 1.5 and 7). The on-disk format and the verification rules are specified in
// docs/formats/audit.md.
//
// This header is the interface the rest of Mandate uses. It says nothing about how integrity
// is achieved (today a SHA-256 hash chain, later an RFC 6962 Merkle tree), so the
// implementation can be replaced without touching callers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mandate/core/clock.h"
#include "mandate/core/json.h"
#include "mandate/core/result.h"

namespace mandate::audit {

// An append-only log of JSON records.
// Thread safety: every method may be called concurrently from any thread.
class AuditLog {
 public:
  virtual ~AuditLog() = default;

  // Appends one record and returns its sequence number (0-based, consecutive, no gaps) once
  // the record is durable (written and fdatasync'ed). `record` must be a JSON object; the log
  // adds "seq", "ts" (Unix microseconds, from the log's Clock) and its integrity members, so
  // the record must not carry "seq", "ts", "prev" or "hash" itself.
  //
  // Blocks while kAuditQueueMax appends are already waiting (back-pressure, never a silent
  // drop), then until the batch holding this record has been synced.
  //
  // Errors:
  //   kBadRequest       not an object, a reserved member present, or a value that does not
  //                     survive a canonical round trip (invalid UTF-8 in a string, nesting
  //                     deeper than kJsonDepthMax);
  //   kPayloadTooLarge  the canonical record plus kAuditFramingBytesMax exceeds
  //                     kAuditRecordBytesMax;
  //   kInternal         the write or the sync failed, the log had already failed before, or
  //                     the log is closed. After an I/O failure the log stays failed: every
  //                     later Append fails too, so the log never has a gap. Callers on the
  //                     authorization path must then fail closed (DESIGN.md invariant 2).
  virtual core::Result<uint64_t> Append(core::Json record) = 0;

  // Queues one record without waiting for it to be durable: it is written and synced with the
  // next group commit, in order with every other record, at the latest
  // kAuditFlushIntervalMillis later. For records whose loss in a crash is
  // acceptable (e.g. call.completed: the decision record of the call is already durable), so
  // the caller's answer does not wait for a second fdatasync. Errors: the validation errors
  // of Append, and kInternal when the log has already failed or is closed. A later write
  // failure is not reported to this caller; it fails the log, so every later Append fails.
  virtual core::Status Submit(core::Json record) = 0;

  // Completes every append already queued, stops the writer and closes the files. Later
  // Appends fail with kInternal. Idempotent; the destructor calls it.
  virtual void Close() = 0;
};

// Opens (creating if needed) the node's audit log in directory `dir` with the current
// implementation. See HashChainLog::Open for the errors. `clock` must outlive the log.
core::Result<std::unique_ptr<AuditLog>> OpenAuditLog(const std::string& dir,
                                                     const core::Clock& clock);

// The outcome of checking a log's integrity. When !ok, the other members name the first
// record that is not what it should be.
struct VerifyReport {
  bool ok = true;
  uint64_t records = 0;                   // records that verified before the first problem
  std::optional<uint64_t> first_bad_seq;  // the seq the first bad position should have held
  std::string file;     // segment file name (not the path), e.g. audit-000001.jsonl
  size_t line = 0;      // 1-based line in `file`; 0 when not about one line
  std::string problem;  // readable: what is wrong and what it suggests
};

// Recomputes the log's integrity from its files (docs/formats/audit.md, "Verification").
// Detects an edited, removed, reordered or inserted record, a truncated file, a missing
// segment and garbage, and reports the first. A tampered log is a successful call with
// report.ok == false. Verify a closed log, or expect a torn last line while one is writing.
// Errors: kNotFound when `dir` does not exist; kInternal when a file cannot be read.
core::Result<VerifyReport> VerifyLog(const std::string& dir);

// The last `n` complete lines of the log (oldest first), as stored. A final line without its
// newline (a write in progress, or a torn tail) is not returned.
// Errors: kBadRequest when n > kAuditTailLinesMax; kNotFound when `dir` does not exist;
// kInternal when a file cannot be read.
core::Result<std::vector<std::string>> TailLog(const std::string& dir, size_t n);

}  // namespace mandate::audit
