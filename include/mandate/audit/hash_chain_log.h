// HashChainLog: the first AuditLog implementation. Records are canonical JSON lines in
// segment files <dir>/audit-NNNNNN.jsonl, each carrying the SHA-256 of the previous line
// ("prev") and of itself without "hash" ("hash"). Format: docs/formats/audit.md.
//
// Durability (group commit, leader/follower): a record is sequenced and chained when it is
// appended, under the log's mutex. The first Append that finds no write in progress becomes
// the leader: it takes every record sequenced so far, writes them with one write() per
// segment touched and makes them durable with one fdatasync(), then wakes the Appends of that
// batch and hands the lead to the next waiting Append. Appends arriving during a sync wait and
// go out together in the next batch. So a lone Append costs no thread hand-off at all, and
// under load one fdatasync covers many records. Submit()ted records are queued: the next
// group commit writes and syncs them with its batch, or a background flusher does within
// kAuditFlushIntervalMillis when no Append comes.
//
// Crash recovery: Open finds the last record and its hash. A torn last line (bytes after the
// final newline, left by a crash mid-write) is truncated away and an "audit.truncated"
// record naming the dropped bytes is appended. Any other damage makes Open fail: the log is
// evidence and is never repaired silently.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mandate/audit/audit_log.h"
#include "mandate/core/clock.h"
#include "mandate/core/json.h"
#include "mandate/core/limits.h"
#include "mandate/core/result.h"

namespace mandate::audit {

class HashChainLog final : public AuditLog {
 public:
  struct Options {
    // A segment rolls before a record would take it past this size. Tests make it small.
    size_t segment_bytes_max = core::kAuditSegmentBytesMax;
  };

  // Opens the log in `dir`, creating the directory (mode 0700) and the first segment (mode
  // 0600) if needed, and takes an exclusive lock on <dir>/audit.lock for the log's lifetime.
  // `clock` must outlive the log.
  // Errors: kInternal when the directory or a file cannot be created, opened, read, locked
  // or synced, or when the existing log is damaged anywhere but in its torn last line (run
  // VerifyLog to locate it); kConflict when another HashChainLog (in any process) holds it.
  static core::Result<std::unique_ptr<HashChainLog>> Open(const std::string& dir,
                                                          const core::Clock& clock);
  static core::Result<std::unique_ptr<HashChainLog>> Open(const std::string& dir,
                                                          const core::Clock& clock,
                                                          Options options);

  ~HashChainLog() override;
  HashChainLog(const HashChainLog&) = delete;
  HashChainLog& operator=(const HashChainLog&) = delete;

  core::Result<uint64_t> Append(core::Json record) override;
  core::Status Submit(core::Json record) override;
  void Close() override;

  // How many fdatasync() calls committed batches so far (observability and tests: fewer
  // syncs than appends means group commit is batching).
  uint64_t SyncCount() const;

 private:
  struct Waiter;
  struct Prepared;

  HashChainLog(std::string dir, const core::Clock& clock, Options options);
  // Validates `record` and renders its members canonically (the one serialization of a
  // record); the validation errors of Append.
  core::Result<Prepared> Prepare(const core::Json& record) const;
  // Assigns the next seq, timestamps and chains the prepared record and queues its line.
  // Returns its seq. Errors: log failed or closed. Needs mu_ held.
  core::Result<uint64_t> Sequence(const Prepared& prepared, std::unique_lock<std::mutex>& lock);
  // Called with mu_ held and no leader active: writes every queued line (and fdatasyncs when
  // `sync`, or when anything written earlier is still unsynced and `sync`), releasing mu_
  // during the I/O. Wakes the Appends made durable and the next leader.
  void Lead(std::unique_lock<std::mutex>& lock, bool sync);
  // Writes `lines` (each without '\n'), rolling segments; syncs before each roll and at the
  // end when `sync`. Sets how many leading lines a sync covered and counts the syncs. Leader
  // only. On failure truncates the segment to its last synced size.
  core::Status WriteLines(const std::vector<std::string>& lines, bool sync, size_t* synced,
                          uint64_t* sync_calls);
  core::Status RollSegment();
  void FlusherLoop();

  const std::string dir_;
  const core::Clock& clock_;
  const Options options_;

  // Files. Touched only by the thread that holds the lead (leading_ == true), or by Open and
  // Close when no one can.
  int dir_fd_ = -1;
  int lock_fd_ = -1;
  int segment_fd_ = -1;
  uint64_t segment_number_ = 0;
  uint64_t segment_bytes_ = 0;
  uint64_t synced_bytes_ = 0;  // of the current segment

  mutable std::mutex mu_;
  // Invariant: next_seq_ is the seq of the next record and tip_ the hex SHA-256 of the last
  // sequenced line (64 zeros before the first record). Guarded by mu_.
  uint64_t next_seq_ = 0;
  std::string tip_;
  std::vector<std::string> queued_;       // sequenced, not yet written; guarded by mu_
  uint64_t written_ = 0;                  // records [0, written_) are written; guarded by mu_
  uint64_t durable_ = 0;                  // records [0, durable_) are synced; guarded by mu_
  bool leading_ = false;                  // a thread is writing; guarded by mu_
  std::vector<Waiter*> waiters_;          // Appends waiting for durability; guarded by mu_
  std::condition_variable not_full_;      // appenders wait for queue room
  std::condition_variable flusher_cv_;
  bool flusher_armed_ = false;            // guarded by mu_; the flusher is not idle-waiting
  bool closing_ = false;                  // guarded by mu_
  bool failed_ = false;                   // guarded by mu_; sticky after an I/O failure
  std::string failure_;                   // guarded by mu_
  uint64_t syncs_ = 0;                    // guarded by mu_
  std::thread flusher_;
  std::once_flag close_once_;
};

}  // namespace mandate::audit
