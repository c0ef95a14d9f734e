// The audit log: one append-only, tamper-evident sequence of records per node (DESIGN.md
// sections 1.2, 1.5 and 7). The on-disk format and the verification rules are specified in
// docs/formats/audit.md.
//
// This header is the interface the rest of Mandate uses. It says nothing about how integrity
// is achieved (an RFC 6962 Merkle tree with signed checkpoints, merkle_log.h), so the
// implementation can be replaced without touching callers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mandate/audit/checkpoint.h"
#include "mandate/audit/merkle.h"
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
  // adds "seq", "ts" (Unix microseconds, from the log's Clock) and "prev" (its integrity
  // member), so the record must not carry "seq", "ts" or "prev" itself.
  //
  // Blocks while the log's queue is full (kAuditQueueMax records waiting for a group commit;
  // back-pressure, never a silent drop), then until the batch holding this record has been
  // synced. A log that fails meanwhile refuses the waiting appends (kInternal).
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
  virtual core::Result<uint64_t> Append(const core::Json& record) = 0;

  // Queues one record without waiting for it to be durable: it is written and synced with the
  // next group commit, in order with every other record, at the latest
  // kAuditFlushIntervalMillis later. For records whose loss in a crash is
  // acceptable (e.g. call.completed: the decision record of the call is already durable), so
  // the caller's answer does not wait for a second fdatasync. Errors: the validation errors
  // of Append, and kInternal when the log has already failed or is closed. A later write
  // failure is not reported to this caller; it fails the log, so every later Append fails.
  virtual core::Status Submit(const core::Json& record) = 0;

  // How AppendThen reports a record's durability: OkStatus once it is durable, else the
  // error that keeps it from ever being.
  using DurableCallback = std::function<void(const core::Status& durable)>;

  // Appends one record as Append does, but returns once it is sequenced (with its seq) instead
  // of once it is durable, and reports that to `on_durable`: OkStatus when the record is
  // durable, or the kInternal error that keeps it from ever being (the write or the sync
  // failed, the log failed first). `on_durable` runs exactly once: on this thread before
  // AppendThen returns, or on the thread that makes the record durable, right after its
  // fdatasync. It must be quick and must not block or call the log. For the decision record of
  // a call whose upstream send can wait for it (core::ForwardGate): the caller goes on with
  // its work while the record syncs.
  // Errors (then `on_durable` never runs): the validation errors of Append, and kInternal when
  // the log had already failed or is closed.
  // This default appends with Append, blocking, and then reports; MerkleLog does not block.
  virtual core::Result<uint64_t> AppendThen(const core::Json& record, DurableCallback on_durable) {
    auto appended = Append(record);
    if (appended.ok()) on_durable(core::OkStatus());
    return appended;
  }

  // Completes every append already queued, stops the writer and closes the files. Later
  // Appends fail with kInternal. Idempotent; the destructor calls it.
  virtual void Close() = 0;
};

// Opens (creating if needed) the node's audit log in directory `dir` with the current
// implementation and default options. See MerkleLog::Open for the errors. `clock` must outlive
// the log.
core::Result<std::unique_ptr<AuditLog>> OpenAuditLog(const std::string& dir,
                                                     const core::Clock& clock);

// The outcome of checking a log's integrity. When !ok, the other members name the first
// record or checkpoint that is not what it should be.
struct VerifyReport {
  bool ok = true;
  uint64_t records = 0;                   // records that verified before the first problem
  std::optional<uint64_t> first_bad_seq;  // the seq the first bad position should have held
                                          // (for a checkpoint mismatch: the first seq of the
                                          // range it could not vouch for)
  std::string file;     // file name (not the path), e.g. audit-000001.jsonl or checkpoints
  size_t line = 0;      // 1-based line in `file`; 0 when not about one line
  std::string problem;  // readable: what is wrong and what it suggests
  // Checkpoints.
  std::string origin;                   // of the verifier key used
  uint64_t checkpoints = 0;             // checkpoints that verified (signature and root)
  uint64_t checkpointed_records = 0;    // tree size of the newest verified checkpoint
};

struct VerifyOptions {
  // The log's verifier key text (docs/formats/audit.md, "Keys"); empty: read <dir>/log.pub.
  // An auditor passes the key they pinned, since whoever can rewrite the directory can also
  // replace log.pub.
  std::string verifier_key;
};

// Recomputes the log's integrity from its files (docs/formats/audit.md, "Verification"):
// every record line by line, the Merkle tree, every checkpoint's signature, and each
// checkpoint's root against the tree at its size (so successive checkpoints are consistent).
// Detects an edited, removed, reordered or inserted record, a truncated file, a missing
// segment, garbage, a replaced or forged checkpoint, a log rewritten after a checkpoint and
// records removed from the end, and reports the first. Records after the newest checkpoint
// are checked but not yet vouched for by a signature (records - checkpointed_records).
// A tampered log is a successful call with report.ok == false. Verify a closed log, or expect
// a torn last line while one is writing.
// Errors: kNotFound when `dir` does not exist; kBadRequest when the verifier key is
// malformed or missing; kInternal when a file cannot be read.
core::Result<VerifyReport> VerifyLog(const std::string& dir, const VerifyOptions& options = {});

// An inclusion proof of one record against a checkpoint (docs/formats/audit.md, "Proofs"):
// what `mandate audit prove` prints and `mandate audit verify-proof` checks offline.
struct InclusionProofBundle {
  uint64_t seq = 0;
  std::string record;             // the record's line, without its newline
  uint64_t tree_size = 0;         // of the checkpoint
  std::vector<Hash> proof;        // RFC 6962 audit path, deepest first
  std::string checkpoint;         // the signed checkpoint note, verbatim
  core::Json ToJson() const;
  // Errors: kBadRequest naming the malformed member.
  static core::Result<InclusionProofBundle> FromJson(const core::Json& j);
};

// Builds the inclusion proof of record `seq` against the newest checkpoint of the log in
// `dir`, after checking that checkpoint's signature with <dir>/log.pub.
// Errors: kNotFound when `dir` does not exist or seq is not covered by the newest checkpoint
// (the message says to retry after the next one); kInternal when a file cannot be read, the
// log is damaged, or it holds more than kAuditProofRecordsMax records.
core::Result<InclusionProofBundle> ProveInclusion(const std::string& dir, uint64_t seq);

// Checks a bundle offline with only the verifier key: the checkpoint's signature, that the
// record is canonical with "seq" equal to the bundle's seq, and the audit path from its leaf
// hash to the checkpoint's root. Returns the checkpoint. Errors: kBadRequest for a malformed
// key or bundle; kUnauthenticated when the signature, the record or the path does not verify.
core::Result<Checkpoint> VerifyInclusionBundle(const InclusionProofBundle& bundle,
                                               std::string_view verifier_key);

// The last `n` complete lines of the log (oldest first), as stored. A final line without its
// newline (a write in progress, or a torn tail) is not returned.
// Errors: kBadRequest when n > kAuditTailLinesMax; kNotFound when `dir` does not exist;
// kInternal when a file cannot be read.
core::Result<std::vector<std::string>> TailLog(const std::string& dir, size_t n);

}  // namespace mandate::audit
